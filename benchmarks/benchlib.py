"""Helpers shared by the benchmark scripts (standard library only).

* :func:`webservers` imports ``tests/webservers.py``, the fixture library
  that starts real apache2, lighttpd and nginx from config bodies.  That
  module imports pytest only for ``require()``'s skip/fail; when pytest is
  not installed a stand-in whose ``skip``/``fail`` raise ``RuntimeError`` is
  put in its place, so the benchmarks run from any Python >= 3.9.
* :class:`Proc` runs one backend in its own session as the worker user
  (www-data when root) and stops it, and everything it forked, by its pid
  and process group: never by name.
* :func:`stop_on_signals` turns SIGTERM and SIGHUP into KeyboardInterrupt so
  that ``finally:`` blocks stop every process on Ctrl-C, kill or hang-up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(os.environ.get("GATEWAYS_BENCH_DIR", "/var/tmp/gateways-bench"))
VENV = BENCH_DIR / "venv"
FLUP103_VENV = BENCH_DIR / "venv-flup103"
STOP_TIMEOUT = 10.0

_live: set[Proc] = set()


def webservers() -> types.ModuleType:
    """Import and return ``tests/webservers.py`` (see the module docstring)."""
    try:
        import pytest  # noqa: F401
    except ImportError:
        stub = types.ModuleType("pytest")

        def _raise(message: str = "", **_kwargs: object) -> None:
            raise RuntimeError(message)

        stub.skip = stub.fail = _raise
        sys.modules["pytest"] = stub
    # tests/webservers.py imports gateways.tools.confgen (standard library only):
    # from this checkout, whatever the driver's interpreter has installed
    for path in (str(REPO), str(REPO / "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)
    import webservers as module

    return module


def check_venvs(*venvs: Path) -> None:
    """Exit with a hint when ``benchmarks/setup_env.sh`` has not been run."""
    missing = [str(v) for v in venvs if not (v / "bin" / "python").exists()]
    if missing:
        sys.exit(f"missing virtualenv(s) {', '.join(missing)}: run benchmarks/setup_env.sh "
                 "first (or set GATEWAYS_BENCH_DIR)")


def stop_on_signals() -> None:
    """Raise KeyboardInterrupt on SIGTERM and SIGHUP, as on Ctrl-C."""
    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def command_output(argv: list[str], timeout: float = 30.0) -> str:
    """stdout+stderr of a short command, stripped; the error text if it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({exc})"
    return (result.stdout + result.stderr).strip()


def median(values: list[float]) -> Optional[float]:
    """The median of ``values``, None when empty."""
    return statistics.median(values) if values else None


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ("" when missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _group_stats(pgid: int):
    """The fields of /proc/PID/stat after the command name, for each process
    of group ``pgid`` (proc(5): [0] state, [2] pgrp, [11] utime, [12] stime)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            yield fields


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is left in group ``pgid``."""
    return any(fields[0] != "Z" for fields in _group_stats(pgid))


_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in group ``pgid``.

    Read before and after a measured run, it gives the backend's CPU cost
    per request: a figure the scheduling noise of a small shared machine
    hardly moves, unlike req/s (which also carries the front and wrk).
    """
    return sum(int(f[11]) + int(f[12]) for f in _group_stats(pgid)) / _TICKS


def _exited(pid: int) -> bool:
    """True when our child ``pid`` has exited, without reaping it (keeps the
    pid, hence the process group id, from being reused meanwhile)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Proc:
    """A backend process started in its own session, as the worker user when root."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path, log: Path,
                 env: Optional[dict] = None, stop_signal: int = signal.SIGTERM):
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.cwd = cwd
        self.log = log
        self.env = env
        self.stop_signal = stop_signal
        self.process: Optional[subprocess.Popen] = None

    def start(self, ids: Optional[tuple[int, int]]) -> None:
        """Spawn the process; ``ids`` is the (uid, gid) to run as, or None."""
        extra = {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, **extra)
        _live.add(self)

    def alive(self) -> bool:
        return self.process is not None and not _exited(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the process and its group (workers)."""
        return group_cpu_seconds(self.process.pid) if self.process else 0.0

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """``stop_signal`` to the process, SIGKILL after ``timeout``; then the
        same for whatever is left in its process group.  Idempotent."""
        process, self.process = self.process, None
        _live.discard(self)
        if process is None:
            return
        pid = process.pid
        for sig in (self.stop_signal, signal.SIGKILL):
            if _exited(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            _wait(lambda: _exited(pid), timeout)
        # The leader is a zombie until wait(): its pgid cannot be reused yet.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            _wait(lambda: not _group_alive(pid), 3.0)
        process.wait(timeout=timeout)


@atexit.register
def stop_all() -> None:
    """Stop every Proc still running (also runs at interpreter exit)."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=3.0)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
