"""``--stats ADDRESS`` and ``gateways status``: what an operator's monitoring sees.

Real daemons (FastCGI, SCGI, uwsgi) with ``--stats`` on a unix socket or a
TCP port, real requests (answered, 4xx, 5xx, application exceptions,
protocol violations, a stalled peer), then what ``GET /`` (JSON) and
``GET /metrics`` (Prometheus text) say, and what ``gateways status`` prints.
The totals must survive a worker that is killed with SIGKILL and one that is
recycled by ``--max-requests``.
"""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

from gateways.protocol import scgi as scgi_core
from gateways.protocol import uwsgi as uwsgi_core

import fcgi_client as fc
import webservers
from daemons import (
    APPS,
    EngineDaemon,
    clean_environ,
    exchange,
    gateways_argv,
    read_until_closed,
    wait_until,
)

WORKER_FIELDS = {"id", "pid", "started", "generation", "ready", "requests",
                 "requests_in_flight", "threads_busy", "threads", "parked", "rss", "state",
                 "recycle_reason"}
TOTAL_FIELDS = {"requests", "responses_4xx", "responses_5xx", "app_exceptions",
                "protocol_errors", "workers_respawned", "workers_recycled"}


# -- the client side --------------------------------------------------------------------


def http(address, request):
    """Send ``request`` to ``address`` (a unix path or (host, port)) and read the answer
    until the server closes: ``(status code, headers, body)``."""
    data = exchange(address, request)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(address, path="/", method="GET"):
    return http(address, b"%s %s HTTP/1.0\r\n\r\n" % (method.encode(), path.encode()))


def snapshot(address):
    status, headers, body = get(address)
    assert status == 200 and headers["Content-Type"] == "application/json", (status, body)
    return json.loads(body)


def snapshot_when(address, predicate, what):
    """The first snapshot ``predicate`` accepts (waiting for it)."""
    def accepted():
        now = snapshot(address)
        return now if predicate(now) else None

    return wait_until(accepted, what=what)


def settled(address, requests, errors=0):
    """The snapshot once ``requests`` requests and ``errors`` protocol errors are counted:
    a thread counts a request just after its answer went out, so a client that got
    its answer can ask a moment too early."""
    return snapshot_when(address, lambda now: now["totals"]["requests"] >= requests and
                         sum(now["totals"]["protocol_errors"].values()) >= errors,
                         "%d requests and %d protocol errors counted" % (requests, errors))


SAMPLE = re.compile(r'^(gateways_[a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? '
                    r'(-?[0-9.e+]+)$')


def metrics(address):
    """The Prometheus text at ``/metrics``, checked line by line: ``{name{labels}: value}``."""
    status, headers, body = get(address, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples, typed = {}, set()
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            typed.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, "not a Prometheus sample: %r" % line
            assert match.group(1) in typed, "a sample before its # TYPE: %r" % line
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(4))
    return samples


def send(protocol, address, path):
    """One request to the daemon (through its own protocol): the status code."""
    params = fc.http_params(path)
    if protocol == "fastcgi":
        return fc.request(address, params, timeout=10).status_code
    core = scgi_core if protocol == "scgi" else uwsgi_core
    data = exchange(address, core.make_request(params, b""))
    first = data.split(b"\r\n", 1)[0]
    if first.startswith(b"HTTP/"):
        return int(first.split()[1])
    return int(first.split(b":")[1].split()[0]) if first.startswith(b"Status:") else 200


