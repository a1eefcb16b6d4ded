"""FastCGI, SCGI and uwsgi backends behind real front servers, measured with wrk.

Usage (as root, after ``benchmarks/setup_env.sh``)::

    python3 benchmarks/fastcgi_scgi.py                    # the full run (about 30 min)
    python3 benchmarks/fastcgi_scgi.py --quick            # smoke run: 1 s cells, 1 round
    python3 benchmarks/fastcgi_scgi.py --fronts nginx --protocols fastcgi \\
        --shapes 1x8 --workloads hello                    # one comparison

What it does (the method of shared/notes/benchmark-method.md):

* starts each front once: nginx (``worker_processes 1``), lighttpd
  (``server.stream-response-body = 1``) and, with ``--fronts``, Apache
  (event MPM, one child of 64 threads); no access logs.  Each front serves
  ``/static/...`` from disk (its ceiling), ``/fcgi/...`` from
  ``sock/fcgi.sock``, ``/scgi/...`` from ``sock/scgi.sock`` and ``/uw/...``
  from ``sock/uw.sock`` (the uwsgi protocol);
* for every cell (front, protocol, shape, workload, backend), in shuffled
  order, round after round: starts the backend on the protocol's unix
  socket, waits for a correct answer through the front, runs a 1 s wrk
  warm-up whose Lua ``response()`` hook checks every status and body, then
  ``wrk -t2 -c16 -d5s --latency``, and stops the backend.  A cell whose
  check fails (or that sees non-2xx answers) is WRONG and has no number;
* per round divides each backend's req/s by the reference peer's (uWSGI)
  in the same (front, protocol, shape, workload), and reports the median
  ratio, the median req/s and the median p99 latency of every cell, as a
  plain table, as reStructuredText tables, and as JSON (``--json``).

Backends (all run as www-data, on unix sockets, same shape PxT):
uWSGI (Debian's uwsgi-core + python3 plugin: ``--processes P --threads T
--master``), gateways (``gateways fastcgi|scgi|uwsgi --processes P --threads
T``), flup6 threaded FastCGI and flup 1.0.3 threaded SCGI (``flup_server.py``:
its docstring explains how flup gets a PxT shape), and for the uwsgi protocol
gunicorn 27 (``--protocol uwsgi --worker-class gthread --workers P --threads
T``).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import benchlib

HERE = Path(__file__).resolve().parent
FRONTS = ("nginx", "lighttpd", "apache")
PROTOCOLS = ("fastcgi", "scgi", "uwsgi")
SHAPES = ("1x8", "2x4")
WORKLOADS = ("hello", "10k", "post")
REFERENCE = "uwsgi"
PEERS = {"fastcgi": ("uwsgi", "gateways", "gateways-stats", "flup6"),
         "scgi": ("uwsgi", "gateways", "gateways-stats", "flup103"),
         "uwsgi": ("uwsgi", "gateways", "gateways-stats", "gunicorn")}
LABELS = {"uwsgi": "uWSGI", "gateways": "gateways", "gateways-stats": "gateways --stats",
          "flup6": "flup6",
          "flup103": "flup 1.0.3", "gunicorn": "gunicorn 27", "static": "static file"}
PROTOCOL_LABELS = {"fastcgi": "FastCGI", "scgi": "SCGI", "uwsgi": "uwsgi"}
PREFIX = {"fastcgi": "fcgi", "scgi": "scgi", "uwsgi": "uw"}
ROUTE = {"hello": "hello", "10k": "10k", "post": "post"}
STATIC = {"hello": "/static/hello.txt", "10k": "/static/10k.txt"}
HELLO = b"Hello, world!"
TEN_K = b"0123456789abcdef" * 640
POST_SIZE = 102400
EXPECTED = {"hello": HELLO, "10k": TEN_K, "post": str(POST_SIZE).encode()}
START_TIMEOUT = 20.0

# -- Lua scripts for wrk -------------------------------------------------------------

LUA_EXPECTED = {
    "hello": 'expected = "Hello, world!"',
    "10k": 'expected = string.rep("0123456789abcdef", 640)',
    "post": f'expected = "{POST_SIZE}"',
}
LUA_POST = f"""wrk.method = "POST"
wrk.body = string.rep("a", {POST_SIZE})
wrk.headers["Content-Type"] = "application/octet-stream"
"""
LUA_CHECK = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) checked = 0; bad = 0; first_bad = "" end
function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 or body ~= expected then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(string.gsub(body or "", "%c", "?"), 1, 120)
    end
  end
end
function done(summary, latency, requests)
  local c, b, f = 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("checked"); b = b + t:get("bad")
    if f == "" then f = t:get("first_bad") or "" end
  end
  io.write(string.format("CHECK checked=%d bad=%d\\n", c, b))
  if f ~= "" then io.write("CHECK first_bad=" .. f .. "\\n") end
end
"""


