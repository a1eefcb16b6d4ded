"""uwsgi through real Apache httpd (mod_proxy_uwsgi), lighttpd (mod_scgi speaking uwsgi)
and nginx (uwsgi_pass).

The servers are configured with the snippets ``gateways conf SERVER uwsgi``
prints and talk to ``gateways uwsgi`` daemons serving the probe application;
each web server starts once for the module:

* Apache: /app over a unix socket, and the root over TCP, each with its own
  daemon started with ``--script-name`` (mod_proxy_uwsgi gets SCRIPT_NAME and
  PATH_INFO wrong at the mount point itself);
* lighttpd: /app and the root over a unix socket, /tcp over TCP (one
  lighttpd holds all three: the snippets' repeated ``server.*`` lines are
  dropped, lighttpd refuses a variable set twice), and beside them an SCGI
  mount at /scgi whose block says ``scgi.protocol = "scgi"``;
* nginx: /app over a unix socket, the root over TCP.

What each front sends, byte for byte, is read by a raw uwsgi listener in this
process (:class:`Capture`), behind a second instance of each web server with
the same snippets: the variables in the order and number they arrive (a name
sent twice shows as two pairs), the body, and what follows it.

The daemons (1 process x 4 threads, ``--log-level debug``) are stopped with
SIGTERM at the end and must exit 0.
"""

import hashlib
import http.client
import json
import os
import re
import socket
import struct
import time

import pytest
import requests

from gateways.environ import EnvironBuilder
from gateways.tools.confgen import render, split_nginx

import webservers
from behaviour import TIMEOUT, Front, every_front, front_maker, get_json
from daemons import RawListener, behind_a_web_server, daemon_set, wait_until

pytestmark = pytest.mark.servers

# A line the daemon's logger writes at debug level ("DATE TIME gateways[PID] DEBUG: ...").
DEBUG_LINE = re.compile(r"^\S+ \S+ gateways\[\d+\] DEBUG: ")

APACHE_MODULES = ("proxy", "proxy_uwsgi")


# -- a raw uwsgi listener ------------------------------------------------------------------


def _recv_exactly(conn, size):
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(65536, size - len(data)))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return bytes(data)


def _pairs(block):
    """The variables of a uwsgi packet as [name, value] pairs, repeats kept."""
    pairs, pos = [], 0
    while pos < len(block):
        (size,) = struct.unpack_from("<H", block, pos)
        name = block[pos + 2:pos + 2 + size].decode("latin-1")
        pos += 2 + size
        (size,) = struct.unpack_from("<H", block, pos)
        pairs.append([name, block[pos + 2:pos + 2 + size].decode("latin-1")])
        pos += 2 + size
    return pairs


class Capture(RawListener):
    """A uwsgi listener that answers every request with the JSON of what it received:
    ``modifier1``, ``modifier2``, ``vars`` (the pairs in the order they came),
    ``body`` (the length and sha256 of CONTENT_LENGTH bytes) and ``after`` (bytes
    that came after them within 0.3 s).  ``connections`` counts what connected,
    ``requests`` the packet headers that arrived."""

    def __init__(self, address):
        self.requests = 0
        super().__init__(address)

    def _serve(self, conn):
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                modifier1, size, modifier2 = struct.unpack("<BHB", _recv_exactly(conn, 4))
                self.requests += 1
                pairs = _pairs(_recv_exactly(conn, size))
                body = _recv_exactly(conn, int(dict(pairs).get("CONTENT_LENGTH") or 0))
                after = b""
                conn.settimeout(0.3)
                try:
                    while len(after) < 1 << 20:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        after += chunk
                except socket.timeout:
                    pass
                answer = json.dumps({
                    "modifier1": modifier1, "modifier2": modifier2, "vars": pairs,
                    "body": [len(body), hashlib.sha256(body).hexdigest()],
                    "after": len(after)}).encode()
                conn.settimeout(TIMEOUT)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
            except (OSError, EOFError, struct.error):
                return


# -- daemons and web servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    """apache_app, apache_root (--script-name), unix and tcp (no --script-name), and
    an SCGI daemon for lighttpd's mixed config."""
    with daemon_set("gw-uwsgi-", timeout=5) as (directory, started):
        for name, gateway, tcp, extra in [
                ("apache_app", "uwsgi", False, ("--script-name", "/app")),
                ("apache_root", "uwsgi", True, ("--script-name", "/")),
                ("unix", "uwsgi", False, ()), ("tcp", "uwsgi", True, ()),
                ("scgi", "scgi", False, ())]:
            started[name] = behind_a_web_server(gateway, gateways_bin, app_dir, directory,
                                                name, tcp, extra)
        for daemon in started.values():
            daemon.wait_ready()
            daemon.log.mark()
        yield started


