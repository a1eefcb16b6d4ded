"""One script everywhere: gateways.launcher chooses from fd 0 and GATEWAY_INTERFACE.

``detect()`` is called in this process with the file descriptor to look at;
``gateways run`` and ``gateways.run()`` are run as subprocesses the way a web
server would start them: CGI (environment + stdin), FastCGI (a listening
socket as stdin, lighttpd ``bin-path`` style) or a terminal-ish stdin
(standalone).  The flup-style ``WSGIServer`` front door is checked the same way.
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys

import pytest
import requests

from gateways.fd0 import listening_socket
from gateways.launcher import CGI, FASTCGI, STANDALONE, detect
from gateways.tools.confgen import render

import webservers
from daemons import (
    APPS,
    WAIT,
    accepting,
    clean_environ,
    gateways_argv,
    ipv6_loopback,
    output_lines,
    raw_request,
    wait_until,
)
from daemons import EngineDaemon as Daemon

CGI_ENV = {"GATEWAY_INTERFACE": "CGI/1.1"}


def listening(family=socket.AF_UNIX, address=None):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(16)
    return sock


# -- detect() ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET, socket.AF_INET6],
                         ids=["unix", "ipv4", "ipv6"])
def test_listening_socket_is_fastcgi_even_with_gateway_interface(tmp, family):
    if family == socket.AF_INET6 and not ipv6_loopback():
        pytest.skip("this machine cannot listen on ::1 (no IPv6)")
    address = {socket.AF_UNIX: str(tmp / "l.sock"), socket.AF_INET: ("127.0.0.1", 0),
               socket.AF_INET6: ("::1", 0)}[family]
    with listening(family, address) as sock:
        assert detect(CGI_ENV, sock.fileno()) == FASTCGI
        assert detect({}, sock.fileno()) == FASTCGI
        assert listening_socket(sock.fileno())


def test_pipe_with_gateway_interface_is_cgi():
    read, write = os.pipe()
    try:
        assert detect(CGI_ENV, read) == CGI
        assert detect({}, read) == STANDALONE
    finally:
        os.close(read)
        os.close(write)


def test_plain_file_and_closed_fd_are_standalone(tmp):
    with open(tmp / "plain", "w+b") as f:
        assert detect({}, f.fileno()) == STANDALONE
        assert detect(CGI_ENV, f.fileno()) == CGI
    read, write = os.pipe()
    os.close(read)
    os.close(write)
    assert detect({}, read) == STANDALONE  # fstat fails: not a socket


def test_sockets_that_do_not_listen_are_not_fastcgi():
    """A connected socket is a request body (CGI) or nothing, never a listener."""
    left, right = socket.socketpair()
    bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        bound.bind(("127.0.0.1", 0))
        udp.bind(("127.0.0.1", 0))
        for sock in (left, bound, udp):
            assert not listening_socket(sock.fileno())
            assert detect(CGI_ENV, sock.fileno()) == CGI
            assert detect({}, sock.fileno()) == STANDALONE
    finally:
        for sock in (left, right, bound, udp):
            sock.close()


def test_listening_socket_is_left_open_by_detect(tmp):
    with listening(socket.AF_UNIX, str(tmp / "l.sock")) as sock:
        detect({}, sock.fileno())
        sock.settimeout(0.01)
        with pytest.raises(socket.timeout):
            sock.accept()  # still a usable listening socket


def test_detect_looks_at_fd_0_and_os_environ_by_default(tmp):
    code = "from gateways.launcher import detect; print(detect())"
    with listening(socket.AF_UNIX, str(tmp / "l.sock")) as sock:
        result = subprocess.run([sys.executable, "-c", code], stdin=sock.fileno(),
                                env=clean_environ(**CGI_ENV), capture_output=True, timeout=WAIT,
                                check=True)
    assert result.stdout == b"fastcgi\n"
    result = subprocess.run([sys.executable, "-c", code], input=b"", timeout=WAIT,
                            env=clean_environ(**CGI_ENV), capture_output=True, check=True)
    assert result.stdout == b"cgi\n"
    result = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            env=clean_environ(), capture_output=True, timeout=WAIT, check=True)
    assert result.stdout == b"standalone\n"


# -- gateways run ----------------------------------------------------------------------


def _cgi_response(stdout):
    head, _, body = stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return headers, body


def test_run_as_cgi_answers_one_request():
    body = os.urandom(5000)
    environ = clean_environ(
        GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST", SCRIPT_NAME="/cgi-bin/app.cgi",
        PATH_INFO="/upload", QUERY_STRING="mode=read", CONTENT_LENGTH=str(len(body)),
        CONTENT_TYPE="application/octet-stream", SERVER_NAME="localhost", SERVER_PORT="80",
        SERVER_PROTOCOL="HTTP/1.1", REMOTE_ADDR="127.0.0.1")
    result = subprocess.run(gateways_argv("run", "probe", "--app-dir", str(APPS)), input=body,
                            env=environ, capture_output=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    headers, answer = _cgi_response(result.stdout)
    assert headers.get("Status") == "200 OK", result.stdout[:300]
    assert json.loads(answer) == {"length": len(body),
                                  "sha256": hashlib.sha256(body).hexdigest()}

    environ.update(REQUEST_METHOD="GET", PATH_INFO="/echo", CONTENT_LENGTH="", QUERY_STRING="")
    result = subprocess.run(gateways_argv("run", "probe", "--app-dir", str(APPS)),
                            stdin=subprocess.DEVNULL, env=environ, capture_output=True,
                            timeout=WAIT)
    headers, answer = _cgi_response(result.stdout)
    echo = json.loads(answer)
    assert "CGI" in echo["gateway"] and "FastCGI" not in echo["gateway"], echo["gateway"]
    assert (echo["script_name"], echo["path_info"]) == ("/cgi-bin/app.cgi", "/echo")
    assert echo["run_once"] is True


def serves_fastcgi_on_fd_0(started, tmp, argv, **kw):
    """``argv`` started with a listening unix socket as fd 0 (as a web server spawns
    it) answers /echo over FastCGI there, and exits 0 on SIGTERM."""
    path = str(tmp / "spawned.sock")
    with listening(socket.AF_UNIX, path) as sock:
        daemon = Daemon(argv, tmp, address=path, stdin=sock.fileno(), **kw)
        started.append(daemon)
        daemon.wait_ready()
        response = raw_request(socket.AF_UNIX, path, "/echo")
        assert response.status_code == 200, response
        assert response.json()["gateway"] == "FastCGI"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0


def test_run_with_listening_socket_on_stdin_serves_fastcgi(started, tmp):
    # A spawning web server may leave CGI variables around: fd 0 wins.
    serves_fastcgi_on_fd_0(started, tmp, gateways_argv("run", "probe", "--app-dir", str(APPS)),
                           env=clean_environ(**CGI_ENV))


def test_run_without_cgi_or_socket_starts_the_standalone_server(tmp):
    """``gateways run`` has no --bind: it takes 127.0.0.1:8000.  Holding that port
    proves the standalone server was chosen (its one-line 'in use' error) without
    serving anything on a port other programs may want."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8000))
        holder.listen(1)
    except OSError:
        holder.close()  # whoever holds it may let it go while the test runs
        pytest.skip("127.0.0.1:8000 is taken by another program")
    try:
        result = subprocess.run(gateways_argv("run", "probe", "--app-dir", str(APPS)),
                                stdin=subprocess.DEVNULL, env=clean_environ(),
                                capture_output=True, timeout=WAIT, cwd=tmp)
    finally:
        holder.close()
    lines = output_lines(result.stderr.decode() + result.stdout.decode())
    assert result.returncode == 1, lines
    assert lines == ["gateways: error: --bind 127.0.0.1:8000: the address is already in use "
                     "(another program listens there); choose another with --bind HOST:PORT"]


