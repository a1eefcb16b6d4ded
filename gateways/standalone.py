"""The standalone gateway: werkzeug's development server, for testing.

``gateways serve [APP]`` serves APP (default: the demo application) over
HTTP.  It is a development server: use the CGI, FastCGI or SCGI gateways
behind a real web server in production and on untrusted networks.

Operator mistakes end in one line: a port in use exits 1; ``--debug`` (the
interactive debugger, which runs any Python code typed into the browser) is
refused on anything but a loopback address.

Around werkzeug, the request handler :func:`request_handler` makes answers a
malformed request 400, sends one ``100 Continue`` and no body after the head
of a HEAD response; :func:`wrap` gives the application a PEP 3333-clean
environ (``wsgi.input`` empty when the request has no body).
"""

import errno
import ipaddress
import re
import socket
import sys

from gateways.environ import DROPPED, LimitedInput, fix_paths, normalize_mount
from gateways.errors import ConfigError
from gateways.response import FileWrapper

GATEWAY_NAME = "standalone HTTP (werkzeug)"
_DIGITS = re.compile(r"[0-9]+\Z")


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def body_length(text):
    """The length of a request body that is not chunked, from its Content-Length.

    No Content-Length (``text`` None or empty) means no body at all (RFC 9112
    §6.3): 0.  A value that is not a number does not get this far: the request
    handler answers it 400 before the application runs.
    """
    text = (text or "").strip()
    return int(text) if _DIGITS.match(text) else 0


def wrap(app, mount=None):
    """Name the gateway, make the environ PEP 3333-clean, apply ``--script-name``.

    werkzeug offers no ``wsgi.file_wrapper``, passes a ``Proxy:`` header on as ``HTTP_PROXY``
    (httpoxy), puts ``REMOTE_PORT`` in the environ as an int (PEP 3333 wants
    every CGI variable as a str) and hands over the raw socket as ``wsgi.input``:
    a read past CONTENT_LENGTH, or of a request without a body, would block.
    """

    def standalone_app(environ, start_response):
        environ["gateways.gateway"] = GATEWAY_NAME
        environ.setdefault("wsgi.file_wrapper", FileWrapper)
        for key in DROPPED:  # httpoxy, as in every gateway
            environ.pop(key, None)
        for key, value in environ.items():
            if value.__class__ is not str and "." not in key:
                environ[key] = str(value)
        if not environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks it
            environ["wsgi.input"] = LimitedInput(environ["wsgi.input"],
                                                 body_length(environ.get("CONTENT_LENGTH")))
        if mount is not None:
            fix_paths(environ, mount)
        return app(environ, start_response)

    return standalone_app


def header_problem(headers):
    """Why a request's header section must be answered 400 (RFC 9112 §5, §6.3), or None."""
    if headers.defects:  # a line without a colon, a space before the colon...
        return "a header line is not NAME: VALUE"
    lengths = {value.strip() for value in headers.get_all("Content-Length", ())}
    if lengths and (len(lengths) > 1 or not _DIGITS.match(next(iter(lengths)))):
        return "Content-Length is not one number of bytes"
    return None


class _NoBody:
    """A HEAD response's output after its head: the body goes nowhere (RFC 9110 §9.3.2)."""

    def __init__(self, wfile):
        self.wfile = wfile

    def write(self, data):
        return len(data)

    def __getattr__(self, name):  # flush, close, closed
        return getattr(self.wfile, name)


def request_handler():
    """werkzeug's request handler with what it gets wrong put right: a new class.

    (werkzeug sets ``protocol_version`` on the class it is given when it
    serves with threads or processes: each server gets a class of its own.)

    * http.server answers ``Expect: 100-continue`` in ``parse_request`` and
      werkzeug's ``run_wsgi`` answers it again: the first one is left out.
    * A header line that is not ``NAME: VALUE`` and a Content-Length that is
      not one number are answered 400 instead of reaching the application.
    * The body of a HEAD response, from the application's iterable or its
      ``write()`` callable, is dropped; the head (Content-Length included) is
      sent as for GET.
    """
    from werkzeug.serving import WSGIRequestHandler

    class RequestHandler(WSGIRequestHandler):
        def handle_expect_100(self):
            return True  # werkzeug's run_wsgi() sends the 100 Continue

        def parse_request(self):
            if not super().parse_request():
                return False
            problem = header_problem(self.headers)
            if problem:
                self.send_error(400, None, problem)
                return False
            return True

        def end_headers(self):
            super().end_headers()
            if self.command == "HEAD" and not isinstance(self.wfile, _NoBody):
                self.wfile = _NoBody(self.wfile)

    return RequestHandler


def _address(host, port):
    return "%s:%d" % ("[%s]" % host if ":" in host else host, port)


def check_port_free(host, port):
    """Fail with one line now rather than with werkzeug's multi-line message later."""
    from gateways.address import address_in_use

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
            raise address_in_use(_address(host, port)) from None
        raise ConfigError("--bind %s: %s" % (_address(host, port), exc.strerror)) from None
    finally:
        probe.close()


def serve(app, host="127.0.0.1", port=8000, *, reload=False, debug=False, threads=8,
          processes=1, script_name=None):
    """Serve ``app`` with werkzeug's development server until interrupted."""
    from werkzeug.serving import is_running_from_reloader, run_simple

    if debug and not is_loopback(host):
        raise ConfigError(
            "--debug turns on werkzeug's interactive debugger, which runs any Python code "
            "a visitor types; refusing to serve it on %s (bind a loopback address such as "
            "127.0.0.1)" % host
        )
    if not is_running_from_reloader():
        # Under --reload this process is the reloader's child: the parent holds
        # the port and passes it on (WERKZEUG_SERVER_FD), nothing binds it here.
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
        request_handler=request_handler(),
    )
    return 0


def serve_config(config):
    """``gateways serve`` (and the launcher from a terminal): ``config`` is the resolved
    settings of "serve", ``config.app`` an APP string or a WSGI callable.  Raises
    the :class:`gateways.errors.OperatorError` that stops it."""
    from gateways.address import parse_bind
    from gateways.loader import load_app

    bind = parse_bind(config.bind)
    if bind.kind != "tcp":
        raise ConfigError("--bind %s: 'serve' listens on HOST:PORT only" % config.bind)
    app = load_app(config.app, config.app_dir) if isinstance(config.app, str) else config.app
    try:
        return serve(app, bind.host, bind.port, reload=config.reload, debug=config.debug,
                     threads=config.threads, processes=config.processes,
                     script_name=config.script_name)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 0
