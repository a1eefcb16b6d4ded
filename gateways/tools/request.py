"""``gateways request``: one request straight to a daemon, no web server needed.

What a Docker HEALTHCHECK, a systemd ``ExecStartPost``, monit or a person
debugging a 502 runs::

    gateways request fastcgi unix:/run/myapp/fastcgi.sock /health
    gateways request scgi 127.0.0.1:4000 /api -X POST -d '{"a": 1}' -H 'X-Debug: 1'
    gateways request uwsgi unix:/run/myapp/uwsgi.sock / -i
    gateways request fastcgi 127.0.0.1:9000 --values

The request is built the way a web server builds it (RFC 3875
meta-variables: REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING,
SERVER_*, REMOTE_ADDR, CONTENT_*, one ``HTTP_*`` per ``-H``; ``--param``
adds or replaces any), with the protocol cores' own encoders.  The answer's
body goes to stdout (``-i``: the status line and headers first); FastCGI's
stderr records go to stderr.  Exit status: 0 for 2xx and 3xx, 1 for 4xx and
5xx, 2 when the daemon cannot be reached, does not answer within
``--timeout`` or answers something that is not a response.
``--values`` asks a FastCGI daemon FCGI_GET_VALUES (§4.1) and prints the
answer, one ``NAME=value`` per line.
"""

import argparse
import socket
import sys
import time

from gateways.address import parse_bind
from gateways.errors import ConfigError, OperatorError
from gateways.settings import seconds

PROTOCOLS = ("fastcgi", "scgi", "uwsgi")


class RequestFailed(OperatorError):
    """No usable answer: exit status 2."""


def seconds_option(text: str) -> float:
    """argparse type of a duration option: seconds > 0, or the usage error."""
    try:
        return seconds(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count_option(text: str) -> int:
    """argparse type of a count option: a whole number >= 0, or the usage error."""
    if not (text.isdigit() and text.isascii()):
        raise argparse.ArgumentTypeError("%r: give a whole number, 0 or more" % text)
    return int(text)


def add_arguments(parser):
    """The arguments of ``gateways request``."""
    parser.add_argument("protocol", metavar="PROTOCOL", choices=PROTOCOLS,
                        help="what the daemon speaks: %s" % ", ".join(PROTOCOLS))
    parser.add_argument("address", metavar="ADDRESS",
                        help="where it listens: unix:PATH, HOST:PORT or [IPv6]:PORT")
    parser.add_argument("path", metavar="PATH", nargs="?", default="/",
                        help="the path and query, e.g. /health?deep=1 (default: /)")
    parser.add_argument("-X", "--method", default=None, metavar="METHOD",
                        help="the request method (default: GET, or POST with -d)")
    parser.add_argument("-d", "--data", default=None, metavar="BODY",
                        help="the request body; @FILE reads it from FILE, @- from stdin")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: value'",
                        help="a request header (repeatable)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a meta-variable to add or replace, e.g. SCRIPT_NAME=/app "
                        "(repeatable)")
    parser.add_argument("-i", "--include", action="store_true",
                        help="print the status line and the headers before the body")
    parser.add_argument("--timeout", type=seconds_option, default=10.0, metavar="SECONDS",
                        help="give up after this long (default: 10)")
    parser.add_argument("--values", action="store_true",
                        help="FastCGI: ask FCGI_GET_VALUES instead of a request")


# -- the request -----------------------------------------------------------------------------


