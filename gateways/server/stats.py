"""``--stats ADDRESS``: what the daemon is doing, for people and for Prometheus.

Counting costs the request path next to nothing: each worker thread adds to
counters of its own in memory the master shares with its workers (no lock, no
message, a few float additions per request: requests answered, 4xx and 5xx
answers, application exceptions); a worker's poller writes how many
connections are parked; a protocol error (rare) adds to a counter per kind.
The master reads them when asked, adds what it knows itself (its workers,
their pid, start, RSS from /proc, the reason a worker is being recycled, the
workers it had to start again) and keeps the counts of the workers that
exited, so that the totals survive a recycle or a kill.

The master answers plain HTTP/1.0 on ADDRESS (``unix:PATH``, mode and group
as ``--socket-mode``/``--socket-group``, or ``HOST:PORT``): ``GET /`` is JSON,
``GET /metrics`` the same in Prometheus' text exposition format (no client
library needed for it).  A stats client that sends nothing is dropped after a
second; the master never waits on one.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import time

from gateways.protocol import ProtocolError, Truncated
from gateways.protocol import fastcgi as _fastcgi
from gateways.protocol import scgi as _scgi
from gateways.protocol import uwsgi as _uwsgi

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from logging import Logger
    from typing import Any

    from gateways.server.listen import Listener

# Per thread: requests answered, 4xx answers, 5xx answers, application exceptions.
REQUESTS, CLIENT_ERRORS, SERVER_ERRORS, APP_EXCEPTIONS = range(4)
THREAD_FIELDS = 4
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _kinds() -> list[type[ProtocolError]]:
    """Every violation a core can name, in a fixed order (a counter each)."""
    found: list[type[ProtocolError]] = [Truncated]
    for module in (_fastcgi, _scgi, _uwsgi):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, ProtocolError) and (
                    value not in found and value.__module__ == module.__name__):
                found.append(value)
    return found


KINDS = _kinds()
KIND_INDEX = {kind: index for index, kind in enumerate(KINDS)}


class Board:
    """The counters the master shares with its workers: one region per worker slot."""

    def __init__(self, slots: int, threads: int) -> None:
        self.threads = threads
        self.size = threads * THREAD_FIELDS + 1 + len(KINDS) + 1  # + parked, kinds, other
        self._shm = mmap.mmap(-1, 8 * slots * self.size)
        self.cells = memoryview(self._shm).cast("d")

    def region(self, slot: int) -> memoryview[float]:
        base = slot * self.size
        return self.cells[base:base + self.size]

    def thread(self, slot: int, thread: int) -> memoryview[float]:
        """The counters of one worker thread (REQUESTS... APP_EXCEPTIONS)."""
        base = slot * self.size + thread * THREAD_FIELDS
        return self.cells[base:base + THREAD_FIELDS]

    def parked(self, slot: int) -> memoryview[float]:
        base = slot * self.size + self.threads * THREAD_FIELDS
        return self.cells[base:base + 1]

    def errors(self, slot: int) -> memoryview[float]:
        base = slot * self.size + self.threads * THREAD_FIELDS + 1
        return self.cells[base:base + len(KINDS) + 1]

    def clear(self, slot: int) -> None:
        self.region(slot)[:] = memoryview(bytes(8 * self.size)).cast("d")

    def read(self, slot: int) -> dict[str, Any]:
        """One worker's counts: requests, 4xx, 5xx, exceptions, parked, errors by kind."""
        counts = [0.0] * THREAD_FIELDS
        for thread in range(self.threads):
            for field, value in enumerate(self.thread(slot, thread)):
                counts[field] += value
        errors = self.errors(slot)
        return {"requests": int(counts[REQUESTS]), "responses_4xx": int(counts[CLIENT_ERRORS]),
                "responses_5xx": int(counts[SERVER_ERRORS]),
                "app_exceptions": int(counts[APP_EXCEPTIONS]),
                "parked": int(self.parked(slot)[0]),
                "protocol_errors": {kind.__name__: int(errors[index])
                                    for index, kind in enumerate(KINDS) if errors[index]}}


def count_error(errors: memoryview[float] | None, exc: BaseException) -> None:
    """Add one to the counter of ``exc``'s kind (the last counter: any other)."""
    if errors is not None:
        errors[KIND_INDEX.get(type(exc), len(KINDS))] += 1  # type: ignore[arg-type]


