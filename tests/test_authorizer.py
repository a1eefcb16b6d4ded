"""The FastCGI Authorizer role (FastCGI 1.0 §6.3): ``gateways.authorizer`` and ``--roles``.

The helper is called in-process, and through the response writer to see the
bytes a web server gets.  The daemons are driven by the raw client of
``tests/fcgi_client.py``, which sends what the two web servers with an
authorizer mode send (read off the wire, 2026-11-30): Apache mod_authnz_fcgi
no FCGI_STDIN at all, FCGI_ROLE and FCGI_APACHE_ROLE among the params;
lighttpd an empty FCGI_STDIN and no FCGI_ROLE.  Three daemons, 1 process x 2
threads each, started once for the module:

* ``authorizer``: tests/apps/authz.py with ``--roles authorizer`` and
  ``--script-name /app`` (which an Authorizer request must not see);
* ``both``: the probe with ``GATEWAYS_ROLES=responder,authorizer``;
* ``responder``: the probe with the default roles.
"""

import io
import json
import subprocess
import sys

import pytest

import gateways
from gateways.authz import NOT_AN_AUTHORIZER
from gateways.response import run as run_app

import fcgi_client as fc
from daemons import APPS, Daemon, clean_environ, gateways_argv, stop_all
from fcgi_client import FastCGIClient, Response, begin_request, encode_pairs, record, stream

TIMEOUT = 5.0


# -- the helper ----------------------------------------------------------------------------


class Transport:
    """The response side gateways.response writes to: what it was given."""

    status_prefix = "Status: "

    def __init__(self):
        self.data = b""

    def send(self, data):
        self.data += data

    def finish(self, data, status=0):
        self.data += data
        self.status = status

    def abort(self):
        raise AssertionError("aborted")


def answer(app, **environ):
    """The CGI-format bytes ``app`` answers an Authorizer request with."""
    env = {"FCGI_ROLE": "AUTHORIZER", "REQUEST_METHOD": "GET", "REQUEST_URI": "/x",
           "SCRIPT_NAME": "", "PATH_INFO": "", "wsgi.input": io.BytesIO(),
           "wsgi.errors": io.StringIO()}
    env.update(environ)
    transport = Transport()
    run_app(app, env, transport)
    return transport.data, env["wsgi.errors"].getvalue()


def test_true_lets_the_request_through_with_nothing_else():
    # Apache passes a 200's other headers (Content-Type...) on to the client.
    assert answer(gateways.authorizer(lambda environ: True)) == (b"Status: 200 OK\r\n\r\n", "")


def test_a_dict_becomes_variable_headers():
    app = gateways.authorizer(lambda environ: {"REMOTE_USER": "alice", "GROUPS": "a, b"})
    assert answer(app)[0] == (b"Status: 200 OK\r\nVariable-REMOTE_USER: alice\r\n"
                              b"Variable-GROUPS: a, b\r\n\r\n")
    assert answer(gateways.authorizer(lambda environ: {}))[0] == b"Status: 200 OK\r\n\r\n"


@pytest.mark.parametrize("verdict", [False, None])
def test_false_is_a_403_page(verdict):
    assert answer(gateways.authorizer(lambda environ: verdict))[0] == (
        b"Status: 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 14\r\n\r\n403 Forbidden\n")


def test_the_denial_is_the_applications_own():
    app = gateways.authorizer(
        lambda environ: False, deny_status="401 Unauthorized",
        deny_headers=[("WWW-Authenticate", 'Basic realm="x"'), ("Content-Type", "text/html")],
        deny_body=b"<p>log in</p>")
    assert answer(app)[0] == (
        b'Status: 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
        b"Content-Type: text/html\r\nContent-Length: 13\r\n\r\n<p>log in</p>")
    # the same page every time (the list of headers is not shared with the writer)
    assert answer(app) == answer(app)


def test_check_sees_the_request():
    seen = []
    app = gateways.authorizer(lambda environ: seen.append(environ["REQUEST_URI"]) or True)
    answer(app, REQUEST_URI="/private/file.txt?q=1")
    assert seen == ["/private/file.txt?q=1"]


@pytest.mark.parametrize("verdict", ["yes", 1, 0, [], ("REMOTE_USER", "x"), "no"])
def test_anything_else_is_an_error_never_a_guess(verdict):
    data, errors = answer(gateways.authorizer(lambda environ: verdict), REQUEST_URI="/p?q")
    assert data.startswith(b"Status: 500 Internal Server Error\r\n")
    assert errors.startswith("application error for GET /p?q:\nTraceback")
    assert "TypeError: the check of gateways.authorizer returned %r" % (verdict,) in errors


@pytest.mark.parametrize("variables", [{"X": "a\r\nSet-Cookie: x=1"}, {"X:Y": "v"},
                                       {"X": 42}, {"X": "\u20ac"}])
def test_a_variable_that_is_not_a_header_is_an_error(variables):
    data, errors = answer(gateways.authorizer(lambda environ: variables))
    assert data.startswith(b"Status: 500 Internal Server Error\r\n")
    assert "AppError" in errors