def snippet(server, prefix, bind, app_dir="/srv/myapp", gateway="uwsgi"):
    return render(server, gateway, app="probe:application", app_dir=str(app_dir),
                  prefix=prefix, bind=bind, processes=1, threads=4)


def start(server, mounts):
    """``server`` with the uwsgi snippet of each (prefix, bind) in ``mounts``; lighttpd
    may also get ready-made snippets (str)."""
    texts = [m if isinstance(m, str) else snippet(server, *m) for m in mounts]
    if server == "apache":
        return webservers.start_apache("\n".join(texts), modules=APACHE_MODULES)
    if server == "lighttpd":
        return webservers.start_lighttpd(webservers.merge_lighttpd(*texts))
    parts = [split_nginx(text) for text in texts]
    return webservers.start_nginx("\n".join(body for _, body in parts),
                                  http_extra="\n".join(head for head, _ in parts))


def scgi_beside_uwsgi(prefix, bind, app_dir):
    """The SCGI snippet, its block telling lighttpd to speak SCGI there."""
    text = snippet("lighttpd", prefix, bind, app_dir, gateway="scgi")
    head, sep, tail = text.partition("$HTTP[\"url\"] =~ \"^%s(/|$)\" {\n" % prefix)
    assert sep, text
    return head + sep + '    scgi.protocol = "scgi"\n' + tail


@pytest.fixture(scope="module")
def apache(daemons, app_dir):
    # /app first: the root mount would otherwise catch /app too.
    server = start("apache", [("/app", daemons["apache_app"].bind, app_dir),
                              ("/", daemons["apache_root"].bind, app_dir)])
    yield server
    server.close()


@pytest.fixture(scope="module")
def lighttpd(daemons, app_dir):
    server = start("lighttpd", [("/app", daemons["unix"].bind, app_dir),
                                ("/tcp", daemons["tcp"].bind, app_dir),
                                scgi_beside_uwsgi("/scgi", daemons["scgi"].bind, app_dir),
                                ("/", daemons["unix"].bind, app_dir)])
    yield server
    server.close()


@pytest.fixture(scope="module")
def nginx(daemons, app_dir):
    server = start("nginx", [("/app", daemons["unix"].bind, app_dir),
                             ("/", daemons["tcp"].bind, app_dir)])
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


