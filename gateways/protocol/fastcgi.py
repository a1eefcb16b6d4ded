"""FastCGI 1.0, application side, without I/O: bytes in, events out.

Spec: FastCGI Specification 1.0 (Open Market, 1996), sections cited as §N.
A :class:`Connection` is fed whatever bytes the web server sent and returns
the events they complete; its ``stdout``/``stderr``/``end_request`` methods
return the bytes to send back.  Answers the application never has to think
about — ``FCGI_GET_VALUES_RESULT``, ``FCGI_UNKNOWN_TYPE``, ``FCGI_END_REQUEST``
with ``FCGI_CANT_MPX_CONN`` or ``FCGI_UNKNOWN_ROLE`` — are queued in
``Connection.outgoing`` for the server to send.

Rules (the ones implementers most often get wrong are marked *):

* §3.3 A record is an 8-byte header, up to 65535 content bytes and up to
  255 padding bytes.  The value of a stream does not depend on how it was
  split into records; an empty record ends a stream.
* §3.3 Records for request ids that are not active are ignored (those a
  web server may send: a record type only an application sends, or an
  unknown type, is a violation whatever its id).
* §3.4 *FCGI_PARAMS name-value pairs may straddle records: the whole stream is
  buffered up to its empty record, then decoded (1-byte lengths below 128,
  otherwise 4 bytes with the high bit set).  Names and values become str of
  latin-1 code points (PEP 3333).  A name sent twice is joined (RFC 3875
  §4.1.18; nginx before 1.23 repeats headers).
* §4.1 FCGI_GET_VALUES is answered with the values this server really has;
  unknown names are left out.  §4.2 An unknown management record type
  (request id 0) is answered with FCGI_UNKNOWN_TYPE.
* §5.1 FCGI_BEGIN_REQUEST: the roles given to :class:`Connection` are served
  (Responder by default, Authorizer when asked; never Filter), a request in
  another role gets FCGI_END_REQUEST(FCGI_UNKNOWN_ROLE), after a 500 page on
  FCGI_STDOUT: lighttpd 1.4.69 reads an authorizer's empty answer as "allowed"
  whatever the protocolStatus, and would serve what it guards.  The role
  reaches the application as the meta-variable ``FCGI_ROLE`` (``RESPONDER``,
  ``AUTHORIZER``), set from FCGI_BEGIN_REQUEST over whatever FCGI_PARAMS says
  (Apache mod_authnz_fcgi sends that name, PHP-FPM sets it; lighttpd 1.4.69
  sends none).
  *FCGI_KEEP_CONN clear means the application closes the connection after the
  response (``should_close``).
* §5.5 *This application does not multiplex: a second FCGI_BEGIN_REQUEST
  while a request is active is answered FCGI_CANT_MPX_CONN.
* §5.4 *FCGI_ABORT_REQUEST becomes an :class:`Abort` event; the server must
  stop the application and answer with a real FCGI_END_REQUEST.  Until it
  does, records the web server still sends for that request are dropped.
* §6.1/§3.3 *FCGI_STDOUT is split into records of at most 65535 bytes and
  ended with an empty record before FCGI_END_REQUEST (the same for
  FCGI_STDERR when it was used).
* §3.3 FCGI_STDERR records carry padding (to the next multiple of eight
  bytes, at least one byte), and at most ``stderr_record_size`` bytes each:
  HAProxy 2.6 (before 2.6.16) corrupts its memory and crashes on a STDERR
  record that fills its receive buffer alone, which an unpadded record
  arriving on its own does, and so does any record as large as that buffer
  (16 KB); the server asks for records of :data:`SAFE_STDERR_RECORD` bytes.
* §6.3 An Authorizer request has no body: it is complete when its FCGI_PARAMS
  stream ends (Apache mod_authnz_fcgi sends no FCGI_STDIN at all; lighttpd
  sends an empty one, which is dropped, as is any FCGI_STDIN for it).

Limits: the PARAMS stream is bounded by ``max_params_size`` bytes and
``max_params`` pairs.  Every violation raises its own :class:`ProtocolError`
subclass and puts the connection in its error state: the events completed
before the violation in the same ``feed()`` are returned (``error`` is then
set), and every later ``feed()`` raises the error; the server closes it.
"""

