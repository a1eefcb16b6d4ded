"""Sans-IO protocol cores: bytes in, events out; events in, bytes out.

No sockets, threads or clocks in here (the design of h11).  A core is fed
whatever bytes arrived, in any split, and returns the events they complete
(:mod:`gateways.protocol.events`, one vocabulary for every protocol); it
turns the server's answers into bytes.  A peer that breaks the protocol gets
a :class:`ProtocolError` subclass naming the violation, with a one-line
``reason`` for the log; the server closes that connection and carries on.

Every core offers the server the same few things, so that one loop serves
them all (:class:`gateways.server.handler.BaseHandler`):

``feed(data)``
    the events ``data`` completes; raises the violation (the error state:
    events completed before a violation in the same call are returned and
    ``error`` is set; every later call raises).
``eof()``
    the peer closed its side: the events that completes, or
    :class:`Truncated` when it left a request unfinished.
``data_to_send()``
    bytes the core answers by itself (FastCGI management records).
``busy``
    part of a request has arrived: a peer that stops now is stalled.
``should_close``
    the connection ends after the response now being written.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from typing import Protocol

    from gateways.protocol.events import Event

    class Core(Protocol):
        """What every protocol core offers the server (the list above); the engine's
        loop (:meth:`gateways.server.handler.BaseHandler.serve`) is typed on it."""

        def feed(self, data: bytes) -> list[Event]: ...

        def eof(self) -> list[Event]: ...

        def data_to_send(self) -> bytes: ...

        @property
        def busy(self) -> bool: ...

        @property
        def should_close(self) -> bool: ...

        @property
        def error(self) -> ProtocolError | None: ...


class ProtocolError(Exception):
    """The peer broke the protocol; ``str(error)`` is a one-line reason."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or (self.__doc__ or "").strip().splitlines()[0])

    @property
    def reason(self) -> str:
        return str(self)


class Truncated(ProtocolError):
    """connection closed before the request was complete"""


def join_repeated(name: str, old: str, new: str) -> str:
    """Combine a meta-variable sent twice into one (RFC 3875 §4.1.18).

    nginx before 1.23 sends a repeated request header as two parameters;
    cookies are joined with ``; ``, other fields with ``, `` (RFC 9110 §5.3).
    """
    return old + ("; " if name == "HTTP_COOKIE" else ", ") + new


MAX_LENGTH_DIGITS = 20  # a CONTENT_LENGTH longer than this is not a length


def parse_length(text: str) -> int | None:
    """A CONTENT_LENGTH value that frames a body (SCGI, uwsgi) as an int, or None
    when it is not decimal digits (RFC 3875 §4.1.2) or has more than 20 of them
    (``int()`` refuses over 4300; no body is 10**20 bytes long).  The CGI path
    has its own copy (:func:`gateways.environ.content_length`): it imports
    nothing of the engine."""
    if not (text.isdigit() and text.isascii()):
        return None
    if len(text) > MAX_LENGTH_DIGITS:
        text = text.lstrip("0") or "0"
        if len(text) > MAX_LENGTH_DIGITS:
            return None
    return int(text)
