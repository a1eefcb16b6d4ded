"""Parked connections: a peer that sends nothing, or sends slowly, holds no thread.

A worker thread serves a connection only while there is a complete request
to run or a response to write.  When the next bytes are not there — a
connection that has sent nothing yet, a request cut in the middle by a slow
client or a stalled peer, a kept-alive FastCGI connection between requests —
the thread *parks* the connection here and goes back to work.  One thread
per worker (the poller) watches every parked connection with epoll, reads
what arrives, feeds the connection's protocol core and collects the body
exactly as a worker thread would (memory, then a temporary file past
``--spool-threshold``).  When a request is complete (or the web server
aborts it) the connection goes back to the worker's threads, which run the
application.

A parked connection is dropped when its deadline passes: ``--read-timeout``
in the middle of a request (one WARNING line: the peer stalled),
``--keepalive-timeout`` while it is idle (a debug line).  At most
``--max-parked`` connections wait in a worker; one more is closed at once
with a WARNING line (rate-limited to one a second), so that a flood of idle
connections costs a bounded amount of memory and the other workers (which
share the listening socket) keep taking connections.  When the worker stops,
kept-alive connections between requests are closed, new ones and those in
the middle of a request get their answer.
"""

from __future__ import annotations

import _socket
import collections
import os
import selectors
import threading
import time

from gateways.protocol import ProtocolError
from gateways.protocol.events import Data, Request

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger

    from gateways.server.conn import Conn
    from gateways.server.handler import BaseHandler

_DONTWAIT = _socket.MSG_DONTWAIT
RECV_SIZE = 65536


def _owed(conn: Conn) -> bool:
    """A request is owed on ``conn``: under way, or its first one not yet there (a
    kept-alive connection between requests owes nothing)."""
    return conn.core.busy or not conn.served