def write_lua(directory: Path) -> dict[str, Path]:
    """The check scripts (``check-WORKLOAD``) and the POST load script (``post``)."""
    directory.mkdir(parents=True, exist_ok=True)
    scripts = {}
    for workload in WORKLOADS:
        body = LUA_EXPECTED[workload] + "\n" + (LUA_POST if workload == "post" else "")
        path = directory / f"check-{workload}.lua"
        path.write_text(body + LUA_CHECK)
        scripts[f"check-{workload}"] = path
    scripts["post"] = directory / "post.lua"
    scripts["post"].write_text(LUA_POST)
    return scripts


# -- front servers ----------------------------------------------------------------------

NGINX_BODY = """
        client_body_buffer_size 128k;
        location /static/ { }
        location /fcgi/ {
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:SOCKDIR/fcgi.sock;
        }
        location /scgi/ {
            include /etc/nginx/scgi_params;
            scgi_param SCRIPT_NAME "";
            scgi_param PATH_INFO $document_uri;
            scgi_pass unix:SOCKDIR/scgi.sock;
        }
        location /uw/ {
            include /etc/nginx/uwsgi_params;
            uwsgi_pass unix:SOCKDIR/uw.sock;
        }
"""
LIGHTTPD_BODY = """
server.stream-response-body = 1
fastcgi.server = ( "/fcgi/" => (( "socket" => "SOCKDIR/fcgi.sock", "check-local" => "disable" )) )
scgi.server = ( "/scgi/" => (( "socket" => "SOCKDIR/scgi.sock", "check-local" => "disable" )) )
$HTTP["url"] =~ "^/uw/" {
    scgi.protocol = "uwsgi"
    scgi.server = ( "/uw/" => (( "socket" => "SOCKDIR/uw.sock", "check-local" => "disable" )) )
}
"""
APACHE_BODY = """
ServerLimit 1
StartServers 1
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers 64
MaxKeepAliveRequests 1000
ProxyPass /fcgi/ unix:SOCKDIR/fcgi.sock|fcgi://localhost/fcgi/ retry=0
ProxyPass /scgi/ unix:SOCKDIR/scgi.sock|scgi://localhost/scgi/ retry=0
ProxyPass /uw/ unix:SOCKDIR/uw.sock|uwsgi://localhost/uw/ retry=0
"""


def start_front(ws, name: str, root: Path, sockdir: Path):
    """Start one front server (a tests/webservers.py Server) in ``root``."""
    for workload, path in STATIC.items():
        ws.write_file(root / "htdocs" / path.lstrip("/"), EXPECTED[workload])
    if name == "nginx":
        return ws.start_nginx(NGINX_BODY.replace("SOCKDIR", str(sockdir)), root=root)
    if name == "lighttpd":
        return ws.start_lighttpd(LIGHTTPD_BODY.replace("SOCKDIR", str(sockdir)),
                                 modules=("mod_fastcgi", "mod_scgi"), root=root)
    return ws.start_apache(APACHE_BODY.replace("SOCKDIR", str(sockdir)),
                           modules=("proxy", "proxy_fcgi", "proxy_scgi", "proxy_uwsgi"),
                           root=root)


# -- backends -----------------------------------------------------------------------------


