"""One script everywhere: choose the gateway from facts, never from guesses.

* ``GATEWAY_INTERFACE`` is set: a web server runs us as a CGI program
  (RFC 3875 §4.1.4).
* File descriptor 0 is a listening stream socket: a web server (lighttpd
  ``bin-path``, Apache mod_fcgid, spawn-fcgi) spawned us as a FastCGI
  application (FastCGI 1.0 §2.2, ``FCGI_LISTENSOCK_FILENO``).
* Otherwise (a terminal, a pipe, a plain file): the standalone server.

``SERVER_SOFTWARE`` and similar variables prove nothing and are not looked at.
"""

import os
import socket
import stat

CGI, FASTCGI, STANDALONE = "cgi", "fastcgi", "standalone"


def listening_socket(fd=0):
    """True when ``fd`` is a listening stream socket (any address family)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if not stat.S_ISSOCK(mode):
        return False
    sock = socket.socket(fileno=os.dup(fd))
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        )
    except OSError:
        return False
    finally:
        sock.close()


def detect(environ=None, fd=0):
    """``"cgi"``, ``"fastcgi"`` or ``"standalone"`` for this process."""
    environ = os.environ if environ is None else environ
    if environ.get("GATEWAY_INTERFACE"):
        return CGI
    if listening_socket(fd):
        return FASTCGI
    return STANDALONE


def run(app, *, debug=None, script_name=None, **options):
    """Serve ``app`` through the gateway :func:`detect` chooses (``gateways.run``)."""
    kind = detect()
    if kind == CGI:
        from gateways.cgi import run as run_cgi

        return run_cgi(app, debug=debug, script_name=script_name, iis=options.get("iis", False))
    if kind == FASTCGI:
        from gateways.fastcgi import serve as serve_fastcgi

        return serve_fastcgi(app, debug=bool(debug), script_name=script_name, **options)
    from gateways.standalone import serve as serve_standalone

    return serve_standalone(app, debug=bool(debug), script_name=script_name,
                            **{k: v for k, v in options.items() if k in ("reload",)})


def run_cli(config):
    """``gateways run APP``."""
    kind = detect()
    if kind == CGI:
        from gateways.cgi import main as cgi_main

        return cgi_main(config.app, app_dir=config.app_dir, debug=config.debug,
                        script_name=config.script_name, iis=config.iis)
    if kind == FASTCGI:
        from gateways.server.main import serve_cli
        from gateways.settings import resolve

        values = {"app": config.app, "app_dir": config.app_dir, "debug": config.debug,
                  "script_name": config.script_name}
        return serve_cli(resolve("fastcgi", values))
    from gateways.settings import resolve
    from gateways.standalone import serve_cli as standalone_cli

    values = {"app": config.app, "app_dir": config.app_dir, "debug": config.debug,
              "script_name": config.script_name}
    return standalone_cli(resolve("serve", values))
