"""``gateways request``: the real command against real FastCGI, SCGI and uwsgi daemons.

What a health check runs: the exit status (0 for 2xx/3xx, 1 for 4xx/5xx, 2
when the daemon cannot be reached or does not answer a response), the body
on stdout, ``-i`` for the head, ``-d``/``-H``/``--param`` shaping the
request, and ``--values`` for FCGI_GET_VALUES.
"""

import json
import socket
import subprocess
import threading

import pytest

from daemons import APPS, Daemon, clean_environ, gateways_argv

PROTOCOLS = ("fastcgi", "scgi", "uwsgi")


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    """One daemon per protocol: the probe application, unix sockets (TCP for scgi)."""
    directory = tmp_path_factory.mktemp("request")
    started = {}
    try:
        for protocol in PROTOCOLS:
            started[protocol] = Daemon(
                gateways_argv(protocol, "probe", "--app-dir", str(APPS)), directory, protocol,
                bind="tcp" if protocol == "scgi" else "unix",
                args=["--processes", "1", "--threads", "2"], env=clean_environ())
        for daemon in started.values():
            daemon.wait_ready()
        yield {protocol: daemon.bind for protocol, daemon in started.items()}
    finally:
        for daemon in started.values():
            daemon.kill()


def request(*args, stdin=None):
    return subprocess.run(gateways_argv("request", *args), capture_output=True, timeout=30,
                          input=stdin, env=clean_environ())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_get_prints_the_body_and_exits_0(daemons, protocol):
    proc = request(protocol, daemons[protocol], "/echo/x?a=1")
    assert proc.returncode == 0, proc.stderr
    echo = json.loads(proc.stdout)
    assert (echo["path_info"], echo["query_string"], echo["method"]) == ("/echo/x", "a=1", "GET")
    assert echo["gateway"] == {"fastcgi": "FastCGI", "scgi": "SCGI", "uwsgi": "uwsgi"}[protocol]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("path", "status"), [("/status/404", 1), ("/error", 1),
                                              ("/status/204", 0)])
def test_exit_status_follows_the_answer(daemons, protocol, path, status):
    proc = request(protocol, daemons[protocol], path)
    assert proc.returncode == status, proc.stderr
    assert b"SECRET-MARKER" not in proc.stdout


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_include_prints_the_head(daemons, protocol):
    proc = request(protocol, daemons[protocol], "/cookies", "-i")
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] in ("Status: 200 OK", "HTTP/1.1 200 OK")
    assert "Set-Cookie: a=1; Path=/" in lines and "Set-Cookie: b=2; Path=/" in lines
    assert body == b"two cookies"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_body_headers_and_params(daemons, protocol, tmp_path):
    (tmp_path / "body.bin").write_bytes(b"x" * 100_000)
    proc = request(protocol, daemons[protocol], "/upload", "-d", "@%s" % (tmp_path / "body.bin"))
    assert json.loads(proc.stdout)["length"] == 100_000
    proc = request(protocol, daemons[protocol], "/echo", "-X", "PUT", "-d", "@-",
                   "-H", "X-Probe: yes", "-H", "Content-Type: text/plain",
                   "--param", "SCRIPT_NAME=/mounted", stdin=b"from stdin")
    echo = json.loads(proc.stdout)
    assert echo["method"] == "PUT" and echo["content_length"] == "10"
    assert echo["http"]["HTTP_X_PROBE"] == "yes" and echo["content_type"] == "text/plain"
    assert echo["script_name"] == "/mounted"


def test_fastcgi_values(daemons):
    proc = request("fastcgi", daemons["fastcgi"], "--values")
    assert proc.returncode == 0
    assert proc.stdout.decode().splitlines() == [
        "FCGI_MAX_CONNS=2", "FCGI_MAX_REQS=2", "FCGI_MPXS_CONNS=0"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nobody_listening_exits_2_with_one_line(tmp_path, protocol):
    proc = request(protocol, "unix:%s" % (tmp_path / "none.sock"))
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode() == "gateways: error: cannot connect to unix:%s: No such file " \
                                   "or directory\n" % (tmp_path / "none.sock")


def _server(answer, close=True):
    """A listener that answers every connection with ``answer`` (or nothing)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            if answer is not None:
                conn.sendall(answer)
            if close:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, "127.0.0.1:%d" % listener.getsockname()[1]


@pytest.mark.parametrize(("answer", "close", "message"), [
    (b"garbage that is no response", True, "the answer has no end of headers"),
    (None, False, "no complete answer within the timeout"),
    (b"Status: abc\r\n\r\n", True, "the answer's status 'abc' is not a number"),
], ids=["garbage", "silence", "bad status"])
def test_a_broken_daemon_exits_2(answer, close, message):
    listener, address = _server(answer, close)
    try:
        proc = request("scgi", address, "--timeout", "1")
    finally:
        listener.close()
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("gateways: error: " + message), proc.stderr


def test_operator_mistakes_are_one_line():
    for args, needle in [(("fastcgi", "nonsense"), "is not an address"),
                         (("scgi", "127.0.0.1:1", "--values"), "--values is a FastCGI request"),
                         (("scgi", "127.0.0.1:1", "-H", "NoColon"), "is not 'Name: value'"),
                         (("scgi", "127.0.0.1:1", "relative"), "must start with /")]:
        proc = request(*args)
        assert proc.returncode == 2 and needle in proc.stderr.decode(), (args, proc.stderr)
        assert proc.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_timeout_that_is_no_duration_is_refused(value):
    """``--timeout 0`` would give up before connecting: a usage error, exit 2."""
    proc = request("fastcgi", "127.0.0.1:1", "--timeout", value)
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and "argument --timeout:" in stderr, stderr
    assert "Traceback" not in stderr
