"""FastCGI through real HAProxy 2.6 (fcgi-app), Caddy 2.6 (transport fastcgi) and H2O 2.2
(fastcgi.connect).

The servers are configured with the snippets ``gateways conf haproxy|caddy|h2o fastcgi``
print, included into a minimal config of each (tests/webservers.py); each starts once
for the module:

* HAProxy: /app over a unix socket and the root over TCP (the second snippet's
  fcgi-app and backend renamed, as its comment says to do for a second application);
* Caddy: /app over a unix socket and the root over TCP, in one site;
* H2O: /app over a unix socket and the root over TCP, each daemon started with
  ``--script-name`` as the snippet's command line says (H2O sends SCRIPT_NAME "").

What each front sends is read by a raw FastCGI listener in this process
(:class:`Capture`), behind a second instance of each front with the same snippets.

HAProxy 2.6.12 crashes on an FCGI_STDERR record that fills its receive buffer alone
(an unpadded record that arrives on its own, or one as large as the buffer):
:func:`test_haproxy_crashes_on_what_gateways_no_longer_sends` shows it with raw
records, and the tests of application errors show that HAProxy survives what
gateways sends (padded STDERR records of at most 4 KB).

The daemons (1 process x 4 threads, ``--log-level debug``) are stopped with SIGTERM at
the end and must exit 0.
"""

import hashlib
import http.client
import json
import os
import struct
import time

import pytest
import requests

from gateways.tools.confgen import render, split_snippet

import webservers
from behaviour import TIMEOUT, every_front, front_maker, get_json
from daemons import RawListener, alive, behind_a_web_server, children, daemon_set, wait_until
from fcgi_client import END_REQUEST, STDERR, STDIN, STDOUT, decode_pairs, end_request_content
from fcgi_client import record as fcgi_record

pytestmark = pytest.mark.servers

APP = "probe:application"


def snippet(server, prefix, bind, app_dir="/srv/myapp"):
    return render(server, "fastcgi", app=APP, app_dir=str(app_dir), prefix=prefix, bind=bind,
                  processes=1, threads=4)


# -- the fronts, from the snippets ---------------------------------------------------------


def start_haproxy(mounts, name="haproxy"):
    """HAProxy with the snippet of each (prefix, bind); the second one's names renamed."""
    sections, frontend = [], []
    for number, (prefix, bind) in enumerate(mounts):
        text = snippet("haproxy", prefix, bind)
        if number:
            text = text.replace("gateways_app", "gateways_app%d" % number)
        own, inside = split_snippet(text)
        sections.append(own)
        frontend.append(inside)
    return webservers.start_haproxy("\n".join(sections), frontend="\n".join(frontend),
                                    name=name)


def start_caddy(mounts, name="caddy"):
    return webservers.start_caddy("\n".join(split_snippet(snippet("caddy", *m))[1]
                                            for m in mounts), name=name)


def start_h2o(mounts, name="h2o"):
    return webservers.start_h2o("\n".join(split_snippet(snippet("h2o", *m))[1]
                                          for m in mounts), name=name)


START = {"haproxy": start_haproxy, "caddy": start_caddy, "h2o": start_h2o}


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    """unix and tcp (HAProxy and Caddy), h2o_app and h2o_root (--script-name)."""
    with daemon_set("gw-fronts-") as (directory, started):
        for name, tcp, extra in [("unix", False, ()), ("tcp", True, ()),
                                 ("h2o_app", False, ("--script-name", "/app")),
                                 ("h2o_root", True, ("--script-name", "/"))]:
            started[name] = behind_a_web_server("fastcgi", gateways_bin, app_dir, directory,
                                                name, tcp, extra)
        for daemon in started.values():
            daemon.wait_ready()
        yield started


def _front_fixture(server, app, root):
    @pytest.fixture(scope="module")
    def fixture(daemons):
        front = START[server]([("/app", daemons[app].bind), ("/", daemons[root].bind)])
        yield front
        front.close()

    return fixture