def backend_argv(peer: str, protocol: str, shape: str, run: Path) -> list[str]:
    """The command line of ``peer`` serving run/app.py on run/sock/<protocol> socket."""
    processes, threads = shape.split("x")
    sock = str(socket_path(run, protocol))
    if peer == "gunicorn":
        return [str(benchlib.VENV / "bin" / "gunicorn"), "--protocol", "uwsgi", "--bind",
                f"unix:{sock}", "--umask", "007", "--worker-class", "gthread", "--workers",
                processes, "--threads", threads, "--chdir", str(run), "--log-level",
                "warning", "app:application"]
    if peer == "uwsgi":
        return ["uwsgi", "--plugin", "python3", f"--{protocol}-socket", sock,
                "--chmod-socket=660", "--master", "--processes", processes,
                "--threads", threads, "--chdir", str(run), "--wsgi-file", str(run / "app.py"),
                "--need-app", "--die-on-term", "--disable-logging", "--ignore-sigpipe",
                "--ignore-write-errors", "--disable-write-exception"]
    if peer in ("gateways", "gateways-stats"):
        stats = ["--stats", f"unix:{sock}.stats"] if peer == "gateways-stats" else []
        return [str(benchlib.VENV / "bin" / "gateways"), protocol, "app:application",
                "--app-dir", str(run), "--bind", f"unix:{sock}", "--processes", processes,
                "--threads", threads, "--log-level", "warning", *stats]
    venv = benchlib.VENV if peer == "flup6" else benchlib.FLUP103_VENV
    return [str(venv / "bin" / "python"), str(run / "flup_server.py"), protocol, sock,
            processes, threads]


def socket_path(run: Path, protocol: str) -> Path:
    return run / "sock" / f"{PREFIX[protocol]}.sock"


def start_backend(bench: Bench, cell: Cell) -> benchlib.Proc:
    """Start the cell's backend and wait until its socket exists."""
    sock = socket_path(bench.run, cell.protocol)
    sock.unlink(missing_ok=True)
    log = bench.run / "logs" / f"{cell.peer}-{cell.protocol}-{cell.shape}.log"
    proc = benchlib.Proc(cell.peer, backend_argv(cell.peer, cell.protocol, cell.shape, bench.run),
                         cwd=bench.run, log=log, env=dict(bench.ws.BASE_ENV),
                         stop_signal=signal.SIGINT if cell.peer == "uwsgi" else signal.SIGTERM)
    log.write_text("")
    proc.start(bench.ids)
    deadline = time.monotonic() + START_TIMEOUT
    while not sock.exists():
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise CellFailed(f"{cell.peer} did not create {sock}:\n{benchlib.tail(log)}")
        time.sleep(0.02)
    return proc


def wait_ready(port: int, path: str, proc: benchlib.Proc) -> None:
    """GET ``path`` through the front until the backend answers at all (not a
    502/503/504 from the front); whether the answer is right is the warm-up
    check's business, so that a wrong answer shows as WRONG, not FAILED."""
    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise CellFailed(f"{proc.name} exited:\n{benchlib.tail(proc.log)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status not in (502, 503, 504):
                return
            last = f"{response.status} {body[:120]!r}"
        except (OSError, http.client.HTTPException) as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.1)
    raise CellFailed(f"no answer from the backend at {path} within {START_TIMEOUT} s: {last}")