from __future__ import annotations

import struct

from gateways.protocol import ProtocolError, Truncated, join_repeated
from gateways.protocol.events import Abort, Data, EndOfBody, Request

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from gateways.protocol.events import Event

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
MAX_TYPE = UNKNOWN_TYPE

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3
# The roles served (Filter is not: no web server is known to send it) and the
# FCGI_ROLE value each gives the application.
ROLE_NAMES = {RESPONDER: "RESPONDER", AUTHORIZER: "AUTHORIZER"}
_SERVED = frozenset(ROLE_NAMES)
_RESPONDER_ONLY = frozenset((RESPONDER,))

KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

MAX_CONTENT = 65535
# FCGI_STDERR records well below HAProxy's 16 KB buffer (see the module docstring).
SAFE_STDERR_RECORD = 4096
HEADER = struct.Struct(">BBHHBx")
BEGIN_BODY = struct.Struct(">HB5x")
END_BODY = struct.Struct(">IB3x")
_LENGTH4 = struct.Struct(">I")


# -- errors (one class per violation) ------------------------------------------


class FastCGIError(ProtocolError):
    """The web server broke the FastCGI protocol."""


class UnsupportedVersion(FastCGIError):
    """Record version is not 1 (FastCGI 1.0 §3.3)."""


class UnexpectedRecordType(FastCGIError):
    """A record of a type only an application sends arrived from the web server."""


class UnknownRecordType(FastCGIError):
    """A record of an unknown type arrived for a request (§3.3)."""


class BadBeginRequest(FastCGIError):
    """FCGI_BEGIN_REQUEST body is not 8 bytes, or uses request id 0 (§5.1)."""


class DuplicateBeginRequest(FastCGIError):
    """FCGI_BEGIN_REQUEST for a request id that is already active (§5.1)."""


class ManagementRecordForRequest(FastCGIError):
    """A management record (FCGI_GET_VALUES) with a non-zero request id (§3.3, §4.1)."""


class MissingRequestId(FastCGIError):
    """A request's record (PARAMS, STDIN, DATA, ABORT) with request id 0 (§3.3)."""


class MalformedParams(FastCGIError):
    """Name-value pairs do not fit the stream they arrived in (§3.4)."""


class ParamsTooLarge(FastCGIError):
    """The FCGI_PARAMS stream is longer than the configured limit."""


class TooManyParams(FastCGIError):
    """The FCGI_PARAMS stream holds more pairs than the configured limit."""


class StreamAfterEnd(FastCGIError):
    """A stream record arrived after that stream's empty end record (§3.3)."""


class StdinBeforeParams(FastCGIError):
    """FCGI_STDIN arrived before the FCGI_PARAMS stream ended (§6.2)."""


# -- encoding helpers --------------------------------------------------------------------


