"""A worker process: it loads the application and runs the threads that serve.

The master (:mod:`gateways.server.master`) forks it and tells it what to do
with signals; the threads (:mod:`gateways.server.runners`) accept the
connections themselves.  Each worker thread marks its slot in an array the
master shares with the time its request started and clears it at the end:
that is how the master sees ``--timeout``, and how the worker counts
``--max-requests``.

Every listening socket carries ``SO_RCVTIMEO`` = ``TICK`` and ``SO_SNDTIMEO``
= the read timeout; accepted TCP sockets inherit both, accepted unix sockets
are given them by their channel when a call would block.  So a thread
blocked in ``accept()`` or ``recv()`` wakes at least every ``TICK`` seconds
to look at the stop flag and at how long its peer has stalled, without a
poll() per request.

Signals (worker): SIGTERM, SIGINT: stop accepting, finish the requests in
flight, exit.  SIGHUP is the master's business (ignored here).  A worker
exits when its master is gone.
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import time

from gateways.server.runners import Runners, set_timeouts

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger
    from types import FrameType

    from gateways.server.listen import Listener
    from gateways.server.runners import ConnectionHandler

    # What the master's boot function returns, in the worker: it makes each thread's
    # connection handler (gateways.server.handler.BaseHandler.factory).
    HandlerFactory = Callable[["ThreadState"], ConnectionHandler]

TICK = 0.5
BOOT_ERROR = 3  # worker exit status: the application could not be loaded
RECYCLED = 4  # worker exit status: --max-requests reached
ORPHANED = 5  # worker exit status: the master is gone

PID = struct.Struct("=I")  # what a worker writes to the master's ready pipe


class ThreadState:
    """One worker thread's view of its worker: what a protocol handler calls.

    ``begin()``/``end()`` bracket each request (they feed ``--timeout`` and
    ``--max-requests``); ``stopping`` tells an idle connection to close.
    """

    __slots__ = ("worker", "slot")
    tick = TICK  # the longest a blocked call waits before it looks at the flags

    def __init__(self, worker: Worker, slot: int) -> None:
        self.worker = worker
        self.slot = slot

    def begin(self) -> None:
        self.worker.slots[self.slot] = time.monotonic()

    def end(self) -> None:
        worker = self.worker
        slots = worker.slots
        if slots[self.slot]:
            slots[self.slot] = 0.0
            worker.served += 1
            if worker.served == worker.max_requests:
                worker.recycle()  # no thread accepts another connection after this one

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


class Worker:
    """A worker process: loads the application, runs the accepting threads."""

    def __init__(self, listeners: list[Listener], boot: Callable[[], HandlerFactory],
                 threads: int, slots: memoryview[float], max_requests: int,
                 write_timeout: float, log: Logger, ready_fd: int, parent: int) -> None:
        self.listeners = listeners
        self.boot = boot
        self.threads = threads
        self.slots = slots
        self.max_requests = max_requests
        self.write_timeout = write_timeout
        self.log = log
        self.ready_fd = ready_fd
        self.parent = parent
        self.stopping = False
        self.recycled = False
        self.served = 0

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def recycle(self) -> None:
        """``--max-requests`` reached: finish what is in flight, then exit."""
        self.recycled = True
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
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
        keep_freed_memory()
        pools = []
        count = len(self.listeners)
        for number, listener in enumerate(self.listeners):
            indexes = range(number, max(self.threads, count), count)
            handlers = [make_handler(ThreadState(self, index)) for index in indexes]
            pools.append(Runners(self, listener, handlers, TICK))
        for pool in pools:
            pool.start()
        status = 0
        try:
            if os.getppid() != self.parent:
                raise BrokenPipeError
            os.write(self.ready_fd, PID.pack(os.getpid()))
        except OSError:
            self.log.warning("the master process is gone; stopping")
            self.stopping, status = True, ORPHANED
        while not self.stopping:
            time.sleep(TICK)
            if os.getppid() != self.parent:
                self.log.warning("the master process is gone; stopping")
                self.stopping, status = True, ORPHANED
        # Stop taking connections in this process; the socket itself lives on
        # in the master and in the other workers (a reload keeps serving).
        for listener in self.listeners:
            listener.sock.close()
        for pool in pools:
            pool.join()
        return RECYCLED if self.recycled and not status else status