def http_get(port, target, headers=()):
    """GET ``target`` exactly as written (requests would turn %41 into A): (status,
    body, the client's port)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest("GET", target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        client_port = connection.sock.getsockname()[1]
        response = connection.getresponse()
        return response.status, response.read(), client_port
    finally:
        connection.close()


def daemon_of(name, daemons):
    return daemons[FRONTS[name][2]]


TestEveryFront = every_front(FRONTS)


# -- through the daemons: what only this module shows ------------------------------------


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_each_mount_reaches_its_daemon_as_uwsgi(name, request, daemons):
    data = get_json(make_front(request, name), "/echo")
    assert data["gateway"] == "uwsgi"
    assert (data["multithread"], data["run_once"]) == (True, False)
    assert data["pid"] in daemon_of(name, daemons).worker_pids()


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_prefix_mount_is_a_path_segment(name, request):
    prefix, root = make_front(request, name), make_front(request, name + "-root")
    response = requests.get(root.url("/appx/echo"), timeout=TIMEOUT)
    # the root mount's application got all of it as PATH_INFO (it has no such route)
    assert (response.status_code, response.text) == (404, "no route '/appx/echo'")
    data = get_json(prefix, "?x=1")
    assert (data["script_name"], data["path_info"], data["query_string"]) == ("/app", "", "x=1")


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_mount_with_a_slash(name, request):
    front = make_front(request, name)
    data = get_json(front, "/")
    assert (data["script_name"], data["path_info"]) == (front.mount, "/")


@pytest.mark.parametrize("name", sorted(FRONTS))
@pytest.mark.parametrize(("path", "path_info"), [
    ("/echo/%2541", "/echo/%41"),  # decoded once: %25 is "%", and the "41" stays
    ("/echo/%41%42", "/echo/AB"),
    ("/echo/%E2%82%AC%20x", "/echo/\xe2\x82\xac x"),  # UTF-8 bytes as latin-1 code points
])
def test_path_is_decoded_once(name, path, path_info, request):
    front = make_front(request, name)
    status, body, _ = http_get(front.server.port, front.mount + path)
    assert status == 200, body[:300]
    data = json.loads(body)
    assert (data["script_name"], data["path_info"]) == (front.mount, path_info)


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_remote_addr_and_port_are_the_clients(name, request):
    front = make_front(request, name)
    status, body, client_port = http_get(front.server.port, front.mount + "/echo")
    assert status == 200, body[:300]
    data = json.loads(body)
    assert (data["remote_addr"], data["remote_port"]) == ("127.0.0.1", str(client_port))
    assert data["server_port"] == str(front.server.port)
    assert data["server_protocol"] == "HTTP/1.1"
    assert data["url_scheme"] == "http"


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_large_request_header(name, request):
    front = make_front(request, name)
    value = "v" * (7 * 1024)
    data = get_json(front, "/echo", headers={"X-Large": value})
    assert data["http"]["HTTP_X_LARGE"] == value


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_304_has_no_body(name, request):
    response = requests.get(make_front(request, name).url("/status/304"), timeout=TIMEOUT)
    assert (response.status_code, response.content) == (304, b"")


@pytest.mark.parametrize("name", ["apache", "lighttpd-tcp", "nginx-root"])
def test_large_body_the_application_does_not_read(name, request, daemons):
    # The daemon reads the body before the application runs, so the front end
    # finishes sending it and reads the answer: no 502 or 503.
    front = make_front(request, name)
    daemon = daemon_of(name, daemons)
    daemon.log.mark()
    response = requests.post(front.url("/noread"), data=os.urandom(10 * 1024 * 1024),
                             timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "ignored")
    assert get_json(front, "/echo")["method"] == "GET"
    text = daemon.log.new_text()
    assert [line for line in text.splitlines() if not DEBUG_LINE.match(line)] == [], text


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_exc_info_before_the_headers_replaces_them(name, request):
    response = requests.get(make_front(request, name).url("/exc-info"), timeout=TIMEOUT)
    assert (response.status_code, response.text) == (503, "replaced by exc_info")


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_exc_info_after_the_headers_reraises(name, request, daemons):
    front = make_front(request, name)
    daemon = daemon_of(name, daemons)
    daemon.log.mark()
    try:
        response = requests.get(front.url("/exc-info-late"), timeout=TIMEOUT)
        text = response.text
    except requests.exceptions.RequestException as exc:
        text = str(exc)  # cut short: the front end reset the connection
    assert "never sent" not in text and "SECRET-MARKER" not in text
    logged = daemon.log.wait_for("SECRET-MARKER caught after the headers")
    assert "Traceback (most recent call last)" in logged
    assert get_json(front, "/echo")["method"] == "GET"


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_exception_before_start_response_is_a_500(name, request, daemons):
    front = make_front(request, name)
    daemon = daemon_of(name, daemons)
    daemon.log.mark()
    response = requests.get(front.url("/error"), timeout=TIMEOUT)
    assert response.status_code == 500
    assert "SECRET-MARKER" not in response.text and "Traceback" not in response.text
    text = daemon.log.wait_for("SECRET-MARKER")
    assert "Traceback (most recent call last)" in text
    assert "GET %s/error" % front.mount in text
    assert "SECRET-MARKER" not in front.server.error_log_text()


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_client_abort_mid_response_leaves_the_daemon_serving(name, request, daemons):
    front = make_front(request, name)
    daemon = daemon_of(name, daemons)
    workers = daemon.worker_pids()
    daemon.log.mark()
    with requests.get(front.url("/bytes?n=20000000"), stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert len(response.raw.read(100000)) == 100000
    assert get_json(front, "/echo")["method"] == "GET"
    time.sleep(0.3)  # anything the aborted request's thread would log
    assert daemon.worker_pids() == workers
    text = daemon.log.new_text()
    assert [line for line in text.splitlines() if not DEBUG_LINE.match(line)] == [], text


@pytest.mark.parametrize("name", ["apache", "lighttpd", "nginx"])
def test_repeated_request_header_is_joined(name, request):
    front = make_front(request, name)
    status, body, _ = http_get(front.server.port, front.mount + "/echo",
                               [("X-Dup", "a"), ("X-Dup", "b")])
    assert status == 200, (status, body[:300])
    assert json.loads(body)["http"]["HTTP_X_DUP"] == "a, b"


@pytest.mark.parametrize("name", ["apache", "apache-root"])
def test_apache_answers_a_chunked_upload_411_and_the_daemon_stays_quiet(name, request,
                                                                         daemons):
    front = make_front(request, name)
    daemon = daemon_of(name, daemons)
    daemon.log.mark()
    response = requests.post(front.url("/upload"), data=iter([b"x" * 1000] * 3),
                             timeout=TIMEOUT)
    assert response.status_code == 411
    # Apache connected and closed without a byte: a debug line at most.
    time.sleep(0.3)
    assert get_json(front, "/echo")["method"] == "GET"
    text = daemon.log.new_text()
    assert [line for line in text.splitlines() if not DEBUG_LINE.match(line)] == [], text


@pytest.mark.parametrize("name", ["nginx", "nginx-root"])
def test_encoded_newline_in_the_path(name, request):
    # nginx regexes do not cross a decoded newline without (?s): the snippet has it.
    front = make_front(request, name)
    data = get_json(front, "/echo/a%0Ab")
    assert (data["script_name"], data["path_info"]) == (front.mount, "/echo/a\nb")


def test_lighttpd_serves_scgi_beside_uwsgi(lighttpd, daemons):
    # scgi.protocol holds for its config block: the SCGI mount sets "scgi" in its own.
    data = get_json(Front(lighttpd.url(), "/scgi", lighttpd), "/echo/x")
    assert (data["gateway"], data["script_name"], data["path_info"]) == ("SCGI", "/scgi",
                                                                       "/echo/x")
    assert data["pid"] in daemons["scgi"].worker_pids()


# -- what each front sends, read raw -------------------------------------------------------


@pytest.fixture(scope="module")
def captures():
    """Two raw listeners: ``unix`` (behind /app) and ``tcp`` (behind the root)."""
    directory = webservers.public_dir("gw-capture-")
    listeners = {"unix": Capture(str(directory / "capture.sock")),
                 "tcp": Capture(("127.0.0.1", 0))}
    yield listeners
    for listener in listeners.values():
        listener.close()
    webservers.shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module", params=["apache", "lighttpd", "nginx"])
def raw(request, captures):
    """A web server with the uwsgi snippets at /app (unix) and the root (TCP) in front of
    the raw listeners; lighttpd also has the SCGI snippet, unchanged, at /scgi."""
    mounts = [("/app", captures["unix"].bind), ("/", captures["tcp"].bind)]
    if request.param == "lighttpd":
        mounts.insert(1, snippet("lighttpd", "/scgi", captures["unix"].bind, gateway="scgi"))
    server = start(request.param, mounts)
    yield server
    server.close()


def sent(server, path, method="GET", **kw):
    """What the front end sent for ``path``: (status, the listener's record)."""
    if method == "GET":  # the target as written
        status, body, _ = http_get(server.port, path, kw.get("headers", {}).items())
    else:
        response = requests.request(method, server.url(path), timeout=TIMEOUT, **kw)
        status, body = response.status_code, response.content
    if status != 200:
        return status, None
    record = json.loads(body)
    record["env"] = dict(record["vars"])
    return status, record


# What arrives as (SCRIPT_NAME, PATH_INFO) for each request path; None: not sent.
PATHS = {
    "apache": {"/app": ("/app", "/"), "/app/": ("/app/", "/"), "/app/x": ("/app", "/x"),
               "/app/x/": ("/app", "/x/"), "/": ("", "/"), "/x": ("", "/x")},
    "lighttpd": {"/app": ("/app", None), "/app/": ("/app", "/"), "/app/x": ("/app", "/x"),
                 "/app/x/": ("/app", "/x/"), "/": ("", "/"), "/x": ("", "/x")},
    "nginx": {"/app": ("/app", ""), "/app/": ("/app", "/"), "/app/x": ("/app", "/x"),
              "/app/x/": ("/app", "/x/"), "/": ("", "/"), "/x": ("", "/x")},
}


@pytest.mark.parametrize("path", list(PATHS["nginx"]))
def test_what_each_front_sends_as_script_name_and_path_info(raw, path):
    status, record = sent(raw, path + "?q=%41")
    assert status == 200
    env = record["env"]
    assert (env.get("SCRIPT_NAME"), env.get("PATH_INFO")) == PATHS[raw.name][path]
    # lighttpd decodes the unreserved characters of the query (url-normalize-unreserved)
    query = "q=A" if raw.name == "lighttpd" else "q=%41"
    assert (env["REQUEST_URI"], env["QUERY_STRING"]) == (path + "?q=%41", query)
    assert (record["modifier1"], record["modifier2"]) == (0, 0)


@pytest.mark.parametrize("path", ["/app/x", "/x"])
def test_no_variable_arrives_twice(raw, path):
    # nginx: the snippet lists its variables instead of including uwsgi_params, which
    # sends PATH_INFO already; HTTP_HOST set there replaces the Host header.
    status, record = sent(raw, path, headers={"X-One": "1"})
    assert status == 200
    names = [name for name, _ in record["vars"]]
    assert sorted(names) == sorted(set(names)), record["vars"]
    env = record["env"]
    for name in ("REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "SCRIPT_NAME", "PATH_INFO",
                 "SERVER_PROTOCOL", "SERVER_NAME", "SERVER_PORT", "REQUEST_SCHEME",
                 "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST", "HTTP_X_ONE"):
        assert name in env, (name, record["vars"])
    assert "HTTPS" not in env  # nginx: "if_not_empty"; plain HTTP here
    assert env["HTTP_HOST"] == ("127.0.0.1" if raw.name == "nginx"  # $host: no port
                                else "127.0.0.1:%d" % raw.port)


def test_a_repeated_header(raw):
    # nginx 1.22 sends a request header the client repeats as two pairs (nginx 1.23
    # joins them); gateways joins them (test_repeated_request_header_is_joined).
    status, body, _ = http_get(raw.port, "/app/x", [("X-Dup", "a"), ("X-Dup", "b")])
    assert status == 200
    record = json.loads(body)
    dups = [pair for pair in record["vars"] if pair[0] == "HTTP_X_DUP"]
    if raw.name == "nginx":
        assert dups == [["HTTP_X_DUP", "a"], ["HTTP_X_DUP", "b"]]
    else:
        assert dups == [["HTTP_X_DUP", "a, b"]]


def test_a_chunked_upload(raw, captures):
    chunks = [os.urandom(10000) for _ in range(30)]
    body = b"".join(chunks)
    listener = captures["unix"]
    before = listener.requests, listener.connections
    status, record = sent(raw, "/app/upload", "POST", data=iter(chunks))
    if raw.name == "apache":
        # mod_proxy_uwsgi connects, then refuses the body (REQUEST_CHUNKED_ERROR) and
        # closes without sending a byte.
        assert status == 411
        assert wait_until(lambda: listener.connections == before[1] + 1)
        assert listener.requests == before[0]
        return
    # nginx and lighttpd read the whole body first and send its length.
    assert status == 200
    assert record["env"]["CONTENT_LENGTH"] == str(len(body))
    assert record["body"] == [len(body), hashlib.sha256(body).hexdigest()]
    assert record["after"] == 0


def test_a_body_with_its_length(raw):
    body = os.urandom(300000)
    status, record = sent(raw, "/app/upload", "POST", data=body)
    assert status == 200
    assert record["env"]["CONTENT_LENGTH"] == str(len(body))
    assert record["body"] == [len(body), hashlib.sha256(body).hexdigest()]
    assert record["after"] == 0


@pytest.mark.parametrize("raw", ["apache"], indirect=True)
def test_apache_needs_the_mount_point(raw):
    """mod_proxy_uwsgi's SCRIPT_NAME and PATH_INFO at the mount point itself do not add up
    to the path; the daemon's --script-name (the snippet's) makes them right."""

    def environ(path, mount):
        status, record = sent(raw, path)
        assert status == 200
        builder = EnvironBuilder(multithread=True, multiprocess=False, run_once=False,
                                 gateway="uwsgi", mount=mount)
        env = builder.build(record["env"], None, None)
        return env["SCRIPT_NAME"], env["PATH_INFO"]

    assert environ("/app", None) == ("/app", "/")  # the path is /app
    assert environ("/app/", None) == ("/app", "//")  # the path is /app/
    assert environ("/app", "/app") == ("/app", "")
    assert environ("/app/", "/app") == ("/app", "/")
    assert environ("/app/x%2541", "/app") == ("/app", "/x%41")


@pytest.mark.parametrize("raw", ["lighttpd"], indirect=True)
def test_lighttpd_protocol_holds_for_the_block(raw):
    # The unchanged SCGI snippet at /scgi, in a lighttpd whose root mount sets
    # scgi.protocol = "uwsgi" for the whole server, speaks uwsgi too.
    status, record = sent(raw, "/scgi/x")
    assert status == 200
    assert (record["env"]["SCRIPT_NAME"], record["env"]["PATH_INFO"]) == ("/scgi", "/x")
