# Self-tests for tests/webservers.py: each real web server (Apache httpd,
# lighttpd, nginx) is started once per module from a generated config, serves
# a static file, runs a CGI script or proxies to a Python backend, and is
# stopped for good; broken configs must fail loudly with the server's own
# diagnostics.  No mocks: these drive the installed servers.
"""Self-tests of the web server fixture library (tests/webservers.py)."""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import webservers
from webservers import (
    ServerStartError,
    check_worker_can_run_python,
    free_port,
    public_dir,
    require,
    start_apache,
    start_lighttpd,
    start_nginx,
    wait_for_path,
    wait_for_port,
    worker_dir,
    write_file,
    www_data_ids,
)

servers = pytest.mark.servers
TIMEOUT = 10
REPO = Path(__file__).resolve().parent.parent

ID_CGI = "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nid -un\n"
EXPECTED_USER = "www-data" if www_data_ids() is not None else getpass.getuser()

APACHE_MODULES = ("cgid", "proxy", "proxy_fcgi", "proxy_scgi", "proxy_http", "fcgid",
                  "proxy_balancer", "lbmethod_byrequests", "slotmem_shm")


class _Backend(BaseHTTPRequestHandler):
    """Answers every GET with the path and Host header it received."""

    def do_GET(self):
        body = f"backend path={self.path} host={self.headers['Host']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def backend_port():
    """A Python http.server on a free port, for the proxies to talk to."""
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _Backend)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    thread.join(TIMEOUT)


def _site(prefix):
    """A public server root with htdocs/hello.txt and cgi-bin/id.cgi."""
    root = public_dir(prefix)
    write_file(root / "htdocs" / "hello.txt", "hello from the docroot\n")
    write_file(root / "cgi-bin" / "id.cgi", ID_CGI, mode=0o755)
    return root


@pytest.fixture(scope="module")
def apache(backend_port):
    body = (
        'ScriptAlias /cgi-bin/ "{root}/cgi-bin/"\n'
        "ProxyPass /back/ http://127.0.0.1:" + str(backend_port) + "/\n"
        'Header always set X-Listen "{port}"\n'
    )
    root = _site("gw-selftest-apache-")
    try:
        with start_apache(body, modules=APACHE_MODULES, root=root) as server:
            yield server
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def lighttpd():
    body = (
        'alias.url = ( "/cgi-bin/" => "{root}/cgi-bin/" )\n'
        '$HTTP["url"] =~ "^/cgi-bin/" {\n'
        '    cgi.assign = ( ".cgi" => "" )\n'
        "}\n"
    )
    root = _site("gw-selftest-lighttpd-")
    try:
        with start_lighttpd(body, modules=("alias", "mod_cgi"), root=root) as server:
            yield server
    finally:
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def nginx(backend_port):
    http_extra = "upstream backend { server 127.0.0.1:" + str(backend_port) + "; }"
    body = (
        "location /back/ { proxy_pass http://backend/; }\n"
        'location = /where { default_type text/plain; return 200 "{port} {root} {docroot}"; }\n'
    )
    root = _site("gw-selftest-nginx-")
    try:
        with start_nginx(body, http_extra=http_extra, root=root) as server:
            yield server
    finally:
        shutil.rmtree(root)