# -- wrk --------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> Optional[float]:
    """A wrk duration (``535.00us``, ``1.23ms``, ``1.00s``) in ms; None if unknown."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_wrk(output: str) -> dict:
    """req/s, p50/p99 (ms), request count, socket errors, non-2xx and CHECK lines."""
    result: dict = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": None,
                    "socket_errors": 0, "non2xx": 0}
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M):
        result["rps"] = float(match.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        if match := re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M):
            result[key] = _ms(match.group(1))
    if match := re.search(r"^\s+(\d+) requests in", output, re.M):
        result["requests"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                          output):
        result["socket_errors"] = sum(int(n) for n in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result["non2xx"] = int(match.group(1))
    if match := re.search(r"^CHECK checked=(\d+) bad=(\d+)", output, re.M):
        result["checked"], result["bad"] = int(match.group(1)), int(match.group(2))
    if match := re.search(r"^CHECK first_bad=(.*)$", output, re.M):
        result["first_bad"] = match.group(1)
    return result


def run_wrk(bench: Bench, url: str, duration: float, script: Optional[Path],
            latency: bool = True) -> dict:
    """Run wrk once; the parsed figures plus its raw output."""
    argv = ["wrk", f"-t{bench.args.wrk_threads}", f"-c{bench.args.connections}",
            f"-d{duration:g}s"]
    if latency:
        argv.append("--latency")
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60,
                              check=False)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"wrk timed out: {exc}"
    result = parse_wrk(output)
    result["output"] = output
    return result


# -- cells ----------------------------------------------------------------------------------


class CellFailed(Exception):
    """A backend did not start or never answered correctly."""


@dataclass(frozen=True)
class Cell:
    front: str
    protocol: str  # "-" for static files
    shape: str  # "-" for static files
    workload: str
    peer: str  # a backend, or "static"

    def path(self) -> str:
        if self.peer == "static":
            return STATIC[self.workload]
        return f"/{PREFIX[self.protocol]}/{ROUTE[self.workload]}"

    def describe(self) -> str:
        if self.peer == "static":
            return f"{self.front} static {self.workload}"
        return f"{self.front} {self.protocol} {self.shape} {self.workload} {self.peer}"


@dataclass
class Bench:
    """Everything a cell needs: options, run directory, fronts, worker ids."""

    args: argparse.Namespace
    ws: object  # the tests/webservers.py module
    run: Path
    lua: dict
    ids: Optional[tuple[int, int]]
    fronts: dict


def plan_cells(args: argparse.Namespace) -> list[Cell]:
    """Every cell of one round, unshuffled."""
    cells = []
    for front, protocol, shape, workload in itertools.product(
            args.fronts, args.protocols, args.shapes, args.workloads):
        cells += [Cell(front, protocol, shape, workload, peer)
                  for peer in PEERS[protocol] if peer in args.peers]
    if not args.no_static:
        cells += [Cell(front, "-", "-", workload, "static")
                  for front in args.fronts for workload in args.workloads
                  if workload in STATIC]
    return cells


def _front_log_offset(server) -> int:
    try:
        return server.error_log.stat().st_size
    except OSError:
        return 0


def _front_log_since(server, offset: int) -> list[str]:
    try:
        with open(server.error_log, "rb") as log:
            log.seek(offset)
            text = log.read(20000).decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][:10]


def measure(bench: Bench, cell: Cell, server, result: dict,
            proc: Optional[benchlib.Proc] = None) -> None:
    """Warm-up with the body check, then the measured wrk run, into ``result``;
    with the backend's ``proc``, also its CPU microseconds per request."""
    url = server.url(cell.path())
    warm = run_wrk(bench, url, bench.args.warmup, bench.lua[f"check-{cell.workload}"],
                   latency=False)
    result["check"] = {k: warm.get(k) for k in ("checked", "bad", "first_bad", "non2xx")}
    if not warm.get("checked") or warm.get("bad"):
        result["status"] = "WRONG"
        result["detail"] = warm.get("first_bad") or warm["output"][-500:]
        return
    script = bench.lua["post"] if cell.workload == "post" else None
    cpu = proc.cpu_seconds() if proc else None
    load = run_wrk(bench, url, bench.args.duration, script)
    if proc and load.get("requests"):
        result["cpu_us"] = (proc.cpu_seconds() - cpu) * 1e6 / load["requests"]
    result.update({k: load[k] for k in ("rps", "p50_ms", "p99_ms", "requests",
                                        "socket_errors", "non2xx")})
    result["wrk_output"] = load["output"]
    if load["rps"] is None:
        result["status"], result["detail"] = "FAILED", load["output"][-500:]
    elif load["non2xx"]:
        result["status"] = "WRONG"
        result["detail"] = f"{load['non2xx']} non-2xx responses during the measured run"
    else:
        result["status"] = "ok"


def run_cell(bench: Bench, cell: Cell, round_no: int) -> dict:
    """Start the backend, check, measure, stop; one result dict."""
    server = bench.fronts[cell.front]
    result = {**asdict(cell), "round": round_no, "started": time.time(), "status": None}
    offset = _front_log_offset(server)
    proc = None
    try:
        if cell.peer != "static":
            proc = start_backend(bench, cell)
            wait_ready(server.port, f"/{PREFIX[cell.protocol]}/hello", proc)
        measure(bench, cell, server, result, proc)
        # Let requests still in flight when wrk stopped finish before the
        # backend is stopped, and read the front's log before that stop.
        time.sleep(0.3)
    except CellFailed as exc:
        result["status"], result["detail"] = "FAILED", str(exc)
    finally:
        result["front_log"] = _front_log_since(server, offset)
        if proc is not None:
            proc.stop()
            result["backend_log"] = benchlib.tail(proc.log, 10)
            socket_path(bench.run, cell.protocol).unlink(missing_ok=True)
    return result


