"""Slow is not stuck: what the engine promises about peers, recycling and stopping.

Real daemons (``python -m gateways fastcgi``, one process, few threads, a unix
socket), real sockets and real signals, as tests/test_engine.py does:

* a peer that sends nothing, or half a request, or a kept-alive connection
  between requests, holds no thread (the worker parks it), and is dropped at
  ``--keepalive-timeout`` / ``--read-timeout`` with a log line;
* ``--max-parked`` bounds what waits; one more is closed at once;
* a request whose client went away while it waited for a thread is not run;
* SIGTERM with requests in flight and connections queued: every one answered;
* ``--timeout``: the worker is replaced and the other requests on it finish;
* ``--max-rss`` recycles a worker, and no request fails meanwhile.

The timings here are bounds with wide margins (a request that no thread would
take waits for ``--read-timeout``, 30 s by default); the figures are measured by
benchmarks/faults.py.
"""

import os
import signal
import socket
import time

import pytest
from test_engine import InFlight, Load

import fcgi_client as fc
from daemons import WAIT, alive, fastcgi, wait_until

HALF_BEGIN = fc.begin_request(1)[:5]  # half a FastCGI record: a stalled peer


@pytest.fixture
def spawn(tmp, started):
    def start(*options, **kw):
        daemon = fastcgi(tmp, *options, name="server%d" % len(started), **kw)
        started.append(daemon)
        return daemon.wait_ready()

    return start


def connect(address, data=b""):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(address)
    if data:
        sock.sendall(data)
    return sock