def record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record; ``content`` must be at most 65535 bytes (§3.3)."""
    return HEADER.pack(VERSION_1, rtype, request_id, len(content), 0) + content


def stream_records(rtype: int, request_id: int, data: bytes) -> bytes:
    """``data`` as records of at most 65535 bytes; nothing for empty ``data``.

    An empty record would end the stream (§3.3): :func:`record` writes that.
    """
    if not data:
        return b""
    if len(data) <= MAX_CONTENT:
        return HEADER.pack(VERSION_1, rtype, request_id, len(data), 0) + data
    view = memoryview(data)
    parts: list[bytes | memoryview] = []
    for start in range(0, len(data), MAX_CONTENT):
        piece = view[start:start + MAX_CONTENT]
        parts.append(HEADER.pack(VERSION_1, rtype, request_id, len(piece), 0))
        parts.append(piece)
    return b"".join(parts)


def padded_records(rtype: int, request_id: int, data: bytes, size: int) -> bytes:
    """``data`` as records of at most ``size`` bytes, each padded (§3.3) to the next
    multiple of eight bytes, and by eight when it is one already: never unpadded."""
    parts: list[bytes | memoryview] = []
    view = memoryview(data)
    for start in range(0, len(data), size):
        piece = view[start:start + size]
        padding = 8 - len(piece) % 8
        parts.append(HEADER.pack(VERSION_1, rtype, request_id, len(piece), padding))
        parts.append(piece)
        parts.append(bytes(padding))
    return b"".join(parts)


def encode_pairs(pairs: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """Name-value pairs (§3.4) from (str or bytes) pairs; str is encoded latin-1."""
    out: list[bytes] = []
    for name, value in pairs:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        for item in (name, value):
            n = len(item)
            out.append(bytes((n,)) if n < 128 else _LENGTH4.pack(n | 0x80000000))
        out.append(name)
        out.append(value)
    return b"".join(out)


def decode_pairs(data: bytes, max_pairs: int) -> dict[str, str]:
    """Decode name-value pairs (§3.4) into a dict of latin-1 str.

    The loop below is the hot path of every request: it assumes the common
    case (short names, no repeated name, a well-formed stream) and checks
    once at the end; anything else is decoded again by the careful loop,
    which joins repeated names and names the violation.
    """
    text = data.decode("latin-1")  # one decode; offsets are the same in both
    params: dict[str, str] = {}
    pos = 0
    end = len(data)
    count = 0
    try:
        while pos < end:
            nlen = data[pos]
            if nlen > 127:
                return _decode_pairs_checked(data, text, max_pairs)  # a long name: rare
            vlen = data[pos + 1]
            if vlen > 127:
                vlen = _LENGTH4.unpack_from(data, pos + 1)[0] & 0x7FFFFFFF
                vstart = pos + 5 + nlen
            else:
                vstart = pos + 2 + nlen
            pos = vstart + vlen
            params[text[vstart - nlen:vstart]] = text[vstart:pos]
            count += 1
    except (IndexError, struct.error):
        return _decode_pairs_checked(data, text, max_pairs)
    if pos != end or count != len(params) or count > max_pairs:
        return _decode_pairs_checked(data, text, max_pairs)
    return params


def _decode_pairs_checked(data: bytes, text: str, max_pairs: int) -> dict[str, str]:
    """:func:`decode_pairs` one check at a time: names every violation, joins repeats."""
    params: dict[str, str] = {}
    pos = 0
    end = len(data)
    count = 0
    while pos < end:
        nlen = data[pos]
        if nlen < 128:
            pos += 1
        elif pos + 4 <= end:
            nlen = _LENGTH4.unpack_from(data, pos)[0] & 0x7FFFFFFF
            pos += 4
        else:
            raise MalformedParams("a name length is cut off at byte %d" % pos)
        if pos >= end:
            raise MalformedParams("a value length is missing at byte %d" % pos)
        vlen = data[pos]
        if vlen < 128:
            pos += 1
        elif pos + 4 <= end:
            vlen = _LENGTH4.unpack_from(data, pos)[0] & 0x7FFFFFFF
            pos += 4
        else:
            raise MalformedParams("a value length is cut off at byte %d" % pos)
        vstart = pos + nlen
        pos = vstart + vlen
        if pos > end:
            raise MalformedParams("a pair claims %d bytes past the end of the stream" % (pos - end))
        name = text[vstart - nlen:vstart]
        count += 1
        if count > max_pairs:
            raise TooManyParams("more than %d meta-variables" % max_pairs)
        if name in params:
            params[name] = join_repeated(name, params[name], text[vstart:pos])
        else:
            params[name] = text[vstart:pos]
    return params


# -- the connection ---------------------------------------------------------------

_IDLE, _PARAMS, _STDIN, _RUNNING, _ABORTED, _NO_BODY = range(6)

# The answer to a request in a role this connection does not serve (§5.5), with a
# page first: a web server that ignores the protocolStatus then denies (see above).
_ROLE_PAGE = (b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n"
              b"This FastCGI application does not serve the role of this request (%s).\n")
_REFUSED_NAMES = {RESPONDER: b"RESPONDER", AUTHORIZER: b"AUTHORIZER", FILTER: b"FILTER"}


def refuse_role(request_id: int, role: int) -> bytes:
    """A 500 page on FCGI_STDOUT, the stream's end, FCGI_END_REQUEST(FCGI_UNKNOWN_ROLE)."""
    page = _ROLE_PAGE % (_REFUSED_NAMES.get(role) or b"%d" % role)
    return (record(STDOUT, request_id, page) + record(STDOUT, request_id)
            + record(END_REQUEST, request_id, END_BODY.pack(0, UNKNOWN_ROLE)))


