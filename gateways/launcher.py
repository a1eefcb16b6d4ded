"""The launcher: one script everywhere, the gateway chosen from facts, never guesses.

1. File descriptor 0 is a listening stream socket: a web server (lighttpd
   ``bin-path``, Apache mod_fcgid, spawn-fcgi) spawned us as a FastCGI
   application (FastCGI 1.0 §2.2, ``FCGI_LISTENSOCK_FILENO``).  This comes
   first because it cannot be inherited by accident, while a spawning web
   server may well leave CGI variables in the environment.
2. ``GATEWAY_INTERFACE`` is set: a web server runs us as a CGI program
   (RFC 3875 §4.1.4); fd 0 is then the request body.
3. Otherwise (a terminal, a pipe, a plain file): the standalone server.

``SERVER_SOFTWARE`` and similar variables prove nothing and are not looked
at.  The check costs one ``fstat`` (:mod:`gateways.fd0`).  ``gateways.run()``
and ``gateways run`` come here; this module sits at the top of the house
(it may import every gateway) and nothing below it imports it.
"""

import os

from gateways.fd0 import listening_socket

CGI, FASTCGI, STANDALONE = "cgi", "fastcgi", "standalone"


def detect(environ=None, fd=0):
    """``"fastcgi"``, ``"cgi"`` or ``"standalone"`` for this process."""
    if listening_socket(fd):
        return FASTCGI
    environ = os.environ if environ is None else environ
    if environ.get("GATEWAY_INTERFACE"):
        return CGI
    return STANDALONE


def run(app, **options):
    """Serve ``app`` (a WSGI callable, or an APP string) as :func:`detect` says.

    Options are the settings of the chosen gateway by their Python names
    (``script_name``, ``debug``, ``app_dir``...); those another gateway does
    not have are left out for it.  Returns the exit status; an operator's
    mistake is reported in one line (:func:`gateways.errors.report`).
    """
    kind = detect()
    if kind == CGI:
        from gateways import cgi

        if isinstance(app, str):
            return cgi.main(app, **_only(options, ("app_dir", "debug", "script_name", "iis")))
        return cgi.run(app, **_only(options, ("debug", "script_name", "iis")))
    from gateways.errors import OperatorError, report
    from gateways.settings import for_command, resolve

    command = "fastcgi" if kind == FASTCGI else "serve"
    names = {s.name for s in for_command(command)}
    given = {k: v for k, v in options.items() if k in names}
    given["app"] = app
    try:
        return serve(resolve(command, given))
    except OperatorError as exc:
        return report(exc, debug=bool(options.get("debug")))


def _only(options, names):
    return {k: v for k, v in options.items() if k in names}


def serve(config):
    """Serve ``config.app`` as FastCGI (``config.command`` "fastcgi") or standalone."""
    if config.command == "fastcgi":
        from gateways.server.fastcgi import FastCGIHandler
        from gateways.server.main import run_server

        return run_server(FastCGIHandler, config.app, config)
    from gateways.standalone import serve_config

    return serve_config(config)


def run_cli(config):
    """``gateways run APP``: the gateway :func:`detect` chooses, with APP's options.

    Raises the :class:`gateways.errors.OperatorError` that stops it (the CLI
    reports it), except under CGI, which answers the visitor itself.
    """
    from gateways.settings import resolve

    kind = detect()
    if kind == CGI:
        from gateways.cgi import main as cgi_main

        return cgi_main(config.app, app_dir=config.app_dir, debug=config.debug,
                        script_name=config.script_name, iis=config.iis)
    values = {"app": config.app, "app_dir": config.app_dir, "debug": config.debug,
              "script_name": config.script_name}
    return serve(resolve("fastcgi" if kind == FASTCGI else "serve", values))
