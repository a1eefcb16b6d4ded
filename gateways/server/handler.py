"""One loop from a connection's bytes to WSGI responses, for every protocol.

A handler serves the connections one worker thread accepts, one at a time.
:meth:`BaseHandler.serve` is the only receive-and-dispatch loop: it reads
from the channel, feeds the protocol's sans-IO core and acts on the events
of :mod:`gateways.protocol.events`:

``Request``
    the meta-variables: start collecting the body (memory, then disk:
    :mod:`gateways.server.body`), or refuse it at once (a bad or too large
    CONTENT_LENGTH: :class:`gateways.response.Refusal`);
``Data``
    body bytes, up to ``--max-body``;
``EndOfBody``
    run the application through :func:`gateways.environ` and
    :func:`gateways.response.run`, or send the refusal;
``Abort``
    the web server gave up on the request: end it.

A protocol (:mod:`gateways.server.fastcgi`, :mod:`gateways.server.scgi`)
adds framing and nothing else: its core (:meth:`new_core`) and its
``Transport``, the response side (``send``/``finish``/``abort`` as
:mod:`gateways.response` wants them, plus ``reset``, ``start``, ``done``,
``refuse`` and ``end_aborted`` for this loop).
"""

from __future__ import annotations

import _socket
import struct

from gateways.environ import EnvironBuilder, normalize_mount
from gateways.protocol import ProtocolError
from gateways.protocol.events import Abort, Data, EndOfBody, Request
from gateways.response import SHORT_BODY, TOO_LARGE, FileWrapper, Refusal
from gateways.response import serve as serve_app
from gateways.server.body import Body, BodyTooLarge, check_length
from gateways.server.conn import Conn

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger
    from typing import Any, Protocol

    from _typeshed.wsgi import ErrorStream, WSGIApplication

    from gateways.protocol import Core
    from gateways.response import Transport
    from gateways.server.channel import Channel

    class ThreadState(Protocol):
        """The thread's view of its worker (gateways.server.worker.ThreadState)."""

        def begin(self) -> None: ...  # the application starts on a request

        def end(self) -> None: ...  # it is done (counts for --max-requests)

        def park(self, conn: Conn) -> bool: ...  # to the poller; False: no room

        @property
        def crowded(self) -> bool: ...  # requests wait for threads

        @property
        def stopping(self) -> bool: ...

        # --stats: this thread's counters (gateways.server.stats), None when off
        counts: memoryview[float] | None

        def count_error(self, exc: BaseException) -> None: ...
    from gateways.settings import Config

    class HandlerTransport(Transport, Protocol):
        """A protocol's ``Transport``: the response side of :mod:`gateways.response`
        plus what the loop of :class:`BaseHandler` calls (the module docstring)."""

        @property
        def errors(self) -> ErrorStream: ...  # the request's wsgi.errors

        def reset(self, channel: Channel | None, core: Any) -> None: ...

        def start(self) -> None: ...

        def done(self) -> bool: ...

        def refuse(self, refusal: Refusal) -> bool: ...

        def end_aborted(self, request_id: int) -> bool: ...

RECV_SIZE = 65536  # below glibc's mmap threshold: recv buffers come from the heap
GRACE = 0.002  # how long a thread waits for bytes that are late before it parks the connection
_PEEK = _socket.MSG_PEEK | _socket.MSG_DONTWAIT
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_SO_PEERCRED = getattr(_socket, "SO_PEERCRED", 17)


def describe_peer(sock: _socket.socket, address: Any) -> str:
    """``127.0.0.1:41234``, or for a unix socket the peer's pid and uid (SO_PEERCRED)."""
    if isinstance(address, tuple) and address:
        host = address[0]
        return ("[%s]:%s" if ":" in host else "%s:%s") % (host, address[1])
    try:
        pid, uid, _ = _CRED.unpack(sock.getsockopt(_socket.SOL_SOCKET, _SO_PEERCRED, _CRED.size))
    except (OSError, AttributeError):
        return "a unix socket peer"
    return "a unix socket peer (pid %d, uid %d)" % (pid, uid)