class Poller:
    """The parking place of one worker (see the module docstring).

    ``intake`` is a handler whose ``begin``/``collect``/``peer`` methods take in
    a request's head and body (any thread's: they keep no per-thread state);
    ``hand_over(conn)`` gives a connection with a complete request back to the
    worker's threads.
    """

    def __init__(self, intake: BaseHandler, hand_over: Callable[[Conn], None], *,
                 limit: int, read_timeout: float, keepalive_timeout: float, log: Logger,
                 tick: float, gauge: memoryview[float] | None = None) -> None:
        self.intake = intake
        self.hand_over = hand_over
        self.limit = limit
        self.read_timeout = read_timeout
        self.keepalive_timeout = keepalive_timeout
        self.log = log
        self.tick = tick
        self.selector = selectors.DefaultSelector()
        self.parked: dict[int, Conn] = {}  # fd -> connection, owned by the poller thread
        self.incoming: collections.deque[Conn] = collections.deque()  # from the threads
        self.count = 0  # parked + incoming, as the threads see it (for the limit)
        self.lock = threading.Lock()  # guards count only
        self.gauge = gauge  # --stats: where the count is shown to the master
        self.stopping = False  # the worker stops: idle connections are closed
        self.done = False  # the worker is finished: what is left is dropped, the thread ends
        self.transit = 0  # a connection between parked and the worker's ready queue
        self.refused_at = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._run, name="gateways-poller", daemon=True)

    # -- from the worker's threads ------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def park(self, conn: Conn) -> bool:
        """Watch ``conn`` until its next request is complete; False when the worker
        has no room (the caller closes the connection)."""
        with self.lock:
            if self.count >= self.limit:
                full = True
            else:
                full = False
                self.count += 1
                if self.gauge is not None:
                    self.gauge[0] = self.count
        if full:
            now = time.monotonic()
            if now - self.refused_at >= 1.0:
                self.refused_at = now
                self.log.warning("%s: %d connections are already waiting in this worker "
                                 "(--max-parked); closing one more from %s",
                                 self.intake.gateway, self.limit, self.intake.peer(conn))
            return False
        busy = conn.core.busy
        conn.deadline = time.monotonic() + (self.read_timeout if busy else
                                            self.keepalive_timeout)
        self.incoming.append(conn)
        self._wake()
        return True

    def stop(self) -> None:
        """The worker stops: close what is idle, let the rest finish its request.  The
        thread lives on (a worker thread may still park a connection) until
        :meth:`finish`."""
        self.stopping = True
        self._wake()

    def finish(self) -> None:
        """The worker is finished: drop what is left and end the thread."""
        self.stopping = self.done = True
        self._wake()

    def waiting(self) -> int:
        """How many parked connections a stopping worker waits for: those in the middle
        of a request, new ones whose first request has not arrived yet, and one
        on its way to the ready queue (read in this order: a connection moving
        from one to the next is seen in one of them)."""
        return sum(1 for conn in list(self.parked.values()) if _owed(conn)) + len(
            self.incoming) + self.transit

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # a wake-up is pending already

    # -- the poller thread ----------------------------------------------------------------

    def _run(self) -> None:
        select = self.selector.select
        while True:
            if self.stopping:
                self._close_idle()
                if self.done:
                    for conn in list(self.parked.values()):
                        self._drop(conn)
                    return
            now = time.monotonic()
            timeout = self.tick
            if self.parked:
                timeout = max(0.0, min(timeout, min(c.deadline for c in self.parked.values())
                                       - now))
            for key, _ in select(timeout):
                conn = key.data
                if conn is None:
                    self._take_incoming()
                else:
                    self._readable(conn)
            self._expire(time.monotonic())

    def _take_incoming(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while self.incoming:
            conn = self.incoming.popleft()
            fd = conn.sock.fileno()
            self.parked[fd] = conn
            try:
                self.selector.register(fd, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self._drop(conn)

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE, _DONTWAIT)
        except BlockingIOError:
            return
        except OSError as exc:
            self.log.debug("%s: connection error: %s", self.intake.gateway, exc)
            self._drop(conn)
            return
        core = conn.core
        try:
            events = core.feed(data) if data else core.eof()
        except ProtocolError as exc:
            if data:
                self.intake.protocol_error(conn, exc)
            else:  # the peer closed: an idle connection ends, a half request is dropped
                self.log.debug("%s: %s", self.intake.gateway, exc)
            self._drop(conn)
            return
        if not data and not events:
            self._drop(conn)  # an idle connection closed by its peer: nothing to say
            return
        intake = self.intake
        for index, event in enumerate(events):
            kind = type(event)
            if kind is Data:
                conn.reject = intake.collect(conn.body, event.data, conn.reject)  # type: ignore[arg-type, attr-defined]
            elif kind is Request:
                conn.params = event.params  # type: ignore[attr-defined]
                conn.body, conn.reject = intake.begin(conn, conn.params)
            else:  # EndOfBody or Abort: the threads answer it
                conn.pending = events[index:]
                self.transit = 1
                self._release(conn)
                self.hand_over(conn)
                self.transit = 0
                return
        out = core.data_to_send()  # FastCGI answers GET_VALUES by itself, even when idle
        if out:
            try:
                conn.sock.send(out, _DONTWAIT)
            except OSError:
                self._drop(conn)
                return
        if core.error is not None:
            intake.protocol_error(conn, core.error)
            self._drop(conn)
            return
        if core.busy:  # a request under way: a stall is no bytes for --read-timeout
            conn.deadline = time.monotonic() + self.read_timeout

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.parked.values() if c.deadline <= now]:
            if conn.core.busy:
                self.log.warning("%s: %s stalled for %g s in the middle of a request; "
                                 "closing the connection", self.intake.gateway,
                                 self.intake.peer(conn), self.read_timeout)
            else:
                self.log.debug("%s: closing a connection idle for %g s", self.intake.gateway,
                               self.keepalive_timeout)
            self._drop(conn)

    def _close_idle(self) -> None:
        self._take_incoming()
        for conn in [c for c in self.parked.values() if not _owed(c)]:
            self._drop(conn)

    def _release(self, conn: Conn) -> None:
        """``conn`` leaves the parking place (to the threads, or closed)."""
        fd = conn.sock.fileno()
        self.parked.pop(fd, None)
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass
        with self.lock:
            self.count -= 1
            if self.gauge is not None:
                self.gauge[0] = self.count

    def _drop(self, conn: Conn) -> None:
        self._release(conn)
        if conn.body is not None:
            conn.body.close()
        conn.sock.close()
