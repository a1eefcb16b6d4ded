"""SCGI request parser, sans-IO: bytes in, events out.

The spec is "SCGI: A Simple Common Gateway Interface alternative" (Neil
Schemenauer, 2008, ``doc/protocol.txt`` in nascheme/scgi).  Rules enforced,
each failing with its own :class:`~gateways.protocol.ProtocolError` subclass:

* §3 "Request Format": the headers are sent as a netstring, then the body.
  §4 "Netstrings": ``len ":" block ","`` where ``len`` is non-empty ASCII
  decimal with no extra zeros in front ("0" only for an empty block).  Ours
  is capped at ``max_header_size`` and rejected as soon as its digits exceed
  that, so a peer sending endless digits is never buffered.
* §3: ``block`` is ``header*``, ``header ::= name NUL value NUL``, ``name ::=
  notnull+``; "Duplicate names are not allowed"; at most ``max_params``
  headers.  Names and values become native ``str`` holding latin-1 code
  points (PEP 3333).
* §3: the first header is ``CONTENT_LENGTH``, "a nonempty sequence of ASCII
  digits" (leading zeros are not forbidden there), present "even if its value
  is 0", so ``0:,`` is valid framing whose empty block fails as
  :class:`ContentLengthNotFirst`.  A header ``SCGI`` with value ``1`` is
  required.
* §2 "Protocol": one request per connection, then the server "closes the
  connection", so bytes after the body are ignored silently: nothing past
  the body is ever parsed or passed on.

Events (:mod:`gateways.protocol.events`): :class:`Request` once the netstring
is complete, :class:`Data` chunks (never empty, never past CONTENT_LENGTH),
then :class:`EndOfBody`.  After a
ProtocolError the parser is dead: every later ``feed()``/``eof()`` raises the
same error again.  §2: "The format of the response is not specified by this
protocol"; it is the CGI-style bytes produced elsewhere (§5 "Example"), so
there is no response writer here, only :func:`make_request` to build requests
for clients, tests and benchmarks.
"""

from __future__ import annotations

from gateways.protocol import ProtocolError, Truncated, join_repeated
from gateways.protocol.events import Data, EndOfBody, Request, body_of_length

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from gateways.protocol.events import Event

# The events and the truncation error are shared by every core; importable here too.
__all__ = ["Data", "EndOfBody", "Request", "SCGIRequestParser", "Truncated", "make_request"]

_HEADER, _BODY, _DONE, _ERROR = "header", "body", "done", "error"
MAX_LENGTH_DIGITS = 20  # a CONTENT_LENGTH longer than this is not a length


class BadNetstringLength(ProtocolError):
    """netstring length is not a decimal number"""


class LeadingZero(ProtocolError):
    """netstring length has a leading zero"""


class HeaderTooLarge(ProtocolError):
    """header netstring is larger than the limit"""


class MissingColon(ProtocolError):
    """no ':' after the netstring length"""


class MissingComma(ProtocolError):
    """no ',' after the header netstring"""


class MalformedHeaders(ProtocolError):
    """header block is not NUL-terminated name/value pairs"""


class EmptyName(ProtocolError):
    """header with an empty name"""


class ContentLengthNotFirst(ProtocolError):
    """first header is not CONTENT_LENGTH"""


class BadContentLength(ProtocolError):
    """CONTENT_LENGTH is not a decimal number"""


class MissingSCGI(ProtocolError):
    """no SCGI header"""


class BadSCGIVersion(ProtocolError):
    """SCGI header is not 1"""


class DuplicateHeader(ProtocolError):
    """header sent twice"""


class TooManyHeaders(ProtocolError):
    """more headers than the limit"""


def _prefix_error(prefix: bytes | bytearray) -> ProtocolError:
    """The error for a length prefix (at most a few bytes) that is not all digits."""
    digits = 0
    while digits < len(prefix) and 48 <= prefix[digits] <= 57:
        digits += 1
    if digits == 0:
        return BadNetstringLength(f"netstring length starts with {bytes(prefix[:1])!r}")
    return MissingColon(f"netstring length {bytes(prefix[:digits]).decode()} is followed"
                        f" by {bytes(prefix[digits:digits + 1])!r}, not ':'")


