"""A worker process: it loads the application and runs the threads that serve.

The master (:mod:`gateways.server.master`) forks it and tells it what to do
with signals; the threads (:mod:`gateways.server.runners`) accept the
connections themselves and park those that wait for their peer in the
worker's poller (:mod:`gateways.server.poller`).  Each worker thread marks
its slot in an array the master shares with the time the application
started on a request and clears it at the end: that is how the master sees
``--timeout``, and how the worker counts ``--max-requests``.

The worker tells the master through a pipe: *ready* once it serves, and
*recycle me* when it has served ``--max-requests`` or its memory passed
``--max-rss``.  It serves on until the master, which starts the replacement
at once, tells it to retire (SIGUSR1) once the replacement is ready: a
recycle leaves no gap.

Signals (worker):

SIGUSR1 (retire: a recycle, a reload)
    stop accepting, serve the requests in flight and the connections parked
    with a request owed, then exit.  The listening socket stays open in the
    master and the other workers, which take what waits in its queue.
SIGTERM, SIGINT (the daemon stops)
    the same, and first take every connection still waiting in the listen
    queue and serve it too: when the last process closes a listening socket,
    the connections in its queue are reset.  (The master has made the
    socket refuse new ones: :meth:`gateways.server.listen.Listener.refuse_new`.)

SIGHUP is the master's business (ignored here).  A worker stops (as on
SIGTERM) when its master is gone.
"""

from __future__ import annotations

import _socket
import collections
import errno
import gc
import os
import select
import signal
import struct
import threading
import time

from gateways.server.channel import Channel, timeval
from gateways.server.conn import Conn
from gateways.server.poller import Poller
from gateways.server.runners import Runners, set_timeouts
from gateways.server.stats import count_error

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger
    from typing import Any

    from gateways.server.handler import BaseHandler
    from gateways.server.listen import Listener
    from gateways.server.stats import Board

    # What the master's boot function returns, in the worker: it makes each thread's
    # connection handler (gateways.server.handler.BaseHandler.factory).
    HandlerFactory = Callable[["ThreadState"], BaseHandler]

TICK = 0.5
BOOT_ERROR = 3  # worker exit status: the application could not be loaded
RECYCLED = 4  # worker exit status: recycled (--max-requests, --max-rss)
ORPHANED = 5  # worker exit status: the master is gone

# What a worker writes to the master's pipe: its pid and what it says.
MESSAGE = struct.Struct("=IB")
# The signals a worker handles itself.  The master blocks them around fork()
# and the worker unblocks them once its own handlers are in place: one sent in
# between (a SIGTERM just after a worker was started) would otherwise run the
# master's handler inherited by the child, and be lost.
WORKER_SIGNALS = frozenset((signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP,
                            signal.SIGQUIT))
READY, RECYCLE_REQUESTS, RECYCLE_RSS = 1, 2, 3
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ThreadState:
    """One worker thread's view of its worker: what a protocol handler calls.

    ``begin()``/``end()`` bracket each request the application runs (they feed
    ``--timeout`` and ``--max-requests``); ``park(conn)`` hands a connection
    that waits for its peer to the poller; ``crowded`` says requests wait for
    threads; ``stopping`` that the worker stops.
    """

    __slots__ = ("worker", "slot", "pool", "counts")
    tick = TICK  # the longest a blocked call waits before it looks at the flags

    def __init__(self, worker: Worker, slot: int) -> None:
        self.worker = worker
        self.slot = slot
        self.pool: Runners | None = None  # the threads this one belongs to, once they exist
        # --stats: this thread's counters (gateways.server.stats.Board.thread), else None
        board = worker.board
        self.counts = board.thread(worker.board_slot, slot) if board is not None else None

    def begin(self) -> None:
        self.worker.slots[self.slot] = time.monotonic()

    def end(self) -> None:
        worker = self.worker
        slots = worker.slots
        if slots[self.slot]:
            slots[self.slot] = 0.0
            worker.served += 1
            if worker.served == worker.max_requests:
                worker.recycle(RECYCLE_REQUESTS)

    def park(self, conn: Conn) -> bool:
        return self.worker.poller.park(conn)

    def count_error(self, exc: BaseException) -> None:
        """--stats: one more protocol error of ``exc``'s kind (rare: under a lock)."""
        worker = self.worker
        if worker.board is not None:
            with worker.errors_lock:
                count_error(worker.board.errors(worker.board_slot), exc)

    @property
    def crowded(self) -> bool:
        pool = self.pool
        return pool is not None and pool.runners > 1

    @property
    def stopping(self) -> bool:
        return self.worker.stopping


