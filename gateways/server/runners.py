"""A worker's threads: as many accept at once as the application needs, no more.

Why not simply let every thread accept?  Because of the GIL.  Each socket
call releases it; when several threads have work at the same moment, every
release hands the GIL to another thread and every return waits for it back:
a context switch per system call.  Measured here behind nginx with a hello
world application, 8 threads that all accept serve half as many requests
per second as 1 thread.  uWSGI does not pay this, because its C code holds
the GIL only while the application runs.

So the threads of a worker take roles:

*runner*
    Accepts a connection on the listening socket and serves it, then
    accepts the next one.  There is always at least one runner.
*scout*
    Wakes every few milliseconds and looks at the runners.  When every
    runner has been on its current connection for longer than ``DELAY`` (the
    application is blocked on a database, say) and none is waiting in
    ``accept()``, the scout becomes a runner itself and another thread
    becomes the scout.
*spare*
    Waits to be made the scout, or to serve a connection the poller hands
    back.

A runner that finishes a connection while another runner is idle or busy
with a young connection steps back to scout or spare.  A fast application
is thus served by one runner with no GIL contention at all, and a slow or
blocking one by up to ``threads`` runners, each new one after at most
``DELAY``.  A connection whose request has arrived whole is served by the
thread that accepted it: there is no hand-off and no lock on that path (the
lock below is taken only when a thread changes role).

A connection that waits for its peer is parked in the worker's poller
(:mod:`gateways.server.poller`); when its request is complete the poller
puts it on the worker's ``ready`` queue and summons a thread: a spare, else
the scout, else a runner when it finishes its connection or its ``accept()``
times out (a tick).

When the worker stops, the runners stop accepting; the worker takes every
connection still in the listen queue and puts it on ``ready``; the threads
serve ``ready`` until the worker says it is finished.
"""

from __future__ import annotations

import _socket
import errno
import threading
import time

from gateways.server.channel import Channel, timeval
from gateways.server.conn import Conn

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Sequence
    from logging import Logger
    from typing import Any, Protocol

    from gateways.server.listen import Listener

    class ConnectionHandler(Protocol):
        """A thread's handler (gateways.server.handler.BaseHandler)."""

        def __call__(self, channel: Channel, address: Any) -> bool: ...  # True: parked

        def resume(self, conn: Conn) -> bool: ...  # True: parked again

    class WorkerView(Protocol):
        """What the runners read of their worker (:class:`gateways.server.worker.Worker`)."""

        @property
        def stopping(self) -> bool: ...

        @property
        def finished(self) -> bool: ...

        @property
        def log(self) -> Logger: ...

        @property
        def write_timeout(self) -> float: ...

        @property
        def ready(self) -> deque[Conn]: ...

DELAY = 0.002  # a runner on one connection for this long may be blocked
IDLE_POLL = 0.01  # how often the scout looks while no runner is busy

SPARE, SCOUT, RUNNER = "spare", "scout", "runner"


def set_timeouts(sock: _socket.socket, receive: float, send: float) -> None:
    """SO_RCVTIMEO and SO_SNDTIMEO, in seconds.

    A blocked ``accept`` then returns ``BlockingIOError`` after ``receive``
    seconds without a poll() per call: that is how runners notice a stop and
    connections handed back by the poller; accepted TCP sockets inherit both.
    """
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, timeval(receive))
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval(send))