class BaseHandler:
    """Per-thread handler; a protocol subclass sets ``gateway``, ``Transport`` and
    :meth:`new_core`.

    ``state`` is the thread's view of its worker (:class:`gateways.server.worker.
    ThreadState`): ``begin()``/``end()`` around each request, ``stopping``, ``tick``.
    """

    gateway = "?"
    # The protocol's Transport class (called with the handler); each subclass sets it.
    Transport: Callable[[Any], HandlerTransport] = None  # type: ignore[assignment]

    def __init__(self, app: WSGIApplication, config: Config, log: Logger, errors: ErrorStream,
                 multiprocess: bool, state: ThreadState) -> None:
        self.app = app
        self.log = log
        self.errors = errors  # the server's log stream, for wsgi.errors where needed
        self.state = state
        self.debug = config.debug
        self.environ = EnvironBuilder(
            multithread=config.threads > 1, multiprocess=multiprocess, run_once=False,
            gateway=self.gateway, mount=normalize_mount(config.script_name),
            file_wrapper=FileWrapper)
        self.read_timeout = config.read_timeout
        self.max_body = config.max_body
        self.spool_threshold = config.spool_threshold
        self.max_header_size = config.max_header_size
        self.max_params = config.max_params
        self.current: Conn | None = None  # the connection this thread serves (log lines)
        self.counts = state.counts  # --stats: this thread's counters, else None
        # What makes a connection's core: a class or a function of no arguments.
        self.core_class: Callable[[], Core] = self.new_core
        self.check_peers = True  # call accept_peer() for each new connection
        self.setup(config)
        self.transport = self.Transport(self)  # one per thread, reset for each connection

    @classmethod
    def factory(cls, app: WSGIApplication, config: Config, log: Logger, errors: ErrorStream,
                multiprocess: bool) -> Callable[[ThreadState], BaseHandler]:
        """What the worker engine calls once per thread to get that thread's handler."""

        def make_handler(state: ThreadState) -> BaseHandler:
            return cls(app, config, log, errors, multiprocess, state)

        return make_handler

    # -- what a protocol provides --------------------------------------------------------

    def setup(self, config: Config) -> None:
        """Read protocol-specific settings (subclass hook)."""

    def new_core(self) -> Core:
        """A sans-IO core for one connection (see :mod:`gateways.protocol`)."""
        raise TypeError("%s does not name its protocol core" % type(self).__name__)

    def accept_peer(self, channel: Channel, address: Any) -> bool:
        """Whether to serve this peer at all (FastCGI's FCGI_WEB_SERVER_ADDRS)."""
        return True

    # -- the connection ------------------------------------------------------------------

    def __call__(self, channel: Channel, address: Any) -> bool:
        """Serve a freshly accepted connection; True when it was parked (the poller
        owns it now), False when it is done (the caller closes it)."""
        return self.resume(Conn(channel, address))

    def resume(self, conn: Conn) -> bool:
        """Serve ``conn`` (freshly accepted, or handed back by the poller) until it
        closes or waits for its peer; True when it was parked.  (The worker threads
        call this one: it is the request path.)"""
        if conn.core is None:  # a new connection
            if self.check_peers and not self.accept_peer(conn.channel, conn.address):
                return False
            conn.core = self.core_class()
        transport = self.transport
        transport.reset(conn.channel, conn.core)
        self.current = conn  # for log lines; the next connection replaces it
        try:
            parked = self.serve(conn, transport)
        except BaseException:
            # serve() returns with no request running; an exception may leave one
            transport.reset(None, None)
            self.current = None
            self.state.end()
            raise
        if parked:
            if self.state.park(conn):
                return True
            if conn.body is not None:
                conn.body.close()
        return False

    def serve(self, conn: Conn, transport: HandlerTransport) -> bool:
        """The one receive-and-dispatch loop (see the module docstring): True when the
        connection waits for its peer (to be parked), False when it is done."""
        state = self.state
        core = conn.core
        channel = conn.channel
        # A core sends Data, EndOfBody and Abort only after the request's Request:
        # params and body are set then (mypy is told so below, where they are used).
        params, body, reject = conn.params, conn.body, conn.reject
        event: Any  # its type is taken once, as kind: mypy narrows type(event) is X, not kind
        events = conn.pending
        conn.pending = None
        data: bytes | None = b"-"  # not b"": the pending events did not come with an end
        while True:
            if events is None:
                data = self.read(conn)
                if data is None:
                    conn.params, conn.body, conn.reject = params, body, reject
                    return True
                try:
                    events = core.feed(data) if data else core.eof()
                except ProtocolError as exc:
                    if data:
                        self.protocol_error(conn, exc)
                    else:  # the peer closed in the middle: nobody is left to tell
                        self.log.debug("%s: %s", self.gateway, exc)
                        state.count_error(exc)
                    return False
            for event in events:
                kind = type(event)
                if kind is Data:
                    reject = self.collect(body, event.data, reject)  # type: ignore[arg-type]
                elif kind is Request:
                    params = event.params
                    body, reject = self.begin(conn, params)
                elif kind is EndOfBody:
                    conn.served = True
                    if reject is not None:
                        ok = transport.refuse(reject.answering(params))  # type: ignore[arg-type]
                        if self.counts is not None:
                            self.count(reject.status)
                    elif body.size < body.expected:  # type: ignore[union-attr]
                        ok = self.short_body(conn, transport, params, body)  # type: ignore[arg-type]
                    elif (conn.queued or state.crowded) and self.abandoned(conn):
                        ok = False
                    else:
                        ok = self.respond(transport, params, body)  # type: ignore[arg-type]
                    if body is not None:
                        body.close()
                    params = body = reject = None
                    state.end()
                    if not ok:
                        return False
                elif kind is Abort:
                    if body is not None:
                        body.close()
                    params = body = reject = None
                    if not transport.end_aborted(event.request_id):
                        return False
            events = None
            out = core.data_to_send()
            if out:
                try:
                    channel.sendall(out)
                except OSError:
                    return False
            if core.error is not None:
                self.protocol_error(conn, core.error)
                return False
            if not data or core.should_close:
                return False

    # -- pieces of the loop --------------------------------------------------------------

    def read(self, conn: Conn) -> bytes | None:
        """What the peer has sent (``b""``: it closed), waiting a moment for it; None
        when nothing comes: the connection is to wait in the poller, not here."""
        try:
            return conn.channel.recv_ready(RECV_SIZE)
        except BlockingIOError:
            pass
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self.gateway, exc)
            return b""
        if self.state.stopping and conn.served and not conn.core.busy:
            return b""  # a kept-alive connection of a stopping worker, idle: close it
        try:
            return conn.channel.wait_recv(RECV_SIZE, GRACE)
        except BlockingIOError:
            return None
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self.gateway, exc)
            return b""

    def abandoned(self, conn: Conn) -> bool:
        """The peer closed before its request ran (a client aborted while it waited): it
        is not run.  Checked only when requests wait for threads, so it costs the fast
        path nothing."""
        try:
            ahead = conn.channel.sock.recv(1, _PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            ahead = b""
        if ahead:
            return False
        self.log.debug("%s: %s closed before its request ran; not running it",
                       self.gateway, self.peer(conn))
        return True

    def peer(self, conn: Conn | None = None) -> str:
        """Who is on the other end of ``conn`` (default: this thread's), for a log line."""
        conn = conn or self.current
        return describe_peer(conn.channel.sock, conn.address) if conn else "a peer"

    def protocol_error(self, conn: Conn | None, exc: Exception) -> None:
        """The peer broke the protocol: one WARNING line naming it and the violation."""
        self.log.warning("%s: closing a connection from %s: %s", self.gateway, self.peer(conn),
                         exc)
        self.state.count_error(exc)

    def begin(self, conn: Conn, params: dict[str, str]) -> tuple[Body, Refusal | None]:
        """A request's meta-variables arrived: ``(body, refusal or None)``."""
        length = params.get("CONTENT_LENGTH")
        expected, reject = check_length(length, self.max_body)
        if expected and params.get("FCGI_ROLE") == "AUTHORIZER":
            expected = 0  # FastCGI §6.3: an Authorizer gets the request's headers, no body
        body = Body(self.spool_threshold, self.max_body, expected)
        if reject is not None and reject is not TOO_LARGE:
            self.log.warning("%s: %s sent CONTENT_LENGTH %r, %s; answering %s", self.gateway,
                             self.peer(conn), (length or "")[:40], reject.reason,
                             reject.status)
        return body, reject

    def short_body(self, conn: Conn, transport: HandlerTransport, params: dict[str, str],
                   body: Body) -> bool:
        """The body ended before CONTENT_LENGTH (FastCGI §6.2: the application compares
        them and does not act on a short one): 400, and one WARNING line.  Apache
        resends a POST whose connection was reset without its body, for one."""
        self.log.warning("%s: %s ended the request body after %d of its CONTENT_LENGTH %d "
                         "bytes; answering %s", self.gateway, self.peer(conn), body.size,
                         body.expected, SHORT_BODY.status)
        ok = transport.refuse(SHORT_BODY.answering(params))
        if self.counts is not None:
            self.count(SHORT_BODY.status)
        return ok

    @staticmethod
    def collect(body: Body, data: bytes, reject: Refusal | None) -> Refusal | None:
        """Add body bytes unless the request is already refused; the new refusal."""
        if reject is None:
            try:
                body.add(data)
            except BodyTooLarge:
                body.close()
                return TOO_LARGE
        return reject

    def respond(self, transport: HandlerTransport, params: dict[str, str], body: Body) -> bool:
        """Run the application for one request; False when the connection cannot go on."""
        self.state.begin()  # from here on --timeout counts
        transport.start()
        environ = self.environ.build(params, body.stream(), transport.errors)
        response = serve_app(self.app, environ, transport, self.debug)
        if self.counts is not None:
            self.count(response.status, response.failed)
        return bool(transport.done())

    def count(self, status: str, failed: bool = False) -> None:
        """--stats: one more request answered (gateways.server.stats.THREAD_FIELDS)."""
        counts = self.counts
        counts[0] += 1  # type: ignore[index]  # called only when counting
        first = status[:1]
        if first == "4":
            counts[1] += 1  # type: ignore[index]
        elif first == "5":
            counts[2] += 1  # type: ignore[index]
        if failed:
            counts[3] += 1  # type: ignore[index]
