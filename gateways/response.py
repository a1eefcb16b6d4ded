"""The one WSGI response writer: start_response, write(), iteration, errors.

CGI, FastCGI and SCGI all answer in the CGI response format (RFC 3875 §6):
a ``Status:`` line, header lines, a blank line, the body.  This module turns
an application's answer into those bytes and hands them to a *transport*,
the only thing a gateway supplies:

``transport.send(data)``
    Write ``data`` now (a streamed chunk: the front end must see it without
    waiting for the rest).
``transport.finish(data, status=0)``
    Write ``data`` (possibly empty) and end the response; ``status`` is 1
    when ``data`` is the error page of a failed application (FastCGI's
    appStatus).
``transport.abort()``
    The response cannot be completed (the application failed after the
    headers went out): end it so that the front end knows it is cut short.

A transport raises :class:`ClientDisconnected` when the peer is gone.

The rules (PEP 3333, "The start_response() Callable" and "Error Handling"):

* The status and headers are checked when ``start_response`` is called: str
  only, latin-1 only, no CR or LF, no hop-by-hop header.  A violation is the
  application's error: 500, and the reason is logged.
* Headers go out with the first non-empty body chunk, or at the end.  The
  answer to a HEAD request has no body, whatever the application returns
  (error pages included): HAProxy answers 502 to one, H2O passes it on.
* ``Status:`` goes after the other headers when there is a ``Location``
  (HAProxy takes the status from whichever of the two comes last).
* ``start_response(..., exc_info)`` re-raises once the headers are out.
* ``close()`` on the returned iterable is called whatever happens.
* An exception before the headers are out gives a 500 with a short generic
  page; the traceback goes to ``wsgi.errors`` (the web server's error log).
  The traceback is in the body only in debug mode.  After the headers, the
  response is cut short (``transport.abort``) and the error logged.

Like :mod:`gateways.environ`, this module imports nothing at start-up that a
CGI process would not have loaded anyway; ``traceback`` is imported only
when there is an error to report.
"""

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Protocol

    from _typeshed import OptExcInfo, SupportsRead
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

    class Transport(Protocol):
        """What a gateway supplies to carry a response (the module docstring)."""

        status_prefix: str  # "Status: " (CGI format) or "HTTP/1.1 " (uwsgi)

        def send(self, data: bytes) -> None: ...

        def finish(self, data: bytes, status: int = 0) -> None: ...

        def abort(self) -> None: ...

HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    )
)

ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n"
    b"<body><h1>Internal Server Error</h1>\n"
    b"<p>The application failed to answer this request. "
    b"The details are in the server's error log.</p></body></html>\n"
)


class ClientDisconnected(Exception):
    """The front end went away while the response was being written."""


class AppError(Exception):
    """The application broke the WSGI contract (PEP 3333); the message says how."""


CGI_STATUS = "Status: "  # RFC 3875 §6.3.3; a transport's ``status_prefix``


def simple_response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
                    extra: "Iterable[tuple[str, str]]" = (), prefix: str = CGI_STATUS,
                    head_only: bool = False) -> bytes:
    """A complete response for answers the gateway gives itself: CGI format, or with
    ``prefix`` "HTTP/1.1 " an HTTP status line (the uwsgi protocol).  ``head_only``
    (a HEAD request): the same head, no body (RFC 9110 §9.3.2)."""
    lines = ["%s%s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
             % (prefix, status, content_type, len(body))]
    for name, value in extra:
        lines.append("%s: %s\r\n" % (name, value))
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + (b"" if head_only else body)