class Runners:
    """The threads serving one listener in one worker process."""

    def __init__(self, worker: WorkerView, listener: Listener,
                 handlers: Sequence[ConnectionHandler], tick: float) -> None:
        self.worker = worker
        self.listener = listener
        self.handlers = handlers  # one connection handler per thread
        self.tick = tick
        # Per thread: -1.0 not a runner, 0.0 a runner in accept(), else the
        # monotonic time its current connection was accepted.
        self.started = [-1.0] * len(handlers)
        self.serving = [False] * len(handlers)  # per thread: on a connection from ready
        self.runners = 0
        self.scouting = False
        self.lock = threading.Lock()
        # A spare acquires it to become the scout, or to serve worker.ready.
        self.wake = threading.Semaphore(0)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(len(self.handlers)):
            role = RUNNER if index == 0 else SCOUT if index == 1 else SPARE
            if role == RUNNER:
                self.runners += 1
                self.started[index] = 0.0
            elif role == SCOUT:
                self.scouting = True
            thread = threading.Thread(target=self._main, args=(index, role),
                                      name="gateways-%d" % index, daemon=True)
            self.threads.append(thread)
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def summon(self) -> None:
        """A connection waits on worker.ready: wake a spare (if one waits)."""
        self.wake.release()

    def busy(self) -> bool:
        """A thread may still accept or is on a connection (a stopping worker waits)."""
        return any(since >= 0.0 for since in self.started) or any(self.serving)

    @property
    def crowded(self) -> bool:
        """Requests are waiting for threads (more than one runner is busy)."""
        return self.runners > 1

    def _main(self, index: int, role: str) -> None:
        worker = self.worker
        while not worker.finished:
            if worker.stopping:
                role = self._drain(index)
            elif role == RUNNER:
                role = self._run(index)
            elif role == SCOUT:
                role = self._scout(index)
            elif self.wake.acquire(timeout=self.tick):
                if worker.ready:
                    self._serve_ready(index)
                with self.lock:
                    if not self.scouting:
                        self.scouting = True
                        role = SCOUT

    # -- connections the poller hands back ----------------------------------------------

    def _serve_ready(self, index: int) -> None:
        """Serve what waits on worker.ready, until it is empty."""
        ready = self.worker.ready
        handler = self.handlers[index]
        log = self.worker.log
        serving = self.serving
        while True:
            serving[index] = True  # before the pop: a stopping worker sees it in one place
            try:
                conn = ready.popleft()
            except IndexError:
                serving[index] = False
                return
            try:
                parked = handler.resume(conn)
            except Exception:
                parked = False
                log.exception("internal error while serving a connection on %s",
                              self.listener.name)
            if not parked:
                conn.sock.close()
            serving[index] = False

    def _drain(self, index: int) -> str:
        """The worker stops: serve worker.ready until the worker is finished."""
        with self.lock:
            if self.started[index] >= 0.0:
                self.runners -= 1
            self.started[index] = -1.0
        while not self.worker.finished:
            self._serve_ready(index)
            # Woken by summon(): a connection on worker.ready, or the worker finished
            # (no polling: a stopping worker's threads would wake 500 times a second).
            self.wake.acquire(timeout=self.tick)
        return SPARE

    # -- the scout ----------------------------------------------------------------

    def _needed(self, now: float) -> bool:
        """True when every runner is stuck on a connection older than DELAY."""
        busy = False
        for since in self.started:
            if since == 0.0:
                return False  # a runner is waiting in accept()
            if since > 0.0:
                if now - since < DELAY:
                    return False
                busy = True
        return busy

    def _scout(self, index: int) -> str:
        # Made the scout because the load grew: keep looking closely.
        pause = DELAY if any(since > 0.0 for since in self.started) else IDLE_POLL
        worker = self.worker
        while not worker.stopping:
            time.sleep(pause)
            now = time.monotonic()
            if self._needed(now) or worker.ready:
                with self.lock:
                    self.scouting = False
                    self.runners += 1
                    self.started[index] = 0.0
                self.wake.release()  # the next spare scouts
                return RUNNER
            busy = any(since > 0.0 for since in self.started)
            pause = DELAY if busy else IDLE_POLL
        return SCOUT

    # -- a runner ---------------------------------------------------------------------

    def _redundant(self, index: int, now: float) -> bool:
        """Another runner is idle, or on a connection too young to be stuck."""
        for other, since in enumerate(self.started):
            if other != index and (since == 0.0 or (since > 0.0 and now - since < DELAY)):
                return True
        return False

    def _step_back(self, index: int) -> str | None:
        """Leave the runners if another can take the load; the new role or None."""
        with self.lock:
            if self.runners < 2 or not self._redundant(index, time.monotonic()):
                return None
            self.runners -= 1
            self.started[index] = -1.0
            if self.scouting:
                return SPARE
            self.scouting = True
            return SCOUT

    def _run(self, index: int) -> str:
        sock = self.listener.sock
        # The C-level calls: socket.socket's Python layer costs more than the syscalls.
        # (typeshed does not list _socket.socket's _accept, which socket.accept calls.)
        accept = sock._accept  # type: ignore[attr-defined]
        family, kind = sock.family, sock.type
        handle = self.handlers[index].resume
        started = self.started
        worker = self.worker
        ready = worker.ready
        log = worker.log
        # Accepted TCP sockets inherit the listener's send timeout; unix ones get
        # it from their Channel when a send would block.
        send_timeout = timeval(worker.write_timeout) if family == _socket.AF_UNIX else None
        while not worker.stopping:
            if ready:
                started[index] = time.monotonic()
                self._serve_ready(index)
            started[index] = 0.0
            try:
                fd, address = accept()
            except BlockingIOError:
                continue  # a tick passed without a connection
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if worker.stopping:
                    break
                log.error("accept() on %s failed: %s", self.listener.name, exc.strerror)
                time.sleep(self.tick)
                continue
            started[index] = time.monotonic()
            conn = _socket.socket(family, kind, 0, fd)
            try:
                parked = handle(Conn(Channel(conn, send_timeout), address))
            except Exception:
                parked = False
                log.exception("internal error while serving a connection on %s",
                              self.listener.name)
            if not parked:
                conn.close()
            if self.runners > 1:
                role = self._step_back(index)
                if role is not None:
                    return role
        return RUNNER