class SCGIRequestParser:
    """Turn the bytes of one SCGI connection into events.

    ``feed(data)`` takes whatever arrived (bytes or bytearray, any split; ``b""``
    does nothing) and returns the list of events it completes.  ``eof()`` says
    the peer closed its side; it raises :class:`Truncated` unless the request is
    complete.  ``max_header_size`` bounds the header netstring's length,
    ``max_params`` the number of headers; limits on the body are the server's
    business (see ``Request.content_length``).
    """

    __slots__ = ("_buf", "_error", "_length", "_remaining", "_size_digits", "_state",
                 "max_header_size", "max_params")

    def __init__(self, max_header_size: int = 65536, max_params: int = 1000) -> None:
        self.max_header_size = max_header_size
        self.max_params = max_params
        self._size_digits = len(str(max_header_size))
        self._buf: bytearray | None = None  # only while the header netstring is incomplete
        self._state = _HEADER
        self._length = self._remaining = 0
        self._error: tuple[type[ProtocolError], tuple[Any, ...]] | None = None

    def feed(self, data: bytes | bytearray) -> list[Event]:
        state = self._state
        if state is _BODY:
            return self._body(data)
        if state is _HEADER:
            if self._buf is not None:
                self._buf += data
                data = self._buf
            try:
                return self._header(data)
            except ProtocolError as error:
                self._fail(error)
                raise
        if state is _ERROR:
            raise self.error  # type: ignore[misc]  # not None in the error state
        return []  # _DONE: §2, one request per connection; later bytes are ignored

    def _fail(self, error: ProtocolError) -> None:
        # Kept as (class, args), not the exception: a raised exception holds its
        # traceback, whose frames hold this parser, a cycle per bad connection.
        self._state, self._error, self._buf = _ERROR, (type(error), error.args), None

    @property
    def error(self) -> ProtocolError | None:
        """The violation that stopped this parser (a new exception each time), or None."""
        if self._error is None:
            return None
        cls, args = self._error
        return cls(*args)

    def eof(self) -> list[Event]:
        state = self._state
        if state is _DONE:
            return []
        if state is _ERROR:
            raise self.error  # type: ignore[misc]  # not None in the error state
        if state is _HEADER:
            got = len(self._buf) if self._buf is not None else 0
            reason = f"connection closed after {got} bytes of the header netstring"
        else:
            got = self._length - self._remaining
            reason = f"connection closed after {got} of {self._length} body bytes"
        self._fail(Truncated(reason))
        # Not raised from a local variable: the frame would hold its own exception.
        raise Truncated(reason)

    @property
    def busy(self) -> bool:
        """Part of the request has arrived: a peer that stops now is stalled."""
        return self._buf is not None or self._state is not _HEADER

    @property
    def should_close(self) -> bool:
        """§2: one request per connection; the server closes after answering it."""
        return self._state is _DONE

    def data_to_send(self) -> bytes:
        """Nothing: SCGI has no answers of its own (the response is the server's)."""
        return b""

    def _check_length(self, prefix: bytes | bytearray) -> None:
        """Raise the first violation in the netstring length ``prefix``, read from its
        first byte on as it arrives, so that any split of the input names the same one.
        (Raised where it is made: an exception kept in a local variable of the frame it
        is raised from would keep this parser in a reference cycle.)"""
        for index, byte in enumerate(prefix):
            if not 48 <= byte <= 57:
                if byte != 58:
                    raise _prefix_error(prefix[:index + 1])
                if index == 0:
                    raise BadNetstringLength("netstring length is empty")
                return  # the end of the length
            if index == 1 and prefix[0] == 48:  # §4: "Extra zeros ... are prohibited"
                raise LeadingZero("netstring length starts with 0 but is not 0")
            if index >= self._size_digits or int(prefix[:index + 1]) > self.max_header_size:
                shown = bytes(prefix[:index + 1]).decode()
                raise HeaderTooLarge(f"header netstring length {shown}... is over the limit "
                                     f"of {self.max_header_size}")

    def _incomplete(self, buf: bytes | bytearray) -> list[Event]:
        if self._buf is None:
            self._buf = bytearray(buf)
        return []

    def _header(self, buf: bytes | bytearray) -> list[Event]:
        # §3: the headers come first, as a netstring (§4: [len]":"[string]",").
        colon = buf.find(b":", 0, self._size_digits + 1)
        if colon < 0:
            self._check_length(buf[:self._size_digits + 1])
            return self._incomplete(buf)
        digits = buf[:colon]
        if not digits.isdigit() or (colon > 1 and digits[0] == 48) or (
                int(digits) > self.max_header_size):
            self._check_length(buf[:colon + 1])  # raises: a violation is there
        size = int(digits)
        end = colon + 1 + size
        if len(buf) <= end:
            return self._incomplete(buf)
        if buf[end] != 44:
            raise MissingComma(f"header netstring ends with {bytes(buf[end:end + 1])!r}, not ','")
        params, length = self._params(buf[colon + 1:end].decode("latin-1"))
        events: list[Event] = [Request(params, length)]
        self._buf = None
        if length == 0:
            self._state = _DONE
            events.append(EndOfBody())
            return events
        # §3: "The body is sent following the headers", CONTENT_LENGTH bytes long.
        self._state, self._length, self._remaining = _BODY, length, length
        if len(buf) > end + 1:
            events += self._body(buf[end + 1:])
        return events

    def _params(self, block: str) -> tuple[dict[str, str], int]:
        # §3: headers ::= header*, header ::= name NUL value NUL; one decode, one split.
        parts = block.split("\0")
        if parts[-1]:
            raise MalformedHeaders("header block does not end with NUL")
        if not len(parts) & 1:
            raise MalformedHeaders(f"header {parts[-2][:40]!r} has no value")
        count = len(parts) >> 1
        if count > self.max_params:
            raise TooManyHeaders(f"{count} headers, over the limit of {self.max_params}")
        if not count:
            raise ContentLengthNotFirst("header block is empty; CONTENT_LENGTH is required")
        # §3: "The first header must have the name CONTENT_LENGTH", digits, maybe "0".
        if parts[0] != "CONTENT_LENGTH":
            raise ContentLengthNotFirst(f"first header is {parts[0][:40]!r}, not CONTENT_LENGTH")
        length = parts[1]
        if not (length.isdigit() and length.isascii()):
            raise BadContentLength(f"CONTENT_LENGTH is {length[:40]!r}, not a decimal number")
        if len(length) > MAX_LENGTH_DIGITS:
            # int() refuses more than 4300 digits; no body is 10**20 bytes long.
            length = length.lstrip("0") or "0"
            if len(length) > MAX_LENGTH_DIGITS:
                raise BadContentLength(f"CONTENT_LENGTH has {len(parts[1])} digits")
        pairs = iter(parts)
        params = dict(zip(pairs, pairs))  # the unpaired final "" is dropped by zip
        if len(params) != count:
            params = self._join_repeats(parts)
        if "" in params:
            raise EmptyName(f"header #{parts[0:-1:2].index('') + 1} has an empty name")
        # §3: "There must also always be a header with the name SCGI and a value of 1"
        version = params.get("SCGI")
        if version != "1":
            if version is None:
                raise MissingSCGI("no SCGI header")
            raise BadSCGIVersion(f"SCGI header is {version[:40]!r}, not '1'")
        return params, int(length)

    @staticmethod
    def _join_repeats(parts: list[str]) -> dict[str, str]:
        """§3: "Duplicate names are not allowed in the headers" — except that nginx
        before 1.23 sends a repeated request header as two ``HTTP_*`` headers.  Those
        are joined the way a web server joins them (RFC 3875 §4.1.18); any other
        name sent twice is an error."""
        params: dict[str, str] = {}
        for index in range(0, len(parts) - 1, 2):
            name, value = parts[index], parts[index + 1]
            if name not in params:
                params[name] = value
            elif name.startswith("HTTP_"):
                params[name] = join_repeated(name, params[name], value)
            else:
                raise DuplicateHeader(f"header {name[:40]!r} sent twice")
        return params

    def _body(self, data: bytes | bytearray) -> list[Event]:
        remaining = self._remaining
        if len(data) < remaining:
            self._remaining = remaining - len(data)
        else:
            self._remaining, self._state = 0, _DONE
        return body_of_length(data, remaining)


def make_request(params: Mapping[str, str], body: bytes = b"") -> bytes:
    """Return the bytes of a valid SCGI request carrying ``params`` and ``body``.

    ``params`` maps str to str (latin-1 code points).  CONTENT_LENGTH is
    computed from ``body`` and sent first (a CONTENT_LENGTH in ``params`` must
    agree with it); ``SCGI=1`` is added when absent (a given SCGI value is sent
    as it is).  Empty names, NULs and non-latin-1 text raise ValueError.
    """
    length = str(len(body))
    if params.get("CONTENT_LENGTH", length) != length:
        raise ValueError(f"CONTENT_LENGTH {params['CONTENT_LENGTH']!r} does not match"
                         f" a body of {length} bytes")
    pairs = ["CONTENT_LENGTH", length]
    for name, value in params.items():
        if not name or "\0" in name or "\0" in value:
            raise ValueError(f"invalid header {name!r}: {value!r}")
        if name != "CONTENT_LENGTH":
            pairs += (name, value)
    if "SCGI" not in params:
        pairs += ("SCGI", "1")
    pairs.append("")
    block = "\0".join(pairs).encode("latin-1")
    return b"%d:%s,%s" % (len(block), block, body)