def rss(pid: int) -> int:
    """The resident memory of ``pid`` in bytes (0 when it is gone)."""
    try:
        with open("/proc/%d/statm" % pid, "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def merge(total: dict[str, Any], counts: dict[str, Any]) -> None:
    """Add a worker's counts into ``total`` (the parked count is not a total)."""
    for key in ("requests", "responses_4xx", "responses_5xx", "app_exceptions"):
        total[key] = total.get(key, 0) + counts.get(key, 0)
    errors = total.setdefault("protocol_errors", {})
    for kind, value in counts.get("protocol_errors", {}).items():
        errors[kind] = errors.get(kind, 0) + value


# -- the answers ----------------------------------------------------------------------------


def to_json(snapshot: dict[str, Any]) -> bytes:
    return json.dumps(snapshot, indent=1, sort_keys=True).encode() + b"\n"


def to_metrics(snapshot: dict[str, Any]) -> bytes:
    """The snapshot in Prometheus' text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
        lines.append("# HELP gateways_%s %s" % (name, text))
        lines.append("# TYPE gateways_%s %s" % (name, kind))
        for labels, value in samples:
            lines.append("gateways_%s%s %s" % (name, labels, _number(value)))

    totals = snapshot["totals"]
    info = '{version="%s",gateway="%s"}' % (snapshot["version"], snapshot["gateway"])
    metric("info", "gauge", "The daemon: its version and gateway.", [(info, 1)])
    metric("start_time_seconds", "gauge", "When the master started (Unix time).",
           [("", snapshot["started"])])
    metric("requests_total", "counter", "Requests answered (by the application or refused).",
           [("", totals["requests"])])
    metric("responses_total", "counter", "Answers by status class (4xx, 5xx).",
           [('{class="4xx"}', totals["responses_4xx"]),
            ('{class="5xx"}', totals["responses_5xx"])])
    metric("app_exceptions_total", "counter", "Exceptions the application raised.",
           [("", totals["app_exceptions"])])
    metric("protocol_errors_total", "counter", "Connections closed for a protocol violation.",
           [('{kind="%s"}' % kind, value)
            for kind, value in sorted(totals["protocol_errors"].items())] or [
            ('{kind="none"}', 0)])
    metric("workers_respawned_total", "counter", "Workers started again after one died.",
           [("", totals["workers_respawned"])])
    metric("workers_recycled_total", "counter",
           "Workers replaced by --max-requests, --max-rss or --timeout.",
           [("", totals["workers_recycled"])])
    workers = snapshot["workers"]
    metric("workers", "gauge", "Worker processes running.", [("", len(workers))])
    # Labelled by worker slot (bounded: 2 x processes + 2), not by pid: a pid label
    # would make new series at every recycle.
    per = [('{worker="%d"}' % w["id"], w) for w in workers]
    metric("worker_requests_total", "counter", "Requests answered, per worker.",
           [(label, w["requests"]) for label, w in per])
    metric("worker_threads_busy", "gauge", "Threads running the application, per worker.",
           [(label, w["threads_busy"]) for label, w in per])
    metric("worker_threads", "gauge", "Threads, per worker.",
           [(label, w["threads"]) for label, w in per])
    metric("worker_parked_connections", "gauge", "Connections waiting without a thread.",
           [(label, w["parked"]) for label, w in per])
    metric("worker_resident_memory_bytes", "gauge", "Resident memory, per worker.",
           [(label, w["rss"]) for label, w in per])
    return ("\n".join(lines) + "\n").encode()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def answer(request: bytes, snapshot: Any) -> bytes:
    """The HTTP answer to ``request`` (its first line is enough)."""
    line = request.split(b"\r\n", 1)[0].split()
    method, target = (line + [b"", b""])[:2]
    path = target.split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return _http(b"405 Method Not Allowed", b"text/plain", b"GET / or GET /metrics\n")
    if path == b"/":
        body, kind = to_json(snapshot()), b"application/json"
    elif path == b"/metrics":
        body, kind = to_metrics(snapshot()), b"text/plain; version=0.0.4"
    else:
        return _http(b"404 Not Found", b"text/plain", b"GET / or GET /metrics\n")
    return _http(b"200 OK", kind, body, head_only=method == b"HEAD")


def _http(status: bytes, kind: bytes, body: bytes, head_only: bool = False) -> bytes:
    return (b"HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close"
            b"\r\n\r\n%s" % (status, kind, len(body), b"" if head_only else body))


class StatsServer:
    """The master's plain HTTP listener (see the module docstring): never blocks it."""

    TIMEOUT = 1.0

    def __init__(self, listener: Listener, snapshot: Any, log: Logger) -> None:
        self.listener = listener
        self.snapshot = snapshot
        self.log = log
        listener.sock.setblocking(False)
        self.clients: dict[int, tuple[socket.socket, bytes, float]] = {}

    def fds(self) -> list[int]:
        return [self.listener.sock.fileno(), *self.clients]

    def handle(self, readable: list[int]) -> None:
        if self.listener.sock.fileno() in readable:
            self._accept()
        now = time.monotonic()
        for fd in list(self.clients):
            sock, data, deadline = self.clients[fd]
            if fd in readable:
                try:
                    chunk = sock.recv(8192)
                except BlockingIOError:
                    chunk = None
                except OSError:
                    chunk = b""
                if chunk == b"":
                    self._drop(fd)
                    continue
                if chunk:
                    data += chunk
                    self.clients[fd] = (sock, data, deadline)
                if b"\r\n\r\n" in data or b"\n\n" in data or len(data) > 8192:
                    try:
                        sock.send(answer(data, self.snapshot))
                    except OSError:
                        pass
                    self._drop(fd)
                    continue
            if now > deadline:
                self._drop(fd)

    def _accept(self) -> None:
        while len(self.clients) < 64:
            try:
                sock, _ = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.log.debug("stats: accept() failed: %s", exc)
                return
            sock.setblocking(False)
            self.clients[sock.fileno()] = (sock, b"", time.monotonic() + self.TIMEOUT)

    def _drop(self, fd: int) -> None:
        sock, _, _ = self.clients.pop(fd)
        sock.close()

    def close(self, in_child: bool = False) -> None:
        """Close the listener (a forked worker: only its copy, the file stays)."""
        for fd in list(self.clients):
            self._drop(fd)
        if in_child:
            self.listener.sock.close()
        else:
            self.listener.close(remove=not self.listener.inherited)
