"""Processes x threads: a supervising master and its worker processes.

Theory of operation
-------------------
The master opens the listening sockets, forks ``processes`` workers and then
only supervises; it never touches a request.  Each worker imports the
application (so a reload imports it afresh) and runs ``threads`` threads
(:mod:`gateways.server.runners`): a thread calls ``accept()`` on the shared
listening socket itself and serves the connection it got from start to end;
how many threads accept at once follows how many the application keeps
busy.  There is no queue, no hand-off between threads, and no lock on the
request path.

Every listening socket carries ``SO_RCVTIMEO`` = ``TICK`` and ``SO_SNDTIMEO``
= the read timeout; accepted TCP sockets inherit both, accepted unix sockets
are given them (Linux makes those at connect() time, not from the listener).  So a thread blocked in
``accept()`` or ``recv()`` wakes at least every ``TICK`` seconds with
``BlockingIOError`` to look at the stop flag and at how long its peer has
stalled, without a poll() call per request; a peer that stops reading our
response makes ``send`` fail after the read timeout.

A worker thread marks its slot in a shared array with the time a request
started and clears it at the end.  The master reads the array every tick and
kills a worker whose request has run past ``--timeout``.

Signals (master): SIGTERM, SIGINT: stop accepting, let requests in flight
finish within ``--graceful-timeout``, then stop.  SIGQUIT: stop now.
SIGHUP: start new workers (they import the application afresh); as each is
ready, an old one is told to finish its requests and exit.  If the new
workers cannot load the application, the old ones carry on.
A worker that dies is replaced; one that served ``--max-requests`` exits
and is replaced; workers exit when the master is gone.
"""

import gc
import mmap
import os
import random
import select
import signal
import struct
import time

from gateways.server.runners import Runners, set_timeouts

TICK = 0.5
BOOT_ERROR = 3  # worker exit status: the application could not be loaded
RECYCLED = 4  # worker exit status: --max-requests reached
ORPHANED = 5  # worker exit status: the master is gone

_PID = struct.Struct("=I")


class ThreadState:
    """One worker thread's view of its worker: what a protocol handler calls.

    ``begin()``/``end()`` bracket each request (they feed ``--timeout`` and
    ``--max-requests``); ``stopping`` tells an idle connection to close.
    """

    __slots__ = ("worker", "slot")

    def __init__(self, worker, slot):
        self.worker = worker
        self.slot = slot

    def begin(self):
        self.worker.slots[self.slot] = time.monotonic()

    def end(self):
        worker = self.worker
        slots = worker.slots
        if slots[self.slot]:
            slots[self.slot] = 0.0
            worker.served += 1
            if worker.served == worker.max_requests:
                worker.recycle()  # no thread accepts another connection after this one

    @property
    def stopping(self):
        return self.worker.stopping


def keep_freed_memory(limit=64 * 1024 * 1024):
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

    def __init__(self, listeners, boot, threads, slots, max_requests, write_timeout, log,
                 ready_fd, parent):
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

    def _stop(self, signum, frame):
        self.stopping = True

    def recycle(self):
        """``--max-requests`` reached: finish what is in flight, then exit."""
        self.recycled = True
        self.stopping = True

    def run(self):
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
            os.write(self.ready_fd, _PID.pack(os.getpid()))
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


class _Child:
    __slots__ = ("pid", "index", "generation", "ready", "retiring", "deadline")

    def __init__(self, pid, index, generation):
        self.pid = pid
        self.index = index
        self.generation = generation
        self.ready = False
        self.retiring = False
        self.deadline = None


