"""A raw FastCGI client for tests and benchmarks: the web server's side of FastCGI 1.0.

Records are built by hand here, with an encoder of our own, so that a bug in
:mod:`gateways.protocol.fastcgi`'s encoders cannot hide a bug in its decoder.
Builders return bytes, so tests can cut, pad, corrupt and interleave them::

    data = build_request(http_params("/echo", query="a=1"), b"body", keep_conn=True,
                         params_record_size=7)      # pairs straddle records
    with FastCGIClient("/run/app.sock") as client:
        response = client.request(http_params("/echo"))
        assert response.status_code == 200 and response.json()["path_info"] == "/echo"
        client.send_raw(get_values(["FCGI_MAX_CONNS"]))
        [(rtype, rid, content)] = client.read_records(timeout=2)

Spec: FastCGI Specification 1.0 (Open Market, 1996), sections cited as §N.
"""

import json
import socket
import struct
import time

# §8 Constants.
VERSION_1 = 1
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

MAX_CONTENT = 65535
TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST", ABORT_REQUEST: "ABORT_REQUEST", END_REQUEST: "END_REQUEST",
    PARAMS: "PARAMS", STDIN: "STDIN", STDOUT: "STDOUT", STDERR: "STDERR", DATA: "DATA",
    GET_VALUES: "GET_VALUES", GET_VALUES_RESULT: "GET_VALUES_RESULT",
    UNKNOWN_TYPE: "UNKNOWN_TYPE",
}


class FastCGIClientError(Exception):
    """The application's answer is not valid FastCGI, or it never came."""


# -- encoding -----------------------------------------------------------------------


def _bytes(value):
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def encode_length(n):
    """§3.4: one byte below 128, else four bytes with the high bit set."""
    if n < 0x80:
        return bytes((n,))
    if n > 0x7FFFFFFF:
        raise ValueError("a name or value of %d bytes cannot be encoded" % n)
    return bytes((0x80 | (n >> 24), (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF))


def encode_pairs(params):
    """Name-value pairs (§3.4) from a dict or (name, value) pairs; str is latin-1.

    A list of pairs may repeat a name (what nginx before 1.23 does).
    """
    items = params.items() if isinstance(params, dict) else params
    out = bytearray()
    for name, value in items:
        name, value = _bytes(name), _bytes(value)
        out += encode_length(len(name)) + encode_length(len(value)) + name + value
    return bytes(out)


def decode_pairs(data):
    """Name-value pairs (§3.4) as a list of (bytes, bytes); ValueError if malformed."""
    pairs = []
    pos = 0
    lengths = [0, 0]
    while pos < len(data):
        for i in (0, 1):
            if pos >= len(data):
                raise ValueError("a length is missing at byte %d" % pos)
            if data[pos] < 0x80:
                lengths[i] = data[pos]
                pos += 1
            else:
                if pos + 4 > len(data):
                    raise ValueError("a 4-byte length is cut off at byte %d" % pos)
                lengths[i] = int.from_bytes(data[pos:pos + 4], "big") & 0x7FFFFFFF
                pos += 4
        name_end = pos + lengths[0]
        value_end = name_end + lengths[1]
        if value_end > len(data):
            raise ValueError("a pair runs past the end of the data")
        pairs.append((bytes(data[pos:name_end]), bytes(data[name_end:value_end])))
        pos = value_end
    return pairs


def record(rtype, request_id, content=b"", padding=0, version=VERSION_1):
    """One record (§3.3), with ``padding`` bytes of padding; nothing is checked."""
    content = _bytes(content)
    header = struct.pack(">BBHHBB", version, rtype, request_id, len(content), padding, 0)
    return header + content + b"\0" * padding


def stream(rtype, request_id, data, record_size=None, padding=0):
    """``data`` as a complete stream: records of at most ``record_size`` bytes, then
    the empty record that ends it (§3.3).  An empty ``data`` is just the end record."""
    size = min(record_size or MAX_CONTENT, MAX_CONTENT)
    data = _bytes(data)
    parts = [record(rtype, request_id, data[i:i + size], padding)
             for i in range(0, len(data), size)]
    parts.append(record(rtype, request_id, b"", padding))
    return b"".join(parts)


def begin_request(request_id=1, role=RESPONDER, keep_conn=False, flags=None, padding=0):
    """FCGI_BEGIN_REQUEST (§5.1); ``flags`` overrides ``keep_conn`` when given."""
    if flags is None:
        flags = KEEP_CONN if keep_conn else 0
    return record(BEGIN_REQUEST, request_id, struct.pack(">HB5x", role, flags), padding)


def build_request(params, body=b"", request_id=1, keep_conn=False, params_record_size=None,
                  stdin_record_size=None, padding=0, role=RESPONDER):
    """A whole Responder request: BEGIN_REQUEST, the PARAMS stream, the STDIN stream.

    ``params_record_size`` cuts the encoded PARAMS stream into records of that
    many bytes, so that name-value pairs straddle records (§3.4 allows it);
    ``stdin_record_size`` does the same for the body; ``padding`` is added to
    every record.
    """
    return (begin_request(request_id, role, keep_conn, padding=padding)
            + stream(PARAMS, request_id, encode_pairs(params), params_record_size, padding)
            + stream(STDIN, request_id, body, stdin_record_size, padding))


def get_values(names=("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS")):
    """FCGI_GET_VALUES (§4.1) asking for ``names`` (values are empty)."""
    return record(GET_VALUES, 0, encode_pairs([(name, b"") for name in names]))


def abort(request_id=1):
    """FCGI_ABORT_REQUEST (§5.4)."""
    return record(ABORT_REQUEST, request_id)


def http_params(path="/", query="", method="GET", body=b"", script_name="", **extra):
    """The meta-variables a web server like nginx sends for ``method path?query``.

    ``extra`` adds or replaces meta-variables (``HTTP_HOST="x"``); a value of
    None removes one.
    """
    uri = script_name + path + ("?" + query if query else "")
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": uri,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "fcgi_client",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "localhost",
    }
    if body or method in ("POST", "PUT"):
        params["CONTENT_LENGTH"] = str(len(body))
        params["CONTENT_TYPE"] = "application/octet-stream"
    for name, value in extra.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return params


