"""The SCGI handler: SCGI framing on the engine's one loop.

SCGI carries one request per connection (SCGI §2): the header netstring,
the body, then the CGI-format response and a close.  The body is read to
CONTENT_LENGTH before the application runs (memory, then a temporary
file); a body the application did not want is thereby drained too, which
Apache mod_proxy_scgi needs (it answers 503 when the backend closes on an
unread body).  SCGI has no error channel: ``wsgi.errors`` is the server's
log.  A health check that connects and closes, and a front end that goes
away mid-response, are logged at debug level at most.
"""

from __future__ import annotations

from gateways.protocol.scgi import SCGIRequestParser
from gateways.response import ClientDisconnected, Refusal
from gateways.server.handler import BaseHandler

TYPE_CHECKING = False  # mypy reads the import below; the interpreter never does
if TYPE_CHECKING:
    from gateways.server.channel import Channel


class Transport:
    """The response side of an SCGI connection: raw CGI-format bytes."""

    __slots__ = ("channel", "errors", "broken")
    status_prefix = "Status: "  # SCGI leaves the format open; CGI's, as its example
    # The connection being served; None between connections, when only reset() is called.
    channel: Channel

    def __init__(self, handler: SCGIHandler) -> None:
        self.channel = None  # type: ignore[assignment]  # see above
        self.errors = handler.errors
        self.broken = False

    def reset(self, channel: Channel | None, core: SCGIRequestParser | None) -> None:
        self.channel = channel  # type: ignore[assignment]  # None: see above
        self.broken = False

    def start(self) -> None:
        pass

    def done(self) -> bool:
        return not self.broken

    def refuse(self, refusal: Refusal) -> bool:
        try:
            self.send(refusal.render(self.status_prefix))
        except ClientDisconnected:
            return False
        return True

    def end_aborted(self, request_id: int) -> bool:
        return False  # SCGI has no abort; the close ends everything

    def send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc

    def finish(self, data: bytes, status: int = 0) -> None:
        self.send(data)

    def abort(self) -> None:
        self.broken = True  # the close that follows tells the front end


class SCGIHandler(BaseHandler):
    """Serves SCGI connections for one worker thread, one at a time."""

    gateway = "SCGI"
    Transport = Transport

    def new_core(self) -> SCGIRequestParser:
        return SCGIRequestParser(self.max_header_size, self.max_params)
