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
import re
import socket
import time

import pytest
import requests

from gateways.tools.confgen import render, split_nginx

import webservers
from behaviour import TIMEOUT, every_front, front_maker, get_json
from daemons import behind_a_web_server, daemon_set

pytestmark = pytest.mark.servers

# A line the daemon's logger writes at debug level ("DATE TIME gateways[PID] DEBUG: ...").
DEBUG_LINE = re.compile(r"^\S+ \S+ gateways\[\d+\] DEBUG: ")


def connect(daemon):
    """A new connection to the daemon (a load balancer's health check, when closed at once)."""
    family = socket.AF_INET if isinstance(daemon.address, tuple) else socket.AF_UNIX
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(daemon.address)
    return sock


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    """apache_app, apache_root (--script-name), unix and tcp (no --script-name)."""
    with daemon_set("gw-scgi-", timeout=5) as (directory, started):
        for name, tcp, extra in [("apache_app", False, ("--script-name", "/app")),
                                 ("apache_root", True, ("--script-name", "/")),
                                 ("unix", False, ()), ("tcp", True, ())]:
            started[name] = behind_a_web_server("scgi", gateways_bin, app_dir, directory, name,
                                                tcp, extra)
        for daemon in started.values():
            daemon.wait_ready()
            connect(daemon).close()
            daemon.log.mark()
        yield started


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


@pytest.fixture(scope="module")
def lighttpd(daemons, app_dir):
    body = webservers.merge_lighttpd(snippet("lighttpd", "/app", daemons["unix"], app_dir),
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


make_front = front_maker(FRONTS)


TestEveryFront = every_front(FRONTS)


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
    connect(daemon).close()  # a load balancer's TCP check: connect, send nothing, close
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
