"""The response writer: start_response rules, iteration, close(), errors."""

import io
import sys

import pytest

from gateways.environ import build_environ
from gateways.response import ClientDisconnected, FileWrapper, render_head, run


class Recorder:
    """A transport that records what the writer asked of it."""

    status_prefix = "Status: "

    def __init__(self, fail_after=None):
        self.calls = []
        self.fail_after = fail_after

    def _record(self, kind, data=b""):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise ClientDisconnected("peer gone")
        self.calls.append((kind, data))

    def send(self, data):
        self._record("send", data)

    def finish(self, data, status=0):
        self._record("finish", data)

    def abort(self):
        self._record("abort")

    @property
    def output(self):
        return b"".join(d for _, d in self.calls)

    @property
    def kinds(self):
        return [k for k, _ in self.calls]


def environ(method="GET", errors=None):
    return build_environ({"REQUEST_METHOD": method}, io.BytesIO(), errors or io.StringIO(),
                         multithread=False, multiprocess=False, run_once=True, gateway="test")


class Closing:
    """An iterable that records close()."""

    def __init__(self, chunks, fail_at=None):
        self.chunks = chunks
        self.fail_at = fail_at
        self.closed = False

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("SECRET-MARKER in iteration")
            yield chunk

    def close(self):
        self.closed = True


def make_app(chunks=(b"body",), status="200 OK", headers=None, before=None):
    def app(env, start_response):
        if before:
            before(env, start_response)
        start_response(status, headers if headers is not None else [("Content-Type", "text/plain")])
        return chunks
    return app


def test_single_chunk_is_one_write():
    t = Recorder()
    assert run(make_app([b"hello"]), environ(), t) == 0
    assert t.kinds == ["finish"]
    assert t.output == b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"


def test_headers_go_with_first_nonempty_chunk():
    t = Recorder()
    run(make_app(Closing([b"", b"a", b"", b"b"])), environ(), t)
    assert t.calls[0][1].startswith(b"Status: 200 OK\r\n")
    assert t.calls[0][1].endswith(b"\r\n\r\na")
    assert t.calls[1:] == [("send", b"b"), ("finish", b"")]


def test_empty_body_sends_headers_at_end():
    t = Recorder()
    run(make_app(Closing([b"", b""])), environ(), t)
    assert t.kinds == ["finish"]
    assert t.output.endswith(b"\r\n\r\n")


def test_generator_calling_start_response_late():
    def app(env, start_response):
        def gen():
            start_response("201 Created", [("Content-Type", "text/plain")])
            yield b"late"
        return gen()
    t = Recorder()
    run(app, environ(), t)
    assert t.output.startswith(b"Status: 201 Created\r\n")
    assert t.output.endswith(b"late")


def test_close_always_called():
    for chunks in (Closing([b"a"]), Closing([b"a", b"b"], fail_at=1)):
        run(make_app(chunks), environ(), Recorder())
        assert chunks.closed


def test_close_called_when_client_disconnects():
    chunks = Closing([b"a", b"b", b"c"])
    assert run(make_app(chunks), environ(), Recorder(fail_after=1)) == 1
    assert chunks.closed


def test_exception_before_headers_is_generic_500():
    errors = io.StringIO()
    t = Recorder()
    assert run(make_app(Closing([b"x"], fail_at=0)), environ(errors=errors), t) == 1
    assert t.output.startswith(b"Status: 500 Internal Server Error\r\n")
    assert b"SECRET-MARKER" not in t.output
    assert b"Traceback" not in t.output
    assert "SECRET-MARKER" in errors.getvalue()
    assert "Traceback" in errors.getvalue()


def test_debug_puts_traceback_in_body():
    t = Recorder()
    run(make_app(Closing([b"x"], fail_at=0)), environ(), t, debug=True)
    assert b"SECRET-MARKER" in t.output
    assert b"Traceback" in t.output


def test_exception_after_headers_aborts():
    errors = io.StringIO()
    t = Recorder()
    chunks = Closing([b"a", b"b"], fail_at=1)
    run(make_app(chunks), environ(errors=errors), t)
    assert t.kinds == ["send", "abort"]
    assert chunks.closed
    assert "SECRET-MARKER" in errors.getvalue()


def test_exc_info_replaces_headers_before_they_are_sent():
    def app(env, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("oops")
        except ValueError:
            start_response("503 Busy", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"later"]
    t = Recorder()
    run(app, environ(), t)
    assert t.output.startswith(b"Status: 503 Busy\r\n")


def test_exc_info_reraises_after_headers_are_sent():
    def app(env, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"sent")
        try:
            raise ValueError("SECRET-MARKER reraised")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]
    errors = io.StringIO()
    t = Recorder()
    run(app, environ(errors=errors), t)
    assert t.kinds == ["send", "abort"]
    assert "SECRET-MARKER reraised" in errors.getvalue()


