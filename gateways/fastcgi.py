"""The FastCGI gateway: the protocol core on a socket, the WSGI core on top.

Run it as a daemon on a socket, or let a web server spawn it with the
listening socket on fd 0::

    gateways fastcgi myapp:app --bind unix:/run/myapp.sock --socket-group www-data
    gateways fastcgi myapp:app            # spawned: lighttpd bin-path, mod_fcgid

or from Python (``gateways.fastcgi.serve(app, bind=...)``), or with the flup
interface the seed document used: change ``from flup.server.fcgi import
WSGIServer`` to ``from gateways.fastcgi import WSGIServer``.

This module is the public door; the protocol handler lives in the engine
(:mod:`gateways.server.fastcgi`), the sans-IO core in
:mod:`gateways.protocol.fastcgi`.
"""

from gateways.server.fastcgi import FastCGIHandler
from gateways.server.main import run_server
from gateways.settings import resolve

__all__ = ["FastCGIHandler", "WSGIServer", "serve"]


# -- public API ------------------------------------------------------------------


def serve(app, **options):
    """Serve ``app`` (a WSGI callable or an APP string) over FastCGI until stopped.

    Options are the settings of ``gateways fastcgi`` by their Python names
    (``bind="unix:/run/app.sock"``, ``processes=2``, ``threads=8``,
    ``socket_group="www-data"``...).  Without ``bind`` the socket comes from
    systemd or from the web server that spawned us (fd 0).  Returns the
    exit status.  Raises :class:`gateways.errors.ConfigError` for a bad
    option or a socket that cannot be opened.
    """
    return run_server(FastCGIHandler, app, resolve("fastcgi", options))


class WSGIServer:
    """flup-compatible front door: ``WSGIServer(app, bindAddress=...).run()``.

    ``bindAddress`` is a unix socket path, a ``(host, port)`` tuple, or None
    for the socket a web server passes on fd 0 (flup's default).  ``umask``
    is honoured as flup honours it: the unix socket is created with mode
    ``0o777 & ~umask`` (``umask=0`` makes it writable by every local user, as
    under flup; a warning says so).  Without ``umask`` the socket is 0660:
    give ``socket_group="www-data"`` so that the web server can connect.
    ``multiplexed`` is accepted for compatibility: no web server multiplexes,
    and neither do we (FCGI_MPXS_CONNS is 0).  ``debug`` defaults to False:
    no tracebacks for visitors.  ``roles`` is flup's tuple of role numbers
    (``(FCGI_RESPONDER, FCGI_AUTHORIZER)``: 1 and 2) or names, as ``--roles``
    takes them; the role of each request is in ``environ["FCGI_ROLE"]``.
    flup's thread pool keywords: ``maxThreads``
    becomes ``threads``; ``minSpare`` and ``maxSpare`` have nothing to tune.
    Any option of :func:`serve` may be given too (``socket_group``,
    ``processes``...); other keywords raise TypeError.
    """

    FLUP_POOL = ("minSpare", "maxSpare")

    def __init__(self, application, environ=None, multithreaded=True, multiprocess=False,
                 bindAddress=None, umask=None, multiplexed=False, debug=False, roles=None,
                 forceCGI=False, **options):
        from gateways.settings import UmaskMode, for_command

        self.application = application
        self.options = {"debug": debug}
        if isinstance(bindAddress, str):
            self.options["bind"] = "unix:" + bindAddress
        elif bindAddress is not None:
            host, port = bindAddress
            self.options["bind"] = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        if umask is not None:
            self.options["socket_mode"] = UmaskMode(0o777 & ~umask)
        if roles is not None:
            names = {1: "responder", 2: "authorizer", 3: "filter"}  # flup's FCGI_* numbers
            self.options["roles"] = [names.get(role, role) for role in roles]
        max_threads = options.pop("maxThreads", None)
        if max_threads:
            self.options["threads"] = max_threads
        for name in self.FLUP_POOL:
            options.pop(name, None)
        known = {s.name for s in for_command("fastcgi")}
        for name in options:
            if name not in known:
                raise TypeError(
                    "WSGIServer() got an unexpected keyword argument %r (it takes flup's "
                    "keywords and the options of gateways.fastcgi.serve: %s)"
                    % (name, ", ".join(sorted(known))))
        self.options.setdefault("processes", 1)
        self.options.update(options)
        self.extra_environ = dict(environ or {})

    def _app(self):
        if not self.extra_environ:
            return self.application
        application, extra = self.application, self.extra_environ

        def with_environ(environ, start_response):
            for key, value in extra.items():
                environ.setdefault(key, value)
            return application(environ, start_response)

        return with_environ

    def run(self):
        """Serve until stopped; returns False (flup returns True after SIGHUP)."""
        serve(self._app(), **self.options)
        return False