# -- decoding -----------------------------------------------------------------------


def split_records(data):
    """``(records, rest)``: the complete records at the start of ``data`` as
    (type, request_id, content) tuples, and the bytes of an incomplete one."""
    records = []
    pos = 0
    while len(data) - pos >= 8:
        version, rtype, rid, clen, plen = struct.unpack_from(">BBHHB", data, pos)
        if version != VERSION_1:
            raise FastCGIClientError("record version %d at byte %d" % (version, pos))
        end = pos + 8 + clen
        if end + plen > len(data):
            break
        records.append((rtype, rid, bytes(data[pos + 8:end])))
        pos = end + plen
    return records, bytes(data[pos:])


def parse_records(data):
    """Every record in ``data`` as (type, request_id, content); the data must end
    with a complete record."""
    records, rest = split_records(data)
    if rest:
        raise FastCGIClientError("%d bytes of an incomplete record at the end" % len(rest))
    return records


def end_request_content(app_status=0, protocol_status=REQUEST_COMPLETE):
    """The 8 bytes of an FCGI_END_REQUEST body (§5.5), to compare records with."""
    return struct.pack(">IB3x", app_status, protocol_status)


def end_request_body(content):
    """``(app_status, protocol_status)`` from an FCGI_END_REQUEST body (§5.5)."""
    if len(content) != 8:
        raise FastCGIClientError("FCGI_END_REQUEST body of %d bytes" % len(content))
    return struct.unpack(">IB3x", content)


