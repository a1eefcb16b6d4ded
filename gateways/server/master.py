"""The master process: it forks the workers and supervises them, never a request.

Theory of operation
-------------------
The master opens the listening sockets, forks ``processes`` workers
(:mod:`gateways.server.worker`) and then only supervises: it reaps them,
replaces the ones that die, kills one whose request ran past ``--timeout``
(it reads the request start times the workers write into shared memory every
tick) and handles the signals:

SIGTERM, SIGINT
    stop accepting, let requests in flight finish within
    ``--graceful-timeout``, then stop.
SIGQUIT
    stop now.
SIGHUP
    start new workers (they import the application afresh); as each is
    ready, an old one is told to finish its requests and exit.  If the new
    workers cannot load the application, the old ones carry on.

A worker that served ``--max-requests`` exits and is replaced.  The first
worker of a generation (the start, each reload) boots alone, so that an
application that cannot be loaded is reported once, not once per process.
"""

from __future__ import annotations

import mmap
import os
import random
import select
import signal
import time

from gateways._version import __version__
from gateways.server.stats import Board, StatsServer, merge, rss
from gateways.server.worker import (
    BOOT_ERROR,
    MESSAGE,
    READY,
    RECYCLE_REQUESTS,
    RECYCLE_RSS,
    RECYCLED,
    TICK,
    WORKER_SIGNALS,
    Worker,
    keep_freed_memory,
)

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable
    from logging import Logger
    from types import FrameType
    from typing import Any

    from gateways.server.listen import Listener
    from gateways.server.pidfile import PidFile
    from gateways.server.worker import HandlerFactory


class _Child:
    __slots__ = ("pid", "index", "generation", "ready", "retiring", "deadline", "replace",
                 "timed_out", "started")

    def __init__(self, pid: int, index: int, generation: int) -> None:
        self.pid = pid
        self.started = time.time()
        self.index = index
        self.generation = generation
        self.ready = False
        self.retiring = False
        self.deadline: float | None = None
        self.replace = ""  # why it is to be replaced once a new worker is ready
        self.timed_out = False  # a request of it ran past --timeout