def _progress(done: int, total: int, round_no: int, cell: Cell, result: dict) -> None:
    if result["status"] == "ok":
        figure = f"{result['rps']:>10,.0f} req/s  p99 {result['p99_ms']:.2f} ms"
    else:
        figure = f"{result['status']}: {str(result.get('detail', ''))[:200]}"
    note = "  [front error log grew]" if result.get("front_log") else ""
    print(f"[round {round_no} {done:>3}/{total}] {cell.describe():<40} {figure}{note}",
          file=sys.stderr, flush=True)


def run_rounds(bench: Bench, cells: list[Cell], results: list[dict]) -> None:
    """All rounds, each in a freshly shuffled order; appends to ``results``
    as it goes, so that an interrupted run can still report."""
    rng = random.Random(bench.args.seed)
    for round_no in range(1, bench.args.rounds + 1):
        order = list(cells)
        rng.shuffle(order)
        for index, cell in enumerate(order, 1):
            result = run_cell(bench, cell, round_no)
            result["order"] = index
            results.append(result)
            _progress(index, len(order), round_no, cell, result)


# -- summary ------------------------------------------------------------------------------------


def _key(result: dict) -> tuple:
    return (result["front"], result["protocol"], result["shape"], result["workload"],
            result["peer"])


def _round_ratios(mine: list[dict], reference: dict[int, dict]) -> list[float]:
    ratios = []
    for result in mine:
        ref = reference.get(result["round"])
        if result["status"] == "ok" and ref and ref["status"] == "ok" and ref["rps"]:
            ratios.append(result["rps"] / ref["rps"])
    return ratios