def _alive(pid):
    """True while ``pid`` exists and is not a zombie waiting for init."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _get(server, path):
    return requests.get(server.url(path), timeout=TIMEOUT)


# -- helpers -------------------------------------------------------------------------


def test_public_dir_and_write_file_ignore_umask():
    old = os.umask(0o077)
    try:
        root = public_dir("gw-selftest-")
        script = write_file(root / "a" / "b" / "run.cgi", ID_CGI, mode=0o755)
        data = write_file(root / "data.bin", b"\x00\xff")
    finally:
        os.umask(old)
    try:
        assert root.parent in (Path("/tmp"), Path("/var/tmp"))
        assert root.stat().st_mode & 0o777 == 0o755
        assert (root / "a").stat().st_mode & 0o777 == 0o755
        assert (root / "a" / "b").stat().st_mode & 0o777 == 0o755
        assert script.stat().st_mode & 0o777 == 0o755
        assert script.read_text() == ID_CGI
        assert data.stat().st_mode & 0o777 == 0o644
        assert data.read_bytes() == b"\x00\xff"
        owned = worker_dir(root / "sockets")
        ids = www_data_ids()
        assert ids is None or (owned.stat().st_uid, owned.stat().st_gid) == ids
    finally:
        shutil.rmtree(root)


def test_www_data_ids_only_as_root():
    ids = www_data_ids()
    if os.geteuid() == 0:
        assert ids is not None and ids[0] != 0
    else:
        assert ids is None


def test_wait_for_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port(listener.getsockname()[1], timeout=2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_for_port(free_port(), timeout=0.3)
    assert time.monotonic() - started < 3
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(TIMEOUT)
    with pytest.raises(RuntimeError, match="exited"):
        wait_for_port(free_port(), timeout=5, process=dead)


def test_wait_for_path():
    root = public_dir("gw-selftest-")
    try:
        target = root / "backend.sock"
        with pytest.raises(TimeoutError):
            wait_for_path(target, timeout=0.2)
        timer = threading.Timer(0.1, target.touch)
        timer.start()
        assert wait_for_path(target, timeout=5) == target
        timer.join()
    finally:
        shutil.rmtree(root)


def test_require_finds_skips_and_fails_in_ci(monkeypatch):
    if not os.path.exists("/usr/lib/apache2/modules/mod_cgid.so"):
        pytest.skip("apache2 not installed")
    assert require("cgid") == require("mod_cgid.so") == "/usr/lib/apache2/modules/mod_cgid.so"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        require("no_such_module")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/test installs it"):
        require("/usr/sbin/no-such-server")


def test_check_worker_can_run_python_with_a_reachable_venv():
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("no /usr/bin/python3")
    root = public_dir("gw-selftest-venv-")
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(root / "venv")],
                       check=True, timeout=60)
        purelib = subprocess.run(
            [str(root / "venv" / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, timeout=30, capture_output=True, text=True).stdout.strip()
        write_file(Path(purelib) / "gateways-checkout.pth", f"{REPO}\n")
        found = check_worker_can_run_python(str(root / "venv" / "bin" / "python"))
        assert found == str(REPO / "gateways" / "__init__.py")
    finally:
        shutil.rmtree(root)


def test_check_worker_can_run_python_explains_unreachable_interpreters(tmp_path):
    if www_data_ids() is None:
        pytest.skip("only root runs the servers' workers as another user")
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "python").symlink_to(sys.executable)
    with pytest.raises(pytest.fail.Exception, match="must be readable and searchable"):
        check_worker_can_run_python(str(hidden / "python"))


# -- the servers ---------------------------------------------------------------------


@servers
def test_apache_serves_static_files(apache):
    response = _get(apache, "/hello.txt")
    assert response.status_code == 200
    assert response.text == "hello from the docroot\n"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["X-Listen"] == str(apache.port)
    assert _get(apache, "/missing.txt").status_code == 404


@servers
def test_apache_runs_cgi_through_mod_cgid_as_worker_user(apache):
    response = _get(apache, "/cgi-bin/id.cgi")
    assert response.status_code == 200, apache.error_log_text(tail=20)
    assert response.text.strip() == EXPECTED_USER


@servers
def test_apache_proxies_http(apache, backend_port):
    response = _get(apache, "/back/x?y=1")
    assert response.status_code == 200
    assert response.text == f"backend path=/x?y=1 host=127.0.0.1:{backend_port}\n"


@servers
def test_apache_keeps_runtime_files_in_its_root(apache):
    # mod_cgid appends the parent's pid to ScriptSock.
    assert (apache.root / "run" / f"cgid.sock.{apache.pid}").exists()
    assert (apache.root / "run" / "httpd.pid").read_text().strip() == str(apache.pid)
    assert "resuming normal operations" in apache.error_log_text()


@servers
def test_lighttpd_serves_static_files(lighttpd):
    response = _get(lighttpd, "/hello.txt")
    assert response.status_code == 200
    assert response.text == "hello from the docroot\n"
    assert response.headers["Content-Type"].startswith("text/plain")


@servers
def test_lighttpd_runs_cgi_as_worker_user(lighttpd):
    response = _get(lighttpd, "/cgi-bin/id.cgi")
    assert response.status_code == 200, lighttpd.error_log_text(tail=20)
    assert response.text.strip() == EXPECTED_USER


@servers
def test_nginx_serves_static_files(nginx):
    response = _get(nginx, "/hello.txt")
    assert response.status_code == 200
    assert response.text == "hello from the docroot\n"
    assert response.headers["Content-Type"].startswith("text/plain")


@servers
def test_nginx_proxies_to_an_upstream_from_http_extra(nginx):
    response = _get(nginx, "/back/a/b?c=d")
    assert response.status_code == 200
    assert response.text == "backend path=/a/b?c=d host=backend\n"


@servers
def test_placeholders_are_filled(nginx):
    assert _get(nginx, "/where").text == f"{nginx.port} {nginx.root} {nginx.root}/htdocs"
    assert nginx.url("/x") == f"http://127.0.0.1:{nginx.port}/x"


# -- stopping and failing ----------------------------------------------------------------


@servers
@pytest.mark.parametrize("start", [start_apache, start_lighttpd, start_nginx])
def test_stop_really_stops(start):
    server = start("")
    pid, port = server.pid, server.port
    assert server.running() and webservers.port_open(port)
    server.stop()
    assert not server.running()
    assert server.processes() == []
    assert server.process.returncode is not None and not _alive(pid)
    assert not webservers.port_open(port)
    server.stop()  # idempotent
    server.close()
    assert not server.root.exists()


@servers
def test_stop_kills_children_that_outlive_the_server():
    root = public_dir("gw-selftest-stubborn-")
    write_file(root / "stubborn.sh", "#!/bin/sh\ntrap '' TERM INT HUP\nexec sleep 60\n", 0o755)
    body = ('fastcgi.server = ( "/stubborn" => (( "bin-path" => "{root}/stubborn.sh",\n'
            '    "socket" => "{root}/run/stubborn.sock", "check-local" => "disable" )))\n')
    server = start_lighttpd(body, modules=("mod_fastcgi",), root=root)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(server.processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        children = [pid for pid in server.processes() if pid != server.pid]
        assert children, "lighttpd did not spawn the FastCGI child"
        server.stop()
        assert server.processes() == []
        assert not any(_alive(pid) for pid in children)
    finally:
        server.stop()
        shutil.rmtree(root)


BROKEN = [
    (start_apache, "ThisIsNotADirective on", "Invalid command 'ThisIsNotADirective'"),
    (start_lighttpd, "this is not = valid lighttpd", "configfile.c"),
    (start_nginx, "not_a_directive;", 'unknown directive "not_a_directive"'),
]


@servers
@pytest.mark.parametrize(("start", "body", "diagnostic"), BROKEN,
                         ids=["apache", "lighttpd", "nginx"])
def test_broken_config_raises_with_the_server_diagnostics(start, body, diagnostic):
    with pytest.raises(ServerStartError) as caught:
        start(body)
    try:
        message = str(caught.value)
        assert diagnostic in message
        assert str(caught.value.conf) in message
        assert caught.value.server.processes() == []
    finally:
        shutil.rmtree(caught.value.root)


def _occupy_port_body(start, port):
    """A config body that makes ``start``'s server also listen on ``port``."""
    if start is start_apache:
        return f"Listen 127.0.0.1:{port}"
    if start is start_lighttpd:
        return f'$SERVER["socket"] == "127.0.0.1:{port}" {{ }}'
    return f"listen 127.0.0.1:{port};"


# nginx is left out: it retries a busy port 5 times, 0.5 s apart, so its
# clash (twice, with the retry) costs 5 s; its message matches too.
@servers
@pytest.mark.parametrize("start", [start_apache, start_lighttpd], ids=["apache", "lighttpd"])
def test_port_clash_is_reported(start):
    # A clash on the generated port is retried once; one the body asks for
    # cannot be, and must come back as the server's own EADDRINUSE message.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServerStartError, match="Address already in use") as caught:
            start(_occupy_port_body(start, taken.getsockname()[1]))
    shutil.rmtree(caught.value.root)
