"""What one CGI request costs: gateways against a bare script and wsgiref.

Usage (as root, after ``benchmarks/setup_env.sh``)::

    python3 benchmarks/cgi_startup.py                     # lighttpd mod_cgi, 7 rounds
    python3 benchmarks/cgi_startup.py --fronts lighttpd,apache --rounds 7
    python3 benchmarks/cgi_startup.py --quick             # smoke run

Three cgi-bin scripts, all run by the same interpreter (the benchmark
virtualenv's python, a venv over Debian's /usr/bin/python3), all answering
``Hello, world!`` (13 bytes, text/plain):

``bare``
    a script with no imports that prints a fixed response: the floor, the
    cost of starting the interpreter;
``wsgiref``
    ``wsgiref.handlers.CGIHandler().run(application)``;
``gateways``
    ``from gateways.cgi import run; run(application)``.

Requests go one at a time (concurrency 1) through lighttpd mod_cgi and, with
``--fronts``, Apache mod_cgid, over one kept-alive http.client connection
per front.  Each round sends ``--requests`` requests per script, the three
scripts interleaved in a fresh random order for every request, so that load
from elsewhere on the machine hits all three alike.  Every response is
checked (status 200, exact body).  The report gives mean, median and p90 ms
per request, and the ratios gateways/bare and wsgiref/bare (median of the
per-round ratios of medians).  The project's target: gateways <= 1.10x bare.

Then ``python -X importtime`` shows what ``from gateways.cgi import run``
imports beyond the interpreter's own start-up, and how long a bare
``python -c pass`` takes against ``python -c "from gateways.cgi import run"``.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import benchlib

FRONTS = ("lighttpd", "apache")
SCRIPTS = ("bare", "wsgiref", "gateways", "cgi-script")
BODY = b"Hello, world!"
TARGET = 1.10

APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]
'''
SOURCES = {
    "bare": 'print("Content-Type: text/plain\\r\\nContent-Length: 13\\r\\n\\r\\nHello, world!", '
            'end="")\n',
    "wsgiref": "from wsgiref.handlers import CGIHandler\n" + APP + "\nCGIHandler().run(application)\n",
    "gateways": "from gateways.cgi import run\n" + APP + "\nrun(application)\n",
}
# What `gateways cgi-script hello_app:application` writes: the app is loaded by
# name (gateways.run -> detection -> the loader), as users deploy it.
APP_MODULE = "hello_app"

IMPORTS = {
    "wsgiref": "from wsgiref.handlers import CGIHandler",
    "gateways": "from gateways.cgi import run",
}

LIGHTTPD_BODY = """
$HTTP["url"] =~ "^/cgi-bin/" {
    cgi.assign = ( ".cgi" => "" )
}
"""
APACHE_BODY = """
ScriptAlias /cgi-bin/ "{docroot}/cgi-bin/"
"""


def write_scripts(ws, docroot: Path, python: Path) -> None:
    """The scripts in ``docroot/cgi-bin``, with ``python`` as their interpreter."""
    for name, source in SOURCES.items():
        ws.write_file(docroot / "cgi-bin" / f"{name}.cgi", f"#!{python}\n{source}", mode=0o755)
    app_dir = docroot.parent / "app"
    ws.write_file(app_dir / f"{APP_MODULE}.py", APP)
    subprocess.run([str(python), "-m", "py_compile", str(app_dir / f"{APP_MODULE}.py")],
                   check=True, timeout=60)
    (app_dir / "__pycache__").chmod(0o755)
    for cached in (app_dir / "__pycache__").iterdir():
        cached.chmod(0o644)
    subprocess.run([str(python), "-m", "gateways", "cgi-script", f"{APP_MODULE}:application",
                    "--app-dir", str(app_dir), "--python", str(python), "--force",
                    "-o", str(docroot / "cgi-bin" / "cgi-script.cgi")],
                   check=True, timeout=60, stdout=subprocess.DEVNULL)


def start_front(ws, name: str, root: Path, python: Path):
    """lighttpd (mod_cgi) or Apache (mod_cgid) serving the scripts from ``root``."""
    write_scripts(ws, root / "htdocs", python)
    if name == "lighttpd":
        return ws.start_lighttpd(LIGHTTPD_BODY, modules=("mod_cgi",), root=root)
    return ws.start_apache(APACHE_BODY, modules=("cgid",), root=root)


class Client:
    """One kept-alive connection to a front; reconnects when the server closes it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> float:
        """Milliseconds for one checked GET; raises RuntimeError on a wrong answer."""
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            elapsed = (time.perf_counter() - start) * 1000.0
            if response.status != 200 or body != BODY:
                raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
            return elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def measure(clients: dict, args: argparse.Namespace) -> dict:
    """samples[front][script][round] = list of ms, all requests interleaved."""
    rng = random.Random(args.seed)
    samples = {f: {s: [] for s in SCRIPTS} for f in clients}
    for client in clients.values():
        for script in SCRIPTS:
            for _ in range(args.warmup):
                client.get(f"/cgi-bin/{script}.cgi")
    for round_no in range(args.rounds):
        fronts = list(clients)
        rng.shuffle(fronts)
        for front in fronts:
            for script in SCRIPTS:
                samples[front][script].append([])
            for _ in range(args.requests):
                order = list(SCRIPTS)
                rng.shuffle(order)
                for script in order:
                    ms = clients[front].get(f"/cgi-bin/{script}.cgi")
                    samples[front][script][round_no].append(ms)
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return samples