STANDALONE_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import gateways
sys.exit(gateways.run("probe", bind="127.0.0.1:" + sys.argv[2], threads=2))
"""


def _http_get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_gateways_run_standalone_serves_http(started, tmp):
    port = webservers.free_port()
    daemon = Daemon([sys.executable, "-c", STANDALONE_SCRIPT, str(APPS), str(port)], tmp,
                    stdin=subprocess.DEVNULL)
    started.append(daemon)
    wait_until(lambda: accepting(("127.0.0.1", port)) or daemon.process.poll() is not None,
               what="the standalone server listening")
    assert daemon.process.poll() is None, daemon.log.text()
    status, body = _http_get(port, "/echo")
    assert status == 200
    assert json.loads(body)["gateway"] == "standalone HTTP (werkzeug)"


# -- the flup-style front door ------------------------------------------------------------

SEED = """
import sys
sys.path.insert(0, sys.argv[1])
from probe import application
from gateways.fastcgi import WSGIServer

if len(sys.argv) > 2:
    WSGIServer(application, bindAddress=sys.argv[2]).run()
else:
    WSGIServer(application).run()
"""


def test_flup_style_wsgiserver_spawned_with_socket_on_fd_0(started, tmp):
    serves_fastcgi_on_fd_0(started, tmp, [sys.executable, "-c", SEED, str(APPS)])


def test_flup_style_wsgiserver_bind_address_unix_socket(started, tmp):
    path = str(tmp / "flup.sock")
    daemon = Daemon([sys.executable, "-c", SEED, str(APPS), path], tmp, address=path,
                    stdin=subprocess.DEVNULL)
    started.append(daemon)
    daemon.wait_ready()
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o660)
    response = raw_request(socket.AF_UNIX, path, "/pid")
    assert response.status_code == 200 and int(response.body) in daemon.worker_pids(), response
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert not os.path.exists(path)


SEED_KEYWORDS = """
import sys
sys.path.insert(0, sys.argv[1])
from probe import application
from gateways.fastcgi import WSGIServer