class Refusal:
    """An answer a gateway gives without calling the application: a value, like
    waitress's ``utilities.Error``.  ``status`` (``"413 Content Too Large"``),
    ``reason`` (for a log line) and the plain-text ``body`` a visitor reads;
    :meth:`render` makes the one CGI-format response every gateway sends."""

    __slots__ = ("status", "reason", "body", "head_only")

    def __init__(self, status: str, reason: str, body: bytes, head_only: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.head_only = head_only  # the answer to a HEAD request: no body

    def render(self, prefix: str = CGI_STATUS) -> bytes:
        return simple_response(self.status, self.body, prefix=prefix, head_only=self.head_only)

    def answering(self, params: "dict[str, str]") -> "Refusal":
        """This refusal as the answer to the request of ``params``: without its body
        for HEAD (HAProxy answers 502 to a body there, H2O passes it on)."""
        if params.get("REQUEST_METHOD") != "HEAD":
            return self
        return Refusal(self.status, self.reason, self.body, head_only=True)

    def __repr__(self) -> str:
        return "Refusal(%r)" % self.status


BAD_CONTENT_LENGTH = Refusal("400 Bad Request", "not a byte count",
                             b"Bad Request: invalid Content-Length\n")
TOO_LARGE = Refusal("413 Content Too Large", "the request body is over --max-body",
                    b"Request body too large\n")
SHORT_BODY = Refusal("400 Bad Request", "the body ended before its CONTENT_LENGTH",
                     b"Bad Request: the request body is shorter than its Content-Length\n")
NO_APPLICATION = Refusal("500 Internal Server Error", "the application could not be loaded",
                         b"Internal Server Error\n")


def render_head(status: str, headers: list[tuple[str, str]], prefix: str = CGI_STATUS) -> bytes:
    """Status and headers as response header bytes, checked (PEP 3333): CGI format
    (``Status: 200 OK``), or an HTTP status line with ``prefix`` "HTTP/1.1 "."""
    if status.__class__ is not str:
        raise AppError("status must be a str, not %s" % type(status).__name__)
    if len(status) < 4 or status[3] != " " or not status[:3].isdigit():
        raise AppError("status %r is not 'NNN Reason'" % (status,))
    if headers.__class__ is not list:
        raise AppError("headers must be a list, not %s" % type(headers).__name__)
    parts = [prefix, status, "\r\n"]
    for header in headers:
        if header.__class__ is not tuple or len(header) != 2:
            raise AppError("header %r is not a (name, value) tuple" % (header,))
        name, value = header
        if name.__class__ is not str or value.__class__ is not str:
            raise AppError("header %r: name and value must be str" % (header,))
        if not name or ":" in name or " " in name:
            raise AppError("header name %r is not a valid field name" % (name,))
        if name.lower() in HOP_BY_HOP:
            raise AppError("hop-by-hop header %r is for the server to set" % (name,))
        parts += (name, ": ", value, "\r\n")
    parts.append("\r\n")
    head = "".join(parts)
    if "ocation" in head and prefix == CGI_STATUS and any(
            name.lower() == "location" for name, _ in headers):
        # RFC 3875 §6.3 puts no order on the header fields; HAProxy 2.6 takes the
        # status from the last of Status and Location (302 for Location): Status last.
        head = "".join(parts[3:-1] + parts[:3] + ["\r\n"])
    # Each line above contributes exactly one CR and one LF: any other count
    # means a CR or LF inside the status or a header (response splitting).
    lines = len(headers) + 2
    if head.count("\n") != lines or head.count("\r") != lines:
        raise AppError("CR or LF in the status or a header")
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError:
        raise AppError("status or header is not latin-1 text") from None


class Response:
    """State of one response: what start_response was given, what went out."""

    __slots__ = ("transport", "head", "sent", "head_only", "prefix", "status", "failed",
                 "gone")

    def __init__(self, transport: "Transport", head_only: bool = False) -> None:
        self.transport = transport
        self.prefix = transport.status_prefix  # how the head's first line starts
        self.head: bytes | None = None  # bytes of the checked status and headers
        self.sent = False  # the head has been handed to the transport
        self.head_only = head_only  # HEAD request: never send a body
        self.status = ""  # what start_response was given last
        self.failed = False  # the application failed
        self.gone = False  # the peer left while the response was written

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: "OptExcInfo | None" = None) -> "Callable[[bytes], None]":
        if exc_info:
            try:
                if self.sent:
                    # An application passes exc_info from an except block (PEP 3333):
                    raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]
            finally:
                exc_info = None
        elif self.head is not None:
            raise AppError("start_response called a second time without exc_info")
        self.head = render_head(status, headers, self.prefix)
        self.status = status
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable (PEP 3333): data goes out at once."""
        if data.__class__ is not bytes:
            raise AppError("write() takes bytes, not %s" % type(data).__name__)
        if not self.sent:
            if self.head is None:
                raise AppError("write() called before start_response")
            self.sent = True
            data = self.head + (b"" if self.head_only else data)
        elif self.head_only or not data:
            return
        self.transport.send(data)


def _chunk_error(chunk: object) -> AppError:
    return AppError("the application returned %s, not bytes" % type(chunk).__name__)


def run(app: "WSGIApplication", environ: "WSGIEnvironment", transport: "Transport",
        debug: bool = False) -> int:
    """Call ``app`` for ``environ`` and write its answer to ``transport``.

    Returns 0 when the response was complete, 1 when the application failed
    (the FastCGI appStatus, RFC 3875's exit status).
    """
    response = serve(app, environ, transport, debug)
    return 1 if response.failed or response.gone else 0


def serve(app: "WSGIApplication", environ: "WSGIEnvironment", transport: "Transport",
          debug: bool = False) -> "Response":
    """:func:`run`, returning the :class:`Response`: its ``status`` (the status line
    given, "" when none was), ``failed`` (the application failed) and ``gone`` (the
    peer left while it was answered)."""
    response = Response(transport, environ["REQUEST_METHOD"] == "HEAD")
    result = None
    try:
        result = app(environ, response.start_response)
        if result.__class__ is list and len(result) == 1 and not response.sent:
            # The common case, one body chunk: head and body in one write.
            chunk = result[0]
            if chunk.__class__ is not bytes:
                raise _chunk_error(chunk)
            if response.head is None:
                raise AppError("the application returned without calling start_response")
            response.sent = True
            transport.finish(response.head if response.head_only else response.head + chunk)
            return response
        for chunk in result:
            if chunk.__class__ is not bytes:
                raise _chunk_error(chunk)
            if chunk:
                response.write(chunk)
                if response.head_only:
                    break
        if not response.sent:
            if response.head is None:
                raise AppError("the application returned without calling start_response")
            response.sent = True
            transport.finish(response.head)
        else:
            transport.finish(b"")
        return response
    except ClientDisconnected:
        response.gone = True
        return response
    except Exception:
        response.failed = True
        report_error(environ, transport, response, debug)
        return response
    finally:
        if result is not None and hasattr(result, "close"):
            try:
                result.close()
            except Exception:
                log_traceback(environ, "error in the application's close()")


def log_traceback(environ: "WSGIEnvironment", what: str) -> str:
    """Write the current exception to the gateway's error stream."""
    import traceback

    text = "%s for %s %s:\n%s" % (
        what,
        environ.get("REQUEST_METHOD", "?"),
        # a FastCGI Authorizer has neither path (§6.3): the one it rules on, then
        environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        or environ.get("REQUEST_URI", ""),
        traceback.format_exc(),
    )
    errors = environ["wsgi.errors"]
    try:
        errors.write(text)
        errors.flush()
    except Exception:  # noqa: S110 - the error stream itself is broken: nowhere left to report
        pass
    return text


def report_error(environ: "WSGIEnvironment", transport: "Transport", response: Response,
                 debug: bool) -> None:
    """An exception escaped the application: log it, answer 500 or cut short."""
    text = log_traceback(environ, "application error")
    if response.sent:
        try:
            transport.abort()
        except ClientDisconnected:
            pass
        return
    response.sent = True
    response.status = "500 Internal Server Error"
    if debug:
        body = text.encode("utf-8", "replace")
        page = simple_response("500 Internal Server Error", body, prefix=response.prefix,
                               head_only=response.head_only)
    else:
        page = simple_response("500 Internal Server Error", ERROR_PAGE,
                               "text/html; charset=utf-8", prefix=response.prefix,
                               head_only=response.head_only)
    try:
        transport.finish(page, 1)
    except ClientDisconnected:
        pass


class FileWrapper:
    """``wsgi.file_wrapper`` (PEP 3333 "Optional Platform-Specific File Handling")."""

    __slots__ = ("filelike", "blksize", "close")

    def __init__(self, filelike: "SupportsRead[bytes]", blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> "FileWrapper":
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration
