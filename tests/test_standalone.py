"""The standalone gateway: `gateways serve` (werkzeug's development server).

The same request/response cases as behind the web servers, at the root and
with --script-name /app; the operator errors (port in use, --debug on a
public address, a bad --bind) end in one line; and the proxy snippets put
the standalone server behind real Apache, lighttpd and nginx.
"""

import signal
import socket
import subprocess

import pytest
import requests

from gateways.confgen import render, split_nginx

import webservers
from behaviour import Front, FrontBehaviour, get_json
from daemons import Daemon, gateways_argv


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


@pytest.mark.servers
@pytest.mark.usefixtures("standalone")
class TestStandaloneAtRoot(FrontBehaviour):
    @classmethod
    def make_front(cls, request):
        standalone = request.getfixturevalue("standalone")
        return Front(standalone, "", streams=True)


@pytest.mark.servers
@pytest.mark.usefixtures("standalone_app")
class TestStandaloneAtPrefix(FrontBehaviour):
    @classmethod
    def make_front(cls, request):
        standalone_app = request.getfixturevalue("standalone_app")
        return Front(standalone_app, "/app", streams=True)


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