def test_second_start_response_without_exc_info_is_an_error():
    def app(env, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b""]
    t = Recorder()
    run(app, environ(), t)
    assert t.output.startswith(b"Status: 500")


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (b"200 OK", [], "str"),
        ("200", [], "NNN Reason"),
        ("OK 200", [], "NNN Reason"),
        ("200 OK\r\nX-Evil: 1", [], "CR or LF"),
        ("200 OK", [("X-Evil", "a\r\nSet-Cookie: x")], "CR or LF"),
        ("200 OK", [("X-Evil", "a\nb")], "CR or LF"),
        ("200 OK", [("X-Evil\r", "a")], "CR or LF"),
        ("200 OK", [("X-Name", "caf\u00e9 \u2603")], "latin-1"),
        ("200 OK", [("Connection", "close")], "hop-by-hop"),
        ("200 OK", [("Transfer-Encoding", "chunked")], "hop-by-hop"),
        ("200 OK", [("Bad Name", "x")], "field name"),
        ("200 OK", [("", "x")], "field name"),
        ("200 OK", [("X", b"bytes")], "must be str"),
        ("200 OK", (("X", "y"),), "must be a list"),
        ("200 OK", [("X", "y", "z")], "tuple"),
    ],
)
def test_bad_status_or_headers_are_app_errors(status, headers, reason):
    errors = io.StringIO()
    t = Recorder()
    run(make_app([b"x"], status=status, headers=headers), environ(errors=errors), t)
    assert t.output.startswith(b"Status: 500 Internal Server Error\r\n")
    assert reason in errors.getvalue()
    assert b"Evil" not in t.output


def test_latin1_header_values_allowed():
    assert render_head("200 OK", [("X-Name", "caf\u00e9")]).endswith(b"X-Name: caf\xe9\r\n\r\n")


def test_str_body_is_an_app_error():
    errors = io.StringIO()
    t = Recorder()
    run(make_app(["text"]), environ(errors=errors), t)
    assert t.output.startswith(b"Status: 500")
    assert "not bytes" in errors.getvalue()


def test_no_start_response_is_an_app_error():
    t = Recorder()
    run(lambda env, sr: [b"x"], environ(), t)
    assert t.output.startswith(b"Status: 500")


def test_head_sends_no_body_and_stops_iterating():
    chunks = Closing([b"a" * 10, b"b" * 10], fail_at=1)
    t = Recorder()
    assert run(make_app(chunks), environ("HEAD"), t) == 0
    assert t.output.endswith(b"\r\n\r\n")
    assert b"a" * 10 not in t.output
    assert chunks.closed
    t = Recorder()
    run(make_app([b"abc"]), environ("HEAD"), t)
    assert t.output.endswith(b"\r\n\r\n")


def test_write_callable_then_iterable():
    def app(env, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"one ")
        write(b"")
        return [b"two"]
    t = Recorder()
    run(app, environ(), t)
    assert t.output.endswith(b"\r\n\r\none two")


def test_error_in_close_is_logged():
    class BadClose(Closing):
        def close(self):
            raise RuntimeError("close failed")
    errors = io.StringIO()
    t = Recorder()
    assert run(make_app(BadClose([b"a"])), environ(errors=errors), t) == 0
    assert "close failed" in errors.getvalue()


def test_file_wrapper_iterates_and_closes():
    f = io.BytesIO(b"x" * 100)
    wrapper = FileWrapper(f, 30)
    assert [len(c) for c in wrapper] == [30, 30, 30, 10]
    wrapper.close()
    assert f.closed
    assert not hasattr(FileWrapper(iter([b"x"])), "close")


# -- what HAProxy, Caddy and H2O need -----------------------------------------------------


def test_status_goes_last_when_there_is_a_location():
    # HAProxy 2.6 takes the status from the last of Status and Location (302 for Location).
    head = render_head("301 Moved Permanently", [("Location", "http://example.org/x"),
                                                 ("Content-Type", "text/plain")])
    assert head == (b"Location: http://example.org/x\r\nContent-Type: text/plain\r\n"
                    b"Status: 301 Moved Permanently\r\n\r\n")
    # An HTTP status line (uwsgi) stays first; without Location nothing moves.
    assert render_head("301 Moved", [("Location", "/x")], "HTTP/1.1 ").startswith(
        b"HTTP/1.1 301 Moved\r\n")
    assert render_head("200 OK", [("X-A", "1")]).startswith(b"Status: 200 OK\r\n")


@pytest.mark.parametrize("debug", [False, True])
def test_error_page_of_a_head_request_has_no_body(debug):
    t = Recorder()
    errors = io.StringIO()

    def app(env, start_response):
        raise RuntimeError("SECRET-MARKER")

    assert run(app, environ("HEAD", errors), t, debug) == 1
    head, _, body = t.output.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 500 Internal Server Error\r\n") and body == b""
    assert b"Content-Length: " in head and "SECRET-MARKER" in errors.getvalue()


def test_refusal_answering_a_head_request():
    from gateways.response import TOO_LARGE

    assert TOO_LARGE.answering({"REQUEST_METHOD": "GET"}) is TOO_LARGE
    head = TOO_LARGE.answering({"REQUEST_METHOD": "HEAD"}).render()
    assert head == TOO_LARGE.render()[:len(head)] and head.endswith(b"\r\n\r\n")
    assert TOO_LARGE.render().endswith(TOO_LARGE.body)
