"""The scale-out snippets: one front end, two FastCGI daemons on TCP, both get traffic.

Each daemon runs with FCGI_WEB_SERVER_ADDRS=127.0.0.1, as the snippets tell
the operator to, so the test also proves that the web servers' connections
pass that check.
"""

import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile

import pytest

from gateways.confgen import render, split_nginx

import webservers
from behaviour import Front, FrontBehaviour, get_json

pytestmark = pytest.mark.servers


def _master(pid):
    """The parent of a worker process: its daemon's master."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError("no PPid for %d" % pid)


@pytest.fixture(scope="module")
def backends(gateways_bin, app_dir):
    daemons = []
    for _ in range(2):
        port = webservers.free_port()
        log = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [gateways_bin, "fastcgi", "probe:application", "--app-dir", str(app_dir),
             "--bind", "127.0.0.1:%d" % port, "--processes", "1", "--threads", "4"],
            env=dict(os.environ, FCGI_WEB_SERVER_ADDRS="127.0.0.1"), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        webservers.wait_for_port(port, timeout=15, process=process)
        daemons.append((port, process))
    yield daemons
    for _, process in daemons:
        process.send_signal(signal.SIGTERM)
    for _, process in daemons:
        assert process.wait(timeout=15) == 0


@pytest.fixture(scope="module", params=["apache", "lighttpd", "nginx"])
def balanced(request, backends):
    listed = ",".join("127.0.0.1:%d" % port for port, _ in backends)
    text = render(request.param, "balancer", app="probe:application", prefix="/app",
                  backends=listed)
    if request.param == "apache":
        server = webservers.start_apache(text, modules=(
            "proxy", "proxy_fcgi", "proxy_balancer", "lbmethod_byrequests", "slotmem_shm"))
    elif request.param == "lighttpd":
        server = webservers.start_lighttpd(text)
    else:
        http_part, server_part = split_nginx(text)
        server = webservers.start_nginx(server_part, http_extra=http_part)
    yield server
    server.close()


def test_both_daemons_get_traffic(balanced, backends):
    front = Front(balanced.url(), "/app", balanced)

    def served_by(_):
        return _master(get_json(front, "/echo")["pid"])

    # Concurrent requests: lighttpd sends each to the least busy daemon.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        masters = list(pool.map(served_by, range(40)))
    expected = {process.pid for _, process in backends}
    assert set(masters) == expected, masters


def test_snippet_tells_how_to_start_each_daemon(backends):
    listed = ",".join("127.0.0.1:%d" % port for port, _ in backends)
    text = render("nginx", "balancer", app="probe:application", backends=listed,
                  python=sys.executable)
    for port, _ in backends:
        assert "FCGI_WEB_SERVER_ADDRS=127.0.0.1 " in text
        assert "--bind 127.0.0.1:%d" % port in text


class TestBalancedBehaviour(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, balanced):
        return Front(balanced.url(), "/app", balanced, streams=True)
