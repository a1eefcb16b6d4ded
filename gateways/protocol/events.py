"""The one event vocabulary every protocol core speaks (FastCGI, SCGI, uwsgi).

A core turns the bytes of a connection into these, in this order per
request: one :class:`Request` (the CGI meta-variables are complete), any
number of :class:`Data` (body bytes, never empty, never past the end of the
body), one :class:`EndOfBody` (the request is complete: run it).  An
:class:`Abort` may come at any point after the :class:`Request` (FastCGI
§5.4): the web server no longer wants the answer.  The server's engine
handles every protocol with one loop over these events; a protocol adds
framing and nothing else.

``request_id`` tells the requests of one connection apart where the
protocol numbers them (FastCGI); it is 0 elsewhere.  Events are plain
slotted values: they compare equal by type and fields and are never
changed after they are made.  Don't subclass these.
"""

from __future__ import annotations


class Event:
    """Base of the events; equality and repr from ``__slots__``."""

    __slots__: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join("%s=%r" % (name, getattr(self, name)) for name in self.__slots__)
        return "%s(%s)" % (type(self).__name__, fields)


class Request(Event):
    """The request's meta-variables are complete.

    ``params``: dict of native str holding latin-1 code points (PEP 3333).
    ``content_length``: the body size the framing promises (SCGI, uwsgi), or
    None when the body ends with an end-of-stream mark instead (FastCGI).
    ``keep_conn``: the connection carries more requests after this one
    (FastCGI's FCGI_KEEP_CONN).
    """

    __slots__ = ("params", "content_length", "request_id", "keep_conn")

    def __init__(self, params: dict[str, str], content_length: int | None = None,
                 request_id: int = 0, keep_conn: bool = False) -> None:
        self.params = params
        self.content_length = content_length
        self.request_id = request_id
        self.keep_conn = keep_conn


class Data(Event):
    """A non-empty piece of the request body, ``data`` (bytes)."""

    __slots__ = ("data", "request_id")

    def __init__(self, data: bytes, request_id: int = 0) -> None:
        self.data = data
        self.request_id = request_id


class EndOfBody(Event):
    """The request body is complete: the request can run."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: int = 0) -> None:
        self.request_id = request_id


class Abort(Event):
    """The web server asks to abort the request (FastCGI FCGI_ABORT_REQUEST, §5.4)."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: int = 0) -> None:
        self.request_id = request_id


EVENTS: tuple[type[Event], ...] = (Request, Data, EndOfBody, Abort)


def body_of_length(data: bytes | bytearray | memoryview, remaining: int) -> list[Event]:
    """The events of ``data`` arriving while ``remaining`` (> 0) bytes of a body
    framed by its length (SCGI, uwsgi: CONTENT_LENGTH) are still due: nothing for
    no data, else one :class:`Data` cut at the body's end, and :class:`EndOfBody`
    when ``data`` completes it.  The core keeps the count; this cuts."""
    size = len(data)
    if not size:
        return []
    if type(data) is not bytes:
        data = bytes(data)
    if size < remaining:
        return [Data(data)]
    return [Data(data[:remaining] if size > remaining else data), EndOfBody()]