def summarize(results: list[dict]) -> list[dict]:
    """One row per cell: status, median req/s, median ratio to uWSGI, median p99."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        groups.setdefault(_key(result), []).append(result)
    rows = []
    for key, mine in groups.items():
        ok = [r for r in mine if r["status"] == "ok"]
        reference = {r["round"]: r for r in groups.get(key[:4] + (REFERENCE,), [])}
        ratios = _round_ratios(mine, reference) if key[4] != "static" else []
        if any(r["status"] == "WRONG" for r in mine):
            status = "WRONG"
        elif not ok:
            status = "FAILED"
        else:
            status = "ok" if len(ok) == len(mine) else f"ok {len(ok)}/{len(mine)}"
        rows.append({
            **dict(zip(("front", "protocol", "shape", "workload", "peer"), key)),
            "status": status, "rounds": len(mine),
            "rps_median": benchlib.median([r["rps"] for r in ok]),
            "p99_ms_median": benchlib.median([r["p99_ms"] for r in ok if r["p99_ms"]]),
            "ratio_median": benchlib.median(ratios), "ratios": ratios,
            "cpu_us_median": benchlib.median([r["cpu_us"] for r in ok if r.get("cpu_us")]),
            "rps": [r["rps"] for r in ok],
            "socket_errors": sum(r.get("socket_errors") or 0 for r in mine),
            "front_log": sum(1 for r in mine if r.get("front_log")),
        })
    return sorted(rows, key=_row_order)


def _row_order(row: dict) -> tuple:
    peers = ("static", "uwsgi", "gateways", "gateways-stats", "flup6", "flup103", "gunicorn")
    return (SHAPES.index(row["shape"]) if row["shape"] in SHAPES else -1,
            WORKLOADS.index(row["workload"]), FRONTS.index(row["front"]),
            PROTOCOLS.index(row["protocol"]) if row["protocol"] in PROTOCOLS else -1,
            peers.index(row["peer"]))


def _figure(row: dict) -> str:
    if not row["status"].startswith("ok"):
        return row["status"]
    text = f"{row['rps_median']:,.0f}"
    details = []
    if row["ratio_median"] is not None:
        details.append(f"{row['ratio_median']:.2f}x")
    if row["p99_ms_median"] is not None:
        details.append(f"p99 {row['p99_ms_median']:.1f} ms")
    if row.get("cpu_us_median"):
        details.append(f"{row['cpu_us_median']:.0f} us CPU")
    return f"{text} ({', '.join(details)})" if details else text


def text_table(rows: list[dict]) -> str:
    """The plain table for the terminal."""
    header = ("front", "protocol", "shape", "workload", "backend", "req/s", "ratio",
              "ratios per round", "p99 ms", "cpu us/req", "status", "notes")
    lines = [header]
    for row in rows:
        ok = row["status"].startswith("ok")
        notes = []
        if row["socket_errors"]:
            notes.append(f"{row['socket_errors']} socket errors")
        if row["front_log"]:
            notes.append(f"front error log grew in {row['front_log']} round(s)")
        lines.append((
            row["front"], row["protocol"], row["shape"], row["workload"], LABELS[row["peer"]],
            f"{row['rps_median']:,.0f}" if ok else "-",
            f"{row['ratio_median']:.2f}" if ok and row["ratio_median"] is not None else "-",
            " ".join(f"{r:.2f}" for r in row["ratios"]) or "-",
            f"{row['p99_ms_median']:.2f}" if ok and row["p99_ms_median"] else "-",
            f"{row['cpu_us_median']:.0f}" if ok and row["cpu_us_median"] else "-",
            row["status"], "; ".join(notes)))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    right = {5, 6, 8, 9}
    return "\n".join("  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(line, widths))).rstrip()
                     for line in lines)


def _rst_simple(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda line: "  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip()  # noqa: E731
    return "\n".join([rule, fmt(header), rule, *map(fmt, body), rule])


def rst_tables(rows: list[dict], args: argparse.Namespace) -> str:
    """One reStructuredText table per (shape, workload): backends x fronts."""
    index = {(r["front"], r["protocol"], r["shape"], r["workload"], r["peer"]): r for r in rows}
    fronts = [f for f in FRONTS if f in args.fronts]
    header = ["backend", *[f"behind {f}" for f in fronts]]
    out = []
    for shape, workload in itertools.product(args.shapes, args.workloads):
        body = []
        if workload in STATIC and not args.no_static:
            body.append(["static file (front's ceiling)", *[
                _figure(index[(f, "-", "-", workload, "static")])
                if (f, "-", "-", workload, "static") in index else "-" for f in fronts]])
        for protocol in args.protocols:
            for peer in (p for p in PEERS[protocol] if p in args.peers):
                keys = [(f, protocol, shape, workload, peer) for f in fronts]
                body.append([f"{LABELS[peer]} {PROTOCOL_LABELS[protocol]}",
                             *[_figure(index[k]) if k in index else "-" for k in keys]])
        processes, threads = shape.split("x")
        shape_text = (f"{processes} process{'es' if processes != '1' else ''} x "
                      f"{threads} threads")
        out.append(f"**{workload}, {shape_text}** -- "
                   f"median of {args.rounds} round(s): req/s (ratio to uWSGI in the same "
                   "round, p99 latency, backend CPU per request)\n\n" + _rst_simple(header, body))
    return "\n\n".join(out)


# -- run information ------------------------------------------------------------------------------


def _venv_version(venv: Path, dist: str) -> str:
    return benchlib.command_output([str(venv / "bin" / "python"), "-c",
                                    f"import importlib.metadata as m; print(m.version({dist!r}))"])


def run_info(argv: list[str]) -> dict:
    """Versions, machine and load: what a reader needs to judge the numbers."""
    git = ["git", "-C", str(benchlib.REPO)]
    first = lambda argv: (benchlib.command_output(argv).splitlines() or [""])[0]  # noqa: E731
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": argv, "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "git_commit": benchlib.command_output([*git, "rev-parse", "HEAD"]),
        "git_dirty": bool(benchlib.command_output([*git, "status", "--porcelain"])),
        "versions": {
            "nginx": first(["nginx", "-v"]), "lighttpd": first(["lighttpd", "-v"]),
            "apache2": first(["apache2", "-v"]), "uwsgi": first(["uwsgi", "--version"]),
            "wrk": first(["wrk", "-v"]),
            "python": first([str(benchlib.VENV / "bin" / "python"), "--version"]),
            "gateways": _venv_version(benchlib.VENV, "gateways"),
            "flup6": _venv_version(benchlib.VENV, "flup6"),
            "gunicorn": _venv_version(benchlib.VENV, "gunicorn"),
            "flup (SCGI)": _venv_version(benchlib.FLUP103_VENV, "flup"),
        },
    }


# -- command line ------------------------------------------------------------------------------------


def _choices(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose a comma-separated list from {','.join(allowed)}")
        return items

    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="FastCGI and SCGI backends (gateways, uWSGI, flup) behind nginx, lighttpd "
        "and Apache, measured with wrk; see benchmarks/README.rst.")
    parser.add_argument("--fronts", type=_choices(FRONTS), default=["nginx", "lighttpd"],
                        help="front servers (default: nginx,lighttpd; apache is optional)")
    parser.add_argument("--protocols", type=_choices(PROTOCOLS), default=["fastcgi", "scgi"],
                        help="fastcgi, scgi, uwsgi (default: fastcgi,scgi)")
    parser.add_argument("--shapes", type=_choices(SHAPES), default=list(SHAPES),
                        help="backend processes x threads (default: 1x8,2x4)")
    parser.add_argument("--workloads", type=_choices(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--peers", type=_choices(("uwsgi", "gateways", "gateways-stats", "flup",
                                                   "gunicorn")),
                        default=["uwsgi", "gateways", "gateways-stats", "flup", "gunicorn"],
                        help="backends; gateways-stats is gateways with --stats on, flup is "
                        "flup6 for FastCGI, flup 1.0.3 for SCGI, gunicorn 27 for uwsgi (uwsgi "
                        "is the reference of the ratios)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of each measured wrk run (default 5; --quick: 1)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of the checked warm-up before each run")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s cells, 1 round (unless --duration/--rounds)")
    parser.add_argument("--no-static", action="store_true",
                        help="skip the fronts' static-file ceilings")
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    parser.add_argument("--json", type=Path, default=None,
                        help="write raw results here (default: "
                        "$GATEWAYS_BENCH_DIR/results/fastcgi_scgi-DATE.json)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (configs, logs) for inspection")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.peers = [p for peers in PEERS.values() for p in peers
                  if p in args.peers or (p.startswith("flup") and "flup" in args.peers)]
    if args.json is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.json = benchlib.BENCH_DIR / "results" / f"fastcgi_scgi-{stamp}.json"
    return args


def prepare_run(ws) -> Path:
    """A www-data-readable run directory with the app, the flup launcher and sockets."""
    run = ws.public_dir("gw-bench-")
    for name in ("app.py", "flup_server.py"):
        shutil.copyfile(HERE / name, run / name)
        (run / name).chmod(0o644)
    ws.worker_dir(run / "sock")
    (run / "logs").mkdir(mode=0o755)
    return run


def report(results: list[dict], args: argparse.Namespace, info: dict) -> None:
    """Print both tables and write the JSON file."""
    rows = summarize(results)
    print(text_table(rows))
    print("\nreStructuredText (paste into README.rst):\n")
    print(rst_tables(rows, args))
    info["loadavg_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": {**info, "options": {k: str(v) if isinstance(v, Path) else v
                                            for k, v in vars(args).items()}},
               "summary": rows, "cells": results}
    args.json.write_text(json.dumps(payload, indent=1))
    print(f"\nraw results: {args.json}")
    wrong = [r for r in rows if r["status"] in ("WRONG", "FAILED")]
    for row in wrong:
        print(f"{row['status']}: {row['front']} {row['protocol']} {row['shape']} "
              f"{row['workload']} {LABELS[row['peer']]} (details in the JSON file)")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    benchlib.check_venvs(benchlib.VENV, benchlib.FLUP103_VENV)
    for program in ("wrk", "uwsgi"):
        if shutil.which(program) is None:
            sys.exit(f"{program} not found: apt-get install wrk uwsgi-core uwsgi-plugin-python3")
    benchlib.stop_on_signals()
    ws = benchlib.webservers()
    info = run_info([sys.argv[0], *argv])
    run = prepare_run(ws)
    bench = Bench(args, ws, run, write_lua(run / "lua"), ws.www_data_ids(), {})
    cells = plan_cells(args)
    per_cell = args.warmup + args.duration + 1.5
    print(f"{len(cells)} cells x {args.rounds} round(s), about "
          f"{len(cells) * args.rounds * per_cell / 60:.0f} min; run directory {run}",
          file=sys.stderr)
    results: list[dict] = []
    status = 0
    try:
        for front in args.fronts:
            bench.fronts[front] = start_front(ws, front, run / front, run / "sock")
        run_rounds(bench, cells, results)
    except KeyboardInterrupt:
        print("interrupted: reporting the cells measured so far", file=sys.stderr)
        status = 130
    finally:
        benchlib.stop_all()
        for server in bench.fronts.values():
            server.stop()
        if not args.keep:
            benchlib.remove_tree(run)
    if results:
        report(results, args, info)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