def summarize(samples: dict) -> list[dict]:
    """Per front and script: mean/median/p90 ms and the ratio to ``bare``."""
    rows = []
    for front, scripts in samples.items():
        bare_medians = [statistics.median(r) for r in scripts["bare"]]
        for script, rounds in scripts.items():
            flat = sorted(ms for r in rounds for ms in r)
            medians = [statistics.median(r) for r in rounds]
            ratios = [m / b for m, b in zip(medians, bare_medians)]
            rows.append({
                "front": front, "script": script, "requests": len(flat),
                "mean_ms": statistics.fmean(flat), "median_ms": statistics.median(flat),
                "p90_ms": flat[int(0.9 * (len(flat) - 1))],
                "round_medians_ms": medians, "round_ratios": ratios,
                "ratio_to_bare": statistics.median(ratios),
            })
    return rows


def print_rows(rows: list[dict]) -> None:
    header = ("front", "script", "requests", "mean ms", "median ms", "p90 ms", "x bare",
              "per-round ratios")
    lines = [header] + [(
        r["front"], r["script"], str(r["requests"]), f"{r['mean_ms']:.2f}",
        f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['ratio_to_bare']:.3f}",
        " ".join(f"{x:.2f}" for x in r["round_ratios"])) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(v.rjust(w) if 2 <= i <= 6 else v.ljust(w)
                        for i, (v, w) in enumerate(zip(line, widths))).rstrip())
    print()
    for r in rows:
        if r["script"] in ("gateways", "cgi-script"):
            verdict = "met" if r["ratio_to_bare"] <= TARGET else "MISSED"
            print(f"{r['front']}: {r['script']}/bare = {r['ratio_to_bare']:.3f}x "
                  f"(target <= {TARGET:.2f}x: {verdict})")
        elif r["script"] == "wsgiref":
            print(f"{r['front']}: wsgiref/bare = {r['ratio_to_bare']:.3f}x")


# -- python -X importtime ----------------------------------------------------------------

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8"}


