"""The environ builder: PEP 3333 string rules, paths, dropped headers."""

import io
import sys

import pytest

from gateways.environ import (
    build_environ,
    clean_path,
    decode_environ,
    fix_paths,
    normalize_mount,
    unquote,
)


def build(params, **kw):
    env = decode_environ(params)
    options = dict(multithread=True, multiprocess=False, run_once=False, gateway="test")
    options.update(kw)
    return build_environ(env, io.BytesIO(), sys.stderr, **options)


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/plain", "/plain"),
        ("/a%20b", "/a b"),
        ("/h%C3%A9", "/h\xc3\xa9"),  # UTF-8 bytes as latin-1 code points
        ("/%2F", "/\x2f"),
        ("/bad%zz", "/bad%zz"),
        ("/end%4", "/end%4"),
        ("/%", "/%"),
        ("/%+1", "/%+1"),
        ("/%ff%FE", "/\xff\xfe"),
    ],
)
def test_unquote(raw, decoded):
    assert unquote(raw) == decoded


def test_bytes_are_decoded_as_latin1():
    env = build({b"REQUEST_METHOD": b"GET", b"PATH_INFO": "/é".encode(), b"HTTP_X": b"\xff"})
    assert env["PATH_INFO"] == "/\xc3\xa9"
    assert env["HTTP_X"] == "\xff"
    assert all(type(k) is str for k in env)


def test_httpoxy_and_duplicate_content_headers_dropped():
    env = build({"HTTP_PROXY": "http://evil", "HTTP_CONTENT_LENGTH": "5",
                 "HTTP_CONTENT_TYPE": "x/y", "CONTENT_LENGTH": "5", "CONTENT_TYPE": "a/b"})
    assert "HTTP_PROXY" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env
    assert env["CONTENT_LENGTH"] == "5"
    assert env["CONTENT_TYPE"] == "a/b"


def test_defaults_and_flags():
    env = build({}, multithread=False, multiprocess=True, run_once=True)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["QUERY_STRING"] == ""
    assert env["SERVER_NAME"] == "localhost"
    assert env["SERVER_PORT"] == "80"
    assert env["wsgi.version"] == (1, 0)
    assert (env["wsgi.multithread"], env["wsgi.multiprocess"], env["wsgi.run_once"]) == (
        False, True, True)
    assert env["gateways.gateway"] == "test"


@pytest.mark.parametrize(("host", "name"), [("example.org", "example.org"),
                                            ("example.org:8080", "example.org"),
                                            ("[::1]:80", "[::1]"), ("[::1]", "[::1]")])
def test_server_name_from_host(host, name):
    assert build({"HTTP_HOST": host})["SERVER_NAME"] == name


@pytest.mark.parametrize(("https", "scheme"), [("on", "https"), ("1", "https"), ("yes", "https"),
                                               ("ON", "https"), ("off", "http"), ("", "http")])
def test_url_scheme(https, scheme):
    assert build({"HTTPS": https})["wsgi.url_scheme"] == scheme


def test_empty_content_length_removed():
    assert "CONTENT_LENGTH" not in build({"CONTENT_LENGTH": ""})


def paths(params, mount=None, iis=False):
    env = dict(params)
    fix_paths(env, mount, iis)
    return env["SCRIPT_NAME"], env["PATH_INFO"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # The front end split the path: kept.
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "/x/y", "REQUEST_URI": "/app/x/y"}, ("/app", "/x/y")),
        # nginx's fastcgi_params: no PATH_INFO -> from REQUEST_URI, decoded.
        ({"SCRIPT_NAME": "/app", "REQUEST_URI": "/app/a%20b?q=1"}, ("/app", "/a b")),
        ({"SCRIPT_NAME": "/app", "PATH_INFO": "", "REQUEST_URI": "/app"}, ("/app", "")),
        # A REQUEST_URI that does not start with SCRIPT_NAME (a rewrite): no guess.
        ({"SCRIPT_NAME": "/app", "REQUEST_URI": "/other/x"}, ("/app", "")),
        ({"SCRIPT_NAME": "/app", "REQUEST_URI": "/application"}, ("/app", "")),
        # A root mount reported as "/": the slash moves to PATH_INFO.
        ({"SCRIPT_NAME": "/", "PATH_INFO": "x"}, ("", "/x")),
        ({"SCRIPT_NAME": "/app/", "PATH_INFO": "x"}, ("/app", "/x")),
        ({"SCRIPT_NAME": "/", "REQUEST_URI": "/"}, ("", "/")),
        ({}, ("", "")),
    ],
)
def test_paths_from_front_end(params, expected):
    assert paths(params) == expected


