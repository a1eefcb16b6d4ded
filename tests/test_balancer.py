"""The scale-out snippets: one front end, two FastCGI daemons on TCP, both get traffic.

Each daemon runs with FCGI_WEB_SERVER_ADDRS=127.0.0.1, as the snippets tell
the operator to, so the test also proves that the web servers' connections
pass that check.
"""

import concurrent.futures
import sys

import pytest

from gateways.confgen import render, split_nginx

import webservers
from behaviour import Front, FrontBehaviour, get_json
from daemons import Daemon, clean_environ, gateways_argv, parent, stop_all

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def backends(gateways_bin, app_dir, tmp_path_factory):
    """Two daemons on 127.0.0.1:PORT; each must exit 0 on SIGTERM at the end."""
    directory = tmp_path_factory.mktemp("balancer")
    daemons = {}
    try:
        for name in ("one", "two"):
            daemons[name] = Daemon(
                gateways_argv("fastcgi", "probe:application", "--app-dir", str(app_dir),
                              gateways=gateways_bin),
                directory, name, bind="tcp", args=["--processes", "1", "--threads", "4"],
                env=clean_environ(FCGI_WEB_SERVER_ADDRS="127.0.0.1"))
            daemons[name].wait_ready(needle=None)
        yield list(daemons.values())
    finally:
        statuses = stop_all(daemons, timeout=15)
    assert statuses == dict.fromkeys(daemons, 0), statuses


MOUNTS = {"apache": ("apache", "/app"), "apache-root": ("apache", ""),
          "lighttpd": ("lighttpd", "/app"), "lighttpd-root": ("lighttpd", ""),
          "nginx": ("nginx", "/app"), "nginx-root": ("nginx", "")}


@pytest.fixture(scope="module", params=list(MOUNTS))
def balanced(request, backends):
    """The balancer snippet for one front end, mounted at /app or at the root."""
    name, mount = MOUNTS[request.param]
    listed = ",".join(daemon.bind for daemon in backends)
    text = render(name, "balancer", app="probe:application", prefix=mount or "/",
                  backends=listed)
    if name == "apache":
        server = webservers.start_apache(text, modules=(
            "proxy", "proxy_fcgi", "proxy_balancer", "lbmethod_byrequests", "slotmem_shm"))
    elif name == "lighttpd":
        server = webservers.start_lighttpd(text)
    else:
        http_part, server_part = split_nginx(text)
        server = webservers.start_nginx(server_part, http_extra=http_part)
    yield Front(server.url(), mount, server, streams=True)
    server.close()


def test_both_daemons_get_traffic(balanced, backends):
    front = balanced

    def served_by(_):
        return parent(get_json(front, "/echo")["pid"])  # the daemon's master

    # Concurrent requests: lighttpd sends each to the least busy daemon.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        masters = list(pool.map(served_by, range(40)))
    expected = {daemon.pid for daemon in backends}
    assert set(masters) == expected, masters


def test_snippet_tells_how_to_start_each_daemon(backends):
    listed = ",".join(daemon.bind for daemon in backends)
    text = render("nginx", "balancer", app="probe:application", backends=listed,
                  python=sys.executable)
    for daemon in backends:
        assert "FCGI_WEB_SERVER_ADDRS=127.0.0.1 " in text
        assert "--bind %s" % daemon.bind in text


@pytest.mark.usefixtures("balanced")
class TestBalancedBehaviour(FrontBehaviour):
    @classmethod
    def make_front(cls, request):
        return request.getfixturevalue("balanced")
