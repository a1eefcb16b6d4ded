"""SCGI through real Apache httpd (mod_proxy_scgi), lighttpd (mod_scgi) and nginx (scgi_pass).

The servers are configured with the snippets ``gateways conf SERVER scgi``
prints and talk to ``gateways scgi`` daemons serving the probe application;
each web server starts once for the module:

* Apache: /app over a unix socket, and the root over TCP, each with its own
  daemon started with ``--script-name`` (mod_proxy_scgi sends the whole path
  as SCRIPT_NAME and no PATH_INFO);
* lighttpd: /app and the root over a unix socket, and /tcp over TCP (one
  lighttpd holds all three: the snippets' repeated ``server.*`` lines are
  dropped, lighttpd refuses a variable set twice);
* nginx: /app over a unix socket, the root over TCP.

The daemons (1 process x 4 threads, ``--log-level debug``) are stopped with
SIGTERM at the end and must exit 0.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from gateways.confgen import render, split_nginx

import webservers
from behaviour import TIMEOUT, Front, FrontBehaviour, get_json

pytestmark = pytest.mark.servers

# A line the daemon's logger writes at debug level ("DATE TIME gateways[PID] DEBUG: ...").
DEBUG_LINE = re.compile(r"^\S+ \S+ gateways\[\d+\] DEBUG: ")


class Log:
    """A daemon's --log-file, read in pieces: what was written since ``mark()``."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def text(self):
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self):
        self.offset = len(self.text())

    def new_text(self):
        return self.text()[self.offset:]

    def wait_for(self, needle, timeout=5.0):
        """The new text once it holds ``needle`` (fails after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while needle not in self.new_text():
            if time.monotonic() > deadline:
                pytest.fail("%r not logged within %g s; new log text: %r"
                            % (needle, timeout, self.new_text()))
            time.sleep(0.02)
        return self.new_text()


class Daemon:
    """``gateways scgi probe:application`` on a unix socket or 127.0.0.1:PORT."""

    def __init__(self, gateways_bin, app_dir, directory, name, tcp=False, script_name=None):
        self.name = name
        if tcp:
            self.address = ("127.0.0.1", webservers.free_port())
            self.bind = "%s:%d" % self.address
        else:
            self.address = str(directory / (name + ".sock"))
            self.bind = "unix:" + self.address
        self.log = Log(directory / (name + ".log"))
        argv = [gateways_bin, "scgi", "probe:application", "--app-dir", str(app_dir),
                "--bind", self.bind, "--socket-group", "www-data", "--processes", "1",
                "--threads", "4", "--log-file", str(self.log.path), "--log-level", "debug"]
        if script_name is not None:
            argv += ["--script-name", script_name]
        self.output = directory / (name + ".out")
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def connect(self):
        family = socket.AF_INET if isinstance(self.address, tuple) else socket.AF_UNIX
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.address)
        return sock

    def wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while "ready" not in self.log.text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s daemon not ready (exit status %s):\n%s\n%s" % (
                    self.name, self.process.poll(), self.output.read_text(errors="replace"),
                    self.log.text()))
            time.sleep(0.02)
        self.connect().close()
        self.log.mark()

    def worker_pids(self):
        """Pids of the daemon's worker processes (its children)."""
        pids = set()
        for task in Path("/proc/%d/task" % self.process.pid).iterdir():
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        return pids

    def stop(self):
        """SIGTERM by pid; the exit status, None if it had to be killed."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
            return None


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    """apache_app, apache_root (--script-name), unix and tcp (no --script-name)."""
    directory = webservers.public_dir("gw-scgi-")
    started = {}
    try:
        for name, tcp, script_name in [("apache_app", False, "/app"),
                                       ("apache_root", True, "/"),
                                       ("unix", False, None), ("tcp", True, None)]:
            started[name] = Daemon(gateways_bin, app_dir, directory, name, tcp, script_name)
        for daemon in started.values():
            daemon.wait_ready()
        yield started
    finally:
        statuses = {name: daemon.stop() for name, daemon in started.items()}
        logs = {name: daemon.log.text()[-2000:] for name, daemon in started.items()}
        webservers.shutil.rmtree(directory, ignore_errors=True)
    assert statuses == dict.fromkeys(started, 0), (statuses, logs)


def snippet(server, prefix, daemon, app_dir):
    return render(server, "scgi", app="probe:application", app_dir=str(app_dir),
                  prefix=prefix, bind=daemon.bind, processes=1, threads=4)


@pytest.fixture(scope="module")
def apache(daemons, app_dir):
    # /app first: the root mount would otherwise catch /app too.
    body = "\n".join([snippet("apache", "/app", daemons["apache_app"], app_dir),
                      snippet("apache", "/", daemons["apache_root"], app_dir)])
    server = webservers.start_apache(body, modules=("proxy", "proxy_scgi"))
    yield server
    server.close()


def merge_lighttpd(*snippets):
    """One lighttpd config from several snippets: a repeated ``server.*`` line
    (module list, stream-response-body) is kept once; lighttpd refuses a
    variable set twice."""
    seen, lines = set(), []
    for line in "\n".join(snippets).splitlines():
        if line.startswith("server.") and line in seen:
            continue
        seen.add(line)
        lines.append(line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def lighttpd(daemons, app_dir):
    body = merge_lighttpd(snippet("lighttpd", "/app", daemons["unix"], app_dir),
                          snippet("lighttpd", "/tcp", daemons["tcp"], app_dir),
                          snippet("lighttpd", "/", daemons["unix"], app_dir))
    server = webservers.start_lighttpd(body)
    yield server
    server.close()


@pytest.fixture(scope="module")
def nginx(daemons, app_dir):
    parts = [split_nginx(snippet("nginx", "/app", daemons["unix"], app_dir)),
             split_nginx(snippet("nginx", "/", daemons["tcp"], app_dir))]
    server = webservers.start_nginx("\n".join(body for _, body in parts),
                                    http_extra="\n".join(head for head, _ in parts))
    yield server
    server.close()


# name: (web server, mount, daemon, Front options)
FRONTS = {
    "apache": ("apache", "/app", "apache_app", {"streams": True, "chunked_upload": False}),
    "apache-root": ("apache", "", "apache_root", {"streams": True, "chunked_upload": False}),
    "lighttpd": ("lighttpd", "/app", "unix", {"streams": True}),
    "lighttpd-root": ("lighttpd", "", "unix", {"streams": True}),
    "lighttpd-tcp": ("lighttpd", "/tcp", "tcp", {"streams": True}),
    "nginx": ("nginx", "/app", "unix", {"streams": True}),
    "nginx-root": ("nginx", "", "tcp", {"streams": True}),
}


def make_front(request, name):
    server_name, mount, _, options = FRONTS[name]
    server = request.getfixturevalue(server_name)
    return Front(server.url(), mount, server, **options)


class TestApacheSCGIAtPrefix(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "apache")


class TestApacheSCGIAtRoot(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "apache-root")


class TestLighttpdSCGIAtPrefix(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "lighttpd")


class TestLighttpdSCGIAtRoot(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "lighttpd-root")


class TestLighttpdSCGIOverTCP(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "lighttpd-tcp")


class TestNginxSCGIAtPrefix(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "nginx")


class TestNginxSCGIAtRoot(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, request):
        return make_front(request, "nginx-root")


# -- what only SCGI shows ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_each_mount_reaches_its_daemon_as_scgi(name, request, daemons):
    data = get_json(make_front(request, name), "/echo")
    assert data["gateway"] == "SCGI"
    assert (data["multithread"], data["run_once"]) == (True, False)
    assert data["pid"] in daemons[FRONTS[name][2]].worker_pids()


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_prefix_mount_is_a_path_segment(name, request):
    # lighttpd's scgi.server "/app" alone would take /appx too (SCRIPT_NAME "/appx").
    prefix, root = make_front(request, name), make_front(request, name + "-root")
    response = requests.get(root.url("/appx/echo"), timeout=TIMEOUT)
    # the root mount's application got all of it as PATH_INFO (it has no such route)
    assert (response.status_code, response.text) == (404, "no route '/appx/echo'")
    data = get_json(prefix, "?x=1")
    assert (data["script_name"], data["path_info"], data["query_string"]) == ("/app", "", "x=1")


@pytest.mark.parametrize("daemon_name", ["unix", "tcp"])
def test_health_check_is_logged_at_debug_only(daemon_name, request, daemons):
    daemon = daemons[daemon_name]
    front = make_front(request, "lighttpd" if daemon_name == "unix" else "lighttpd-tcp")
    workers = daemon.worker_pids()
    daemon.log.mark()
    daemon.connect().close()  # a load balancer's TCP check: connect, send nothing, close
    daemon.log.wait_for(" DEBUG: ")  # it saw the connection
    assert get_json(front, "/echo")["method"] == "GET"
    assert daemon.worker_pids() == workers
    text = daemon.log.new_text()
    assert [line for line in text.splitlines() if not DEBUG_LINE.match(line)] == [], text


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_client_abort_mid_response_leaves_the_daemon_serving(name, request, daemons):
    front = make_front(request, name)
    daemon = daemons[FRONTS[name][2]]
    workers = daemon.worker_pids()
    daemon.log.mark()
    with requests.get(front.url("/bytes?n=20000000"), stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert len(response.raw.read(100000)) == 100000
    # closed after 100 kB of 20 MB: the front end drops its SCGI connection and the
    # daemon's next send fails (EPIPE or ECONNRESET, seen with strace for all three)
    assert get_json(front, "/echo")["method"] == "GET"
    time.sleep(0.3)  # anything the aborted request's thread would log
    assert daemon.worker_pids() == workers
    text = daemon.log.new_text()
    assert [line for line in text.splitlines() if not DEBUG_LINE.match(line)] == [], text


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_traceback_goes_to_the_daemon_log_not_the_response(name, request, daemons):
    front = make_front(request, name)
    daemon = daemons[FRONTS[name][2]]
    daemon.log.mark()
    response = requests.get(front.url("/error"), timeout=TIMEOUT)
    assert response.status_code == 500
    assert "SECRET-MARKER" not in response.text and "Traceback" not in response.text
    text = daemon.log.wait_for("SECRET-MARKER")
    assert "Traceback (most recent call last)" in text
    assert "GET %s/error" % front.mount in text
    # wsgi.errors is the daemon's log: SCGI has no channel to the web server's error log.
    assert requests.get(front.url("/stderr"), timeout=TIMEOUT).text == "logged"
    daemon.log.wait_for("probe: a line for the error log")
    assert "SECRET-MARKER" not in front.server.error_log_text()


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_repeated_request_header(name, request):
    front = make_front(request, name)
    connection = http.client.HTTPConnection("127.0.0.1", front.server.port, timeout=TIMEOUT)
    try:
        connection.putrequest("GET", front.mount + "/echo")
        connection.putheader("X-Dup", "a")
        connection.putheader("X-Dup", "b")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, (response.status, body[:300])
    assert json.loads(body)["http"]["HTTP_X_DUP"] == "a, b"


@pytest.mark.parametrize("name", ["nginx", "nginx-root"])
def test_encoded_newline_in_the_path(name, request):
    # nginx regexes do not cross a decoded newline without (?s): the snippet has it.
    front = make_front(request, name)
    data = get_json(front, "/echo/a%0Ab")
    assert (data["script_name"], data["path_info"]) == (front.mount, "/echo/a\nb")
