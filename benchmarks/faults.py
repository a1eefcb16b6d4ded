"""Slow peers, recycling and stopping, measured from outside: one line per figure.

Usage (as root, after ``benchmarks/setup_env.sh``)::

    python3 benchmarks/faults.py                       # every figure, this checkout
    python3 benchmarks/faults.py --compare /var/tmp/gateways-bench/venv-old
    python3 benchmarks/faults.py --only stalled,cpu

Each figure starts a ``gateways fastcgi`` daemon of its own (2 processes x 4
threads, the defaults otherwise, a unix socket, the benchmark app of
``app.py`` plus a 0.5 s route), as www-data, and, where a front matters,
nginx in front of it with the FastCGI snippet's shape.  The figures, and what
the engine promises for each (README.rst, "Running a daemon"):

stalled
    200 connections that send half a FastCGI record and stall, and 200 that
    send nothing, then 200 valid requests one after another: their latency
    (p50, p99, max).  Promise: p99 < 50 ms with the default timeouts.
max-requests
    wrk through nginx for 5 s against the daemon with ``--max-requests
    1000`` and ``200``, and without, in shuffled order, ``--rounds`` times:
    the median of the rounds' ratios, non-2xx and socket errors.
    Promise: >= 0.9x the req/s without it, 0 failed.
sigterm
    10 requests to the 0.5 s route in flight and 50 queued behind them
    (backlog 1024), then SIGTERM: how many were answered and how many got
    a reset.  Promise: all 60 answered, 0 resets.
aborts
    1,000 requests to the 0.5 s route whose clients close right after
    sending them, then one valid request: its latency.  Promise: < 100 ms.
kill
    kill -9 of a worker under load (16 clients, back-to-back requests):
    the failed requests, and how many were in flight on the killed worker.
    Promise: failures only among those.
sighup
    SIGHUP under the same load: failed requests.  Promise: 0.
cpu
    backend CPU per request, FastCGI hello through nginx (wrk, 1 x 8 as in
    README's performance table): with ``--compare VENV`` side by side with
    the gateways of that virtualenv (an earlier release), interleaved over
    3 rounds.  Promise: no more than 5 % above the earlier engine.

Nothing here is a test: the test suite checks the behaviour
(tests/test_engine_slow_peers.py); this measures it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
FIGURES = ("stalled", "max-requests", "sigterm", "aborts", "kill", "sighup", "cpu")
SLOW_APP = '''
import time

from app import application as benchmark


def application(environ, start_response):
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if path.endswith("/slow"):
        time.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"slow"]
    if path.endswith("/pid"):
        body = str(__import__("os").getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return benchmark(environ, start_response)
'''
NGINX_BODY = """
        location /fcgi/ {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:SOCK;
        }
"""


# -- a FastCGI client ----------------------------------------------------------------------


def _pairs(params: dict[str, str]) -> bytes:
    out = b""
    for name, value in params.items():
        for item in (name.encode(), value.encode()):
            out += bytes((len(item),)) if len(item) < 128 else struct.pack(">I",
                                                                          len(item) | 1 << 31)
        out += name.encode() + value.encode()
    return out


def _record(rtype: int, content: bytes = b"", rid: int = 1) -> bytes:
    return struct.pack(">BBHHBx", 1, rtype, rid, len(content), 0) + content


def fcgi_request(path: str) -> bytes:
    params = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
              "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
              "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
    return (_record(1, struct.pack(">HB5x", 1, 0)) + _record(4, _pairs(params)) + _record(4)
            + _record(5))


def ask(address: str, path: str, timeout: float = 10.0) -> bytes:
    """One FastCGI request: the whole answer (up to the close); raises on a reset."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(fcgi_request(path))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if b"\x01\x03" not in data:  # an FCGI_END_REQUEST record's first bytes
        raise ConnectionError("no FCGI_END_REQUEST (%d bytes)" % len(data))
    return data


