"""The standalone gateway: `gateways serve` (werkzeug's development server).

The same request/response cases as behind the web servers, at the root and
with --script-name /app; the operator errors (port in use, --debug on a
public address, a bad --bind) end in one line; and the proxy snippets put
the standalone server behind real Apache, lighttpd and nginx.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
import requests

from gateways.confgen import render, split_nginx

import webservers
from behaviour import Front, FrontBehaviour, get_json


def start_serve(*args):
    """``gateways serve ARGS --bind 127.0.0.1:PORT``; returns (process, port)."""
    port = webservers.free_port()
    log = tempfile.TemporaryFile()  # a pipe nobody reads would fill up and block the server
    process = subprocess.Popen(
        [sys.executable, "-m", "gateways", "serve", *args, "--bind", "127.0.0.1:%d" % port],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    process.log = log
    try:
        webservers.wait_for_port(port, timeout=15, process=process)
    except Exception:
        process.kill()
        raise
    return process, port


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    process.log.seek(0)
    return process.log.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def standalone(app_dir):
    process, port = start_serve("probe", "--app-dir", str(app_dir))
    yield "http://127.0.0.1:%d" % port
    stop(process)


@pytest.fixture(scope="module")
def standalone_app(app_dir):
    process, port = start_serve("probe", "--app-dir", str(app_dir), "--script-name", "/app")
    yield "http://127.0.0.1:%d" % port
    stop(process)


class TestStandaloneAtRoot(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, standalone):
        return Front(standalone, "", streams=True)


class TestStandaloneAtPrefix(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, standalone_app):
        return Front(standalone_app, "/app", streams=True)


def test_names_itself_and_is_threaded(standalone):
    data = get_json(Front(standalone, ""), "/echo")
    assert data["gateway"] == "standalone HTTP (werkzeug)"
    assert data["multithread"] is True
    assert data["run_once"] is False


def test_demo_app_is_the_default():
    process, port = start_serve()
    try:
        page = requests.get("http://127.0.0.1:%d/x" % port, headers={"X-Probe": "<b>x</b>"},
                            timeout=10)
        assert page.status_code == 200
        assert "Served by gateways through standalone HTTP (werkzeug)" in page.text
        assert "<b>x</b>" not in page.text
        assert "&lt;b&gt;x&lt;/b&gt;" in page.text  # HTML-escaped
    finally:
        stop(process)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gateways", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


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


def test_debugger_on_loopback(app_dir):
    process, port = start_serve("probe", "--app-dir", str(app_dir), "--debug")
    try:
        page = requests.get("http://127.0.0.1:%d/error" % port, timeout=10)
        assert page.status_code == 500
        assert "SECRET-MARKER" in page.text  # werkzeug's debugger page shows the traceback
    finally:
        stop(process)


# -- the proxy snippets in front of the standalone server ----------------------------


def _proxy_snippet(server, port, prefix):
    return render(server, "proxy", app="probe:application", bind="127.0.0.1:%d" % port,
                  prefix=prefix)


@pytest.fixture(scope="module")
def standalone_port(standalone_app):
    return int(standalone_app.rsplit(":", 1)[1])


@pytest.fixture(scope="module", params=["apache", "lighttpd", "nginx"])
def proxied(request, standalone_port):
    text = _proxy_snippet(request.param, standalone_port, "/app")
    if request.param == "apache":
        server = webservers.start_apache(text, modules=("proxy", "proxy_http"))
    elif request.param == "lighttpd":
        server = webservers.start_lighttpd(text)
    else:
        http_part, server_part = split_nginx(text)
        server = webservers.start_nginx(server_part, http_extra=http_part)
    yield server
    server.close()


class TestProxySnippets(FrontBehaviour):
    @pytest.fixture(scope="class")
    @classmethod
    def front(cls, proxied):
        return Front(proxied.url(), "/app", proxied, streams=True)
