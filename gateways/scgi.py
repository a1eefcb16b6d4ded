"""The SCGI gateway: the SCGI core on a socket, the WSGI core on top.

::

    gateways scgi myapp:app --bind unix:/run/myapp-scgi.sock --socket-group www-data
    gateways scgi myapp:app --bind 127.0.0.1:4000

or ``gateways.scgi.serve(app, bind=...)`` from Python.  It runs on the same
listeners and workers as FastCGI (:mod:`gateways.server`); this module adds
the framing and nothing else (:mod:`gateways.server.scgi`, on the core
:mod:`gateways.protocol.scgi`).
"""

from gateways.server.main import run_server
from gateways.server.scgi import SCGIHandler
from gateways.settings import resolve

__all__ = ["SCGIHandler", "serve"]


def serve(app, **options):
    """Serve ``app`` (a WSGI callable or an APP string) over SCGI until stopped.

    Options are the settings of ``gateways scgi`` by their Python names
    (``bind="127.0.0.1:4000"``, ``processes=2``, ``script_name="/app"``...).
    Returns the exit status; raises :class:`gateways.errors.ConfigError`
    for a bad option or a socket that cannot be opened.
    """
    return run_server(SCGIHandler, app, resolve("scgi", options))
