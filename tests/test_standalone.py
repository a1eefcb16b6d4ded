"""The standalone gateway: `gateways serve` (werkzeug's development server).

The same request/response cases as behind the web servers, at the root and
with --script-name /app; what werkzeug gets wrong on the wire, put right
(raw sockets: a request without a body, HEAD, Expect: 100-continue,
malformed headers); --reload picking up an edited application; the operator
errors (port in use, --debug on a public address, a bad --bind) end in one
line; and the proxy snippets put the standalone server behind real Apache,
lighttpd and nginx.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from gateways.tools.confgen import render, split_nginx

import webservers
from behaviour import Front, FrontBehaviour, every_front, get_json
from daemons import APPS, Daemon, gateways_argv, report, wait_until

pytestmark = pytest.mark.servers

GATEWAYS = str(Path(sys.executable).parent / "gateways")  # the console script, as typed


def start_serve(directory, *args):
    """``gateways serve ARGS --bind 127.0.0.1:PORT``, once it accepts connections."""
    return Daemon(gateways_argv("serve", *args), directory, "serve", bind="tcp").wait_ready(
        needle=None)


def stop(daemon):
    """SIGINT to its process group (Ctrl-C), SIGKILL after 10 s."""
    daemon.stop(signum=signal.SIGINT, group=True)


@pytest.fixture(scope="module")
def standalone(app_dir, tmp_path_factory):
    daemon = start_serve(tmp_path_factory.mktemp("serve"), "probe", "--app-dir", str(app_dir))
    yield "http://127.0.0.1:%d" % daemon.address[1]
    stop(daemon)


@pytest.fixture(scope="module")
def standalone_app(app_dir, tmp_path_factory):
    daemon = start_serve(tmp_path_factory.mktemp("serve"), "probe", "--app-dir", str(app_dir),
                         "--script-name", "/app")
    yield "http://127.0.0.1:%d" % daemon.address[1]
    stop(daemon)


# name: (server fixture (its URL), mount, daemon (none), Front options)
FRONTS = {
    "root": ("standalone", "", None, {"streams": True}),
    "prefix": ("standalone_app", "/app", None, {"streams": True}),
}

TestEveryFront = pytest.mark.servers(every_front(FRONTS))


@pytest.mark.servers
def test_names_itself_and_is_threaded(standalone):
    data = get_json(Front(standalone, ""), "/echo")
    assert data["gateway"] == "standalone HTTP (werkzeug)"
    assert data["multithread"] is True
    assert data["run_once"] is False


def test_demo_app_is_the_default(tmp_path):
    daemon = start_serve(tmp_path)
    try:
        page = requests.get("http://127.0.0.1:%d/x" % daemon.address[1],
                            headers={"X-Probe": "<b>x</b>"}, timeout=10)
        assert page.status_code == 200
        assert "Served by gateways through standalone HTTP (werkzeug)" in page.text
        assert "<b>x</b>" not in page.text
        assert "&lt;b&gt;x&lt;/b&gt;" in page.text  # HTML-escaped
    finally:
        stop(daemon)


def run_cli(*args):
    return subprocess.run(gateways_argv(*args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("serve", "--bind", "127.0.0.1:%d" % port)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "already in use" in proc.stderr


@pytest.mark.parametrize("command", ["serve", "fastcgi", "scgi"])
def test_port_in_use_is_the_same_sentence_for_every_command(command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([GATEWAYS, command, "probe", "--app-dir", str(APPS), "--bind",
                               "127.0.0.1:%d" % port, "--processes", "1"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (
        "gateways: error: --bind 127.0.0.1:%d: the address is already in use (another "
        "program listens there); choose another with --bind HOST:PORT\n" % port)


def test_debugger_refused_on_public_address():
    proc = run_cli("serve", "--debug", "--bind", "0.0.0.0:%d" % webservers.free_port())
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "refusing" in proc.stderr and "loopback" in proc.stderr


@pytest.mark.parametrize("bind", ["nonsense", "127.0.0.1:99999", "unix:/tmp/x.sock", "::1:80"])
def test_bad_bind_is_one_line(bind):
    proc = run_cli("serve", "--bind", bind)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "--bind" in proc.stderr


@pytest.mark.servers
def test_debugger_on_loopback(app_dir, tmp_path):
    daemon = start_serve(tmp_path, "probe", "--app-dir", str(app_dir), "--debug")
    try:
        page = requests.get("http://127.0.0.1:%d/error" % daemon.address[1], timeout=10)
        assert page.status_code == 500
        assert "SECRET-MARKER" in page.text  # werkzeug's debugger page shows the traceback
    finally:
        stop(daemon)


# -- on the wire: what werkzeug gets wrong, put right ---------------------------------

RAW_TIMEOUT = 5.0  # a server that waits for more than the request sent fails the test


def exchange(port, request, expect_100=None):
    """Send ``request`` (bytes) over a new connection and read until the server closes
    it (werkzeug closes every connection): all the bytes the client sees.  With
    ``expect_100`` (a body), ``request`` is the head only: the body follows once
    ``100 Continue`` has arrived, as curl sends it."""
    deadline = time.monotonic() + 2 * RAW_TIMEOUT
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=RAW_TIMEOUT) as sock:
        sock.sendall(request)
        if expect_100 is not None:
            while b"\r\n\r\n" not in received:
                data = sock.recv(65536)
                assert data and time.monotonic() < deadline, received
                received += data
            sock.sendall(expect_100)
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return received
            received += data
    pytest.fail("the server did not close the connection: %r" % received)


def split(response):
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


def header(head, name):
    values = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
              if line.split(b":", 1)[0].lower() == name.lower().encode()]
    return values[0].decode() if values else None


def port_of(url):
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_request_without_a_body_reads_as_empty(standalone, version):
    """No Content-Length, not chunked: wsgi.input is empty (PEP 3333), not the socket."""
    request = "GET /upload HTTP/%s\r\nHost: localhost\r\n\r\n" % version[5:]
    head, body = split(exchange(port_of(standalone), request.encode()))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert json.loads(body)["length"] == 0


def test_content_length_with_spaces_is_the_body_length(standalone):
    response = exchange(port_of(standalone), b"POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                        b"Content-Length:  5 \r\n\r\nhello")
    head, body = split(response)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert json.loads(body)["length"] == 5


def test_expect_100_continue_gets_one_interim_response(standalone):
    response = exchange(port_of(standalone), b"POST /upload HTTP/1.1\r\nHost: localhost\r\n"
                        b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",
                        expect_100=b"hello")
    assert response.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), response
    assert response.count(b"100 Continue") == 1
    assert json.loads(split(response)[1].split(b"\r\n\r\n", 1)[1])["length"] == 5


@pytest.mark.parametrize("path", ["/bytes?n=3000", "/write", "/file?n=3000",
                                  "/stream?n=3&delay=0", "/status/404"])
def test_head_has_the_head_of_get_and_no_body(standalone, path):
    port = port_of(standalone)
    get_head, get_body = split(exchange(port, b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                        % path.encode()))
    response = exchange(port, b"HEAD %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path.encode())
    head, body = split(response)
    assert body == b"", response
    assert head.split(b"\r\n")[0] == get_head.split(b"\r\n")[0]
    assert header(head, "Content-Type") == header(get_head, "Content-Type")
    if path.startswith("/bytes"):
        assert header(head, "Content-Length") == "3000" == str(len(get_body))


@pytest.mark.parametrize("lines", [
    [b"NoColonHere"],
    [b"X-Probe : spaced"],
    [b"Content-Length: abc"],
    [b"Content-Length: -1"],
    [b"Content-Length: 5", b"Content-Length: 6"],
], ids=["no-colon", "space-before-colon", "length-not-a-number", "length-negative",
        "two-lengths"])
def test_malformed_header_is_400(standalone, lines):
    request = b"\r\n".join([b"GET /echo HTTP/1.1", b"Host: localhost", *lines]) + b"\r\n\r\n"
    response = exchange(port_of(standalone), request)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n"), response


def test_reload_serves_the_edited_application(tmp_path):
    """`gateways serve FILE:app --reload`: the reloader's child serves on the port its
    parent holds, and a saved edit of FILE is answered after the restart."""
    source = ("def app(environ, start_response):\n"
              "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
              "    return [%r]\n")
    app_file = tmp_path / "reloaded.py"
    app_file.write_text(source % b"first version")
    daemon = Daemon([GATEWAYS, "serve", "%s:app" % app_file, "--reload"], tmp_path, "serve",
                    bind="tcp")
    try:
        daemon.wait_ready(needle=None)
        url = "http://127.0.0.1:%d/" % daemon.address[1]
        first = requests.get(url, timeout=10)
        assert (first.status_code, first.text) == (200, "first version"), report(daemon)
        # Another length as well: Python's bytecode cache checks size and whole seconds.
        app_file.write_text(source % b"the second version, edited")

        def answer():
            try:
                return requests.get(url, timeout=5).text == "the second version, edited"
            except requests.RequestException:
                return False  # restarting

        wait_until(answer, timeout=30, interval=0.2,
                   what=lambda: "the edit is not served\n" + report(daemon))
    finally:
        stop(daemon)


# -- the proxy snippets in front of the standalone server ----------------------------


def _proxy_snippet(server, port, prefix):
    return render(server, "proxy", app="probe:application", bind="127.0.0.1:%d" % port,
                  prefix=prefix)


MOUNTS = {"apache": ("apache", "/app"), "apache-root": ("apache", ""),
          "lighttpd": ("lighttpd", "/app"), "lighttpd-root": ("lighttpd", ""),
          "nginx": ("nginx", "/app"), "nginx-root": ("nginx", "")}


@pytest.fixture(scope="module", params=list(MOUNTS))
def proxied(request):
    """The proxy snippet at a prefix (before `serve --script-name /app`) or at the root."""
    name, mount = MOUNTS[request.param]
    backend = request.getfixturevalue("standalone_app" if mount else "standalone")
    text = _proxy_snippet(name, int(backend.rsplit(":", 1)[1]), mount or "/")
    if name == "apache":
        server = webservers.start_apache(text, modules=("proxy", "proxy_http"))
    elif name == "lighttpd":
        server = webservers.start_lighttpd(text)
    else:
        http_part, server_part = split_nginx(text)
        server = webservers.start_nginx(server_part, http_extra=http_part)
    yield server, mount
    server.close()


@pytest.mark.servers
@pytest.mark.usefixtures("proxied")
class TestProxySnippets(FrontBehaviour):
    @classmethod
    def make_front(cls, request):
        server, mount = request.getfixturevalue("proxied")
        return Front(server.url(), mount, server, streams=True)
