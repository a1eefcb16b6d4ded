"""The CGI gateway in-process and as a real CGI process (RFC 3875)."""

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateways.cgi import run
from gateways.environ import LimitedInput

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
import probe  # noqa: E402


def cgi(app, env, body=b"", **kw):
    """Run one CGI request in-process; return (status line, headers, body, stderr)."""
    stdin = io.BytesIO(body)
    stdout = io.BytesIO()
    stderr = io.StringIO()
    base = {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SERVER_NAME": "test",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""}
    base.update(env)
    environ = {k.encode(): v.encode("utf-8") if isinstance(v, str) else v for k, v in base.items()}
    run(app, stdin=stdin, stdout=stdout, stderr=stderr, environ=environ, **kw)
    head, _, payload = stdout.getvalue().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return lines[0], headers, payload, stderr.getvalue(), stdin


def test_get_through_validator():
    status, _, body, err, _ = cgi(probe.application, {
        "SCRIPT_NAME": "/app", "PATH_INFO": "/echo/x", "QUERY_STRING": "a=1"})
    assert status == "Status: 200 OK", err
    data = json.loads(body)
    assert (data["script_name"], data["path_info"], data["query_string"]) == ("/app", "/echo/x", "a=1")
    assert (data["multithread"], data["multiprocess"], data["run_once"]) == (False, True, True)
    assert data["gateway"] == "CGI"
    assert data["all_str"]


def test_utf8_environ_arrives_as_latin1_code_points():
    _, _, body, _, _ = cgi(probe.application, {"SCRIPT_NAME": "", "PATH_INFO": "/echo/h\u00e9"})
    data = json.loads(body)
    assert data["path_info"] == "/echo/h\xc3\xa9"
    assert data["path_info_utf8"] == "/echo/h\u00e9"


def test_post_body_read_to_content_length_only():
    payload = os.urandom(100_000)
    # Extra bytes after CONTENT_LENGTH must never be read.
    status, _, body, _, stdin = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "CONTENT_LENGTH": str(len(payload)),
        "CONTENT_TYPE": "application/octet-stream"}, payload + b"EXTRA")
    assert status == "Status: 200 OK"
    assert json.loads(body) == {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert stdin.read() == b"EXTRA"


@pytest.mark.parametrize("mode", ["read", "readline", "iter"])
def test_body_reading_modes(mode):
    payload = b"line one\nline two\n" * 1000 + b"no newline"
    _, _, body, err, _ = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "QUERY_STRING": "mode=" + mode,
        "CONTENT_LENGTH": str(len(payload)), "CONTENT_TYPE": "text/plain"}, payload + b"\nEXTRA\n")
    assert json.loads(body)["length"] == len(payload), err


def test_unread_body_is_drained():
    payload = b"x" * 300_000
    _, _, body, _, stdin = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/noread", "CONTENT_LENGTH": str(len(payload)),
        "CONTENT_TYPE": "text/plain"}, payload + b"EXTRA")
    assert body == b"ignored"
    assert stdin.read() == b"EXTRA"


def test_chunked_body_without_content_length_reads_to_eof():
    payload = b"y" * 70_000
    _, _, body, _, _ = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/echo", "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "text/plain"}, payload)
    assert json.loads(body)["input_terminated"] is True
    _, _, body, _, _ = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "HTTP_TRANSFER_ENCODING": "chunked",
        "CONTENT_TYPE": "text/plain"}, payload)
    assert json.loads(body)["length"] == len(payload)


def test_no_body_without_content_length():
    _, _, body, _, stdin = cgi(probe.application, {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "CONTENT_TYPE": "text/plain"}, b"stray")
    assert json.loads(body)["length"] == 0
    assert stdin.read() == b"stray"


def test_bad_content_length_is_400():
    status, _, _, err, _ = cgi(probe.application, {"REQUEST_METHOD": "POST",
                                                   "CONTENT_LENGTH": "12abc"})
    assert status == "Status: 400 Bad Request"
    assert "CONTENT_LENGTH" in err


def test_error_gives_generic_500_and_logs_traceback():
    status, _, body, err, _ = cgi(probe.application, {"PATH_INFO": "/error"})
    assert status == "Status: 500 Internal Server Error"
    assert b"SECRET-MARKER" not in body
    assert "SECRET-MARKER" in err and "Traceback" in err


def test_debug_from_environment():
    _, _, body, _, _ = cgi(probe.application, {"PATH_INFO": "/error", "GATEWAYS_DEBUG": "1"})
    assert b"SECRET-MARKER" in body


def test_debug_from_environment_is_read_like_every_other_gateway():
    _, _, body, _, _ = cgi(probe.application, {"PATH_INFO": "/error", "GATEWAYS_DEBUG": " on"})
    assert b"SECRET-MARKER" in body


@pytest.mark.parametrize("value", ["maybe", "of"])
def test_unknown_debug_value_is_one_line_and_a_plain_500(value):
    status, _, body, err, _ = cgi(probe.application,
                                  {"PATH_INFO": "/error", "GATEWAYS_DEBUG": value})
    assert status == "Status: 500 Internal Server Error"
    assert b"SECRET-MARKER" not in body
    assert err.count("\n") == 1 and err.startswith("gateways: error: --debug: %r" % value)
    assert "(from GATEWAYS_DEBUG)" in err