# -- daemons and fronts ----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ws = benchlib.webservers()
        self.run = self.ws.public_dir("gw-faults-")
        for name in ("app.py",):
            shutil.copyfile(HERE / name, self.run / name)
            (self.run / name).chmod(0o644)
        (self.run / "slowapp.py").write_text(SLOW_APP)
        (self.run / "slowapp.py").chmod(0o644)
        self.ws.worker_dir(self.run / "sock")
        (self.run / "logs").mkdir(mode=0o755)
        self.ids = self.ws.www_data_ids()
        self.sock = str(self.run / "sock" / "fcgi.sock")
        self.count = 0

    def daemon(self, *options: str, venv: Path = benchlib.VENV, processes: int = 2,
               threads: int = 4) -> benchlib.Proc:
        self.count += 1
        Path(self.sock).unlink(missing_ok=True)
        log = self.run / "logs" / ("daemon%d.log" % self.count)
        argv = [str(venv / "bin" / "gateways"), "fastcgi", "slowapp:application", "--app-dir",
                str(self.run), "--bind", "unix:" + self.sock, "--processes", str(processes),
                "--threads", str(threads), "--log-level", "info", *options]
        proc = benchlib.Proc("gateways", argv, cwd=self.run, log=log,
                             env=dict(self.ws.BASE_ENV))
        log.write_text("")
        proc.start(self.ids)
        deadline = time.monotonic() + 20
        while "ready:" not in log.read_text():
            if not proc.alive() or time.monotonic() > deadline:
                proc.stop()
                sys.exit("the daemon did not start:\n" + benchlib.tail(log))
            time.sleep(0.05)
        return proc

    def nginx(self):
        root = self.run / "nginx"
        root.mkdir(exist_ok=True)
        return self.ws.start_nginx(NGINX_BODY.replace("SOCK", self.sock), root=root)

    def wrk(self, url: str, seconds: float = 5.0, connections: int = 16) -> dict:
        out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%gs" % seconds, url],
                             capture_output=True, text=True, timeout=seconds + 60,
                             check=False).stdout
        result = {"rps": 0.0, "requests": 0, "non2xx": 0, "errors": 0}
        if match := re.search(r"Requests/sec:\s+([\d.]+)", out):
            result["rps"] = float(match.group(1))
        if match := re.search(r"(\d+) requests in", out):
            result["requests"] = int(match.group(1))
        if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
            result["non2xx"] = int(match.group(1))
        if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out):
            result["errors"] = sum(int(n) for n in match.groups())
        return result

    def close(self) -> None:
        benchlib.stop_all()
        benchlib.remove_tree(self.run)


