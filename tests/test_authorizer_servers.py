"""The FastCGI Authorizer role (§6.3) through real Apache httpd (mod_authnz_fcgi) and lighttpd.

The servers are configured with the snippets ``gateways conf apache|lighttpd
authorizer`` print, each in front of a directory of files and of the probe
application (a responder on its own daemon, ``gateways conf apache fastcgi``
or the snippet's commented "responder" line), at a prefix and at the root:

==============  ===========================  ====================================
front           files (the authorizer asked)  the probe, behind the authorizer too
==============  ===========================  ====================================
apache          /private/...                 /private/app/...
apache-root     /...                         /app/...
lighttpd        /private/...                 /private/app/...
lighttpd-root   /...                         /app/...
==============  ===========================  ====================================

The authorizer is tests/apps/authz.py (``gateways.authorizer``) on
``gateways fastcgi --roles authorizer``: over TCP for Apache (mod_authnz_fcgi
knows no unix sockets), on a unix socket for lighttpd.  ``/wrong/`` in the
prefix servers asks the probe's daemon, which serves the Responder role only:
the request is refused, never let through.  ``/refused/`` in the lighttpd one
asks a raw application that refuses without a page (:class:`Refuser`), and
``/open/`` in lighttpd-root is a mount of its own: what lighttpd makes of
each.  Every daemon runs 1 process x 4 threads with ``--log-level debug``,
stops with SIGTERM at the end and must exit 0 without a WARNING.
"""

import contextlib
import hashlib
import json
import socket
import threading

import pytest
import requests

from gateways.tools.confgen import render

import fcgi_client as fc
import webservers
from behaviour import TIMEOUT
from daemons import Daemon, behind_a_web_server, daemon_set, gateways_argv

pytestmark = pytest.mark.servers

SECRET = b"secret file\n"
GOOD = {"X-Token": "good"}


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    with daemon_set("gw-authz-", quiet=True) as (directory, started):
        for name, tcp in (("authz-tcp", True), ("authz-unix", False)):
            argv = gateways_argv("fastcgi", "authz:application", "--app-dir", str(app_dir),
                                 gateways=gateways_bin)
            started[name] = Daemon(
                argv, directory, name, bind="tcp" if tcp else "unix", log_file=True,
                args=[*(() if tcp else ("--socket-group", "www-data")), "--processes", "1",
                      "--threads", "4", "--roles", "authorizer", "--log-level", "debug"])
        started["responder"] = behind_a_web_server("fastcgi", gateways_bin, app_dir, directory,
                                                   "responder", tcp=True)
        for daemon in started.values():
            daemon.wait_ready()
        yield started


