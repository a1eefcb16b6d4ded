"""The request/response cases every gateway must pass behind every front end.

A test class mixes in :class:`FrontBehaviour` and provides a classmethod
``make_front(request)`` returning a :class:`Front` (the class-scoped ``front``
fixture of conftest.py calls it for each test): where the probe application
(tests/apps/probe.py) is mounted behind a real web server (or the
standalone server).  The same cases then run through CGI, FastCGI, SCGI and
standalone, at a prefix and at the root.
"""

import hashlib
import os
import time

import pytest
import requests

from apps.probe import pattern

TIMEOUT = 60


class Front:
    """A mounted application: ``url(path)`` is the URL of ``path`` below the mount."""

    def __init__(self, base, mount, server=None, *, streams=False, chunked_upload=True,
                 cut_short=True, directory=False, chunked_refusal=411):
        self.base = base.rstrip("/")
        self.mount = mount
        self.server = server
        self.streams = streams  # the front passes chunks on as they come
        self.chunked_upload = chunked_upload  # the front accepts chunked request bodies
        self.chunked_refusal = chunked_refusal  # else its answer: 411, HAProxy 400
        self.cut_short = cut_short  # a failure after the headers truncates the response
        self.directory = directory  # the mount is a directory: /app redirects to /app/

    def url(self, path=""):
        return self.base + self.mount + path

    def __repr__(self):
        return "Front(%s%s)" % (self.base, self.mount or "/")


def front_from_table(request, fronts, name):
    """``fronts[name]`` is (web server fixture, mount, daemon, Front options): its Front.
    The fixture gives a web server (tests/webservers.py), or the URL of a server that
    is no web server of those (the standalone one)."""
    server_name, mount, _, options = fronts[name]
    server = request.getfixturevalue(server_name)
    if isinstance(server, str):
        return Front(server, mount, **options)
    return Front(server.url(), mount, server, **options)


def front_maker(fronts):
    """``make_front(request, name)``: the Front of ``fronts[name]`` (see front_from_table)."""
    def make_front(request, name):
        return front_from_table(request, fronts, name)

    return make_front


def every_front(fronts):
    """A module's ``TestEveryFront``: the shared cases of :class:`FrontBehaviour` through
    each entry of ``fronts`` (name: web server fixture, mount, daemon, Front options),
    one web server fixture per entry, shared by the class."""

    @pytest.mark.parametrize("front", sorted(fronts), indirect=True, scope="class")
    class TestEveryFront(FrontBehaviour):
        """The shared cases through each entry of the module's FRONTS."""

        @classmethod
        def make_front(cls, request):
            return front_from_table(request, fronts, request.param)

    return TestEveryFront


def get_json(front, path, **kw):
    response = requests.get(front.url(path), timeout=TIMEOUT, **kw)
    assert response.status_code == 200, (response.status_code, response.text[:2000],
                                         front.server and front.server.error_log_text(20))
    return response.json()