def test_content_length_of_thousands_of_digits_is_400():
    status, _, _, err, _ = cgi(probe.application, {"REQUEST_METHOD": "POST",
                                                   "CONTENT_LENGTH": "9" * 5000})
    assert status == "Status: 400 Bad Request"
    assert err.count("\n") == 1 and "CONTENT_LENGTH" in err


def test_print_in_app_goes_to_stderr():
    def app(environ, start_response):
        print("stray output")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"clean"]
    status, _, body, err, _ = cgi(app, {})
    assert status == "Status: 200 OK"
    assert body == b"clean"
    assert "stray output" in err


def test_multiple_set_cookie_and_204():
    _, headers, _, _, _ = cgi(probe.application, {"PATH_INFO": "/cookies"})
    assert [v for k, v in headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    status, _, body, _, _ = cgi(probe.application, {"PATH_INFO": "/status/204"})
    assert status == "Status: 204 No Content" and body == b""


def test_limited_input():
    stream = LimitedInput(io.BytesIO(b"abc\ndef\nghi"), 6)
    assert stream.readline() == b"abc\n"
    assert stream.readline(10) == b"de"
    assert stream.read(5) == b""
    stream = LimitedInput(io.BytesIO(b"ab"), 10)  # the stream ends early
    assert stream.read(5) == b"ab"
    assert stream.read(5) == b""
    assert stream.remaining == 0
    assert LimitedInput(io.BytesIO(b"a\nb\n"), 4).readlines() == [b"a\n", b"b\n"]


# -- a real CGI process ------------------------------------------------------------


def run_script(args, env, body=b""):
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": "GET", "SERVER_NAME": "t", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "QUERY_STRING": ""}
    base.update(env)
    return subprocess.run(args, input=body, env=base, capture_output=True, timeout=30)


def test_gateways_cgi_command():
    proc = run_script([sys.executable, "-m", "gateways", "cgi", "probe", "--app-dir", str(APPS)],
                      {"SCRIPT_NAME": "/app", "PATH_INFO": "/echo"})
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: 200 OK")
    assert json.loads(body)["script_name"] == "/app"


def test_gateways_cgi_command_script_name_option():
    proc = run_script([sys.executable, "-m", "gateways", "cgi", "probe", "--app-dir", str(APPS),
                       "--script-name", "/mnt"],
                      {"SCRIPT_NAME": "/mnt/echo/x", "REQUEST_URI": "/mnt/echo/x"})
    body = proc.stdout.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["path_info"] == "/echo/x"


def test_app_that_does_not_import():
    proc = run_script([sys.executable, "-m", "gateways", "cgi", "no_such_module:app"], {})
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.count("\n") == 1
    assert "no_such_module" in err
    assert proc.stdout.startswith(b"Status: 500 Internal Server Error\r\n")


def test_cgi_path_imports_almost_nothing():
    code = ("import sys; before = set(sys.modules); import gateways.cgi; "
            "print(sorted(set(sys.modules) - before))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = eval(proc.stdout)
    assert set(loaded) <= {"gateways", "gateways.cgi", "gateways.environ", "gateways.response"}, loaded


# -- the web server ends the request: SIGTERM, or stdout closed -------------------


@pytest.mark.parametrize("how", ["stdout closed", "SIGTERM"])
def test_iterable_closed_and_quiet_when_the_server_ends_the_request(how, tmp_path):
    """What Apache mod_cgid and lighttpd mod_cgi do when the client goes away: close the
    pipe the script writes to (the next write fails with EPIPE), or send SIGTERM.  The
    application's close() runs, and stderr (the error log) stays empty."""
    from gateways.tools.cgiscript import write_script

    script = write_script(str(tmp_path / "closing.cgi"), "closing:application", sys.executable,
                          str(APPS))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATEWAY_INTERFACE": "CGI/1.1",
           "REQUEST_METHOD": "GET", "SERVER_NAME": "t", "SERVER_PORT": "80",
           "SERVER_PROTOCOL": "HTTP/1.1", "SCRIPT_NAME": "/app", "PATH_INFO": "/slow",
           "QUERY_STRING": "m", "CLOSING_MARKERS": str(tmp_path)}
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen([script], stdin=subprocess.DEVNULL, stdout=write_end,
                                   stderr=subprocess.PIPE, env=env, cwd=str(tmp_path))
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            data = b""
            while b"chunk 2\n" not in data:  # the headers and two chunks, then leave
                more = pipe.read(4096)
                assert more, (data, process.stderr.read() if process.poll() is not None else "")
                data += more
            if how == "SIGTERM":
                process.terminate()  # the read end stays open until the process is gone
                _, err = process.communicate(timeout=30)
        if how != "SIGTERM":
            _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert data.startswith(b"Status: 200 OK\r\n")
    marker = (tmp_path / "m").read_text()  # close() wrote it
    assert marker.startswith("closed after "), marker
    assert int(marker.split()[2]) < 600, marker
    assert ("sigterm=True" in marker) == (how == "SIGTERM"), marker
    assert err == b"", err.decode(errors="replace")
    assert process.returncode == 0