def _python(argv: list[str], ids, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run the venv's python as the CGI user would: clean environment, cwd /."""
    extra = {} if ids is None else {"user": ids[0], "group": ids[1], "extra_groups": []}
    return subprocess.run(argv, cwd="/", env=CLEAN_ENV, capture_output=True, text=True,
                          timeout=timeout, check=True, **extra)


def import_profile(python: Path, code: str, runs: int, ids) -> list[tuple[int, str, float]]:
    """(depth, module, median cumulative µs) for every module ``code`` imports."""
    found: dict[str, list[float]] = {}
    depth: dict[str, int] = {}
    order: list[str] = []
    for _ in range(runs):
        err = _python([str(python), "-X", "importtime", "-c", code], ids).stderr
        for line in err.splitlines():
            match = _IMPORT_LINE.match(line)
            if match:
                name = match.group(4)
                if name not in found:
                    found[name] = []
                    order.append(name)
                found[name].append(float(match.group(2)))
                depth[name] = len(match.group(3)) // 2
    return [(depth[n], n, statistics.median(found[n])) for n in order]


def importtime_report(python: Path, runs: int, ids) -> dict:
    """Print and return what each CGI script imports beyond ``python -c pass``."""
    base = {name for _, name, _ in import_profile(python, "pass", runs, ids)}
    report = {}
    for script, code in IMPORTS.items():
        extra = [(d, n, us) for d, n, us in import_profile(python, code, runs, ids)
                 if n not in base]
        total = sum(us for d, _, us in extra if d == 0)
        print(f"\npython -X importtime -c {code!r}: {total / 1000:.2f} ms in imports "
              f"beyond the interpreter's own start-up (median of {runs} runs; cumulative "
              "times, a module listed before its importer, as -X importtime prints them):")
        for d, name, us in extra:
            print(f"  {us / 1000:8.2f} ms  {'  ' * d}{name}")
        report[script] = {"total_ms": total / 1000,
                          "modules": [{"depth": d, "module": n, "cumulative_ms": us / 1000}
                                      for d, n, us in extra]}
    return report


def startup_report(python: Path, runs: int, ids) -> dict:
    """Wall time of ``python -c pass`` against ``-c IMPORT``, runs interleaved."""
    codes = {"pass": "pass", **IMPORTS}
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(runs):
        for name, code in random.sample(list(codes.items()), len(codes)):
            start = time.perf_counter()
            _python([str(python), "-c", code], ids)
            times[name].append((time.perf_counter() - start) * 1000.0)
    print(f"\nprocess start-up, median of {runs} runs each (wall time, includes fork/exec):")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"  {value:7.2f} ms  python -c {codes[name]!r}")
    return {"medians_ms": medians, "samples_ms": times}


# -- command line -----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time one CGI request (bare script, wsgiref, gateways) through lighttpd "
        "mod_cgi and Apache mod_cgid; see benchmarks/README.rst.")
    parser.add_argument("--fronts", default="lighttpd",
                        help="comma-separated: lighttpd, apache (default: lighttpd)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100,
                        help="requests per script per round (default 100)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per script")
    parser.add_argument("--importtime-runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 5 requests")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None,
                        help="write raw results here (default: "
                        "$GATEWAYS_BENCH_DIR/results/cgi_startup-DATE.json)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    args = parser.parse_args(argv)
    args.fronts = [f.strip() for f in args.fronts.split(",") if f.strip()]
    if not args.fronts or any(f not in FRONTS for f in args.fronts):
        parser.error(f"--fronts: choose from {','.join(FRONTS)}")
    if args.quick:
        args.rounds, args.requests, args.warmup, args.importtime_runs = 1, 5, 2, 2
    if args.json is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.json = benchlib.BENCH_DIR / "results" / f"cgi_startup-{stamp}.json"
    return args


def run_fronts(ws, args: argparse.Namespace, python: Path) -> list[dict]:
    """Start the fronts, measure, stop them; the summary rows."""
    run = ws.public_dir("gw-cgibench-")
    servers, clients = {}, {}
    try:
        for front in args.fronts:
            servers[front] = start_front(ws, front, run / front, python)
            clients[front] = Client(servers[front].port)
        samples = measure(clients, args)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
        if args.keep:
            print(f"run directory kept: {run}", file=sys.stderr)
        else:
            benchlib.remove_tree(run)
    return summarize(samples)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    benchlib.check_venvs(benchlib.VENV)
    benchlib.stop_on_signals()
    ws = benchlib.webservers()
    python = benchlib.VENV / "bin" / "python"
    ids = ws.www_data_ids()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    load_start = os.getloadavg()
    try:
        rows = run_fronts(ws, args, python)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print_rows(rows)
    imports = importtime_report(python, args.importtime_runs, ids)
    startup = startup_report(python, args.importtime_runs * 3, ids)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "meta": {"date": started, "argv": argv, "cpus": os.cpu_count(),
                 "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                 "python": benchlib.command_output([str(python), "--version"]),
                 "options": {k: str(v) if isinstance(v, Path) else v
                             for k, v in vars(args).items()}},
        "rows": rows, "importtime": imports, "startup": startup}, indent=1))
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