class FrontBehaviour:
    """Mix into a test class that defines ``make_front(cls, request)`` (a classmethod)."""

    @classmethod
    def make_front(cls, request):
        raise NotImplementedError("%s must define make_front(request)" % cls.__name__)

    def test_get_with_query(self, front):
        data = get_json(front, "/echo/some/path?x=1&y=%20z")
        assert data["script_name"] == front.mount
        assert data["path_info"] == "/echo/some/path"
        assert data["query_string"] == "x=1&y=%20z"
        assert data["method"] == "GET"
        assert data["all_str"] is True

    def test_mount_point_itself(self, front):
        data = get_json(front, "" if front.mount else "/")
        assert data["script_name"] == front.mount
        expected = "" if front.mount and not front.directory else "/"
        assert data["path_info"] == expected

    def test_unicode_path_info(self, front):
        data = get_json(front, "/echo/h%C3%A9llo%20w%C3%B6rld")
        assert data["path_info"] == "/echo/h\xc3\xa9llo w\xc3\xb6rld"  # latin-1 code points
        assert data["path_info_utf8"] == "/echo/h\u00e9llo w\u00f6rld"
        assert data["script_name"] + data["path_info"] == front.mount + data["path_info"]

    @pytest.mark.parametrize("size", [0, 64 * 1024, 10 * 1024 * 1024])
    def test_post_body(self, front, size):
        body = os.urandom(size)
        response = requests.post(front.url("/upload"), data=body, timeout=TIMEOUT,
                                 headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 200, response.text[:500]
        assert response.json() == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}

    def test_app_reads_no_body(self, front):
        body = b"x" * (1024 * 1024)
        response = requests.post(front.url("/noread"), data=body, timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.text == "ignored"
        assert get_json(front, "/echo")["path_info"] == "/echo"  # still serving

    @pytest.mark.parametrize("size", [1024 * 1024, 20 * 1024 * 1024])
    def test_large_response(self, front, size):
        response = requests.get(front.url("/bytes?n=%d" % size), timeout=TIMEOUT)
        assert response.status_code == 200
        assert len(response.content) == size
        assert response.content == pattern(size)

    def test_multiple_set_cookie(self, front):
        response = requests.get(front.url("/cookies"), timeout=TIMEOUT)
        assert response.status_code == 200
        cookies = response.raw.headers.getlist("Set-Cookie")
        assert sorted(cookies) == ["a=1; Path=/", "b=2; Path=/"]

    def test_head(self, front):
        response = requests.head(front.url("/bytes?n=5000"), timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers.get("Content-Type") == "application/octet-stream"

    def test_204(self, front):
        response = requests.get(front.url("/status/204"), timeout=TIMEOUT)
        assert response.status_code == 204
        assert response.content == b""

    def test_app_exception_is_a_500_without_traceback(self, front):
        response = requests.get(front.url("/error"), timeout=TIMEOUT)
        assert response.status_code == 500
        assert "SECRET-MARKER" not in response.text
        assert "Traceback" not in response.text
        assert get_json(front, "/echo")["method"] == "GET"  # still serving

    def test_error_after_headers_is_cut_short(self, front):
        try:
            response = requests.get(front.url("/error-late"), timeout=TIMEOUT)
            text = response.text
        except requests.exceptions.RequestException as exc:
            text = str(exc)  # a truncated response: the front reset the connection
        assert "SECRET-MARKER" not in text
        assert get_json(front, "/echo")["method"] == "GET"

    def test_proxy_header_dropped(self, front):
        data = get_json(front, "/echo", headers={"Proxy": "http://evil.example:3128"})
        assert "HTTP_PROXY" not in data["http"]

    def test_write_callable_and_file_wrapper(self, front):
        assert requests.get(front.url("/write"), timeout=TIMEOUT).text == "written and returned"
        response = requests.get(front.url("/file?n=100000"), timeout=TIMEOUT)
        assert response.content == pattern(100000)

    def test_wsgi_errors(self, front):
        response = requests.get(front.url("/stderr"), timeout=TIMEOUT)
        assert response.status_code == 200
        assert response.text == "logged"

    def test_chunked_upload(self, front):
        chunks = [os.urandom(10000) for _ in range(30)]
        response = requests.post(front.url("/upload"), data=iter(chunks), timeout=TIMEOUT)
        if not front.chunked_upload:  # Apache mod_proxy_scgi, HAProxy: documented in README
            assert response.status_code == front.chunked_refusal, response.text[:500]
            return
        assert response.status_code == 200, response.text[:500]
        body = b"".join(chunks)
        assert response.json() == {"length": len(body),
                                   "sha256": hashlib.sha256(body).hexdigest()}

    def test_streaming(self, front):
        if not front.streams:
            pytest.skip("this front end buffers responses")
        started = time.monotonic()
        arrivals = []
        with requests.get(front.url("/stream?n=3&delay=0.6"), stream=True,
                          timeout=TIMEOUT) as response:
            for line in response.iter_lines():
                arrivals.append((time.monotonic() - started, line))
        assert [line for _, line in arrivals] == [b"chunk 0", b"chunk 1", b"chunk 2"]
        assert arrivals[0][0] < 0.5, arrivals  # the first chunk did not wait for the rest
        assert arrivals[2][0] >= 1.1, arrivals