def closed_by_peer(sock, timeout):
    """True when the daemon closes ``sock`` within ``timeout`` s."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def answered_in(server, seconds=2.0):
    """A fresh request is answered within ``seconds`` (a thread was free for it)."""
    started = time.monotonic()
    response = fc.request(server.address, fc.http_params("/pid"), timeout=seconds)
    assert response.status_code == 200, response
    return time.monotonic() - started


# -- parked connections ------------------------------------------------------------------------


def test_stalled_and_silent_peers_hold_no_thread(spawn):
    server = spawn("--processes", "1", "--threads", "2")
    stalled = [connect(server.address, HALF_BEGIN) for _ in range(20)]
    silent = [connect(server.address) for _ in range(20)]
    try:
        time.sleep(0.3)  # every one accepted and parked by now
        for _ in range(5):
            assert answered_in(server) < 2.0  # --read-timeout is 30 s: no thread waits
    finally:
        for sock in stalled + silent:
            sock.close()


def test_a_stalled_peer_is_dropped_at_read_timeout_with_one_line(spawn):
    server = spawn("--processes", "1", "--threads", "2", "--read-timeout", "1",
                   "--keepalive-timeout", "30")
    server.log.mark()
    sock = connect(server.address, HALF_BEGIN)
    try:
        assert not closed_by_peer(sock, 0.5)
        assert closed_by_peer(sock, 2.0)
    finally:
        sock.close()
    [line] = [x for x in server.log.wait_for("stalled").splitlines() if x.strip()]
    assert " WARNING: " in line and "stalled for 1 s in the middle of a request" in line
    assert "a unix socket peer (pid %d" % os.getpid() in line


def test_a_silent_peer_is_dropped_at_keepalive_timeout(spawn):
    server = spawn("--processes", "1", "--threads", "1", "--keepalive-timeout", "1",
                   "--read-timeout", "30")
    sock = connect(server.address)
    try:
        assert not closed_by_peer(sock, 0.5)
        assert closed_by_peer(sock, 2.0)
    finally:
        sock.close()


def test_a_slow_request_is_served_when_it_is_complete(spawn):
    server = spawn("--processes", "1", "--threads", "1")
    data = fc.build_request(fc.http_params("/upload", method="POST", body=b"x" * 5000),
                            b"x" * 5000)
    with fc.FastCGIClient(server.address, WAIT) as client:
        for start in range(0, len(data), len(data) // 5):
            client.send_raw(data[start:start + len(data) // 5])
            time.sleep(0.1)  # longer than a thread waits: the connection is parked
            assert answered_in(server) < 2.0  # and the one thread serves others
        response = fc.Response(client.read_until_closed(WAIT))
    assert response.status_code == 200 and b'"length": 5000' in response.body


def test_a_kept_alive_connection_between_requests_holds_no_thread(spawn):
    server = spawn("--processes", "1", "--threads", "1", "--keepalive-timeout", "30")
    with fc.FastCGIClient(server.address, WAIT) as kept:
        first = kept.request(fc.http_params("/pid"), keep_conn=True)
        assert first.status_code == 200
        for _ in range(3):  # the only thread is free while the kept connection idles
            assert answered_in(server) < 2.0
        second = kept.request(fc.http_params("/pid"), request_id=2, keep_conn=True)
        assert second.status_code == 200 and second.body == first.body


def test_max_parked_bounds_what_waits(spawn):
    server = spawn("--processes", "1", "--threads", "1", "--max-parked", "5")
    server.log.mark()
    waiting = [connect(server.address) for _ in range(5)]
    try:
        time.sleep(0.3)
        one_more = connect(server.address)
        assert closed_by_peer(one_more, 2.0)
        one_more.close()
        line = server.log.wait_for("--max-parked")
        assert " WARNING: " in line and "5 connections are already waiting" in line
        assert not any(closed_by_peer(sock, 0.05) for sock in waiting)
        assert answered_in(server) < 2.0  # a complete request needs no parking
    finally:
        for sock in waiting:
            sock.close()


# -- abandoned requests ------------------------------------------------------------------------

COUNTING_APP = '''
import os
import time

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs.log")


def app(environ, start_response):
    with open(RUNS, "a") as f:
        f.write(environ.get("QUERY_STRING", "") + "\\n")
    time.sleep(0.3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ran"]
'''


def test_requests_whose_client_left_while_waiting_are_not_run(tmp, started):
    (tmp / "counting.py").write_text(COUNTING_APP)
    server = fastcgi(tmp, "--processes", "1", "--threads", "2", app="counting:app",
                     app_dir=tmp, name="counting")
    started.append(server)
    server.wait_ready()
    busy = [InFlight(server.address, "/", "busy=%d" % n, settle=0.05) for n in range(2)]
    for n in range(20):  # sent whole, then the client goes (nginx on a client abort)
        sock = connect(server.address, fc.build_request(fc.http_params("/", "gone=%d" % n)))
        sock.close()
    for request in busy:
        assert request.result().response.status_code == 200
    kept = InFlight(server.address, "/", "after=1", settle=0.0).result()
    assert kept.response.status_code == 200 and kept.response.body == b"ran"
    runs = (tmp / "runs.log").read_text().split()
    assert sorted(runs) == ["after=1", "busy=0", "busy=1"], runs


# -- stopping and recycling --------------------------------------------------------------------


def test_sigterm_answers_the_requests_in_flight_and_the_queued_ones(spawn):
    server = spawn("--processes", "1", "--threads", "2", "--backlog", "64")
    in_flight = [InFlight(server.address, "/sleep", "t=0.5", settle=0.0) for _ in range(2)]
    queued = [InFlight(server.address, "/pid", settle=0.0) for _ in range(10)]
    time.sleep(0.1)  # the two threads sleep; the ten wait in the listen queue
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    results = [request.result() for request in in_flight + queued]
    failed = [(r.path, r.error) for r in results if r.response is None]
    assert failed == []
    assert all(r.response.status_code == 200 for r in results)


def test_sigterm_on_tcp_refuses_new_connections_and_answers_the_queued_ones(spawn):
    """On a TCP port the daemon opened, a stop lets no new connection into the listen
    queue (a socket filter drops the SYNs): a client that connects meanwhile is not
    accepted and then reset, it waits for its SYN retry and finds the port closed, a
    refused connection a web server fails over from whatever the request."""
    server = spawn("--processes", "1", "--threads", "2", "--graceful-timeout", "10",
                   bind="tcp")
    in_flight = [InFlight(server.address, "/sleep", "t=1.5", settle=0.0) for _ in range(2)]
    queued = [InFlight(server.address, "/pid", settle=0.0) for _ in range(5)]
    time.sleep(0.2)  # the two threads sleep; the five wait in the listen queue
    server.signal(signal.SIGTERM)
    time.sleep(0.2)
    late = socket.socket()
    late.settimeout(0.5)
    try:
        with pytest.raises(socket.timeout):  # the SYN was dropped: no connection at all
            late.connect(server.address)
    finally:
        late.close()
    assert server.wait_exit(timeout=10) == 0
    results = [request.result() for request in in_flight + queued]
    assert [(r.path, r.error) for r in results if r.response is None] == []
    assert all(r.response.status_code == 200 for r in results)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=2).close()


def test_timeout_spares_the_other_requests_of_the_worker(spawn):
    server = spawn("--processes", "1", "--threads", "4", "--timeout", "2",
                   "--graceful-timeout", "10")
    [worker] = server.wait_workers(1)
    stuck = InFlight(server.address, "/sleep", "t=30", settle=1.5)
    # In flight when the stuck one passes --timeout, and within it themselves.
    others = [InFlight(server.address, "/sleep", "t=1", settle=0.0) for _ in range(2)]
    for request in others:
        request.result(timeout=8)
        assert request.response is not None and request.response.status_code == 200, (
            request.error)
        assert int(request.response.body) == worker
    line = server.log.wait_for("killed;", timeout=8)
    assert "other request" not in line  # none was lost with the stuck one
    stuck.result(timeout=5)
    assert stuck.response is None
    assert not alive(worker)


def test_max_rss_recycles_the_worker_and_no_request_fails(spawn):
    server = spawn("--processes", "1", "--threads", "2", "--max-rss", "1M")
    [first] = server.wait_workers(1)
    traffic = Load(server.address, clients=2)
    try:
        server.log.wait_for("worker %d passed --max-rss: starting its replacement" % first)
        wait_until(lambda: not alive(first), what="the recycled worker gone")
        wait_until(lambda: traffic.pids() - {first}, what="answers from its replacement")
    finally:
        traffic.stop()
    assert traffic.failures == []
