"""The uwsgi protocol, application side, without I/O: bytes in, events out.

The spec is uWSGI's "The uwsgi Protocol" (uwsgi-docs ``Protocol.rst``); what
uWSGI 2.0 itself does where the spec is silent was read off the running
server and is marked *uWSGI*.  Rules enforced, each failing with its own
:class:`~gateways.protocol.ProtocolError` subclass:

* The request is a 4-byte header — ``modifier1`` (u8), ``datasize``
  (u16, little-endian), ``modifier2`` (u8) — then ``datasize`` bytes of
  variables, then the request body.  ``datasize`` is capped at
  ``max_header_size``.
* ``modifier1`` 0 is a WSGI request ("Standard WSGI request followed by the
  HTTP request body"); 30 is the same with SCRIPT_NAME taken off the front of
  PATH_INFO.  Any other is not ours (PSGI, Rack, ping, the routers...):
  :class:`UnsupportedModifier`; *uWSGI* logs "unavailable modifier
  requested" and closes without an answer, and so does the server here.
  ``modifier2`` is not looked at for these (*uWSGI*).
* The variables are pairs of ``u16-LE length, key, u16-LE length, value``
  that fill the block exactly; at most ``max_params`` of them; an empty key
  is refused (*uWSGI* closes).  Keys and values become native ``str`` of
  latin-1 code points (PEP 3333).  A name sent twice: request headers
  (``HTTP_*``) are joined as a web server joins them (RFC 3875 §4.1.18;
  nginx before 1.23 repeats them); any other name takes its last value, as
  *uWSGI* does (an nginx ``uwsgi_param PATH_INFO`` after ``include
  uwsgi_params`` is sent as a second pair).
* The body is ``CONTENT_LENGTH`` bytes (none when it is absent).  A value
  that is not a byte count frames no body; the server answers such a
  request 400 from the params.
* One request per connection: bytes after the body are ignored.

Events (:mod:`gateways.protocol.events`): :class:`Request` with
``content_length``, :class:`Data` chunks, :class:`EndOfBody`.  After a
violation the core is dead: every later ``feed()``/``eof()`` raises it.
The response is a raw HTTP response (``HTTP/1.1 200 OK``, then the header
lines), which the server writes; :func:`make_request` builds requests for
clients, tests and benchmarks.
"""

from __future__ import annotations

import struct
from typing import Union

from gateways.protocol import ProtocolError, Truncated, join_repeated, parse_length
from gateways.protocol.events import EndOfBody, Event, Request, body_of_length

HEADER = struct.Struct("<BHB")
_U16 = struct.Struct("<H")
WSGI = 0  # modifier1 of a WSGI request
WSGI_STRIP_SCRIPT_NAME = 30  # the same, PATH_INFO without the SCRIPT_NAME in front
MODIFIERS = (WSGI, WSGI_STRIP_SCRIPT_NAME)

_HEAD, _VARS, _BODY, _DONE, _ERROR = range(5)

Buffer = Union[bytes, bytearray, memoryview]


class UWSGIError(ProtocolError):
    """The web server broke the uwsgi protocol."""


class UnsupportedModifier(UWSGIError):
    """modifier1 names a packet type that is not a WSGI request"""


class HeaderTooLarge(UWSGIError):
    """the block of variables is larger than the limit"""


class MalformedVars(UWSGIError):
    """the variables do not fill their block as length-prefixed pairs"""


class EmptyName(UWSGIError):
    """a variable with an empty name"""


class TooManyVars(UWSGIError):
    """more variables than the limit"""


def decode_vars(block: bytes, max_params: int) -> dict[str, str]:
    """The variables of a uwsgi packet as a dict of latin-1 str (see the module doc)."""
    text = block.decode("latin-1")  # one decode; offsets are the same in both
    params: dict[str, str] = {}
    end = len(block)
    pos = count = 0
    unpack = _U16.unpack_from
    while pos < end:
        if pos + 2 > end:
            raise MalformedVars("a name length is cut off at byte %d" % pos)
        (klen,) = unpack(block, pos)
        kstart = pos + 2
        vpos = kstart + klen
        if vpos + 2 > end:
            raise MalformedVars("variable #%d claims %d bytes past the end of the block"
                                % (count + 1, vpos + 2 - end))
        (vlen,) = unpack(block, vpos)
        vstart = vpos + 2
        pos = vstart + vlen
        if pos > end:
            raise MalformedVars("variable #%d claims %d bytes past the end of the block"
                                % (count + 1, pos - end))
        if not klen:
            raise EmptyName("variable #%d has an empty name" % (count + 1))
        count += 1
        if count > max_params:
            raise TooManyVars("more than %d variables" % max_params)
        name = text[kstart:vpos]
        value = text[vstart:pos]
        if name in params and name.startswith("HTTP_"):
            value = join_repeated(name, params[name], value)
        params[name] = value
    return params