WSGIServer(application, bindAddress=sys.argv[2], %s).run()
"""


@pytest.fixture
def public_tmp():
    """A directory the web server's user can reach (for a unix socket)."""
    directory = webservers.public_dir("gw-flup-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.servers
@pytest.mark.parametrize(("keywords", "mode"), [
    ("umask=0", 0o777), ("umask=0o002", 0o775), ("socket_group='www-data'", 0o660)])
def test_flup_socket_reached_by_lighttpd_as_www_data(started, tmp, public_tmp, keywords, mode):
    path = str(public_tmp / "flup.sock")
    daemon = Daemon([sys.executable, "-c", SEED_KEYWORDS % keywords, str(APPS), path], tmp,
                    address=path, stdin=subprocess.DEVNULL)
    started.append(daemon)
    daemon.wait_ready()
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    if keywords == "umask=0":
        assert "writable by every local user" in daemon.log.text()
    snippet = render("lighttpd", "fastcgi", bind="unix:" + path, prefix="/app")
    with webservers.start_lighttpd(snippet, modules=["mod_fastcgi"]) as lighttpd:
        response = requests.get(lighttpd.url("/app/echo"), timeout=10)
    if mode == 0o775 and webservers.www_data_ids():
        assert response.status_code == 503  # www-data is "other": no write permission
    else:
        assert response.status_code == 200, response.text
        assert response.json()["gateway"] == "FastCGI"


def test_flup_unknown_keyword_is_a_type_error():
    from gateways.fastcgi import WSGIServer

    with pytest.raises(TypeError, match="unexpected keyword argument 'bindAdress'"):
        WSGIServer(lambda environ, start_response: [], bindAdress="/run/x.sock")
    server = WSGIServer(lambda e, s: [], bindAddress="/run/x.sock", maxThreads=3, minSpare=1,
                        maxSpare=5, socket_group="www-data")
    assert server.options["threads"] == 3 and server.options["socket_group"] == "www-data"