def report(name: str, text: str, ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("  [ok]" if ok else "  [NOT MET]")
    print("%-13s %s%s" % (name, text, verdict), flush=True)


class Load:
    """Client threads sending back-to-back requests until stopped: answers, failures
    (with when they started), the pid of each answer."""

    def __init__(self, address: str, clients: int = 16, path: str = "/pid") -> None:
        self.address, self.path = address, path
        self.answers: list[tuple[float, float, bytes]] = []
        self.failures: list[tuple[float, float, str]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, daemon=True)
                        for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _client(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                data = ask(self.address, self.path)
            except OSError as exc:
                with self.lock:
                    self.failures.append((started, time.monotonic(), repr(exc)))
            else:
                with self.lock:
                    self.answers.append((started, time.monotonic(), data))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


# -- the figures ----------------------------------------------------------------------------


def stalled(bench: Bench) -> None:
    proc = bench.daemon()
    held = []
    try:
        for _ in range(200):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(bench.sock)
            sock.sendall(fcgi_request("/pid")[:5])  # half a record
            held.append(sock)
        for _ in range(200):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(bench.sock)
            held.append(sock)
        time.sleep(0.5)
        latencies = []
        for _ in range(200):
            started = time.monotonic()
            ask(bench.sock, "/pid", timeout=60)
            latencies.append((time.monotonic() - started) * 1000)
        latencies.sort()
        p99 = latencies[int(0.99 * len(latencies)) - 1]
        report("stalled", "200 stalled + 200 idle connections: valid requests p50 %.2f ms, "
               "p99 %.2f ms, max %.2f ms" % (statistics.median(latencies), p99, latencies[-1]),
               p99 < 50)
    finally:
        for sock in held:
            sock.close()
        proc.stop()


def max_requests(bench: Bench) -> None:
    """--rounds rounds; in each, the three daemons in shuffled order, each ratio taken
    against the daemon without --max-requests of the same round (the median is quoted)."""
    rounds: list[dict[str, dict]] = []
    nginx = bench.nginx()
    try:
        for _ in range(bench.args.rounds):
            figures = {}
            for value in random.sample(["0", "1000", "200"], 3):
                proc = bench.daemon("--max-requests", value)
                bench.wrk(nginx.url("/fcgi/hello"), 1.0)
                figures[value] = bench.wrk(nginx.url("/fcgi/hello"), 5.0)
                proc.stop()
            rounds.append(figures)
    finally:
        nginx.close()
    base = statistics.median(r["0"]["rps"] for r in rounds)
    for value in ("1000", "200"):
        ratios = [r[value]["rps"] / (r["0"]["rps"] or 1.0) for r in rounds]
        ratio = statistics.median(ratios)
        failed = sum(r[value]["non2xx"] + r[value]["errors"] for r in rounds)
        requests = sum(r[value]["requests"] for r in rounds)
        report("max-requests", "--max-requests %s: %.2fx the req/s without it (rounds: %s; "
               "%.0f req/s without it); %d failed of %d"
               % (value, ratio, " ".join("%.2f" % x for x in ratios), base, failed, requests),
               ratio >= 0.9 and not failed if value == "1000" else None)


def sigterm(bench: Bench) -> None:
    proc = bench.daemon("--backlog", "1024")
    results: list[str] = []
    lock = threading.Lock()

    def one(path: str) -> None:
        try:
            ask(bench.sock, path, timeout=30)
            outcome = "answered"
        except ConnectionResetError:
            outcome = "reset"
        except OSError as exc:
            outcome = "failed: %r" % exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=one, args=("/slow",)) for _ in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # the 8 threads of the 2 workers are busy; 2 slow ones and the rest queue
    more = [threading.Thread(target=one, args=("/pid",)) for _ in range(50)]
    for thread in more:
        thread.start()
    time.sleep(0.1)
    os.kill(proc.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
    for thread in threads + more:
        thread.join(60)
    proc.stop()
    answered = results.count("answered")
    resets = results.count("reset")
    report("sigterm", "SIGTERM with 10 slow requests in flight and 50 queued: %d answered, "
           "%d reset, %d other" % (answered, resets, len(results) - answered - resets),
           answered == 60 and resets == 0)


def aborts(bench: Bench) -> None:
    proc = bench.daemon()
    try:
        for _ in range(1000):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(bench.sock)
            sock.sendall(fcgi_request("/slow"))
            sock.close()
        started = time.monotonic()
        ask(bench.sock, "/pid", timeout=120)
        waited = (time.monotonic() - started) * 1000
        report("aborts", "1,000 aborted requests to a 0.5 s path, then a valid one: answered "
               "in %.1f ms" % waited, waited < 100)
    finally:
        proc.stop()


def _workers(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] not in "ZX":
                out.append(int(entry))
    return sorted(out)


def kill(bench: Bench) -> None:
    proc = bench.daemon()
    master = proc.process.pid  # type: ignore[union-attr]
    try:
        load = Load(bench.sock)
        time.sleep(1.0)
        victim = _workers(master)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(2.0)
        load.stop()
        on_victim = [a for a in load.answers if a[2].find(str(victim).encode()) >= 0]
        failed = load.failures
        in_flight = [f for f in failed if f[0] <= killed_at <= f[1] + 0.05]
        report("kill", "kill -9 of a worker under load (16 clients): %d answered, %d failed, "
               "%d of them in flight when it died (at most the 4 threads of the worker); "
               "%d answers came from it before" % (len(load.answers), len(failed),
                                                   len(in_flight), len(on_victim)),
               len(failed) == len(in_flight) and len(failed) <= 4)
    finally:
        proc.stop()


def sighup(bench: Bench) -> None:
    proc = bench.daemon()
    master = proc.process.pid  # type: ignore[union-attr]
    try:
        load = Load(bench.sock)
        time.sleep(1.0)
        os.kill(master, signal.SIGHUP)
        time.sleep(3.0)
        load.stop()
        report("sighup", "SIGHUP under load (16 clients): %d answered, %d failed"
               % (len(load.answers), len(load.failures)), not load.failures)
    finally:
        proc.stop()


def cpu(bench: Bench) -> None:
    venvs = {"this checkout": benchlib.VENV}
    if bench.args.compare:
        venvs["compared"] = bench.args.compare
    figures: dict[str, list[float]] = {name: [] for name in venvs}
    nginx = bench.nginx()
    try:
        for _ in range(bench.args.rounds):
            for name, venv in venvs.items():
                proc = bench.daemon(venv=venv, processes=1, threads=8)
                bench.wrk(nginx.url("/fcgi/hello"), 1.0)
                before = proc.cpu_seconds()
                result = bench.wrk(nginx.url("/fcgi/hello"), 5.0)
                figures[name].append((proc.cpu_seconds() - before) * 1e6 / max(
                    result["requests"], 1))
                proc.stop()
    finally:
        nginx.close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    text = ", ".join("%s %.1f us (%s)" % (name, medians[name], " ".join(
        "%.1f" % v for v in figures[name])) for name in venvs)
    ok = None
    if "compared" in medians:
        ratio = medians["this checkout"] / medians["compared"]
        text += "; ratio %.3f" % ratio
        ok = ratio <= 1.05
    report("cpu", "backend CPU per FastCGI hello through nginx, 1 x 8: " + text, ok)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(FIGURES),
                        help="comma-separated figures (default: all): %s" % ", ".join(FIGURES))
    parser.add_argument("--compare", type=Path, default=None,
                        help="a virtualenv with an earlier gateways, for the CPU ratio")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the CPU and --max-requests figures")
    args = parser.parse_args(argv)
    benchlib.check_venvs(benchlib.VENV)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    benchlib.stop_on_signals()
    bench = Bench(args)
    try:
        for name in args.only.split(","):
            {"stalled": stalled, "max-requests": max_requests, "sigterm": sigterm,
             "aborts": aborts, "kill": kill, "sighup": sighup, "cpu": cpu}[name](bench)
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