class UWSGIRequestParser:
    """Turn the bytes of one uwsgi connection into events.

    ``feed(data)`` takes whatever arrived (any split; ``b""`` does nothing)
    and returns the events it completes; ``eof()`` says the peer closed.
    ``max_header_size`` bounds the block of variables (at most 65535 by the
    protocol's own u16), ``max_params`` their number.
    """

    __slots__ = ("_buf", "_error", "_length", "_remaining", "_state", "_size", "_modifier",
                 "max_header_size", "max_params")

    def __init__(self, max_header_size: int = 65536, max_params: int = 1000) -> None:
        self.max_header_size = max_header_size
        self.max_params = max_params
        self._buf: bytearray | None = None  # only while the head or the vars are incomplete
        self._state = _HEAD
        self._size = 0  # datasize of the header
        self._modifier = WSGI
        self._length = self._remaining = 0
        self._error: tuple[type[ProtocolError], str] | None = None

    # -- the core interface (gateways.protocol) ------------------------------------------

    def feed(self, data: Buffer) -> list[Event]:
        state = self._state
        if state == _BODY:
            return self._body(data)
        if state == _DONE:
            return []  # one request per connection; later bytes are ignored
        if state == _ERROR:
            raise self._raised()
        if not data:
            return []
        if self._buf is not None:
            self._buf += data
            data = self._buf
        try:
            return self._head(data)
        except ProtocolError as error:
            self._fail(error)
            raise

    def eof(self) -> list[Event]:
        state = self._state
        if state == _DONE:
            return []
        if state == _ERROR:
            raise self._raised()
        if state == _BODY:
            got = self._length - self._remaining
            reason = "connection closed after %d of %d body bytes" % (got, self._length)
        else:
            got = len(self._buf) if self._buf is not None else 0
            reason = "connection closed after %d bytes of the request's %s" % (
                got, "variables" if got >= 4 else "header")
        self._fail(Truncated(reason))
        # Not raised from a local variable: the frame would hold its own exception.
        raise Truncated(reason)

    def data_to_send(self) -> bytes:
        """Nothing: uwsgi has no answers of its own (the response is the server's)."""
        return b""

    @property
    def busy(self) -> bool:
        """Part of the request has arrived: a peer that stops now is stalled."""
        return self._buf is not None or self._state != _HEAD

    @property
    def should_close(self) -> bool:
        """One request per connection: the server closes after answering it."""
        return self._state == _DONE

    @property
    def error(self) -> ProtocolError | None:
        """The violation that stopped this parser (a new exception each time), or None."""
        return None if self._error is None else self._raised()

    # -- inside --------------------------------------------------------------------------

    def _raised(self) -> ProtocolError:
        assert self._error is not None
        cls, reason = self._error
        return cls(reason)

    def _fail(self, error: ProtocolError) -> None:
        # Kept as (class, args): the exception holds frames that hold this parser.
        self._state, self._error, self._buf = _ERROR, (type(error), error.reason), None

    def _head(self, buf: Buffer) -> list[Event]:
        if len(buf) < 4:
            return self._incomplete(buf)
        modifier1, size, _ = HEADER.unpack_from(buf)
        if modifier1 not in MODIFIERS:
            raise UnsupportedModifier("modifier1 %d is not a WSGI request (a %s packet)"
                                      % (modifier1, _KNOWN.get(modifier1, "non-WSGI")))
        if size > self.max_header_size:
            raise HeaderTooLarge("a block of %d bytes of variables is over the limit of %d"
                                 % (size, self.max_header_size))
        end = 4 + size
        if len(buf) < end:
            return self._incomplete(buf)
        params = decode_vars(bytes(buf[4:end]), self.max_params)
        if modifier1 == WSGI_STRIP_SCRIPT_NAME:
            _strip_script_name(params)
        self._buf = None
        raw = params.get("CONTENT_LENGTH")
        length = (parse_length(raw) or 0) if raw else 0
        events: list[Event] = [Request(params, length)]
        if not length:
            self._state = _DONE
            events.append(EndOfBody())
            return events
        self._state, self._length, self._remaining = _BODY, length, length
        if len(buf) > end:
            events += self._body(buf[end:])
        return events

    def _incomplete(self, buf: Buffer) -> list[Event]:
        if self._buf is None:
            self._buf = bytearray(buf)
        return []

    def _body(self, data: Buffer) -> list[Event]:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
        else:
            self._remaining, self._state = 0, _DONE
        return body_of_length(data, remaining)


# What uWSGI's documentation calls the modifiers a WSGI server is sent by mistake.
_KNOWN = {5: "PSGI", 6: "Lua WSAPI", 7: "Rack", 8: "JWSGI/Ring", 9: "CGI", 10: "management",
          14: "PHP", 17: "echo", 72: "HTTP response", 100: "ping", 101: "echo",
          111: "cluster", 173: "signal", 200: "subscription", 255: "generic"}


def _strip_script_name(params: dict[str, str]) -> None:
    """modifier1 30: PATH_INFO loses the SCRIPT_NAME it starts with (uWSGI's rule)."""
    script = params.get("SCRIPT_NAME", "")
    path = params.get("PATH_INFO", "")
    if script and path.startswith(script):
        params["PATH_INFO"] = path[len(script):]


def make_request(params: dict[str, str], body: bytes = b"", modifier1: int = WSGI,
                 modifier2: int = 0) -> bytes:
    """The bytes of a uwsgi request carrying ``params`` (str of latin-1 code points)
    and ``body``; CONTENT_LENGTH is set from ``body`` unless given.  A variable or a
    block too long for the protocol's u16 lengths raises ValueError."""
    pairs = dict(params)
    if body and "CONTENT_LENGTH" not in pairs:
        pairs["CONTENT_LENGTH"] = str(len(body))
    out: list[bytes] = []
    for name, value in pairs.items():
        key, val = name.encode("latin-1"), value.encode("latin-1")
        if len(key) > 0xFFFF or len(val) > 0xFFFF:
            raise ValueError("variable %r is too long for uwsgi" % name)
        out += (_U16.pack(len(key)), key, _U16.pack(len(val)), val)
    block = b"".join(out)
    if len(block) > 0xFFFF:
        raise ValueError("the variables take %d bytes: over uwsgi's 65535" % len(block))
    return HEADER.pack(modifier1, len(block), modifier2) + block + body