def _body(data):
    if data is None:
        return b""
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            with open(data[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise OperatorError("-d %s: %s" % (data, exc.strerror)) from None
    return data.encode("utf-8")


def meta_variables(args, address, body):
    """The CGI meta-variables of the request (str of latin-1 code points)."""
    from gateways.environ import unquote

    path, _, query = args.path.partition("?")
    if not path.startswith("/"):
        raise OperatorError("PATH %r must start with /" % args.path)
    method = args.method or ("POST" if args.data is not None else "GET")
    host = address.host if address.kind == "tcp" else "localhost"
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": method.upper(),
        "SCRIPT_NAME": "", "PATH_INFO": unquote(path), "QUERY_STRING": query,
        "REQUEST_URI": args.path, "SERVER_NAME": host or "localhost",
        "SERVER_PORT": str(address.port or 80), "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "gateways-request", "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0", "HTTP_HOST": host or "localhost",
    }
    if body or args.data is not None:
        params["CONTENT_LENGTH"] = str(len(body))
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise OperatorError("-H %r is not 'Name: value'" % header)
        key = name.strip().upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            params[key] = value.strip()
        else:
            params["HTTP_" + key] = value.strip()
    for item in args.param:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise OperatorError("--param %r is not NAME=VALUE" % item)
        params[name] = value
    for name, value in params.items():
        try:
            (name + value).encode("latin-1")
        except UnicodeEncodeError:
            raise OperatorError("%s: only latin-1 text goes into a meta-variable" % name) from None
    return params


def connect(address, timeout):
    if address.kind == "unix":
        family, target = socket.AF_UNIX, address.path
    elif address.kind == "tcp":
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        target = (address.host, address.port)
    else:
        raise OperatorError("ADDRESS %s: give unix:PATH or HOST:PORT" % address.text)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError as exc:
        sock.close()
        raise RequestFailed("cannot connect to %s: %s" % (address.text,
                                                          exc.strerror or exc)) from None
    return sock


def read_all(sock, deadline, done=None):
    """Everything until the daemon closes (or ``done(data)`` says it is complete)."""
    data = bytearray()
    while not (done and done(data)):
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise RequestFailed("no complete answer within the timeout "
                                "(%d bytes so far)" % len(data)) from None
        except OSError as exc:
            raise RequestFailed("the connection failed: %s" % (exc.strerror or exc)) from None
        if not chunk:
            break
        data += chunk
    return bytes(data)


# -- FastCGI ---------------------------------------------------------------------------------------


def _records(data):
    """``[(type, request id, content)]`` of the records in ``data`` and whether the last
    one is complete."""
    from gateways.protocol import fastcgi as fc

    out, pos = [], 0
    while len(data) - pos >= 8:
        version, rtype, rid, clen, plen = fc.HEADER.unpack_from(data, pos)
        if version != fc.VERSION_1:
            raise RequestFailed("the answer is not FastCGI (record version %d)" % version)
        end = pos + 8 + clen
        if end + plen > len(data):
            break
        out.append((rtype, rid, data[pos + 8:end]))
        pos = end + plen
    return out


def _fastcgi_ended(data):
    from gateways.protocol import fastcgi as fc

    try:
        return any(r[0] == fc.END_REQUEST for r in _records(data))
    except RequestFailed:
        return True


def fastcgi_request(sock, params, body, deadline):
    """``(CGI response bytes, stderr bytes)`` of one FastCGI Responder request."""
    from gateways.protocol import fastcgi as fc

    out = [fc.record(fc.BEGIN_REQUEST, 1, fc.BEGIN_BODY.pack(fc.RESPONDER, 0)),
           fc.stream_records(fc.PARAMS, 1, fc.encode_pairs(params.items())),
           fc.record(fc.PARAMS, 1), fc.stream_records(fc.STDIN, 1, body),
           fc.record(fc.STDIN, 1)]
    sock.sendall(b"".join(out))
    stdout, stderr = [], []
    for rtype, _, content in _records(read_all(sock, deadline, _fastcgi_ended)):
        if rtype == fc.STDOUT:
            stdout.append(content)
        elif rtype == fc.STDERR:
            stderr.append(content)
        elif rtype == fc.END_REQUEST:
            _, protocol_status = fc.END_BODY.unpack(content)
            if protocol_status != fc.REQUEST_COMPLETE:
                names = {1: "FCGI_CANT_MPX_CONN", 2: "FCGI_OVERLOADED", 3: "FCGI_UNKNOWN_ROLE"}
                raise RequestFailed("the daemon refused the request: %s"
                                    % names.get(protocol_status, protocol_status))
            return b"".join(stdout), b"".join(stderr)
    raise RequestFailed("the daemon closed the connection without FCGI_END_REQUEST")


def fastcgi_values(sock, deadline):
    """The FCGI_GET_VALUES_RESULT pairs (§4.1)."""
    from gateways.protocol import fastcgi as fc

    names = ("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS")
    sock.sendall(fc.record(fc.GET_VALUES, 0, fc.encode_pairs((n, "") for n in names)))

    def answered(data):
        return any(r[0] == fc.GET_VALUES_RESULT for r in _records(data))

    for rtype, _, content in _records(read_all(sock, deadline, answered)):
        if rtype == fc.GET_VALUES_RESULT:
            return fc.decode_pairs(content, 100)
    raise RequestFailed("no FCGI_GET_VALUES_RESULT")


# -- the answer ------------------------------------------------------------------------------------


def split_response(data):
    """``(status code, head lines, body)`` of a CGI-format or an HTTP response; the
    head lines of a CGI response without a Status line start with the status it
    implies (RFC 3875 §6.2)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if not sep:
        raise RequestFailed("the answer has no end of headers (%d bytes): %r"
                            % (len(data), data[:80]))
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    if lines[0].startswith("HTTP/"):
        status = lines[0].split(" ", 1)[1] if " " in lines[0] else ""
    else:
        found = [line.split(":", 1)[1].strip() for line in lines
                 if line.lower().startswith("status:")]
        located = any(line.lower().startswith("location:") for line in lines)
        status = found[0] if found else ("302 Found" if located else "200 OK")
        if not found:
            lines.insert(0, "Status: " + status)
    code = status[:3]
    if not code.isdigit():
        raise RequestFailed("the answer's status %r is not a number" % status)
    return int(code), lines, body


def run_cli(args):
    """``gateways request``: see the module docstring."""
    address = parse_bind(args.address)
    deadline = time.monotonic() + args.timeout
    if args.values:
        if args.protocol != "fastcgi":
            raise OperatorError("--values is a FastCGI request (FCGI_GET_VALUES)")
        with connect(address, args.timeout) as sock:
            values = fastcgi_values(sock, deadline)
        sys.stdout.write("".join("%s=%s\n" % item for item in values.items()))
        return 0
    body = _body(args.data)
    params = meta_variables(args, address, body)
    with connect(address, args.timeout) as sock:
        try:
            if args.protocol == "fastcgi":
                answer, stderr = fastcgi_request(sock, params, body, deadline)
            else:
                if args.protocol == "scgi":
                    from gateways.protocol.scgi import make_request
                else:
                    from gateways.protocol.uwsgi import make_request
                sock.sendall(make_request(params, body))
                answer, stderr = read_all(sock, deadline), b""
        except OSError as exc:
            raise RequestFailed("the connection failed: %s" % (exc.strerror or exc)) from None
    code, head, payload = split_response(answer)
    if stderr:
        sys.stderr.buffer.write(stderr)
        sys.stderr.flush()
    out = sys.stdout.buffer
    if args.include:
        out.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    out.write(payload)
    out.flush()
    return 0 if code < 400 else 1