class Master:
    """Forks and supervises the workers (see the module docstring)."""

    def __init__(self, listeners: list[Listener], boot: Callable[[], HandlerFactory], *,
                 processes: int, threads: int, timeout: float, graceful_timeout: float,
                 max_requests: int = 0, max_requests_jitter: int = 0,
                 log: Logger, pid_file: PidFile | None = None,
                 name: str = "gateways", config: Any = None,
                 stats: Listener | None = None) -> None:
        self.listeners = listeners
        self.boot = boot
        self.processes = processes
        self.threads = max(threads, len(listeners))
        self.timeout = timeout
        self.graceful_timeout = graceful_timeout
        self.max_requests = max_requests
        self.jitter = max_requests_jitter
        self.log = log
        self.pid_file = pid_file
        self.name = name
        self.config = config
        self.children: dict[int, _Child] = {}
        self._messages = b""
        self.generation = 0
        self.ever_ready = False
        self.stopping = False
        self.stop_deadline: float | None = None  # set by _stop()
        self.status = 0
        self.respawn_after = 0.0
        self.signals: list[int] = []
        # Request start times, one double per thread per worker slot; four times
        # the workers and two, so that a reload, recycles (a retiring worker
        # lingers up to a tick while its threads leave accept()) and
        # replacements overlap.
        self.slot_count = 4 * processes + 2
        self._shm = mmap.mmap(-1, 8 * self.slot_count * self.threads)
        self.slots = memoryview(self._shm).cast("d")
        # --stats: the workers' counters, and what the master keeps itself
        self.board = Board(self.slot_count, self.threads) if stats is not None else None
        self.stats = StatsServer(stats, self.snapshot, log) if stats is not None else None
        self.started = time.time()
        self.retired: dict[str, Any] = {}  # the counts of the workers that exited
        self.respawned = 0  # workers started again after one died
        self.recycled = 0  # workers recycled (--max-requests, --max-rss, --timeout)
        self.last_recycle: dict[str, Any] | None = None

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                       signal.SIGCHLD):
            signal.signal(signum, self._on_signal)

    # -- workers ------------------------------------------------------------------------

    def _spawn(self) -> bool:
        used = {c.index for c in self.children.values()}
        free = [i for i in range(self.slot_count) if i not in used]
        if not free:
            return False
        index = free[0]
        base = index * self.threads
        self.slots[base:base + self.threads] = memoryview(bytes(8 * self.threads)).cast("d")
        if self.board is not None:
            self.board.clear(index)
        max_requests = self.max_requests
        if max_requests and self.jitter:
            max_requests += random.randint(0, self.jitter)  # noqa: S311 - not security
        parent = os.getpid()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the worker (its Worker.run() unblocks WORKER_SIGNALS)
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD,):
                    signal.signal(signum, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                os.close(self._ready_r)
                if self.stats is not None:
                    self.stats.close(in_child=True)
                worker = Worker(self.listeners, self.boot, self.threads,
                                self.slots[base:base + self.threads], max_requests,
                                config=self.config, log=self.log, ready_fd=self._ready_w,
                                parent=parent, board=self.board, board_slot=index)
                status = worker.run()
            except BaseException:
                self.log.exception("worker failed")
            finally:
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.children[pid] = _Child(pid, index, self.generation)
        self.log.debug("started worker %d", pid)
        return True

    def _read_ready(self) -> None:
        """What the workers wrote to the pipe: READY, or asking to be recycled."""
        try:
            data = self._messages + os.read(self._ready_r, 4096)
        except BlockingIOError:
            return
        whole = len(data) - len(data) % MESSAGE.size
        self._messages = data[whole:]
        for pid, what in MESSAGE.iter_unpack(data[:whole]):
            child = self.children.get(pid)
            if child is None:
                continue
            if what == READY:
                self._ready(child)
            elif not child.replace and not child.retiring:
                why = ("served --max-requests" if what == RECYCLE_REQUESTS else
                       "passed --max-rss" if what == RECYCLE_RSS else "asked")
                child.replace = why
                self._recycling(child, why)
                self.log.info("worker %d %s: starting its replacement", pid, why)

    def _ready(self, child: _Child) -> None:
        child.ready = True
        if not self.ever_ready:
            self.ever_ready = True
            self.log.info("%s ready: %d worker process(es) x %d thread(s) on %s%s", self.name,
                          self.processes, self.threads,
                          ", ".join(lst.name for lst in self.listeners),
                          "; stats on %s" % self.stats.listener.name if self.stats else "")
        if child.generation != self.generation:
            return
        # A new worker serves: one it replaces may go now (no gap in between).
        for old in self.children.values():
            if old.generation < self.generation and not old.retiring:
                self._retire(old, "replaced by worker %d" % child.pid)
                return
        for old in self.children.values():
            if old.replace and not old.retiring and old is not child:
                self._retire(old, "%s; replaced by worker %d" % (old.replace, child.pid))
                return

    def _retire(self, child: _Child, why: str) -> None:
        child.retiring = True
        child.deadline = time.monotonic() + self.graceful_timeout
        self.log.info("worker %d: finishing its requests (%s)", child.pid, why)
        self._kill(child.pid, signal.SIGUSR1)  # retire: the others serve the listen queue

    def _kill(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                if self.board is not None:  # its counts stay in the totals
                    merge(self.retired, self.board.read(child.index))
                self._exited(child, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, child: _Child, code: int) -> None:
        if self.stopping or child.retiring:
            self.log.debug("worker %d exited (%s)", child.pid, code)
            return
        if code == BOOT_ERROR:
            if not self.ever_ready:
                self.log.debug("the application could not be loaded; stopping")
                self.status = 2
                self._stop(graceful=False)
                return
            older = [c for c in self.children.values()
                     if c.generation < self.generation and c.ready and not c.retiring]
            if child.generation == self.generation and older:
                self.log.error("reload failed: the new workers could not load the "
                               "application; the running workers carry on")
                for c in list(self.children.values()):
                    if c.generation == self.generation:
                        self._retire(c, "reload failed")
                self.generation = max(c.generation for c in older)
                return
            self.log.error("a new worker could not load the application; retrying in 2 s")
            self.respawn_after = time.monotonic() + 2.0
            return
        if code == RECYCLED:
            self.log.info("worker %d was recycled; starting a new one", child.pid)
            return
        self.respawned += 1
        if code < 0:
            self.log.warning("worker %d was killed by signal %d; starting a new one",
                             child.pid, -code)
        else:
            self.log.warning("worker %d exited with status %d; starting a new one",
                             child.pid, code)

    def _check_timeouts(self, now: float) -> None:
        """--timeout: a worker whose request runs too long is replaced first, told to
        finish its other requests, and killed as soon as only the stuck ones are
        left (a thread cannot be stopped in CPython); --graceful-timeout bounds it."""
        slots, timeout = self.slots, self.timeout
        for child in list(self.children.values()):
            base = child.index * self.threads
            running = [start for start in slots[base:base + self.threads] if start]
            stuck = sum(1 for start in running if now - start > timeout)
            if stuck and not child.timed_out:
                child.timed_out = True
                self.log.error("worker %d: a request ran for more than --timeout %g s; "
                               "replacing the worker", child.pid, timeout)
                if not child.retiring:
                    if not child.replace:
                        child.replace = "a request timed out"
                        self._recycling(child, child.replace)
                    if not self._has_spare_ready(child):
                        continue
                    self._retire(child, "a request timed out")
            if child.timed_out and child.retiring and child.deadline is not None and (
                    stuck == len(running) or now > child.deadline):
                lost = len(running) - stuck
                self.log.error("worker %d: killed; its request ran for more than --timeout "
                               "%g s%s", child.pid, timeout,
                               " (%d other request(s) in flight were lost)" % lost
                               if lost else "")
                self._clear_slots(child)
                child.deadline = None
                self._kill(child.pid, signal.SIGKILL)
            elif child.retiring and child.deadline and now > child.deadline:
                self.log.warning("worker %d did not finish within --graceful-timeout; killing it",
                                 child.pid)
                child.deadline = None
                self._kill(child.pid, signal.SIGKILL)

    def _has_spare_ready(self, child: _Child) -> bool:
        """Another worker of the current generation serves already."""
        return any(c.ready and not c.retiring and not c.replace and c is not child
                   and c.generation == self.generation for c in self.children.values())

    def _clear_slots(self, child: _Child) -> None:
        base = child.index * self.threads
        self.slots[base:base + self.threads] = memoryview(bytes(8 * self.threads)).cast("d")

    def _maintain(self, now: float) -> None:
        if self.stopping or now < self.respawn_after:
            return
        current = [c for c in self.children.values()
                   if c.generation == self.generation and not c.retiring and not c.replace]
        # The first worker of a generation (the start, each reload) boots
        # alone: if the application cannot be loaded, the operator reads that
        # once, not once per process.
        wanted = self.processes if any(c.ready for c in current) else 1
        for _ in range(wanted - len(current)):
            if not self._spawn():
                break

    def _reload(self) -> None:
        if self.stopping:
            return
        self.log.info("SIGHUP: starting new workers; the old ones finish their requests")
        self.generation += 1
        self.respawn_after = 0.0

    def _stop(self, graceful: bool = True) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + (self.graceful_timeout if graceful else 0.0)
            # New connections are refused (and the socket file is gone) at
            # once, so a web server can fail over instead of queueing; the
            # workers serve what is queued already.
            for listener in self.listeners:
                listener.refuse_new()
                listener.close(remove=not listener.inherited)
        for child in self.children.values():
            self._kill(child.pid, signal.SIGTERM if graceful else signal.SIGKILL)

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                if not self.stopping:
                    self.log.info("stopping: letting requests in flight finish")
                self._stop(graceful=True)
            elif signum == signal.SIGQUIT:
                self.log.info("SIGQUIT: stopping now")
                self._stop(graceful=False)

    # -- --stats ---------------------------------------------------------------------------

    def _recycling(self, child: _Child, why: str) -> None:
        self.recycled += 1
        self.last_recycle = {"pid": child.pid, "reason": why, "at": time.time()}

    def snapshot(self) -> dict[str, Any]:
        """What ``--stats`` answers (gateways.server.stats): the workers and the totals."""
        board = self.board
        assert board is not None  # only --stats asks
        totals = {"requests": 0, "responses_4xx": 0, "responses_5xx": 0, "app_exceptions": 0,
                  "protocol_errors": {}}
        merge(totals, self.retired)
        workers = []
        for child in sorted(self.children.values(), key=lambda c: c.started):
            counts = board.read(child.index)
            merge(totals, counts)
            base = child.index * self.threads
            busy = sum(1 for start in self.slots[base:base + self.threads] if start)
            workers.append({
                "id": child.index, "pid": child.pid, "started": round(child.started, 3),
                "generation": child.generation, "ready": child.ready,
                "requests": counts["requests"], "requests_in_flight": busy,
                "threads_busy": busy, "threads": self.threads, "parked": counts["parked"],
                "rss": rss(child.pid),
                "state": ("stopping" if child.retiring or self.stopping else
                          "recycling" if child.replace else
                          "serving" if child.ready else "starting"),
                "recycle_reason": child.replace or None})
        totals["workers_respawned"] = self.respawned
        totals["workers_recycled"] = self.recycled
        return {"version": __version__, "gateway": self.name, "pid": os.getpid(),
                "started": round(self.started, 3), "now": round(time.time(), 3),
                "listeners": [lst.name for lst in self.listeners],
                "processes": self.processes, "threads": self.threads,
                "stopping": self.stopping, "workers": workers, "totals": totals,
                "last_recycle": self.last_recycle}

    # -- main loop ----------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until told to stop; returns the exit status."""
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        keep_freed_memory()  # once, here: the workers inherit it (and ctypes) at fork
        self._install_signals()
        try:
            while True:
                now = time.monotonic()
                self._maintain(now)
                watched = [self._wake_r, self._ready_r]
                if self.stats is not None:
                    watched += self.stats.fds()
                try:
                    readable, _, _ = select.select(watched, [], [], TICK)
                except InterruptedError:
                    readable = []
                if self._wake_r in readable:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                self._handle_signals()
                self._reap()
                if self._ready_r in readable:
                    self._read_ready()
                if self.stats is not None:
                    self.stats.handle(readable)
                now = time.monotonic()
                self._check_timeouts(now)
                if self.stopping:
                    if not self.children:
                        break
                    if now > self.stop_deadline:  # type: ignore[operator]  # stopping: set
                        for child in self.children.values():
                            self._kill(child.pid, signal.SIGKILL)
                        self.stop_deadline = now + 5.0
        finally:
            self._cleanup()
        return self.status

    def _cleanup(self) -> None:
        # A late SIGTERM (a web server stopping us twice) must not kill the
        # interpreter while it exits: the exit status stays what it is.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for listener in self.listeners:
            listener.close(remove=not listener.inherited)
        if self.stats is not None:
            self.stats.close()
        if self.pid_file is not None:
            self.pid_file.release()
        signal.set_wakeup_fd(-1)
