"""The FastCGI handler: FastCGI 1.0 framing on the engine's one loop.

The loop (:class:`gateways.server.handler.BaseHandler`) reads records
through the sans-IO core (:mod:`gateways.protocol.fastcgi`) and runs the
application; this module adds what only FastCGI has:

* the response goes out as FCGI_STDOUT records, ended by the empty record
  and FCGI_END_REQUEST (§5.5), and a connection with FCGI_KEEP_CONN set
  carries the next request;
* ``wsgi.errors`` is the request's FCGI_STDERR stream, which the web server
  writes to its error log (§6.1); application tracebacks go there, in
  small padded records that HAProxy 2.6 survives (see
  :mod:`gateways.protocol.fastcgi`).  Outside a request (a ``close()``
  that runs after the response ended) the text goes to the server's own
  log;
* an FCGI_ABORT_REQUEST noticed while a response streams stops the
  iteration (``close()`` is called) and is answered with FCGI_END_REQUEST
  (§5.4);
* ``--roles``: the roles served (§6.2 Responder, §6.3 Authorizer; the core
  refuses others and tells the application the role in ``FCGI_ROLE``);
* ``FCGI_WEB_SERVER_ADDRS`` (§3.2), when set, lists the web servers allowed
  to connect over TCP; other TCP peers are disconnected.  Unix sockets are
  guarded by their file permissions instead.
"""

from __future__ import annotations

import os
import socket

from gateways.protocol import ProtocolError
from gateways.protocol.events import Abort
from gateways.protocol.fastcgi import AUTHORIZER, RESPONDER, SAFE_STDERR_RECORD, Connection
from gateways.response import ClientDisconnected, Refusal
from gateways.server.handler import RECV_SIZE, BaseHandler

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from _typeshed.wsgi import ErrorStream as TextStream

    from gateways.server.channel import Channel
    from gateways.settings import Config

_INET = (socket.AF_INET, socket.AF_INET6)
ROLES = {"responder": RESPONDER, "authorizer": AUTHORIZER}  # --roles (gateways.settings)


class RequestAborted(ClientDisconnected):
    """The web server sent FCGI_ABORT_REQUEST for the running request (§5.4)."""