class Refuser:
    """A FastCGI application that refuses every request the way the spec allows, with
    FCGI_END_REQUEST(FCGI_UNKNOWN_ROLE) and nothing else (what gateways sent before it
    added a page): for lighttpd's reading of such an answer.  ``bind``: its address."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.bind = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.refused = 0
        self.running = True
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(TIMEOUT)
                data = b""
                with contextlib.suppress(OSError):
                    while len(data) < 8:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if len(data) >= 8:
                        rid = int.from_bytes(data[2:4], "big")
                        # counted before the answer: lighttpd may serve the file
                        # (and the test read the count) before sendall() returns
                        self.refused += 1
                        conn.sendall(fc.record(fc.END_REQUEST, rid, fc.end_request_content(
                            0, fc.UNKNOWN_ROLE)))

    def close(self):
        self.running = False
        self.thread.join(5)
        self.listener.close()


def snippet(server, gateway, prefix, daemon, app_dir, app="authz:application"):
    text = render(server, gateway, app=app, app_dir=str(app_dir), prefix=prefix,
                  bind=daemon.bind, processes=1, threads=4)
    if gateway == "authorizer":  # the daemon it shows is the one the fixture started
        assert "--roles authorizer" in text.split("# Run:")[1].splitlines()[0]
    return text


def with_responder(text, daemon):
    """The lighttpd snippet with its commented "responder" line on, to ``daemon`` (TCP)."""
    host, port = daemon.address
    lines = text.splitlines()
    found = [n for n, line in enumerate(lines) if line.lstrip().startswith('# "responder"')]
    assert len(found) == 1, text
    line = lines[found[0]].replace("# ", "", 1)
    lines[found[0]] = line.replace('"socket" => "/run/SITE/fastcgi.sock"',
                                   '"host" => "%s", "port" => %d' % (host, port))
    assert '"port"' in lines[found[0]]
    return "\n".join(lines) + "\n"


def files(server, mount):
    """The files the authorizer guards, and /wrong/file.txt (the probe's daemon "guards" it)."""
    for path in (mount + "/file.txt", mount + "/sub/file.txt", "/wrong/file.txt"):
        webservers.write_file(server.docroot / path.lstrip("/"), SECRET)


def start_apache(name, mount, daemons, app_dir):
    body = [snippet("apache", "authorizer", mount or "/", daemons["authz-tcp"], app_dir),
            snippet("apache", "fastcgi", mount + "/app", daemons["responder"], app_dir,
                    "probe:application")]
    if mount:
        body.append(snippet("apache", "authorizer", "/wrong", daemons["responder"], app_dir,
                            "probe:application"))
    server = webservers.start_apache("\n".join(body), name=name, modules=(
        "authn_core", "authz_user", "authnz_fcgi", "proxy", "proxy_fcgi"))
    files(server, mount)
    return server


def start_lighttpd(name, mount, daemons, app_dir, refuser):
    unix = daemons["authz-unix"]
    body = [snippet("lighttpd", "authorizer", mount or "/", unix, app_dir),
            with_responder(snippet("lighttpd", "authorizer", mount + "/app", unix, app_dir),
                           daemons["responder"])]
    if mount:
        body += [snippet("lighttpd", "authorizer", "/wrong", daemons["responder"], app_dir,
                         "probe:application"),
                 snippet("lighttpd", "authorizer", "/refused", refuser, app_dir)]
    else:  # a mount of its own below the root's authorizer, as the snippet warns
        body.append(snippet("lighttpd", "fastcgi", "/open", daemons["responder"], app_dir,
                            "probe:application"))
    server = webservers.start_lighttpd(webservers.merge_lighttpd(*body), name=name)
    files(server, mount)
    webservers.write_file(server.docroot / "refused" / "file.txt", SECRET)
    return server


@pytest.fixture(scope="module")
def apache(daemons, app_dir):
    server = start_apache("apache-authz", "/private", daemons, app_dir)
    yield server
    server.close()


@pytest.fixture(scope="module")
def apache_root(daemons, app_dir):
    server = start_apache("apache-authz-root", "", daemons, app_dir)
    yield server
    server.close()


@pytest.fixture(scope="module")
def refuser():
    refuser = Refuser()
    yield refuser
    refuser.close()


@pytest.fixture(scope="module")
def lighttpd(daemons, app_dir, refuser):
    server = start_lighttpd("lighttpd-authz", "/private", daemons, app_dir, refuser)
    yield server
    server.close()


@pytest.fixture(scope="module")
def lighttpd_root(daemons, app_dir, refuser):
    server = start_lighttpd("lighttpd-authz-root", "", daemons, app_dir, refuser)
    yield server
    server.close()


# name: (web server fixture, mount)
FRONTS = {"apache": ("apache", "/private"), "apache-root": ("apache_root", ""),
          "lighttpd": ("lighttpd", "/private"), "lighttpd-root": ("lighttpd_root", "")}


def url(request, name, path):
    fixture, mount = FRONTS[name]
    return request.getfixturevalue(fixture).url(mount + path)


def get(request, name, path, token=None, **kw):
    headers = {} if token is None else {"X-Token": token}
    return requests.get(url(request, name, path), headers=headers, timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("token", ["good", "open"])
@pytest.mark.parametrize("name", sorted(FRONTS))
def test_allowed_requests_get_the_files(name, token, request):
    for path in ("/file.txt", "/sub/file.txt"):
        response = get(request, name, path, token)
        assert (response.status_code, response.content) == (200, SECRET), response.text[:500]
        assert response.headers["Content-Length"] == str(len(SECRET))
        # the authorizer's answer does not leak into the response
        assert not [h for h in response.headers if h.lower().startswith("variable-")]


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_denied_requests_get_the_applications_page(name, request):
    denied = get(request, name, "/file.txt", "bad")
    assert (denied.status_code, denied.content) == (403, b"denied by the test authorizer\n")
    asked = get(request, name, "/sub/file.txt")
    assert (asked.status_code, asked.content) == (401, b"log in first\n")
    assert asked.headers["WWW-Authenticate"] == 'Bearer realm="gateways-test"'
    # Apache sends a denial with a Content-Type of its own (the snippet says so).
    expected = "text/html; charset=iso-8859-1" if name.startswith("apache") else (
        "text/plain; charset=utf-8")
    assert denied.headers["Content-Type"] == expected


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_the_authorizer_is_asked_before_the_file_system(name, request):
    # A stranger cannot tell a missing file from a present one (lighttpd: check-local off).
    assert get(request, name, "/missing.txt", "bad").status_code == 403
    assert get(request, name, "/missing.txt", "good").status_code == 404


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_variables_reach_the_responder_behind(name, request):
    response = get(request, name, "/app/env?x=1", "good")
    assert response.status_code == 200, response.text[:500]
    environ = response.json()
    assert environ["FCGI_ROLE"] == "RESPONDER"  # the probe's own request
    assert environ["REMOTE_USER"] == "alice"  # lighttpd: the user; Apache: UserExpr
    seen = json.loads(environ["AUTHZ_SEEN"])  # what the authorizer was given
    mount = FRONTS[name][1]
    assert seen == {
        "FCGI_ROLE": "AUTHORIZER",
        "FCGI_APACHE_ROLE": "AUTHENTICATOR" if name.startswith("apache") else None,
        "SCRIPT_NAME": "", "PATH_INFO": "", "REQUEST_URI": mount + "/app/env?x=1",
        "QUERY_STRING": "x=1", "REQUEST_METHOD": "GET", "CONTENT_LENGTH": None, "body": 0}
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == (mount + "/app", "/env")


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_no_variables_no_user(name, request):
    environ = get(request, name, "/app/env", "open").json()
    assert "AUTHZ_SEEN" not in environ
    # Apache needs a user for "Require valid-user": the snippet's DefaultUser.
    assert environ.get("REMOTE_USER") == ("-" if name.startswith("apache") else None)


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_the_body_goes_to_the_responder_not_the_authorizer(name, request):
    body = bytes(range(256)) * 400
    response = requests.post(url(request, name, "/app/upload"), data=body, headers=GOOD,
                             timeout=TIMEOUT)
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    denied = requests.post(url(request, name, "/app/upload"), data=body, timeout=TIMEOUT)
    assert denied.status_code == 401


@pytest.mark.parametrize("name", ["apache", "lighttpd"])
def test_a_daemon_without_the_authorizer_role_fails_closed(name, request):
    """The probe's daemon serves the Responder role only: it refuses with
    FCGI_UNKNOWN_ROLE and a 500 page.  Without the page lighttpd 1.4.69 would
    serve the file (it reads an empty answer as "allowed")."""
    fixture = request.getfixturevalue(FRONTS[name][0])
    response = requests.get(fixture.url("/wrong/file.txt"), headers=GOOD, timeout=TIMEOUT)
    assert response.status_code == 500
    assert SECRET not in response.content
    assert response.content == (b"This FastCGI application does not serve the role of "
                                b"this request (AUTHORIZER).\n")


def test_lighttpd_takes_an_authorizers_answer_without_a_page_for_allowed(lighttpd, refuser):
    """Why a refused role gets a page: lighttpd 1.4.69 serves the file when the
    authorizer answers FCGI_UNKNOWN_ROLE (or anything) without FCGI_STDOUT."""
    before = refuser.refused
    response = requests.get(lighttpd.url("/refused/file.txt"), timeout=TIMEOUT)
    assert (response.status_code, response.content) == (200, SECRET)
    assert refuser.refused == before + 1  # it was asked, and refused


def test_lighttpd_a_mount_of_its_own_replaces_the_authorizer(lighttpd_root):
    """The lighttpd snippet's warning: a fastcgi.server in another $HTTP["url"] block
    replaces the root's, authorizer included (an Apache <Location> below it does not)."""
    response = requests.get(lighttpd_root.url("/open/env"), timeout=TIMEOUT)
    assert response.status_code == 200  # no X-Token, and not asked
    assert "AUTHZ_SEEN" not in response.json()


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_a_run_of_requests_is_answered_every_time(name, request):
    """lighttpd sends an empty FCGI_STDIN after the params, which may reach the daemon
    after it answered; 60 requests in a row, allowed and denied, all answered right."""
    with requests.Session() as session:
        for n in range(60):
            token = ("good", "bad", "open")[n % 3]
            response = session.get(url(request, name, "/file.txt"),
                                   headers={"X-Token": token}, timeout=TIMEOUT)
            assert response.status_code == (403 if token == "bad" else 200), (n, response.text)
