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
    Accepts a connection on the listening socket and serves it, start to
    end, then accepts the next one.  There is always at least one runner.
*scout*
    Wakes every few milliseconds and looks at the runners.  When every
    runner has been on its current connection for longer than ``DELAY`` (the
    application is blocked on a database, a client uploads slowly, a
    kept-alive connection is idle) and none is waiting in ``accept()``, the
    scout becomes a runner itself and another thread becomes the scout.
*spare*
    Waits to be made the scout.

A runner that finishes a connection while another runner is idle or busy
with a young connection steps back to scout or spare.  A fast application
is thus served by one runner with no GIL contention at all, and a slow or
blocking one by up to ``threads`` runners, each new one after at most
``DELAY``.  A connection is still served by the thread that accepted it:
there is no hand-off and no lock on the request path (the lock below is
taken only when a thread changes role).
"""

from __future__ import annotations

import _socket
import errno
import struct
import threading
import time

from gateways.server.channel import Channel

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from logging import Logger
    from typing import Any, Protocol

    from gateways.server.listen import Listener

    # What serves one accepted connection: a thread's handler
    # (gateways.server.handler.BaseHandler), called with the channel and the peer's address.
    ConnectionHandler = Callable[[Channel, Any], object]

    class WorkerView(Protocol):
        """What the runners read of their worker (:class:`gateways.server.worker.Worker`)."""

        @property
        def stopping(self) -> bool: ...

        @property
        def log(self) -> Logger: ...

        @property
        def write_timeout(self) -> float: ...

DELAY = 0.002  # a runner on one connection for this long may be blocked
IDLE_POLL = 0.01  # how often the scout looks while no runner is busy

SPARE, SCOUT, RUNNER = "spare", "scout", "runner"


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


def set_timeouts(sock: _socket.socket, receive: float, send: float) -> None:
    """SO_RCVTIMEO and SO_SNDTIMEO, in seconds.

    A blocked ``recv``/``accept`` then returns ``BlockingIOError`` after
    ``receive`` seconds without a poll() per call: that is how threads notice
    a stop, an idle kept-alive connection and a stalled peer.
    """
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _timeval(receive))
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _timeval(send))


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
        self.runners = 0
        self.scouting = False
        self.lock = threading.Lock()
        self.wake = threading.Semaphore(0)  # a spare acquires it to become the scout
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

    def _main(self, index: int, role: str) -> None:
        while not self.worker.stopping:
            if role == RUNNER:
                role = self._run(index)
            elif role == SCOUT:
                role = self._scout(index)
            elif self.wake.acquire(timeout=self.tick):
                with self.lock:
                    if not self.scouting:
                        self.scouting = True
                        role = SCOUT

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
        while not self.worker.stopping:
            time.sleep(pause)
            now = time.monotonic()
            if self._needed(now):
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
        handle = self.handlers[index]
        started = self.started
        log = self.worker.log
        # Accepted TCP sockets inherit the listener's timeouts; unix ones get
        # them from their Channel when a call would block.
        timeouts = None
        if family == _socket.AF_UNIX:
            timeouts = (_timeval(self.tick), _timeval(self.worker.write_timeout))
        while not self.worker.stopping:
            started[index] = 0.0
            try:
                fd, address = accept()
            except BlockingIOError:
                continue  # a tick passed without a connection
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if self.worker.stopping:
                    break
                log.error("accept() on %s failed: %s", self.listener.name, exc.strerror)
                time.sleep(self.tick)
                continue
            started[index] = time.monotonic()
            conn = _socket.socket(family, kind, 0, fd)
            try:
                handle(Channel(conn, timeouts), address)
            except Exception:
                log.exception("internal error while serving a connection on %s",
                              self.listener.name)
            finally:
                conn.close()
            if self.runners > 1:
                role = self._step_back(index)
                if role is not None:
                    return role
        with self.lock:
            self.runners -= 1
            started[index] = -1.0
        return RUNNER
