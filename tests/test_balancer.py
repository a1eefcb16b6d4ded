"""The scale-out snippets: one front end, two daemons on TCP, both get traffic.

(Several hosts, and what happens when one fails: tests/test_scaleout.py.)

FastCGI (``gateways conf SERVER balancer``): each daemon runs with
FCGI_WEB_SERVER_ADDRS=127.0.0.1, as the snippets tell the operator to, so
the test also proves that the web servers' connections pass that check.

uwsgi (``gateways conf SERVER balancer-uwsgi``): the daemons are started from
the command lines the snippet's comments show, as printed (behind Apache they
carry the mount point), so the test also proves those lines.
"""

import concurrent.futures
import shlex
import sys

import pytest

from gateways.tools.confgen import render

import webservers
from behaviour import Front, FrontBehaviour, get_json
from daemons import Daemon, clean_environ, gateways_argv, parent, stop_all
from webservers import free_port

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
# FastCGI only: HAProxy and Caddy speak no uwsgi.
FASTCGI_MOUNTS = {**MOUNTS, "haproxy": ("haproxy", "/app"), "haproxy-root": ("haproxy", ""),
                  "caddy": ("caddy", "/app"), "caddy-root": ("caddy", "")}


@pytest.fixture(scope="module", params=list(FASTCGI_MOUNTS))
def balanced(request, backends):
    """The balancer snippet for one front end, mounted at /app or at the root."""
    name, mount = FASTCGI_MOUNTS[request.param]
    listed = ",".join(daemon.bind for daemon in backends)
    text = render(name, "balancer", app="probe:application", prefix=mount or "/",
                  backends=listed)
    server = webservers.start_balancer(name, text)
    # HAProxy answers a chunked upload larger than its buffer 400 (README.rst).
    options = {"chunked_upload": False, "chunked_refusal": 400} if name == "haproxy" else {}
    yield Front(server.url(), mount, server, streams=True, **options)
    server.close()


def test_both_daemons_get_traffic(balanced, backends):
    front = balanced

    def served_by(_):
        return parent(get_json(front, "/echo")["pid"])  # the daemon's master

    # Concurrent requests: even a least-busy balancer spreads them.
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


# -- uwsgi ---------------------------------------------------------------------------------


def run_lines(text):
    """The daemon command lines a balancer snippet's comments show, split as a shell would."""
    return [shlex.split(line[1:]) for line in text.splitlines()
            if line.startswith("#   ") and " --bind " in line]


@pytest.fixture(scope="module", params=list(MOUNTS))
def uwsgi_balanced(request, server_python, app_dir, tmp_path_factory):
    """The uwsgi balancer snippet for one front end, mounted at /app or at the root, and
    the two daemons it tells the operator to run, started from its own lines."""
    name, mount = MOUNTS[request.param]
    ports = [free_port()]
    while len(ports) < 2:
        port = free_port()
        if port not in ports:
            ports.append(port)
    text = render(name, "balancer-uwsgi", app="probe:application", app_dir=str(app_dir),
                  prefix=mount or "/", python=server_python, processes=1, threads=4,
                  backends=",".join("127.0.0.1:%d" % port for port in ports))
    lines = run_lines(text)
    assert [line[-2:] for line in lines] == [["--bind", "127.0.0.1:%d" % p] for p in ports]
    directory = tmp_path_factory.mktemp("balancer-uwsgi")
    daemons = {}
    try:
        for number, (argv, port) in enumerate(zip(lines, ports)):
            daemons[number] = Daemon(argv, directory, "uwsgi%d" % number,
                                     address=("127.0.0.1", port), env=clean_environ())
        for daemon in daemons.values():
            daemon.wait_ready(needle=None)
        server = webservers.start_balancer(name, text, proxy_module="proxy_uwsgi")
        try:
            yield Front(server.url(), mount, server, streams=True,
                        chunked_upload=name != "apache"), list(daemons.values()), lines
        finally:
            server.close()
    finally:
        statuses = stop_all(daemons, timeout=15)
    assert statuses == dict.fromkeys(daemons, 0), statuses


def test_both_uwsgi_daemons_get_traffic(uwsgi_balanced):
    front, daemons, _ = uwsgi_balanced

    def served_by(_):
        data = get_json(front, "/echo")
        assert data["gateway"] == "uwsgi"
        return parent(data["pid"])  # the daemon's master

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        masters = list(pool.map(served_by, range(40)))
    assert set(masters) == {daemon.pid for daemon in daemons}, masters


def test_uwsgi_daemon_lines_carry_the_mount_point_for_apache_only(uwsgi_balanced):
    front, _, lines = uwsgi_balanced
    for line in lines:
        assert line[1:3] == ["uwsgi", "probe:application"]
        if front.server.name == "apache":
            assert line[line.index("--script-name") + 1] == (front.mount or "/")
        else:
            assert "--script-name" not in line


@pytest.mark.usefixtures("uwsgi_balanced")
class TestBalancedUwsgiBehaviour(FrontBehaviour):
    @classmethod
    def make_front(cls, request):
        return request.getfixturevalue("uwsgi_balanced")[0]


# Defined last: it stops one of the front's two daemons, so it runs after every other
# test of that front (pytest keeps the order of definition within a fixture's param).
def test_a_stopped_uwsgi_daemon_costs_no_request(uwsgi_balanced):
    """The uwsgi balancer snippets' promise (their comment, README.rst "Scale-out"):
    a daemon that refuses connections costs no request, the front passes it on."""
    front, daemons, _ = uwsgi_balanced
    assert daemons[0].stop(timeout=15) == 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        masters = list(pool.map(lambda _: parent(get_json(front, "/echo")["pid"]), range(30)))
    assert set(masters) == {daemons[1].pid}, masters