class Response:
    """One request's answer, assembled from its records.

    ``status`` is the status line (``"200 OK"``, the default of RFC 3875
    §6.3.3 when the application sent no ``Status:``), ``status_code`` its
    number, ``headers`` the other header lines as (name, value) str pairs,
    ``body`` the bytes after the blank line, ``stdout`` the whole FCGI_STDOUT
    stream, ``stderr`` the FCGI_STDERR stream, ``app_status`` and
    ``protocol_status`` the FCGI_END_REQUEST body (None without one).
    ``records`` are the records the response was made from, in order.
    """

    def __init__(self, records, request_id=1):
        self.records = [r for r in records if r[1] == request_id]
        self.request_id = request_id
        stdout, stderr = [], []
        self.app_status = self.protocol_status = None
        self.stdout_ended = self.stderr_ended = False
        for rtype, _, content in self.records:
            if rtype == STDOUT:
                if self.stdout_ended:
                    raise FastCGIClientError("FCGI_STDOUT after its end record")
                stdout.append(content)
                self.stdout_ended = not content
            elif rtype == STDERR:
                if self.stderr_ended:
                    raise FastCGIClientError("FCGI_STDERR after its end record")
                stderr.append(content)
                self.stderr_ended = not content
            elif rtype == END_REQUEST:
                if self.protocol_status is not None:
                    raise FastCGIClientError("two FCGI_END_REQUEST records")
                self.app_status, self.protocol_status = end_request_body(content)
        self.stdout = b"".join(stdout)
        self.stderr = b"".join(stderr)
        self.status, self.headers, self.body = _split_cgi(self.stdout)

    @property
    def status_code(self):
        return int(self.status[:3]) if self.status else None

    def header(self, name, default=None):
        """The first value of header ``name`` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %r app_status=%r protocol_status=%r body=%d bytes stderr=%r>" % (
            self.status, self.app_status, self.protocol_status, len(self.body),
            self.stderr[:200])


def _split_cgi(stdout):
    """Status line, header pairs and body of a CGI response (RFC 3875 §6)."""
    if not stdout:
        return None, [], b""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = stdout.partition(separator)
        if found:
            break
    else:
        raise FastCGIClientError("no blank line after the headers in %r" % stdout[:200])
    status = "200 OK"
    headers = []
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            raise FastCGIClientError("header line without a colon: %r" % line)
        if name.lower() == "status":
            status = value.strip()
        else:
            headers.append((name, value.strip()))
    return status, headers, body


# -- the connection ---------------------------------------------------------------------


class FastCGIClient:
    """One transport connection to a FastCGI application (unix path or (host, port))."""

    def __init__(self, address, timeout=10.0, source=None):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect(address)
        self.buffer = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def _receive(self, deadline):
        """Read once more into the buffer; False at end of file."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no answer in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        finally:
            self.sock.settimeout(self.timeout)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_records(self, timeout=None):
        """The complete records that have arrived, waiting up to ``timeout`` for one.

        Returns [] at end of file; raises ``socket.timeout`` when nothing came.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            records, self.buffer = split_records(self.buffer)
            if records:
                return records
            if self.eof or not self._receive(deadline):
                if self.buffer:
                    raise FastCGIClientError("closed in the middle of a record")
                return []

    def read_until_end(self, request_id=1, timeout=None):
        """Records up to and including FCGI_END_REQUEST for ``request_id``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = []
        while True:
            records = self.read_records(max(deadline - time.monotonic(), 0.001))
            if not records:
                raise FastCGIClientError("connection closed before FCGI_END_REQUEST; got %r"
                                         % (got[-5:],))
            for index, rec in enumerate(records):
                got.append(rec)
                if rec[0] == END_REQUEST and rec[1] == request_id:
                    leftover = records[index + 1:]
                    if leftover:  # put them back for the next reader
                        self.buffer = b"".join(
                            record(t, r, c) for t, r, c in leftover) + self.buffer
                    return got

    def read_until_closed(self, timeout=None):
        """Every record until the application closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = []
        while True:
            records = self.read_records(max(deadline - time.monotonic(), 0.001))
            if not records:
                return got
            got += records

    def is_closed(self, timeout=1.0):
        """True when the peer closes within ``timeout`` (records on the way are dropped)."""
        try:
            self.read_until_closed(timeout)
        except (socket.timeout, FastCGIClientError):
            return self.eof
        return True

    def request(self, params, body=b"", request_id=1, keep_conn=False, timeout=None,
                **options):
        """Send a whole request (see :func:`build_request`) and read its response."""
        self.send_raw(build_request(params, body, request_id, keep_conn, **options))
        return Response(self.read_until_end(request_id, timeout), request_id)

    def get_values(self, names=("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"),
                   timeout=None):
        """Ask FCGI_GET_VALUES; the answer as a dict of str (raises if none came)."""
        self.send_raw(get_values(names))
        records = self.read_records(timeout)
        if not records or records[0][:2] != (GET_VALUES_RESULT, 0):
            raise FastCGIClientError("no FCGI_GET_VALUES_RESULT: %r" % (records,))
        if records[1:]:
            self.buffer = b"".join(record(*r) for r in records[1:]) + self.buffer
        return {name.decode("latin-1"): value.decode("latin-1")
                for name, value in decode_pairs(records[0][2])}

    def abort(self, request_id=1):
        self.send_raw(abort(request_id))


def request(address, params, body=b"", timeout=10.0, **options):
    """One request on a fresh connection (FCGI_KEEP_CONN clear)."""
    with FastCGIClient(address, timeout) as client:
        return client.request(params, body, timeout=timeout, **options)
