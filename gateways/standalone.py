"""The standalone gateway: werkzeug's development server, for testing.

``gateways serve [APP]`` serves APP (default: the demo application) over
HTTP.  It is a development server: use the CGI, FastCGI or SCGI gateways
behind a real web server in production.

Operator mistakes end in one line: a port in use exits 1; ``--debug`` (the
interactive debugger, which runs any Python code typed into the browser) is
refused on anything but a loopback address.
"""

import errno
import ipaddress
import socket
import sys

from gateways.environ import DROPPED, LimitedInput, fix_paths, normalize_mount
from gateways.response import FileWrapper
from gateways.settings import ConfigError

GATEWAY_NAME = "standalone HTTP (werkzeug)"


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wrap(app, mount=None):
    """Name the gateway, make the environ PEP 3333-clean, apply ``--script-name``.

    werkzeug offers no ``wsgi.file_wrapper``, passes a ``Proxy:`` header on as ``HTTP_PROXY``
    (httpoxy), puts ``REMOTE_PORT`` in the environ as an int (PEP 3333 wants
    every CGI variable as a str) and lets ``wsgi.input`` read past
    CONTENT_LENGTH into the socket, where a read blocks.
    """

    def standalone_app(environ, start_response):
        environ["gateways.gateway"] = GATEWAY_NAME
        environ.setdefault("wsgi.file_wrapper", FileWrapper)
        for key in DROPPED:  # httpoxy, as in every gateway
            environ.pop(key, None)
        for key, value in environ.items():
            if value.__class__ is not str and "." not in key:
                environ[key] = str(value)
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and not environ.get("wsgi.input_terminated"):
            # werkzeug hands over the raw socket: reading past the body would block.
            environ["wsgi.input"] = LimitedInput(environ["wsgi.input"], int(length))
        if mount is not None:
            fix_paths(environ, mount)
        return app(environ, start_response)

    return standalone_app


def check_port_free(host, port):
    """Fail with one line now rather than with werkzeug's multi-line message later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family if host != "localhost" else 0,
                                   socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError("--bind: cannot resolve host %r: %s" % (host, exc)) from None
    family, _, _, _, address = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            error = ConfigError(
                "%s port %d is already in use by another program; choose another with "
                "--bind HOST:PORT" % (host, port)
            )
            error.status = 1
            raise error from None
        raise ConfigError("--bind %s:%d: %s" % (host, port, exc.strerror)) from None
    finally:
        probe.close()


def serve(app, host="127.0.0.1", port=8000, *, reload=False, debug=False, threads=8,
          processes=1, script_name=None):
    """Serve ``app`` with werkzeug's development server until interrupted."""
    from werkzeug.serving import run_simple

    if debug and not is_loopback(host):
        raise ConfigError(
            "--debug turns on werkzeug's interactive debugger, which runs any Python code "
            "a visitor types; refusing to serve it on %s (bind a loopback address such as "
            "127.0.0.1)" % host
        )
    check_port_free(host, port)
    run_simple(
        host,
        port,
        wrap(app, normalize_mount(script_name)),
        use_reloader=reload,
        use_debugger=debug,
        use_evalex=debug,
        threaded=processes <= 1 and threads > 1,
        processes=processes,
    )
    return 0


def serve_cli(config):
    from gateways.cli import _fail
    from gateways.loader import AppLoadError, load_app
    from gateways.server.listen import parse_bind

    try:
        bind = parse_bind(config.bind)
        if bind.kind != "tcp":
            raise ConfigError("--bind %s: 'serve' listens on HOST:PORT only" % config.bind)
        app = load_app(config.app, config.app_dir)
        return serve(app, bind.host, bind.port, reload=config.reload, debug=config.debug,
                     threads=config.threads, processes=config.processes,
                     script_name=config.script_name)
    except AppLoadError as exc:
        if config.debug:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        return _fail(str(exc))
    except ConfigError as exc:
        return _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 0
