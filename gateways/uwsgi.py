"""The uwsgi gateway: what nginx ``uwsgi_pass``, Apache mod_proxy_uwsgi and lighttpd
speak to uWSGI, served by the same engine as FastCGI and SCGI::

    gateways uwsgi myapp:app --bind unix:/run/myapp/uwsgi.sock --socket-group www-data
    gateways uwsgi myapp:app --bind 127.0.0.1:3031

or ``gateways.uwsgi.serve(app, bind=...)`` from Python.  This module adds the
framing and nothing else (:mod:`gateways.server.uwsgi`, on the core
:mod:`gateways.protocol.uwsgi`).
"""

from gateways.server.main import run_server
from gateways.server.uwsgi import UWSGIHandler
from gateways.settings import resolve

__all__ = ["UWSGIHandler", "serve"]


def serve(app, **options):
    """Serve ``app`` (a WSGI callable or an APP string) over uwsgi until stopped.

    Options are the settings of ``gateways uwsgi`` by their Python names
    (``bind="127.0.0.1:3031"``, ``processes=2``, ``script_name="/app"``...).
    Returns the exit status; raises :class:`gateways.errors.ConfigError` for a
    bad option or a socket that cannot be opened.
    """
    return run_server(UWSGIHandler, app, resolve("uwsgi", options))