_NO_LIMITS = (None,) * 6  # Connection() with none of its limits given


class Connection:
    """The application side of one FastCGI transport connection.

    ``max_conns``/``max_reqs`` are what FCGI_GET_VALUES reports (§4.1);
    ``stderr_record_size`` bounds the FCGI_STDERR records (the module docstring).
    ``roles`` the roles served (:data:`RESPONDER`, :data:`AUTHORIZER`).
    Attributes the server reads: ``outgoing`` (bytes queued by automatic
    answers; the server sends and clears it), ``should_close`` (the last
    request ended without FCGI_KEEP_CONN), ``request_id`` (the active
    request, or 0).
    """

    # The role of the active request (the last one), and its FCGI_ROLE value: class
    # attributes until a request in another role comes, so a connection costs nothing more.
    _role = RESPONDER
    _role_name = "RESPONDER"
    # The limits, as class attributes: a server makes a subclass with its own once
    # (:meth:`configured`), so that a connection costs only its own state.
    max_params_size = 65536
    max_params = 1000
    stderr_record_size = MAX_CONTENT
    roles = _RESPONDER_ONLY
    values = {"FCGI_MAX_CONNS": "1", "FCGI_MAX_REQS": "1", "FCGI_MPXS_CONNS": "0"}

    def __init__(self, max_params_size: int | None = None, max_params: int | None = None,
                 max_conns: int | None = None, max_reqs: int | None = None,
                 stderr_record_size: int | None = None,
                 roles: Iterable[int] | None = None) -> None:
        if (max_params_size, max_params, max_conns, max_reqs, stderr_record_size,
                roles) != _NO_LIMITS:
            self._limit(max_params_size, max_params, max_conns, max_reqs, stderr_record_size,
                        roles)
        self.outgoing = bytearray()  # appended to: many answers in one read stay linear
        self._params: list[bytes] = []

    # The state of a new connection: class attributes, shadowed by the instance's
    # own as they change (a connection is made per accepted socket: its cost counts).
    should_close = False
    request_id = 0
    keep_conn = False
    _state = _IDLE
    _params_size = 0
    _stderr_used = False
    _buffer: bytearray | None = None  # bytes of an incomplete record, or None
    _need = 0  # how many bytes that record needs before it can be parsed
    # An FCGI_STDIN record of the active request is passed on as its bytes
    # arrive, not buffered whole: what is left of its content and padding.
    _stdin_left = 0
    _padding_left = 0
    # The violation that stopped the connection, as (class, args): see feed().
    _error: tuple[type[ProtocolError], tuple[Any, ...]] | None = None

    def _limit(self, max_params_size: int | None, max_params: int | None,
               max_conns: int | None, max_reqs: int | None,
               stderr_record_size: int | None, roles: Iterable[int] | None) -> None:
        """This connection's own limits (those given; the class's for the others)."""
        if roles is not None:
            roles = roles if isinstance(roles, frozenset) else frozenset(roles)
            if not roles or not roles <= _SERVED:
                raise ValueError("roles %r: give one or more of RESPONDER (1) and AUTHORIZER "
                                 "(2)" % (sorted(roles),))
            self.roles = roles
        if max_params_size is not None:
            self.max_params_size = max_params_size
        if max_params is not None:
            self.max_params = max_params
        if stderr_record_size is not None:
            self.stderr_record_size = min(max(stderr_record_size, 8), MAX_CONTENT)
        if max_conns is not None or max_reqs is not None:
            self.values = dict(self.values)
            if max_conns is not None:
                self.values["FCGI_MAX_CONNS"] = str(max_conns)
            if max_reqs is not None:
                self.values["FCGI_MAX_REQS"] = str(max_reqs)

    @classmethod
    def configured(cls, max_params_size: int | None = None, max_params: int | None = None,
                   max_conns: int | None = None, max_reqs: int | None = None,
                   stderr_record_size: int | None = None,
                   roles: Iterable[int] | None = None) -> type[Connection]:
        """A subclass whose connections all have these limits (checked once, here)."""
        probe = cls(max_params_size, max_params, max_conns, max_reqs, stderr_record_size, roles)
        names = ("max_params_size", "max_params", "stderr_record_size", "roles", "values")
        return type(cls.__name__, (cls,), {name: getattr(probe, name) for name in names})

    # -- input --------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data``; return the list of events it completes.

        The body (FCGI_STDIN) comes out as it arrives: a record split across
        two ``feed()`` calls gives two :class:`Data` events.
        """
        if self._error is not None:
            raise self.error  # type: ignore[misc]  # not None: _error is set
        if not data:
            return []
        events: list[Event] = []
        try:
            self._feed(data, events)
        except ProtocolError as error:
            # The error state: what came before the violation is delivered now,
            # every later feed() raises.  Kept as (class, args): the exception
            # itself holds frames that hold this connection, a cycle.
            self._error = (type(error), error.args)
            self._buffer = None
            self._stdin_left = self._padding_left = 0
            if not events:
                raise
        return events

    @property
    def error(self) -> ProtocolError | None:
        """The violation that stopped this connection (a new exception each time), or None.

        Set when a feed() met a violation after events it returned: the server
        handles those, then closes the connection.
        """
        if self._error is None:
            return None
        cls, args = self._error
        return cls(*args)

    def _feed(self, data: bytes, events: list[Event]) -> None:
        pos = 0
        if self._stdin_left or self._padding_left:
            pos = self._rest_of_stdin(data, events)
            if pos == len(data):
                return
        buffer = self._buffer
        if buffer is not None:
            buffer += memoryview(data)[pos:] if pos else data  # no copy of what came before
            if len(buffer) < self._need:
                return  # the record is still incomplete: nothing to parse yet
            data = bytes(buffer)
            pos = 0
        size = len(data)
        while size - pos >= 8:
            version, rtype, rid, clen, plen = HEADER.unpack_from(data, pos)
            if version != VERSION_1:
                raise UnsupportedVersion(_version_reason(data, pos))
            start = pos + 8
            end = start + clen
            if end + plen > size:
                if (rtype == STDIN and clen and rid == self.request_id and rid
                        and self._state == _STDIN):
                    # Pass on the part that is here; the rest follows as it comes.
                    if size > start:
                        events.append(Data(data[start:min(end, size)], rid))
                    self._stdin_left = max(end - size, 0)
                    self._padding_left = end + plen - max(end, size)
                    pos = size
                else:
                    self._need = end + plen - pos
                break
            pos = end + plen
            if rid == self.request_id and rid:
                if rtype == STDIN and self._state == _STDIN:  # the body: inline, it is hot
                    if clen:
                        events.append(Data(data[start:end], rid))
                    else:
                        events.append(EndOfBody(rid))
                        self._state = _RUNNING
                else:
                    self._request_record(rtype, rid, data[start:end], events)
            elif rid == 0:
                self._management_record(rtype, data[start:end])
            elif rtype == BEGIN_REQUEST:
                self._begin_request(rid, data[start:end])
            elif rtype == GET_VALUES:
                raise ManagementRecordForRequest("FCGI_GET_VALUES for request %d" % rid)
            elif rtype > MAX_TYPE:
                raise UnknownRecordType("record type %d for request %d" % (rtype, rid))
            elif rtype in (END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, UNKNOWN_TYPE):
                raise UnexpectedRecordType("record type %d is not for an application" % rtype)
            # else: a record for an inactive request id: ignored (§3.3).
        if pos >= size:
            self._buffer = None
        else:
            if size - pos < 8:
                self._need = 8
            self._buffer = bytearray(memoryview(data)[pos:])

    def _rest_of_stdin(self, data: bytes, events: list[Event]) -> int:
        """The rest of a STDIN record begun in an earlier feed(); how much of ``data`` it took."""
        size = len(data)
        pos = left = self._stdin_left
        if left:
            if left >= size:
                events.append(Data(data, self.request_id))
                self._stdin_left = left - size
                return size
            events.append(Data(data[:left], self.request_id))
            self._stdin_left = 0
        skip = min(self._padding_left, size - pos)
        self._padding_left -= skip
        return pos + skip

    def _request_record(self, rtype: int, rid: int, content: bytes, events: list[Event]) -> None:
        """A record of the active request other than its body (feed() passes that on)."""
        state = self._state
        if rtype == PARAMS:
            if state != _PARAMS:
                if state == _ABORTED:
                    return  # §5.4: the rest of an aborted request's streams is of no use
                raise StreamAfterEnd("FCGI_PARAMS after its end record")
            if content:
                self._params_size += len(content)
                if self._params_size > self.max_params_size:
                    raise ParamsTooLarge(
                        "FCGI_PARAMS stream over %d bytes" % self.max_params_size)
                self._params.append(content)
            else:
                parts = self._params
                block = parts[0] if len(parts) == 1 else b"".join(parts)
                self._params = []
                self._state = _STDIN
                params = decode_pairs(block, self.max_params)
                params["FCGI_ROLE"] = self._role_name  # from FCGI_BEGIN_REQUEST, not the peer
                events.append(Request(params, None, rid, self.keep_conn))
                if self._role != RESPONDER:
                    # §6.3: an Authorizer request has no body; it is complete now.
                    self._state = _NO_BODY
                    events.append(EndOfBody(rid))
        elif rtype == STDIN:
            if state == _PARAMS:
                raise StdinBeforeParams()
            elif state in (_NO_BODY, _ABORTED):
                # §6.3: no body for an Authorizer (lighttpd ends an empty one anyway);
                # §5.4: the rest of an aborted request's streams is of no use.
                return
            else:
                raise StreamAfterEnd("FCGI_STDIN after its end record")
        elif rtype == ABORT_REQUEST:
            # The server answers with FCGI_END_REQUEST (end_request()); until then
            # the records the web server still sends for this request are dropped.
            self._state = _ABORTED
            self._params = []
            events.append(Abort(rid))
        elif rtype == BEGIN_REQUEST:
            raise DuplicateBeginRequest("request id %d is already active" % rid)
        elif rtype == GET_VALUES:
            raise ManagementRecordForRequest("FCGI_GET_VALUES for request %d" % rid)
        elif rtype == DATA:
            pass  # only the Filter role reads FCGI_DATA (§6.4); we never accept it (nor
            # an aborted request's)
        elif rtype > MAX_TYPE:
            raise UnknownRecordType("record type %d for request %d" % (rtype, rid))
        else:
            raise UnexpectedRecordType("record type %d is not for an application" % rtype)

    def _begin_request(self, rid: int, content: bytes) -> None:
        if len(content) != 8:
            raise BadBeginRequest("FCGI_BEGIN_REQUEST body of %d bytes" % len(content))
        role, flags = BEGIN_BODY.unpack(content)
        if self.request_id:
            # §5.5: we do not multiplex; the active request carries on.
            self.outgoing += record(END_REQUEST, rid, END_BODY.pack(0, CANT_MPX_CONN))
            return
        if role not in self.roles:
            self.outgoing += refuse_role(rid, role)
            if not flags & KEEP_CONN:
                self.should_close = True
            return
        if role != self._role:
            self._role = role
            self._role_name = ROLE_NAMES[role]
        self.request_id = rid
        self.keep_conn = bool(flags & KEEP_CONN)
        self._state = _PARAMS
        self._params_size = 0
        self._stderr_used = False

    def _management_record(self, rtype: int, content: bytes) -> None:
        if rtype == GET_VALUES:
            asked = decode_pairs(content, self.max_params)
            answer = [(name, self.values[name]) for name in asked if name in self.values]
            self.outgoing += record(GET_VALUES_RESULT, 0, encode_pairs(answer))
        elif rtype == BEGIN_REQUEST:
            raise BadBeginRequest("FCGI_BEGIN_REQUEST with request id 0")
        elif rtype in (ABORT_REQUEST, PARAMS, STDIN, DATA):
            raise MissingRequestId("record type %d with request id 0" % rtype)
        elif rtype in (END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, UNKNOWN_TYPE):
            raise UnexpectedRecordType("record type %d is not for an application" % rtype)
        else:
            # §4.2: an unknown management type is answered, not fatal.
            self.outgoing += record(UNKNOWN_TYPE, 0, bytes((rtype,)) + bytes(7))

    def data_to_send(self) -> bytes:
        """The bytes of the automatic answers queued so far (they are cleared)."""
        if not self.outgoing:
            return b""
        data = bytes(self.outgoing)
        self.outgoing.clear()
        return data

    @property
    def mid_record(self) -> bool:
        """Part of a record has arrived and the rest has not (a stall shows here)."""
        return bool(self._buffer or self._stdin_left or self._padding_left)

    @property
    def busy(self) -> bool:
        """A request is under way or a record half there: a stall is a stall now."""
        return bool(self.request_id) or self.mid_record

    def eof(self) -> list[Event]:
        """The web server closed the connection: ``[]``, or :class:`Truncated` when it
        left a record or a request unfinished (§3.3: nothing to answer then)."""
        if self._error is not None:
            raise self.error  # type: ignore[misc]  # not None: _error is set
        if self.mid_record:
            reason = "connection closed in the middle of a record"
        elif self.request_id:
            reason = "connection closed during request %d" % self.request_id
        else:
            return []
        self._error = (Truncated, (reason,))
        raise Truncated(reason)

    # -- output -------------------------------------------------------------------

    def stdout(self, data: bytes) -> bytes:
        """FCGI_STDOUT records carrying ``data`` for the active request."""
        return stream_records(STDOUT, self.request_id, data)

    def stderr(self, data: bytes) -> bytes:
        """FCGI_STDERR records carrying ``data`` for the active request, padded."""
        if not data:
            return b""
        self._stderr_used = True
        return padded_records(STDERR, self.request_id, data, self.stderr_record_size)

    def end_request(self, data: bytes = b"", app_status: int = 0) -> bytes:
        """Last ``data`` for stdout, the streams' end records and FCGI_END_REQUEST (§5.5).

        The request stops being active; ``should_close`` tells whether the
        server must now close the connection (FCGI_KEEP_CONN was clear).
        """
        rid = self.request_id
        out = stream_records(STDOUT, rid, data) if data else b""
        out += HEADER.pack(VERSION_1, STDOUT, rid, 0, 0)
        if self._stderr_used:
            out += HEADER.pack(VERSION_1, STDERR, rid, 0, 0)
        out += HEADER.pack(VERSION_1, END_REQUEST, rid, 8, 0)
        out += END_BODY.pack(app_status & 0xFFFFFFFF, REQUEST_COMPLETE)
        self.request_id = 0
        self._state = _IDLE
        self._params = []
        if not self.keep_conn:
            self.should_close = True
        return out


def _version_reason(data: bytes, pos: int) -> str:
    head = bytes(data[pos:pos + 8])
    if head[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC"):
        return "an HTTP request arrived on the FastCGI socket (%r...)" % head
    return "record version %d, not 1" % head[0]