@pytest.mark.parametrize(
    ("params", "mount", "expected"),
    [
        # Apache mod_proxy_scgi: SCRIPT_NAME is the whole path, no PATH_INFO.
        ({"SCRIPT_NAME": "/app/x/y", "REQUEST_URI": "/app/x/y?z"}, "/app", ("/app", "/x/y")),
        ({"SCRIPT_NAME": "/app", "REQUEST_URI": "/app"}, "/app", ("/app", "")),
        ({"SCRIPT_NAME": "/x/h%C3%A9", "REQUEST_URI": "/x/h%C3%A9"}, "", ("", "/x/h\xc3\xa9")),
        # No REQUEST_URI: SCRIPT_NAME + PATH_INFO is the path.
        ({"SCRIPT_NAME": "/app/x", "PATH_INFO": "/y"}, "/app", ("/app", "/x/y")),
        # Outside the mount: left as the front end said.
        ({"SCRIPT_NAME": "/other", "PATH_INFO": "/y", "REQUEST_URI": "/other/y"}, "/app",
         ("/other", "/y")),
        # REQUEST_URI is raw: dot segments and repeated slashes are what the front
        # resolved before it routed the request here (nginx, Apache do).
        ({"SCRIPT_NAME": "/app/y", "REQUEST_URI": "/app/x/../y"}, "/app", ("/app", "/y")),
        ({"SCRIPT_NAME": "/app/x", "REQUEST_URI": "//app///x"}, "/app", ("/app", "/x")),
        ({"SCRIPT_NAME": "/app/x", "REQUEST_URI": "/app/./x/%2e%2E/x/"}, "/app",
         ("/app", "/x/")),
        ({"SCRIPT_NAME": "/app", "REQUEST_URI": "/other/../app"}, "/app", ("/app", "")),
        ({"SCRIPT_NAME": "/secret", "REQUEST_URI": "/app/../secret"}, "/app",
         ("/secret", "")),
    ],
)
def test_paths_with_explicit_mount(params, mount, expected):
    assert paths(params, mount) == expected


@pytest.mark.parametrize(("raw", "clean"), [
    ("/", "/"), ("", ""), ("/a/b", "/a/b"), ("/a/./b", "/a/b"), ("/a/../b", "/b"),
    ("/../../a", "/a"), ("/a/b/..", "/a/"), ("/a/b/.", "/a/b/"), ("/a//b///", "/a/b/"),
    ("//", "/"), ("/..", "/"), ("/a/.../b", "/a/.../b"), ("/a/..b/.c", "/a/..b/.c"),
])
def test_clean_path(raw, clean):
    assert clean_path(raw) == clean


def test_iis_quirk():
    assert paths({"SCRIPT_NAME": "/app.py", "PATH_INFO": "/app.py/x"}, iis=True) == ("/app.py", "/x")
    assert paths({"SCRIPT_NAME": "/app.py", "PATH_INFO": "/app.py/x"}) == ("/app.py", "/app.py/x")


@pytest.mark.parametrize(("given", "mount"), [(None, None), ("/", ""), ("", ""), ("/app/", "/app"),
                                              ("app", "/app"), ("/a/b", "/a/b")])
def test_normalize_mount(given, mount):
    assert normalize_mount(given) == mount


def test_script_name_plus_path_info_rebuilds_path():
    for uri in ("/app", "/app/", "/app/a/b", "/app/%7Euser", "/app/a%2Fb"):
        sn, pi = paths({"SCRIPT_NAME": "/app", "REQUEST_URI": uri})
        assert sn + pi == unquote(uri)
        assert not sn.endswith("/")


def test_caddys_minus_one_content_length_is_no_length():
    # Caddy sends CONTENT_LENGTH -1 for a chunked upload, and HTTP_CONTENT_LENGTH beside it.
    env = build_environ({"CONTENT_LENGTH": "-1", "HTTP_CONTENT_LENGTH": "-1"}, None, None,
                        multithread=False, multiprocess=False, run_once=True, gateway="test")
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.input_terminated"] is True


# What Apache mod_authnz_fcgi (FCGI_ROLE, no paths) and lighttpd (SCRIPT_FILENAME, no
# FCGI_ROLE: the FastCGI core sets it) send an authorizer, read off the wire.
AUTHORIZER = {"FCGI_ROLE": "AUTHORIZER", "REQUEST_URI": "/private/a%20b.txt?q=1",
              "QUERY_STRING": "q=1", "SCRIPT_FILENAME": "/srv/www/private/a b.txt"}


@pytest.mark.parametrize("mount", [None, "", "/private", "/app"])
@pytest.mark.parametrize("sent", [{}, {"SCRIPT_NAME": "/private", "PATH_INFO": "/a b.txt"},
                                  {"SCRIPT_NAME": "/private/a b.txt"}])
def test_an_authorizer_has_empty_paths_whatever_the_mount(mount, sent):
    """FastCGI §6.3: no SCRIPT_NAME and no PATH_INFO for an Authorizer, and none derived
    from REQUEST_URI or --script-name: the keys PEP 3333 requires are empty."""
    env = build(dict(AUTHORIZER, **sent), mount=mount)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "")
    assert env["REQUEST_URI"] == "/private/a%20b.txt?q=1"  # the path it rules on
    assert "CONTENT_LENGTH" not in env


@pytest.mark.parametrize("role", [None, "RESPONDER"])
def test_a_responder_gets_its_paths_as_before(role):
    params = {"REQUEST_URI": "/private/a%20b.txt?q=1", "SCRIPT_NAME": "/private"}
    if role:
        params["FCGI_ROLE"] = role
    env = build(params)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/private", "/a b.txt")
