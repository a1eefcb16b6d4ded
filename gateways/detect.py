"""One script everywhere: choose the gateway from facts, never from guesses.

1. File descriptor 0 is a listening stream socket: a web server (lighttpd
   ``bin-path``, Apache mod_fcgid, spawn-fcgi) spawned us as a FastCGI
   application (FastCGI 1.0 §2.2, ``FCGI_LISTENSOCK_FILENO``).  This comes
   first because it cannot be inherited by accident, while a spawning web
   server may well leave CGI variables in the environment.
2. ``GATEWAY_INTERFACE`` is set: a web server runs us as a CGI program
   (RFC 3875 §4.1.4); fd 0 is then the request body.
3. Otherwise (a terminal, a pipe, a plain file): the standalone server.

``SERVER_SOFTWARE`` and similar variables prove nothing and are not looked
at.  The check costs one ``fstat``; the socket module is imported only when
fd 0 is a socket, so a CGI request pays nothing for it.
"""

import os

CGI, FASTCGI, STANDALONE = "cgi", "fastcgi", "standalone"
_S_IFMT, _S_IFSOCK = 0o170000, 0o140000


def listening_socket(fd=0):
    """True when ``fd`` is a listening stream socket (any address family)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if mode & _S_IFMT != _S_IFSOCK:
        return False
    import socket

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
    not have are left out for it.  Returns the exit status.
    """
    kind = detect()
    if kind == CGI:
        from gateways import cgi

        if isinstance(app, str):
            return cgi.main(app, **_only(options, ("app_dir", "debug", "script_name", "iis")))
        return cgi.run(app, **_only(options, ("debug", "script_name", "iis")))
    from gateways.settings import ConfigError, for_command

    command = "fastcgi" if kind == FASTCGI else "serve"
    names = {s.name for s in for_command(command)}
    given = {k: v for k, v in options.items() if k in names}
    from gateways.loader import AppLoadError

    try:
        if kind == FASTCGI:
            from gateways.fastcgi import serve

            return serve(app, **given)
        return _standalone(app, given)
    except (ConfigError, AppLoadError) as exc:
        import sys

        sys.stderr.write("gateways: error: %s\n" % exc)
        return getattr(exc, "status", 2)


def _only(options, names):
    return {k: v for k, v in options.items() if k in names}


def _standalone(app, given):
    from gateways.loader import load_app
    from gateways.server.listen import parse_bind
    from gateways.settings import resolve
    from gateways.standalone import serve

    config = resolve("serve", given)
    if isinstance(app, str):
        app = load_app(app, config.app_dir)
    bind = parse_bind(config.bind)
    return serve(app, bind.host, bind.port, reload=config.reload, debug=config.debug,
                 threads=config.threads, processes=config.processes,
                 script_name=config.script_name)


def run_cli(config):
    """``gateways run APP``: the gateway :func:`detect` chooses, with APP's options."""
    from gateways.settings import resolve

    kind = detect()
    values = {"app": config.app, "app_dir": config.app_dir, "debug": config.debug,
              "script_name": config.script_name}
    if kind == CGI:
        from gateways.cgi import main as cgi_main

        return cgi_main(config.app, app_dir=config.app_dir, debug=config.debug,
                        script_name=config.script_name, iis=config.iis)
    if kind == FASTCGI:
        from gateways.server.main import serve_cli

        return serve_cli(resolve("fastcgi", values))
    from gateways.standalone import serve_cli as standalone_cli

    return standalone_cli(resolve("serve", values))
