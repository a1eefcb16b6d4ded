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
from gateways.response import TOO_LARGE, FileWrapper, Refusal
from gateways.response import run as run_app
from gateways.server.body import Body, BodyTooLarge, check_length

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger
    from typing import Any, Protocol

    from _typeshed.wsgi import ErrorStream, WSGIApplication

    from gateways.protocol import Core
    from gateways.response import Transport
    from gateways.server.channel import Channel
    from gateways.server.worker import ThreadState
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
    keepalive_timeout = 0.0  # connections that carry one request close after it

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
        self.channel: Channel | None = None
        self.address: Any = None
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

    def __call__(self, channel: Channel, address: Any) -> None:
        self.channel, self.address = channel, address  # for log lines about the peer
        try:
            if self.accept_peer(channel, address):
                core = self.new_core()
                transport = self.transport
                transport.reset(channel, core)
                try:
                    self.serve(channel, core, transport)
                finally:
                    transport.reset(None, None)
        finally:
            self.state.end()  # a no-op unless the connection broke mid-request

    def serve(self, channel: Channel, core: Core, transport: HandlerTransport) -> None:
        """The one receive-and-dispatch loop (see the module docstring)."""
        state = self.state
        recv = channel.recv
        served = False
        # A core sends Data, EndOfBody and Abort only after the request's Request:
        # params and body are set then (mypy is told so below, where they are used).
        params: dict[str, str] | None
        body: Body | None
        reject: Refusal | None
        event: Any  # its type is taken once, as kind: mypy narrows type(event) is X, not kind
        params = body = reject = None
        while True:
            data = self.receive(recv, core.busy,
                                self.keepalive_timeout if served else self.read_timeout)
            if data is None:
                return
            try:
                events = core.feed(data) if data else core.eof()
            except ProtocolError as exc:
                if data:
                    self.protocol_error(exc)
                else:  # the peer closed in the middle: nobody is left to tell
                    self.log.debug("%s: %s", self.gateway, exc)
                return
            for event in events:
                kind = type(event)
                if kind is Data:
                    reject = self.collect(body, event.data, reject)  # type: ignore[arg-type]
                elif kind is Request:
                    params = event.params
                    body, reject = self.begin(params)
                elif kind is EndOfBody:
                    served = True
                    if reject is None:
                        ok = self.respond(transport, params, body)  # type: ignore[arg-type]
                    else:
                        ok = transport.refuse(reject.answering(params))  # type: ignore[arg-type]
                    params = body = reject = None
                    state.end()
                    if not ok:
                        return
                elif kind is Abort:
                    if body is not None:
                        body.close()
                    params = body = reject = None
                    state.end()
                    if not transport.end_aborted(event.request_id):
                        return
            out = core.data_to_send()
            if out:
                try:
                    channel.sendall(out)
                except OSError:
                    return
            if core.error is not None:
                self.protocol_error(core.error)
                return
            if not data or core.should_close:
                return

    # -- pieces of the loop --------------------------------------------------------------

    def peer(self) -> str:
        """Who is on the other end of the connection, for a log line."""
        # Called while a connection is served: self.channel is set.
        return describe_peer(self.channel.sock, self.address)  # type: ignore[union-attr]

    def protocol_error(self, exc: Exception) -> None:
        """The peer broke the protocol: one WARNING line naming it and the violation."""
        self.log.warning("%s: closing a connection from %s: %s", self.gateway, self.peer(),
                         exc)

    def receive(self, recv: Callable[[int], bytes], busy: bool,
                idle_limit: float) -> bytes | None:
        """The next bytes from the peer (``b""`` at its end), or None: close now.

        ``recv`` returns after at most a tick (SO_RCVTIMEO).  ``busy``: a request
        is under way, and a peer that stalls past ``--read-timeout`` is logged
        and dropped; otherwise the connection is idle and is closed when the
        worker stops or after ``idle_limit`` seconds.
        """
        waited = 0.0
        tick = self.state.tick
        while True:
            try:
                data: bytes = recv(RECV_SIZE)
                return data
            except BlockingIOError:
                waited += tick
                if busy:
                    if waited >= self.read_timeout:
                        self.log.warning("%s: %s stalled for %g s in the middle of a "
                                         "request; closing the connection",
                                         self.gateway, self.peer(), waited)
                        return None
                elif self.state.stopping or waited >= idle_limit:
                    return None
            except OSError as exc:
                self.log.debug("%s: connection error: %s", self.gateway, exc)
                return None

    def begin(self, params: dict[str, str]) -> tuple[Body, Refusal | None]:
        """A request's meta-variables arrived: ``(body, refusal or None)``."""
        self.state.begin()
        body = Body(self.spool_threshold, self.max_body)
        length = params.get("CONTENT_LENGTH")
        reject = check_length(length, self.max_body)
        if reject is not None and reject is not TOO_LARGE:
            self.log.warning("%s: %s sent CONTENT_LENGTH %r, %s; answering %s", self.gateway,
                             self.peer(), (length or "")[:40], reject.reason, reject.status)
        return body, reject

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
        transport.start()
        environ = self.environ.build(params, body.stream(), transport.errors)
        try:
            run_app(self.app, environ, transport, self.debug)
        finally:
            body.close()
        return bool(transport.done())