def garbage(address):
    """A peer that breaks the protocol (the daemon closes the connection)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(b"\xff" * 64)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass


def status_command(*args, timeout=30):
    return subprocess.run(gateways_argv("status", *args), capture_output=True, text=True,
                          timeout=timeout, env=clean_environ())


# -- the daemons --------------------------------------------------------------------------


def start(directory, protocol, *options, stats="unix"):
    """A daemon with --stats: on DIRECTORY/PROTOCOL-stats.sock, or a free TCP port."""
    if stats == "unix":
        stats_address = str(directory / ("%s-stats.sock" % protocol))
        flag = "unix:" + stats_address
    else:
        port = webservers.free_port()
        stats_address, flag = ("127.0.0.1", port), "127.0.0.1:%d" % port
    argv = gateways_argv(protocol, "probe", "--app-dir", str(APPS))
    daemon = EngineDaemon(argv, directory, protocol, bind="unix",
                          args=["--stats", flag, *options])
    daemon.stats = stats_address
    daemon.wait_ready()
    wait_until(lambda: all(w["ready"] for w in snapshot(stats_address)["workers"]),
               what="every worker ready")  # "ready:" is the first one
    return daemon


@pytest.fixture
def started(tmp_path):
    daemons = []

    def make(*args, **options):
        daemons.append(start(tmp_path, *args, **options))
        return daemons[-1]

    yield make
    for daemon in daemons:
        daemon.kill()


# -- what the daemon answers ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["fastcgi", "scgi", "uwsgi"])
def test_the_snapshot_counts_what_happened(started, protocol):
    daemon = started(protocol, "--processes", "2", "--threads", "2")
    codes = [send(protocol, daemon.address, path) for path in
             ["/pid"] * 5 + ["/status/404", "/status/403", "/error", "/status/503"]]
    assert codes == [200] * 5 + [404, 403, 500, 503]
    garbage(daemon.address)
    now = settled(daemon.stats, 9, errors=1)
    assert now["version"] and now["gateway"] == {"fastcgi": "FastCGI", "scgi": "SCGI",
                                                 "uwsgi": "uwsgi"}[protocol]
    assert now["pid"] == daemon.pid
    assert now["listeners"] == ["unix:%s" % daemon.address]
    assert now["processes"] == 2 and now["threads"] == 2
    assert 0 < now["started"] <= now["now"] <= time.time() + 1
    totals = now["totals"]
    assert set(totals) == TOTAL_FIELDS
    assert totals["requests"] == 9
    assert totals["responses_4xx"] == 2 and totals["responses_5xx"] == 2
    assert totals["app_exceptions"] == 1
    assert sum(totals["protocol_errors"].values()) == 1
    assert totals["workers_respawned"] == 0 and totals["workers_recycled"] == 0
    workers = now["workers"]
    assert sorted(w["pid"] for w in workers) == sorted(daemon.worker_pids())
    for worker in workers:
        assert set(worker) == WORKER_FIELDS
        assert worker["state"] == "serving" and worker["ready"]
        assert worker["threads"] == 2 and worker["threads_busy"] == 0
        assert worker["parked"] == 0 and worker["recycle_reason"] is None
        assert 5_000_000 < worker["rss"] < 500_000_000
        assert now["started"] <= worker["started"] <= now["now"]
    assert sum(w["requests"] for w in workers) == 9
    assert now["last_recycle"] is None


def test_metrics_say_the_same_in_prometheus_text(started):
    daemon = started("fastcgi", "--processes", "1", "--threads", "2", stats="tcp")
    for path in ("/pid", "/pid", "/status/404", "/error"):
        send("fastcgi", daemon.address, path)
    garbage(daemon.address)
    settled(daemon.stats, 4, errors=1)
    samples = metrics(daemon.stats)
    now = snapshot(daemon.stats)
    [worker] = now["workers"]
    label = '{worker="%d"}' % worker["id"]
    assert samples["gateways_requests_total"] == 4
    assert samples['gateways_responses_total{class="4xx"}'] == 1
    assert samples['gateways_responses_total{class="5xx"}'] == 1
    assert samples["gateways_app_exceptions_total"] == 1
    [(kind, count)] = now["totals"]["protocol_errors"].items()
    assert samples['gateways_protocol_errors_total{kind="%s"}' % kind] == count == 1
    assert samples["gateways_workers"] == 1
    assert samples["gateways_worker_requests_total" + label] == 4
    assert samples["gateways_worker_threads" + label] == 2
    assert samples["gateways_worker_threads_busy" + label] == 0
    assert samples["gateways_worker_parked_connections" + label] == 0
    assert samples["gateways_worker_resident_memory_bytes" + label] > 5_000_000
    assert samples["gateways_start_time_seconds"] == now["started"]
    assert samples['gateways_info{version="%s",gateway="FastCGI"}' % now["version"]] == 1


def test_busy_threads_and_parked_connections_are_seen(started):
    daemon = started("fastcgi", "--processes", "1", "--threads", "3")
    with socket.socket(socket.AF_UNIX) as slow, socket.socket(socket.AF_UNIX) as stalled:
        slow.connect(daemon.address)
        slow.sendall(fc.build_request(fc.http_params("/sleep", "t=1.5")))
        stalled.connect(daemon.address)
        stalled.sendall(fc.begin_request())  # half a request: the poller holds it
        now = snapshot_when(daemon.stats, lambda s: s["workers"][0]["threads_busy"] == 1 and
                            s["workers"][0]["parked"] == 1,
                            "one busy thread and one parked connection")
        assert now["workers"][0]["requests_in_flight"] == 1
        assert metrics(daemon.stats)[
            'gateways_worker_parked_connections{worker="%d"}' % now["workers"][0]["id"]] == 1
        slow.settimeout(10)
        data = read_until_closed(slow)
        assert fc.parse_records(data)[-1][0] == fc.END_REQUEST  # the slow one was answered
    wait_until(lambda: snapshot(daemon.stats)["workers"][0]["parked"] == 0,
               what="the parked connection gone once its peer left")


def test_the_totals_survive_a_killed_worker(started):
    daemon = started("fastcgi", "--processes", "2", "--threads", "2")
    for _ in range(6):
        assert send("fastcgi", daemon.address, "/pid") == 200
    send("fastcgi", daemon.address, "/error")
    before = settled(daemon.stats, 7)
    victim = max(before["workers"], key=lambda w: w["requests"])
    assert victim["requests"] > 0
    os.kill(victim["pid"], signal.SIGKILL)
    daemon.wait_workers(2, exclude=[victim["pid"]])
    after = snapshot_when(daemon.stats, lambda s: len(s["workers"]) == 2 and all(
        w["ready"] for w in s["workers"]), "two ready workers again")
    assert victim["pid"] not in [w["pid"] for w in after["workers"]]
    assert after["totals"]["requests"] == 7
    assert after["totals"]["app_exceptions"] == 1
    assert after["totals"]["workers_respawned"] == 1
    assert send("fastcgi", daemon.address, "/pid") == 200
    assert settled(daemon.stats, 8)["totals"]["requests"] == 8


def test_a_recycle_is_counted_with_its_reason(started):
    daemon = started("fastcgi", "--processes", "1", "--threads", "1", "--max-requests", "3")
    first = daemon.worker_pids()
    for _ in range(3):
        assert send("fastcgi", daemon.address, "/pid") == 200
    daemon.wait_workers(1, exclude=first)
    now = settled(daemon.stats, 3)
    assert now["last_recycle"]["reason"] == "served --max-requests"
    assert now["last_recycle"]["pid"] in first
    assert now["totals"]["requests"] == 3 and now["totals"]["workers_respawned"] == 0


def test_the_stats_socket_is_0660_and_removed_at_exit(started, tmp_path):
    daemon = started("scgi", "--processes", "1")
    mode = stat.S_IMODE(os.stat(daemon.stats).st_mode)
    assert mode == 0o660
    assert "stats on unix:%s" % daemon.stats in daemon.log.text()
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.stats)


def test_other_requests_get_404_405_and_head_gets_no_body(started):
    daemon = started("fastcgi", "--processes", "1", stats="tcp")
    assert get(daemon.stats, "/nothing")[0] == 404
    assert get(daemon.stats, "/", "POST")[0] == 405
    status, headers, body = get(daemon.stats, "/", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100


def test_a_stats_client_that_sends_nothing_holds_nothing(started):
    daemon = started("fastcgi", "--processes", "1")
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(daemon.stats)
        started_at = time.monotonic()
        assert snapshot(daemon.stats)["totals"]["requests"] == 0  # answered meanwhile
        assert send("fastcgi", daemon.address, "/pid") == 200
        silent.settimeout(5)
        assert silent.recv(10) == b""  # dropped after about a second
        assert time.monotonic() - started_at < 4


def test_a_stats_address_in_use_is_one_line_and_leaves_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sock = tmp_path / "app.sock"
        result = subprocess.run(
            gateways_argv("fastcgi", "probe", "--app-dir", str(APPS), "--bind",
                          "unix:%s" % sock, "--stats", "127.0.0.1:%d" % port),
            capture_output=True, text=True, timeout=30, env=clean_environ(), cwd=tmp_path)
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("gateways: error: --stats: ") and str(port) in line
    assert not sock.exists()


def test_a_bad_stats_address_is_one_line():
    result = subprocess.run(gateways_argv("fastcgi", "probe", "--stats", "nowhere"),
                            capture_output=True, text=True, timeout=30, env=clean_environ())
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("gateways: error:") and "--stats" in line


# -- gateways status ------------------------------------------------------------------------


def test_status_shows_the_workers_and_the_rate(started):
    daemon = started("uwsgi", "--processes", "2", "--threads", "2")
    for _ in range(4):
        send("uwsgi", daemon.address, "/pid")
    settled(daemon.stats, 4)
    result = status_command("unix:%s" % daemon.stats, "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gateways ") and "uwsgi" in lines[0]
    assert "master %d" % daemon.pid in lines[0]
    assert lines[1].startswith("requests 4 (0.0/s)")
    assert "workers 2 (2 x 2 threads wanted)" in lines[2]
    assert lines[3] == "" and lines[4].split()[:3] == ["PID", "STATE", "REQUESTS"]
    table = {int(line.split()[0]): line.split() for line in lines[5:]}
    assert set(table) == daemon.worker_pids()
    for row in table.values():
        assert row[1] == "serving" and row[4] == "0/2" and row[5] == "0"
        assert row[6].endswith("M")
    assert sum(int(row[2]) for row in table.values()) == 4


def test_status_watch_refreshes_and_counts_requests_per_second(started):
    daemon = started("fastcgi", "--processes", "1", "--threads", "2")
    process = subprocess.Popen(gateways_argv("status", "unix:%s" % daemon.stats, "--watch",
                                             "--interval", "1", "--count", "3"),
                               stdout=subprocess.PIPE, text=True, env=clean_environ())
    try:
        # requests until it has shown its three screens (however long the command
        # takes to start on a busy machine), bounded in count and time
        deadline = time.monotonic() + 20
        sent = 0
        while process.poll() is None and time.monotonic() < deadline and sent < 20000:
            assert send("fastcgi", daemon.address, "/pid") == 200
            sent += 1
        out, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0
    screens = [line for line in out.splitlines() if line.startswith("requests ")]
    assert len(screens) == 3
    rates = [float(re.search(r"\(([0-9.]+)/s\)", line).group(1)) for line in screens]
    assert rates[0] > 1  # requests were sent during the first interval
    assert int(screens[-1].split()[1]) <= sent


def test_status_json_prints_the_snapshot(started):
    daemon = started("fastcgi", "--processes", "1", stats="tcp")
    result = status_command("127.0.0.1:%d" % daemon.stats[1], "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["pid"] == daemon.pid


@pytest.mark.parametrize("target, message", [
    ("unix:/nonexistent/stats.sock", "cannot connect to unix:/nonexistent/stats.sock"),
    ("fd:3", "give unix:PATH or HOST:PORT"),
])
def test_status_of_nothing_is_one_line_and_exit_2(target, message):
    result = status_command(target)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("gateways: error:") and message in line



@pytest.mark.parametrize("option, value", [("--interval", "0"), ("--interval", "-1"),
                                           ("--timeout", "0"), ("--count", "-1"),
                                           ("--count", "many")])
def test_status_option_out_of_range_is_a_usage_error(option, value):
    """``--watch --interval 0`` would ask the daemon in a busy loop: refused, exit 2,
    before anything is asked."""
    result = status_command("unix:/nonexistent/stats.sock", "--watch", option, value)
    assert result.returncode == 2
    assert "argument %s:" % option in result.stderr and "Traceback" not in result.stderr
    assert "cannot connect" not in result.stderr

def test_status_of_something_that_is_not_a_stats_address(started):
    daemon = started("fastcgi", "--processes", "1")
    result = status_command("unix:%s" % daemon.address)  # the FastCGI socket itself
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "gateways: error:" in line