@pytest.mark.parametrize("role", [None, "RESPONDER"])
def test_a_request_in_another_role_is_a_500_and_a_line_in_the_log(role):
    called = []
    app = gateways.authorizer(lambda environ: called.append(1) or True)
    data, errors = answer(app, FCGI_ROLE=role, REQUEST_URI="/page")
    assert data.startswith(b"Status: 500 Internal Server Error\r\n")
    assert data.endswith(b"\r\n\r\n" + NOT_AN_AUTHORIZER)
    assert errors == "gateways.authorizer: a %s request for /page: %s" % (
        role or "non-FastCGI", NOT_AN_AUTHORIZER.decode())
    assert called == []


def test_gateways_authorizer_is_imported_when_called():
    code = ("import sys, gateways; assert 'gateways.authz' not in sys.modules; "
            "app = gateways.authorizer(lambda e: True); "
            "assert 'gateways.authz' in sys.modules and callable(app); "
            "assert gateways.authorizer is not sys.modules['gateways.authz']")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# -- the daemons -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemons(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("authz")
    specs = {"authorizer": ("authz:application", ["--roles", "authorizer", "--script-name",
                                                  "/app"], {}),
             "both": ("probe", [], {"GATEWAYS_ROLES": "responder,authorizer"}),
             "responder": ("probe", [], {})}
    started = {}
    try:
        for name, (app, options, env) in specs.items():
            started[name] = Daemon(
                gateways_argv("fastcgi", app, "--app-dir", str(APPS)), tmp, name, bind="unix",
                args=["--processes", "1", "--threads", "2", *options], log_file=True,
                env=clean_environ(**env))
        for daemon in started.values():
            daemon.wait_ready()
        yield started
    finally:
        statuses = stop_all(started, timeout=TIMEOUT)
    assert statuses == dict.fromkeys(started, 0), statuses
    for name, daemon in started.items():
        assert "WARNING" not in daemon.log.text() and "ERROR" not in daemon.log.text(), name