class ErrorStream:
    """``wsgi.errors``: text for the request's FCGI_STDERR stream.

    Writes are buffered and sent on ``flush()`` and at the end of the
    response.  Outside a request the text goes to ``fallback``, the server's
    own log.
    """

    __slots__ = ("transport", "pending", "fallback")

    def __init__(self, transport: Transport, fallback: TextStream) -> None:
        self.transport = transport
        self.pending: list[str] = []
        self.fallback = fallback

    def write(self, text: str) -> int:
        if self.transport.active:
            self.pending.append(text)
        else:
            self.fallback.write(text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.transport.active:
            self.fallback.flush()
        elif any(self.pending):
            self.transport.send_stderr()

    def take(self) -> bytes:
        """The buffered text as bytes, and an empty buffer."""
        data = "".join(self.pending).encode("utf-8", "backslashreplace")
        self.pending = []
        return data


class Transport:
    """The response side of one FastCGI connection (see :mod:`gateways.response`)."""

    __slots__ = ("channel", "conn", "errors", "active", "broken", "aborted", "handler")
    status_prefix = "Status: "  # FastCGI §6.1: the CGI response format
    # The connection being served; None between connections, when only reset() is called.
    channel: Channel
    conn: Connection

    def __init__(self, handler: FastCGIHandler) -> None:
        self.handler = handler
        self.channel = None  # type: ignore[assignment]  # see above
        self.conn = None  # type: ignore[assignment]
        self.errors = ErrorStream(self, handler.errors)
        self.active = self.broken = self.aborted = False

    # -- for the handler's loop --------------------------------------------------------

    def reset(self, channel: Channel | None, conn: Connection | None) -> None:
        """Serve a new connection (or none)."""
        self.channel = channel  # type: ignore[assignment]  # None: see above
        self.conn = conn  # type: ignore[assignment]
        self.active = self.broken = self.aborted = False
        if self.errors.pending:
            self.errors.pending = []

    def start(self) -> None:
        """The application is about to run."""
        self.active = True
        self.aborted = False

    def done(self) -> bool:
        """The application has run: False when the connection cannot go on."""
        self.active = False
        if self.aborted:
            self.aborted = False
            return self.end_aborted(self.conn.request_id)
        return not self.broken

    def refuse(self, refusal: Refusal) -> bool:
        try:
            self._sendall(self.conn.end_request(refusal.render(self.status_prefix)))
        except ClientDisconnected:
            return False
        return True

    def end_aborted(self, request_id: int) -> bool:
        """§5.4: answer FCGI_ABORT_REQUEST with FCGI_END_REQUEST (appStatus 1), unless
        the request it names was answered already."""
        if request_id != self.conn.request_id:
            return True
        try:
            self._sendall(self.conn.end_request(b"", 1))
        except ClientDisconnected:
            return False
        return True

    # -- for gateways.response ----------------------------------------------------------

    def send(self, data: bytes) -> None:
        out = self.conn.stdout(data)
        if self.errors.pending:
            out = self.conn.stderr(self.errors.take()) + out
        self._sendall(out)
        self._check_abort()

    def send_stderr(self) -> None:
        self._sendall(self.conn.stderr(self.errors.take()))

    def finish(self, data: bytes, status: int = 0) -> None:
        # Pending stderr goes first: end_request() ends that stream too.
        out = self.conn.stderr(self.errors.take()) if self.errors.pending else b""
        out += self.conn.end_request(data, status)
        self.active = False
        self._sendall(out)

    def abort(self) -> None:
        """The application failed after its headers: no FCGI_END_REQUEST, close."""
        self.broken = True
        self.active = False
        if self.errors.pending:
            try:
                self.channel.sendall(self.conn.stderr(self.errors.take()))
            except OSError:
                pass

    # -- inside ------------------------------------------------------------------------

    def _sendall(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc

    def _check_abort(self) -> None:
        """Between streamed chunks: has the web server sent FCGI_ABORT_REQUEST?"""
        try:
            data = self.channel.recv_ready(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc
        if not data:
            self.broken = True
            raise ClientDisconnected("the web server closed the connection")
        conn = self.conn
        try:
            events = conn.feed(data)
        except ProtocolError as exc:
            self.broken = True
            self.handler.protocol_error(None, exc)
            raise ClientDisconnected(str(exc)) from None
        if conn.outgoing:
            self._sendall(conn.data_to_send())
        for event in events:
            if type(event) is Abort:
                self.aborted = True
                raise RequestAborted("FCGI_ABORT_REQUEST")
        if conn.error is not None:
            self.broken = True
            self.handler.protocol_error(None, conn.error)
            raise ClientDisconnected("protocol error")


class FastCGIHandler(BaseHandler):
    """Serves FastCGI connections for one worker thread, one at a time."""

    gateway = "FastCGI"
    Transport = Transport

    def setup(self, config: Config) -> None:
        self.max_conns = config.processes * config.threads
        self.allowed = allowed_addresses(os.environ.get("FCGI_WEB_SERVER_ADDRS"))
        self.roles = frozenset(ROLES[name] for name in config.roles)
        self.check_peers = self.allowed is not None
        self.core_class = Connection.configured(
            max_params_size=self.max_header_size, max_params=self.max_params,
            max_conns=self.max_conns, max_reqs=self.max_conns,
            stderr_record_size=SAFE_STDERR_RECORD, roles=self.roles)

    def new_core(self) -> Connection:
        return Connection.configured(
            max_params_size=self.max_header_size, max_params=self.max_params,
            max_conns=self.max_conns, max_reqs=self.max_conns,
            stderr_record_size=SAFE_STDERR_RECORD, roles=self.roles)()

    def accept_peer(self, channel: Channel, address: Any) -> bool:
        if self.allowed is None or channel.family not in _INET or address[0] in self.allowed:
            return True
        self.log.warning("FastCGI: refused a connection from %s: not in "
                         "FCGI_WEB_SERVER_ADDRS", address[0])
        return False


def allowed_addresses(value: str | None) -> set[str] | None:
    """The set of FCGI_WEB_SERVER_ADDRS (§3.2), or None when unset."""
    if value is None or not value.strip():
        return None
    return {item.strip() for item in value.split(",") if item.strip()}