haproxy = _front_fixture("haproxy", "unix", "tcp")
caddy = _front_fixture("caddy", "unix", "tcp")
h2o = _front_fixture("h2o", "h2o_app", "h2o_root")

# HAProxy must know a body's length before it talks FastCGI: a chunked upload
# larger than its buffer is answered 400 (the shared case sends 300 KB).
HAPROXY = {"streams": True, "chunked_upload": False, "chunked_refusal": 400}

# name: (web server fixture, mount, daemon, Front options)
FRONTS = {
    "haproxy": ("haproxy", "/app", "unix", HAPROXY),
    "haproxy-root": ("haproxy", "", "tcp", HAPROXY),
    "caddy": ("caddy", "/app", "unix", {"streams": True}),
    "caddy-root": ("caddy", "", "tcp", {"streams": True}),
    "h2o": ("h2o", "/app", "h2o_app", {"streams": True}),
    "h2o-root": ("h2o", "", "h2o_root", {"streams": True}),
}
SERVERS = ("haproxy", "caddy", "h2o")


make_front = front_maker(FRONTS)


def http_request(port, target, method="GET", headers=()):
    """``method target`` exactly as written: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


TestEveryFront = every_front(FRONTS)


# -- through the daemons ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_each_mount_reaches_its_daemon(name, request, daemons):
    data = get_json(make_front(request, name), "/echo")
    assert (data["gateway"], data["multithread"], data["run_once"]) == ("FastCGI", True, False)
    assert data["pid"] in daemons[FRONTS[name][2]].worker_pids()


@pytest.mark.parametrize("server", SERVERS)
def test_prefix_mount_is_a_path_segment(server, request):
    prefix, root = make_front(request, server), make_front(request, server + "-root")
    response = requests.get(root.url("/appx/echo"), timeout=TIMEOUT)
    # the root mount's application got all of it as PATH_INFO (it has no such route)
    assert (response.status_code, response.text) == (404, "no route '/appx/echo'")
    data = get_json(prefix, "?x=1")
    assert (data["script_name"], data["path_info"], data["query_string"]) == ("/app", "", "x=1")


@pytest.mark.parametrize("name", sorted(FRONTS))
@pytest.mark.parametrize(("path", "path_info"), [
    ("/", "/"),
    ("/echo/x/", "/echo/x/"),
    ("/echo/%2541", "/echo/%41"),  # decoded once
    ("/echo/%E2%82%AC%20x", "/echo/\xe2\x82\xac x"),  # UTF-8 bytes as latin-1 code points
])
def test_path_is_decoded_once(name, path, path_info, request):
    front = make_front(request, name)
    status, _, body = http_request(front.server.port, front.mount + path + "?q=%41")
    assert status == 200, body[:300]
    data = json.loads(body)
    assert (data["script_name"], data["path_info"]) == (front.mount, path_info)
    assert data["query_string"] == "q=%41"


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_server_name_and_remote_addr(name, request):
    front = make_front(request, name)
    data = get_json(front, "/echo")
    assert data["remote_addr"] == "127.0.0.1"
    # HAProxy's SERVER_NAME carries the port unless the snippet's set-param drops it;
    # H2O sends the name of its "hosts" entry.
    assert data["server_name"] == ("default" if name.startswith("h2o") else "127.0.0.1")
    assert data["server_port"] == str(front.server.port)


@pytest.mark.parametrize("server", SERVERS)
def test_repeated_request_header_is_joined(server, request):
    # HAProxy and H2O send it as two params (as nginx 1.22 does), Caddy joined.
    front = make_front(request, server)
    status, _, body = http_request(front.server.port, "/app/echo",
                                   headers=[("X-Dup", "a"), ("X-Dup", "b")])
    assert status == 200, body[:300]
    assert json.loads(body)["http"]["HTTP_X_DUP"] == "a, b"


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_keeps_its_status(server, status, request):
    # HAProxy takes the status from the last of Status and Location: gateways writes
    # Status last when there is a Location.
    response = requests.get(make_front(request, server).url("/redirect?status=%d" % status),
                            allow_redirects=False, timeout=TIMEOUT)
    assert (response.status_code, response.headers["Location"]) == (
        status, "http://example.org/moved")


@pytest.mark.parametrize("server", SERVERS)
def test_304_has_no_body(server, request):
    response = requests.get(make_front(request, server).url("/status/304"), timeout=TIMEOUT)
    assert (response.status_code, response.content) == (304, b"")


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", ["/error", "/bytes?n=70000&chunk=1000", "/stream?n=2&delay=0"])
def test_head_answer_has_no_body(server, path, request):
    """HAProxy answers 502 to a HEAD answer with a body, H2O passes the body on:
    gateways sends none, whatever the application returns (error pages included)."""
    front = make_front(request, server)
    for _ in range(3):  # on one kept-alive client connection
        response = requests.head(front.url(path), timeout=TIMEOUT)
        assert response.status_code == (500 if path == "/error" else 200)
        assert response.content == b""
    assert get_json(front, "/echo")["method"] == "GET"


def test_caddy_keeps_the_status_header_from_clients(request):
    # Caddy 2.6 passes the CGI Status header on; the snippet's "header_down -Status".
    response = requests.get(make_front(request, "caddy").url("/echo"), timeout=TIMEOUT)
    assert response.status_code == 200 and "Status" not in response.headers


def test_haproxy_passes_a_chunked_upload_that_fits_its_buffer(request):
    front = make_front(request, "haproxy")
    chunks = [os.urandom(1000) for _ in range(10)]
    response = requests.post(front.url("/upload"), data=iter(chunks), timeout=TIMEOUT)
    body = b"".join(chunks)
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("path", ["/error", "/stderr", "/stderr?n=40000", "/exc-info-late"])
def test_application_errors_leave_the_front_running(server, path, request):
    """An application that raises (its traceback in FCGI_STDERR before the 500 page), or
    writes 40 KB to wsgi.errors, or fails after its headers: the front stays up and
    serves on (HAProxy 2.6.12 crashed on the first of these before gateways padded its
    STDERR records), and no traceback reaches the client."""
    front = make_front(request, server)
    processes = sorted(front.server.processes())
    for _ in range(3):
        try:
            response = requests.get(front.url(path), timeout=TIMEOUT)
            text = response.text
        except requests.exceptions.RequestException as exc:
            assert path == "/exc-info-late", exc  # cut short
            text = str(exc)
        assert "SECRET-MARKER" not in text and "Traceback" not in text
    assert get_json(front, "/echo")["method"] == "GET"
    assert front.server.running() and sorted(front.server.processes()) == processes


@pytest.mark.parametrize("server", ["haproxy", "h2o"])
def test_traceback_goes_to_the_fronts_log(server, request):
    """HAProxy: through the snippet's log-stderr to its global log (stdout here); H2O:
    its error-log.  (Caddy 2.6 reads FCGI_STDERR and drops it: see below.)"""
    front = make_front(request, server)
    log = front.server.error_log
    before = len(front.server.error_log_text())
    assert requests.get(front.url("/error"), timeout=TIMEOUT).status_code == 500
    wait_until(lambda: "SECRET-MARKER raised before the headers" in
               front.server.error_log_text()[before:], TIMEOUT,
               what=lambda: "no traceback in %s: %r" % (log, front.server.error_log_text()[before:]))
    assert "Traceback (most recent call last)" in front.server.error_log_text()[before:]


def test_caddy_logs_no_traceback(request):
    front = make_front(request, "caddy")
    assert requests.get(front.url("/error"), timeout=TIMEOUT).status_code == 500
    time.sleep(0.5)
    assert "SECRET-MARKER" not in front.server.error_log_text()


# -- what each front sends, read raw ------------------------------------------------------


class Capture(RawListener):
    """A FastCGI listener on 127.0.0.1 that answers every request with the JSON of
    what it got: ``pairs`` (the params in the order they came, a name sent twice as
    two pairs), ``body`` (length and sha256 of FCGI_STDIN).  ``requests`` keeps every
    record.  ``stderr`` (bytes, or a callable of the socket): what to send before
    the answer."""

    def __init__(self):
        self.requests = []
        self.before_answer = None
        super().__init__()

    @staticmethod
    def _recv(conn, size):
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _serve(self, conn):
        with conn:
            conn.settimeout(TIMEOUT)
            try:
                while True:
                    params, body, keep = b"", b"", False
                    while True:
                        _, rtype, rid, clen, plen = struct.unpack(">BBHHBx", self._recv(conn, 8))
                        content = self._recv(conn, clen + plen)[:clen]
                        if rtype == 1:
                            keep = bool(content[2] & 1)
                        elif rtype == 4:
                            params += content
                        elif rtype == STDIN:
                            if not content:
                                break
                            body += content
                    pairs = [[n.decode("latin-1"), v.decode("latin-1")]
                             for n, v in decode_pairs(params)]
                    self.requests.append(pairs)
                    answer = json.dumps({"pairs": pairs, "body": [
                        len(body), hashlib.sha256(body).hexdigest()]}).encode()
                    if self.before_answer is not None:
                        self.before_answer(conn, rid)
                    conn.sendall(fcgi_record(STDOUT, rid, b"Content-Type: application/json\r\n"
                                             b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer))
                                 + fcgi_record(STDOUT, rid) + fcgi_record(STDERR, rid)
                                 + fcgi_record(END_REQUEST, rid, end_request_content()))
                    if not keep:
                        return
            except (OSError, EOFError, struct.error):
                return


@pytest.fixture(scope="module")
def capture():
    listener = Capture()
    yield listener
    listener.close()


@pytest.fixture(scope="module", params=SERVERS)
def raw(request, capture):
    """A front with its snippet at /app and at the root, both to the raw listener."""
    server = START[request.param]([("/app", capture.bind), ("/", capture.bind)],
                                  name=request.param + "-raw")
    yield server
    server.close()


def sent(server, target, method="GET", **kw):
    """What the front sent for ``target``: (status, the listener's record)."""
    if method == "GET":
        status, _, body = http_request(server.port, target, headers=kw.get("headers", ()))
    else:
        response = requests.request(method, server.url(target), timeout=TIMEOUT, **kw)
        status, body = response.status_code, response.content
    if status != 200:
        return status, None
    record = json.loads(body)
    record["env"] = dict(record["pairs"])
    return status, record


# What arrives as (SCRIPT_NAME, PATH_INFO) for each request path; None: not sent.
PATHS = {
    "haproxy": {"/app": ("/app", None), "/app/": ("/app", "/"), "/app/x": ("/app", "/x"),
                "/app/x/": ("/app", "/x/"), "/": (None, "/"), "/x": (None, "/x")},
    "caddy": {"/app": ("/app", ""), "/app/": ("/app", "/"), "/app/x": ("/app", "/x"),
              "/app/x/": ("/app", "/x/"), "/": ("", "/"), "/x": ("", "/x")},
    "h2o": {"/app": ("", "/app"), "/app/": ("", "/app/"), "/app/x": ("", "/app/x"),
            "/app/x/": ("", "/app/x/"), "/": ("", "/"), "/x": ("", "/x")},
}


@pytest.mark.parametrize("path", list(PATHS["h2o"]))
def test_what_each_front_sends_as_script_name_and_path_info(raw, path):
    status, record = sent(raw, path + "?q=%41")
    assert status == 200
    env = record["env"]
    assert (env.get("SCRIPT_NAME"), env.get("PATH_INFO")) == PATHS[raw.name[:-4]][path]
    assert (env["REQUEST_URI"], env["QUERY_STRING"]) == (path + "?q=%41", "q=%41")


def test_a_repeated_header(raw):
    status, record = sent(raw, "/app/x", headers=[("X-Dup", "a"), ("X-Dup", "b")])
    assert status == 200
    dups = [pair for pair in record["pairs"] if pair[0] == "HTTP_X_DUP"]
    if raw.name.startswith("caddy"):
        assert dups == [["HTTP_X_DUP", "a, b"]]
    else:
        assert dups == [["HTTP_X_DUP", "a"], ["HTTP_X_DUP", "b"]]


@pytest.mark.parametrize("size", [10000, 300000])
def test_a_chunked_upload(raw, size):
    chunks = [os.urandom(1000) for _ in range(size // 1000)]
    body = b"".join(chunks)
    status, record = sent(raw, "/app/upload", "POST", data=iter(chunks))
    if raw.name.startswith("haproxy") and size > 16384:
        assert status == 400  # larger than its buffer: never reaches the application
        return
    assert status == 200
    env = record["env"]
    # Caddy streams it with CONTENT_LENGTH -1; HAProxy and H2O read it whole first.
    assert env["CONTENT_LENGTH"] == ("-1" if raw.name.startswith("caddy") else str(size))
    assert record["body"] == [size, hashlib.sha256(body).hexdigest()]


def test_content_headers_sent_twice(raw):
    # Caddy sends HTTP_CONTENT_LENGTH and HTTP_CONTENT_TYPE too (gateways drops them).
    status, record = sent(raw, "/app/upload", "POST", data=b"abc",
                          headers={"Content-Type": "text/plain"})
    assert status == 200
    env = record["env"]
    assert (env["CONTENT_LENGTH"], env["CONTENT_TYPE"]) == ("3", "text/plain")
    twice = raw.name.startswith("caddy")
    assert ("HTTP_CONTENT_LENGTH" in env, "HTTP_CONTENT_TYPE" in env) == (twice, twice)


@pytest.mark.parametrize("raw", ["haproxy"], indirect=True)
def test_haproxy_health_check_is_a_request_over_fastcgi(raw, capture):
    # The snippet's "option httpchk": GET of the mount point every 2 s, no client.
    def checked():
        return [pairs for pairs in capture.requests
                if dict(pairs).get("REQUEST_URI") == "/app" and "HTTP_USER_AGENT" not in
                dict(pairs)]

    assert wait_until(checked, 5.0), capture.requests[-3:]


# -- what HAProxy survives -----------------------------------------------------------------


def stderr_alone(padded):
    """Sends one FCGI_STDERR record on its own before the answer (unpadded, or padded
    to eight bytes as gateways sends it)."""
    text = b"Traceback (most recent call last):\n  RuntimeError: raised\n"

    def send(conn, rid):
        padding = 8 - len(text) % 8 if padded else 0
        conn.sendall(struct.pack(">BBHHBx", 1, STDERR, rid, len(text), padding) + text
                     + bytes(padding))
        time.sleep(0.05)  # HAProxy reads it alone

    return send


@pytest.mark.parametrize("padded", [False, True])
def test_haproxy_crashes_on_what_gateways_no_longer_sends(padded):
    """HAProxy 2.6.12 (fixed in 2.6.16) swaps its receive buffer with a static one when
    an FCGI_STDERR record fills it alone, and crashes when it frees it.  An unpadded
    record sent on its own does that; padding (the rest of the buffer) avoids it."""
    listener = Capture()
    server = start_haproxy([("/app", listener.bind)], name="haproxy-stderr")
    listener.before_answer = stderr_alone(padded)  # the health checks get it too
    try:
        worker = children(server.pid)
        statuses = []
        for _ in range(3):
            try:
                statuses.append(requests.get(server.url("/app/x"), timeout=5).status_code)
            except requests.exceptions.RequestException:
                statuses.append(None)
        survived = all(alive(pid) for pid in worker) and server.running()
    finally:
        server.close()
        listener.close()
    if padded:
        assert survived and statuses == [200, 200, 200]
    else:
        assert not survived and None in statuses