def keep_freed_memory(limit: int = 64 * 1024 * 1024) -> None:
    """Ask glibc not to hand freed memory back to the kernel after every request.

    Each thread allocates from its own malloc arena; by default glibc trims
    an arena as soon as 128 KiB at its top are free, so a request with a
    100 kB body maps pages in and out every time (mprotect, madvise, page
    faults): measured, that alone cost more than half the throughput of a
    POST.  Up to ``limit`` bytes per arena are now kept for the next request.
    A no-op where the C library is not glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, limit)  # M_TRIM_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        pass


def rss() -> int:
    """This process's resident memory in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Worker:
    """A worker process: loads the application, runs the accepting threads."""

    def __init__(self, listeners: list[Listener], boot: Callable[[], HandlerFactory],
                 threads: int, slots: memoryview[float], max_requests: int, *, config: Any,
                 log: Logger, ready_fd: int, parent: int, board: Board | None = None,
                 board_slot: int = 0) -> None:
        self.listeners = listeners
        self.boot = boot
        self.threads = threads
        self.slots = slots
        self.max_requests = max_requests
        self.config = config
        self.write_timeout: float = config.read_timeout
        self.max_rss: int = getattr(config, "max_rss", 0) or 0
        self.log = log
        self.ready_fd = ready_fd
        self.parent = parent
        self.stopping = False
        self.take_queue = False  # the daemon stops: serve what waits in the listen queue
        self.finished = False
        self.recycling = 0  # why the master was asked to recycle us (0: it was not)
        self.served = 0
        self.ready: collections.deque[Conn] = collections.deque()
        self.poller: Poller = None  # type: ignore[assignment]  # made in run()
        self.pools: list[Runners] = []
        self._wake_r, self._wake_w = os.pipe()
        self.board = board  # --stats: the counters shared with the master
        self.board_slot = board_slot
        self.errors_lock = threading.Lock()

    # -- what threads and signals call --------------------------------------------------

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True
        self.take_queue = True

    def _retire(self, signum: int, frame: object) -> None:
        self.stopping = True

    def recycle(self, why: int) -> None:
        """Ask the master for a replacement (once); serve on until it says stop."""
        if self.recycling:
            return
        self.recycling = why
        self._tell(why)

    def hand_over(self, conn: Conn) -> None:
        """The poller completed a request: a thread is to run it."""
        conn.queued = True
        self.ready.append(conn)
        for pool in self.pools:
            pool.summon()

    def _tell(self, what: int) -> bool:
        try:
            if os.getppid() != self.parent:
                raise BrokenPipeError
            os.write(self.ready_fd, MESSAGE.pack(os.getpid(), what))
        except OSError:
            self.log.warning("the master process is gone; stopping")
            self.stopping = self.take_queue = True
            return False
        return True

    # -- the main thread ------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._retire)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)  # a signal wakes the main loop's select()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)  # see WORKER_SIGNALS
        try:
            make_handler = self.boot()
        except Exception as exc:  # one line; boot() logs a traceback in debug mode
            self.log.error("%s", exc)
            return BOOT_ERROR
        for listener in self.listeners:
            set_timeouts(listener.sock, TICK, self.write_timeout)
        # What the application loaded lives as long as the worker: keep it out
        # of the collector's way (fewer objects to walk on every collection).
        gc.freeze()
        count = len(self.listeners)
        states = []
        for number, listener in enumerate(self.listeners):
            indexes = range(number, max(self.threads, count), count)
            pool_states = [ThreadState(self, index) for index in indexes]
            handlers = [make_handler(state) for state in pool_states]
            pool = Runners(self, listener, handlers, TICK)
            for state in pool_states:
                state.pool = pool
            states += pool_states
            self.pools.append(pool)
        intake = make_handler(ThreadState(self, 0))  # the poller's: begin/collect/peer only
        config = self.config
        self.poller = Poller(intake, self.hand_over, limit=config.max_parked,
                             read_timeout=config.read_timeout,
                             keepalive_timeout=config.keepalive_timeout, log=self.log,
                             tick=TICK, gauge=self.board.parked(self.board_slot)
                             if self.board is not None else None)
        self.poller.start()
        for pool in self.pools:
            pool.start()
        status = 0 if self._tell(READY) else ORPHANED
        while not self.stopping:
            self._wait(TICK)
            if os.getppid() != self.parent:
                self.log.warning("the master process is gone; stopping")
                self.stopping = self.take_queue = True
                status = ORPHANED
            elif self.max_rss and not self.recycling and rss() > self.max_rss:
                self.recycle(RECYCLE_RSS)
        self._finish(config.graceful_timeout)
        return RECYCLED if self.recycling and not status else status

    def _wait(self, seconds: float) -> None:
        try:
            select.select([self._wake_r], [], [], seconds)
            os.read(self._wake_r, 4096)
        except (BlockingIOError, InterruptedError):
            pass

    def _finish(self, graceful_timeout: float) -> None:
        """Stop without resets: take the listen queue, serve it and what is in flight,
        then close this process's copy of the listening sockets."""
        deadline = time.monotonic() + graceful_timeout
        self.poller.stop()
        for pool in self.pools:
            pool.summon()
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            # Done when twice in a row nothing was in the listen queue, no thread
            # accepts (a runner leaves accept() within a tick) or serves, nothing
            # is parked with a request owed and nothing waits to be served: a
            # connection moves thread -> poller -> ready, and the checks run in
            # that order so that one in motion is seen.
            taken = self._take_queued() if self.take_queue else 0
            busy = any(pool.busy() for pool in self.pools) or self._running()
            pending = busy or self.poller.waiting() or self.ready
            quiet = 0 if taken or pending else quiet + 1
            time.sleep(0.01)
        # The socket itself lives on in the master and in the other workers
        # (a reload keeps serving); only this process stops taking connections.
        for listener in self.listeners:
            listener.sock.close()
        self.finished = True
        for pool in self.pools:
            for _ in pool.threads:
                pool.summon()
            pool.join()
        self.poller.finish()
        self.poller.join(1.0)

    def _running(self) -> bool:
        """A request is being answered by one of this worker's threads."""
        return any(self.slots)

    def _take_queued(self) -> int:
        """Accept every connection waiting in the listen queues, without waiting.

        Never by making the listening socket non-blocking: O_NONBLOCK belongs to
        the open file description, which the master and every other worker
        share, and their accept() would then spin.  poll() says a connection is
        queued; if another worker takes it first, accept() returns within a tick
        (SO_RCVTIMEO)."""
        taken = 0
        for listener in self.listeners:
            sock = listener.sock
            family, kind = sock.family, sock.type
            send_timeout = timeval(self.write_timeout) if family == _socket.AF_UNIX else None
            while True:
                try:
                    if not select.select([sock], [], [], 0)[0]:
                        break
                except (OSError, ValueError):
                    break
                try:
                    fd, address = sock._accept()  # type: ignore[attr-defined]
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                        continue
                    break
                conn = Conn(Channel(_socket.socket(family, kind, 0, fd), send_timeout),
                            address)
                conn.queued = True
                self.ready.append(conn)
                taken += 1
            for pool in self.pools:
                pool.summon()
        return taken