# What Apache mod_authnz_fcgi sends an authorizer (the parts that matter here).
APACHE = {"FCGI_ROLE": "AUTHORIZER", "FCGI_APACHE_ROLE": "AUTHENTICATOR",
          "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET",
          "REQUEST_URI": "/private/a%20b.txt?q=1", "QUERY_STRING": "q=1",
          "SCRIPT_FILENAME": "/srv/www/private/a b.txt", "SERVER_NAME": "127.0.0.1",
          "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
# What lighttpd sends: no FCGI_ROLE, and an empty FCGI_STDIN after the params.
LIGHTTPD = {k: v for k, v in APACHE.items() if not k.startswith("FCGI_")}


def authorizer_request(params, request_id=1, keep_conn=False, stdin=None):
    """FCGI_BEGIN_REQUEST(AUTHORIZER) and the params; ``stdin`` (bytes) a FCGI_STDIN stream."""
    return (begin_request(request_id, fc.AUTHORIZER, keep_conn)
            + stream(fc.PARAMS, request_id, encode_pairs(params))
            + (b"" if stdin is None else stream(fc.STDIN, request_id, stdin)))


def ask(client, params, token=None, request_id=1, keep_conn=False, stdin=None):
    if token is not None:
        params = dict(params, HTTP_X_TOKEN=token)
    client.send_raw(authorizer_request(params, request_id, keep_conn, stdin))
    return Response(client.read_until_end(request_id, TIMEOUT), request_id)


def client_of(daemon):
    return FastCGIClient(daemon.address, TIMEOUT)


@pytest.mark.parametrize("front", ["apache", "lighttpd"])
def test_the_authorizer_lets_a_request_through_with_variables(daemons, front):
    params, stdin = (APACHE, None) if front == "apache" else (LIGHTTPD, b"")
    with client_of(daemons["authorizer"]) as client:
        response = ask(client, params, "good", stdin=stdin)
        assert client.is_closed(TIMEOUT)  # FCGI_KEEP_CONN was clear, as both fronts send it
    assert (response.status_code, response.protocol_status) == (200, fc.REQUEST_COMPLETE)
    assert response.body == b"" and response.stderr == b""
    headers = dict(response.headers)
    assert sorted(headers) == ["Variable-AUTHZ_SEEN", "Variable-REMOTE_USER"]
    assert headers["Variable-REMOTE_USER"] == "alice"
    # No paths (§6.3), --script-name /app notwithstanding; the role from FCGI_BEGIN_REQUEST.
    assert json.loads(headers["Variable-AUTHZ_SEEN"]) == {
        "FCGI_ROLE": "AUTHORIZER",
        "FCGI_APACHE_ROLE": "AUTHENTICATOR" if front == "apache" else None,
        "SCRIPT_NAME": "", "PATH_INFO": "", "REQUEST_URI": "/private/a%20b.txt?q=1",
        "QUERY_STRING": "q=1", "REQUEST_METHOD": "GET", "CONTENT_LENGTH": None, "body": 0}


def test_denials_are_the_applications_pages_and_the_connection_serves_on(daemons):
    with client_of(daemons["authorizer"]) as client:
        denied = ask(client, LIGHTTPD, "bad", request_id=1, keep_conn=True, stdin=b"")
        assert (denied.status_code, denied.body) == (403, b"denied by the test authorizer\n")
        asked = ask(client, APACHE, None, request_id=2, keep_conn=True)
        assert (asked.status_code, asked.body) == (401, b"log in first\n")
        assert asked.header("WWW-Authenticate") == 'Bearer realm="gateways-test"'
        opened = ask(client, APACHE, "open", request_id=1, keep_conn=True, stdin=b"")
        assert (opened.status_code, opened.headers, opened.body) == (200, [], b"")


def test_a_body_sent_to_an_authorizer_is_dropped(daemons):
    with client_of(daemons["authorizer"]) as client:
        response = ask(client, dict(APACHE, CONTENT_LENGTH="100000"), "good",
                       stdin=b"x" * 100000)
    seen = json.loads(response.header("Variable-AUTHZ_SEEN"))
    assert (seen["body"], seen["CONTENT_LENGTH"]) == (0, "100000")


@pytest.mark.parametrize(("daemon", "role", "name"), [
    ("authorizer", fc.RESPONDER, b"RESPONDER"), ("responder", fc.AUTHORIZER, b"AUTHORIZER"),
    ("both", fc.FILTER, b"FILTER")])
def test_a_role_not_served_is_refused_with_a_page(daemons, daemon, role, name):
    """FCGI_UNKNOWN_ROLE after a 500 page: lighttpd 1.4.69 takes an authorizer's answer
    without one for "allowed" (tests/test_authorizer_servers.py shows it)."""
    with client_of(daemons[daemon]) as client:
        client.send_raw(fc.build_request(dict(APACHE, HTTP_X_TOKEN="good"), role=role,
                                         keep_conn=True))
        refused = Response(client.read_until_end(1, TIMEOUT))
        if daemon == "responder":
            served = client.request(fc.http_params("/echo"), request_id=2, keep_conn=True)
        else:
            served = ask(client, APACHE, "good", request_id=2, keep_conn=True)
    assert (refused.status_code, refused.protocol_status) == (500, fc.UNKNOWN_ROLE)
    assert refused.body == b"This FastCGI application does not serve the role of this " \
                           b"request (%s).\n" % name
    assert served.status_code == 200  # the connection serves on


def test_one_daemon_serves_both_roles_on_one_connection(daemons):
    """GATEWAYS_ROLES=responder,authorizer; FCGI_ROLE from the record, not the params."""
    with client_of(daemons["both"]) as client:
        answers = []
        for request_id, role in enumerate(["AUTHORIZER", "RESPONDER", "AUTHORIZER"], 1):
            lie = "RESPONDER" if role == "AUTHORIZER" else "AUTHORIZER"
            if role == "AUTHORIZER":
                response = ask(client, dict(LIGHTTPD, FCGI_ROLE=lie), request_id=request_id,
                               keep_conn=True, stdin=b"")
            else:
                response = client.request(fc.http_params("/echo/x", FCGI_ROLE=lie),
                                          request_id=request_id, keep_conn=True)
            assert response.status_code == 200, response
            answers.append(response.json())  # the probe, through wsgiref's validator
    authorizer, responder, again = answers
    assert authorizer == again
    assert (authorizer["fcgi_role"], authorizer["script_name"], authorizer["path_info"]) == (
        "AUTHORIZER", "", "")
    assert (responder["fcgi_role"], responder["script_name"], responder["path_info"]) == (
        "RESPONDER", "", "/echo/x")


def test_an_abort_of_an_authorizer_request(daemons):
    with client_of(daemons["both"]) as client:
        client.send_raw(authorizer_request(dict(LIGHTTPD, HTTP_X_X="1"), 1, True)
                        + record(fc.ABORT_REQUEST, 1))
        records = client.read_until_end(1, TIMEOUT)
        # Answered or aborted, whichever came first: one FCGI_END_REQUEST either way.
        assert [r for r in records if r[0] == fc.END_REQUEST] == [records[-1]]
        assert client.request(fc.http_params("/echo"), request_id=2,
                              keep_conn=True).status_code == 200


@pytest.mark.parametrize(("roles", "expected"), [
    ((1,), ("responder",)), ((1, 2), ("responder", "authorizer")), ((2,), ("authorizer",)),
    (("authorizer",), ("authorizer",))])
def test_flups_roles_become_the_roles_setting(roles, expected):
    from gateways.fastcgi import WSGIServer
    from gateways.settings import resolve

    server = WSGIServer(lambda environ, start_response: [], bindAddress="/run/x.sock",
                        roles=roles)
    assert resolve("fastcgi", server.options, environ={}).roles == expected


def test_flups_filter_role_is_refused():
    from gateways.fastcgi import WSGIServer
    from gateways.settings import ConfigError, resolve

    server = WSGIServer(lambda environ, start_response: [], roles=(1, 3))
    with pytest.raises(ConfigError, match="the Filter role is not supported"):
        resolve("fastcgi", server.options, environ={})