class Master:
    """Forks and supervises the workers (see the module docstring)."""

    def __init__(self, listeners, boot, *, processes, threads, timeout, graceful_timeout,
                 max_requests=0, max_requests_jitter=0, write_timeout=30.0, log,
                 pid_file=None, name="gateways"):
        self.listeners = listeners
        self.boot = boot
        self.processes = processes
        self.threads = max(threads, len(listeners))
        self.timeout = timeout
        self.graceful_timeout = graceful_timeout
        self.max_requests = max_requests
        self.jitter = max_requests_jitter
        self.write_timeout = write_timeout
        self.log = log
        self.pid_file = pid_file
        self.name = name
        self.children = {}
        self.generation = 0
        self.ever_ready = False
        self.stopping = False
        self.stop_deadline = None
        self.status = 0
        self.respawn_after = 0.0
        self.signals = []
        # Request start times, one double per thread per worker slot; twice the
        # workers, so a reload can overlap the old and the new generation.
        self.slot_count = 2 * processes
        self._shm = mmap.mmap(-1, 8 * self.slot_count * self.threads)
        self.slots = memoryview(self._shm).cast("d")

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum, frame):
        self.signals.append(signum)

    def _install_signals(self):
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
                       signal.SIGCHLD):
            signal.signal(signum, self._on_signal)

    # -- workers ------------------------------------------------------------------------

    def _spawn(self):
        used = {c.index for c in self.children.values()}
        free = [i for i in range(self.slot_count) if i not in used]
        if not free:
            return False
        index = free[0]
        base = index * self.threads
        self.slots[base:base + self.threads] = memoryview(bytes(8 * self.threads)).cast("d")
        max_requests = self.max_requests
        if max_requests and self.jitter:
            max_requests += random.randint(0, self.jitter)  # noqa: S311 - not security
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGCHLD,):
                    signal.signal(signum, signal.SIG_DFL)
                os.close(self._wake_r)
                os.close(self._wake_w)
                os.close(self._ready_r)
                worker = Worker(self.listeners, self.boot, self.threads,
                                self.slots[base:base + self.threads], max_requests,
                                self.write_timeout, self.log, self._ready_w, parent)
                status = worker.run()
            except BaseException:
                self.log.exception("worker failed")
            finally:
                os._exit(status)
        self.children[pid] = _Child(pid, index, self.generation)
        self.log.debug("started worker %d", pid)
        return True

    def _read_ready(self):
        try:
            data = os.read(self._ready_r, 4096)
        except BlockingIOError:
            return
        for (pid,) in _PID.iter_unpack(data[: len(data) - len(data) % 4]):
            child = self.children.get(pid)
            if child is None:
                continue
            child.ready = True
            if not self.ever_ready:
                self.ever_ready = True
                self.log.info("%s ready: %d worker process(es) x %d thread(s) on %s", self.name,
                              self.processes, self.threads,
                              ", ".join(lst.name for lst in self.listeners))
            if child.generation == self.generation:
                for old in self.children.values():
                    if old.generation < self.generation and not old.retiring:
                        self._retire(old, "replaced by worker %d" % pid)
                        break

    def _retire(self, child, why):
        child.retiring = True
        child.deadline = time.monotonic() + self.graceful_timeout
        self.log.info("worker %d: finishing its requests (%s)", child.pid, why)
        self._kill(child.pid, signal.SIGTERM)

    def _kill(self, pid, signum):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _reap(self):
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                self._exited(child, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, child, code):
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
            self.log.info("worker %d served --max-requests; starting a new one", child.pid)
        elif code < 0:
            self.log.warning("worker %d was killed by signal %d; starting a new one",
                             child.pid, -code)
        else:
            self.log.warning("worker %d exited with status %d; starting a new one",
                             child.pid, code)

    def _check_timeouts(self, now):
        slots = self.slots
        for child in list(self.children.values()):
            if child.retiring and child.deadline and now > child.deadline:
                self.log.warning("worker %d did not finish within --graceful-timeout; killing it",
                                 child.pid)
                child.deadline = None
                self._kill(child.pid, signal.SIGKILL)
                continue
            base = child.index * self.threads
            for start in slots[base:base + self.threads]:
                if start and now - start > self.timeout:
                    self.log.error("worker %d: a request ran for more than --timeout %g s; "
                                   "killing the worker", child.pid, self.timeout)
                    self.slots[base:base + self.threads] = memoryview(
                        bytes(8 * self.threads)).cast("d")
                    self._kill(child.pid, signal.SIGKILL)
                    break

    def _maintain(self, now):
        if self.stopping or now < self.respawn_after:
            return
        current = [c for c in self.children.values()
                   if c.generation == self.generation and not c.retiring]
        # The first worker of a generation (the start, each reload) boots
        # alone: if the application cannot be loaded, the operator reads that
        # once, not once per process.
        wanted = self.processes if any(c.ready for c in current) else 1
        for _ in range(wanted - len(current)):
            if not self._spawn():
                break

    def _reload(self):
        if self.stopping:
            return
        self.log.info("SIGHUP: starting new workers; the old ones finish their requests")
        self.generation += 1
        self.respawn_after = 0.0

    def _stop(self, graceful=True):
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + (self.graceful_timeout if graceful else 0.0)
            # New connections are refused (and the socket file is gone) at
            # once, so a web server can fail over instead of queueing.
            for listener in self.listeners:
                listener.close(remove=not listener.inherited)
        for child in self.children.values():
            self._kill(child.pid, signal.SIGTERM if graceful else signal.SIGKILL)

    def _handle_signals(self):
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

    # -- main loop ----------------------------------------------------------------------

    def run(self):
        """Supervise until told to stop; returns the exit status."""
        self._ready_r, self._ready_w = os.pipe()
        os.set_blocking(self._ready_r, False)
        self._install_signals()
        try:
            while True:
                now = time.monotonic()
                self._maintain(now)
                try:
                    readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], TICK)
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
                now = time.monotonic()
                self._check_timeouts(now)
                if self.stopping:
                    if not self.children:
                        break
                    if now > self.stop_deadline:
                        for child in self.children.values():
                            self._kill(child.pid, signal.SIGKILL)
                        self.stop_deadline = now + 5.0
        finally:
            self._cleanup()
        return self.status

    def _cleanup(self):
        # A late SIGTERM (a web server stopping us twice) must not kill the
        # interpreter while it exits: the exit status stays what it is.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for listener in self.listeners:
            listener.close(remove=not listener.inherited)
        if self.pid_file is not None:
            self.pid_file.release()
        signal.set_wakeup_fd(-1)
