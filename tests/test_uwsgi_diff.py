"""Differential tests: the same raw uwsgi packets to gateways, uWSGI and gunicorn 27.

uWSGI (Debian's uwsgi-core with its Python 3 plugin) is the server whose
protocol gateways speaks; gunicorn 27 (``--protocol uwsgi``, gthread) is where
its users go.  All three serve the same small application from unix sockets
and get the same packets.  Where a peer is right the answers must agree;
where it is known to be wrong (the field notes and the uwsgi issue list them)
both sides are asserted, so the test fails when either changes.
"""

import json
import os
import shutil
import socket
import sys
import time

import pytest

from gateways.protocol.uwsgi import make_request

from daemons import Daemon, clean_environ, gateways_argv, stop_all, wait_until

pytestmark = pytest.mark.servers  # uWSGI from Debian's packages

TIMEOUT = 5.0

APP = '''
import json
import sys


def late(start_response):
    yield b"first\\n"
    try:
        raise ValueError("after the headers")
    except ValueError:
        try:
            start_response("500 Internal Server Error", [], sys.exc_info())
        except Exception as exc:  # PEP 3333: the original exception, re-raised
            yield ("start_response raised %s\\n" % type(exc).__name__).encode()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/error":
        raise RuntimeError("raised before start_response")
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed its mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"replaced"]
    if path == "/exc-info-late":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return late(start_response)
    if path == "/noread":
        body = b"not read"
    elif path == "/upload":
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = json.dumps({"length": len(data), "tail": data[-8:].decode("latin-1")}).encode()
    else:
        seen = {k: environ.get(k) for k in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                                             "REQUEST_METHOD", "REMOTE_ADDR", "SERVER_NAME",
                                             "SERVER_PORT", "SERVER_PROTOCOL")}
        seen["url_scheme"] = environ["wsgi.url_scheme"]
        seen["http"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        body = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def _uwsgi():
    binary = shutil.which("uwsgi")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("uWSGI is missing (scripts/test installs uwsgi-core and "
                        "uwsgi-plugin-python3)")
        pytest.skip("uWSGI is not installed")
    return binary


def _gunicorn():
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("gunicorn is missing (it is in the test extras)")
        pytest.skip("gunicorn is not installed")


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    """{"gateways" | "uwsgi" | "gunicorn": (socket path, Daemon)}."""
    tmp = tmp_path_factory.mktemp("uwsgidiff")
    (tmp / "diffapp.py").write_text(APP)
    _gunicorn()
    argv = {
        "gateways": gateways_argv("uwsgi", "diffapp:application", "--app-dir", str(tmp),
                                  "--processes", "1", "--threads", "4", "--bind",
                                  "unix:%s/gateways.sock" % tmp),
        "uwsgi": [_uwsgi(), "--plugin", "python3", "--uwsgi-socket", "%s/uwsgi.sock" % tmp,
                  "--chdir", str(tmp), "--module", "diffapp:application", "--master",
                  "--processes", "1", "--threads", "4", "--need-app"],
        "gunicorn": [sys.executable, "-m", "gunicorn", "--protocol", "uwsgi", "--bind",
                     "unix:%s/gunicorn.sock" % tmp, "--chdir", str(tmp), "--worker-class",
                     "gthread", "--workers", "1", "--threads", "4", "diffapp:application"],
    }
    started = {}
    try:
        for name, command in argv.items():
            started[name] = Daemon(command, tmp, name, address="%s/%s.sock" % (tmp, name),
                                   env=clean_environ(), cwd=tmp)
        for daemon in started.values():
            daemon.wait_ready(needle=None)
        yield {name: (daemon.address, daemon) for name, daemon in started.items()}
    finally:
        stop_all(started, timeout=TIMEOUT)


def send(address, data, timeout=TIMEOUT, to_eof=False):
    """Send ``data`` and read the answer: (the answer, seconds until the peer closed, or
    None when the answer's Content-Length was read and ``to_eof`` is false).  The
    answer is b"" when the peer closed without one."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(data)
        started = time.monotonic()
        answer = b""
        while True:
            if not to_eof and _complete(answer):
                return answer, None
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def _complete(answer):
    head, sep, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def params(path="/echo", query="", **extra):
    base = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path,
            "QUERY_STRING": query, "SERVER_NAME": "example.org", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "192.0.2.7"}
    base.update(extra)
    return base


def everyone(peers, packet, to_eof=False):
    """{peer: (status line, body, seconds to close)}."""
    out = {}
    for name, (address, _) in peers.items():
        answer, seconds = send(address, packet, to_eof=to_eof)
        head, _, body = answer.partition(b"\r\n\r\n")
        out[name] = (head.split(b"\r\n")[0].decode("latin-1"), body, seconds)
    return out


def seen(answer):
    return json.loads(answer[1])


# -- where the peers are right, gateways agrees ----------------------------------------------------


@pytest.mark.parametrize(("path", "query"), [
    ("/echo", ""), ("/echo/deep/path", "a=1&b=%20x"), ("/echo/with space", "q=%E2%82%AC"),
], ids=["plain", "deep and query", "space"])
def test_get_agrees_with_uwsgi(peers, path, query):
    answers = everyone(peers, make_request(params(path, query)))
    assert answers["gateways"][0] == answers["uwsgi"][0] == "HTTP/1.1 200 OK"
    assert seen(answers["gateways"]) == seen(answers["uwsgi"])


def test_post_body_agrees(peers):
    body = os.urandom(200_000)
    answers = everyone(peers, make_request(params("/upload", REQUEST_METHOD="POST"), body))
    for name in peers:
        assert answers[name][0] == "HTTP/1.1 200 OK", name
        assert seen(answers[name]) == {"length": len(body),
                                       "tail": body[-8:].decode("latin-1")}, name


def test_repeated_header_is_joined_where_uwsgi_keeps_the_last(peers):
    packet = _with_pairs(params(), [("HTTP_ACCEPT", "text/html"), ("HTTP_ACCEPT", "*/*")])
    answers = everyone(peers, packet)
    assert seen(answers["gateways"])["http"]["HTTP_ACCEPT"] == "text/html, */*"
    assert seen(answers["uwsgi"])["http"]["HTTP_ACCEPT"] == "*/*"  # uWSGI drops the first


def _with_pairs(base, extra):
    """A packet with ``base`` and then ``extra`` pairs (names may repeat)."""
    import struct

    block = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v))
                     + v.encode() for k, v in list(base.items()) + extra)
    return struct.pack("<BHB", 0, len(block), 0) + block


# -- where gunicorn 27 is wrong --------------------------------------------------------------------


def test_script_name_and_remote_addr_reach_the_app(peers):
    answers = everyone(peers, make_request(params("/echo/x", SCRIPT_NAME="/app")))
    for name in ("gateways", "uwsgi"):
        assert seen(answers[name])["SCRIPT_NAME"] == "/app", name
        assert seen(answers[name])["REMOTE_ADDR"] == "192.0.2.7", name
    assert seen(answers["gunicorn"])["SCRIPT_NAME"] == ""  # gunicorn ignores SCRIPT_NAME
    assert seen(answers["gunicorn"])["REMOTE_ADDR"] == ""  # and the front's REMOTE_ADDR


@pytest.mark.parametrize(("path", "decoded_again"), [
    ("/echo/%41", "/echo/A"), ("/echo/h\xc3\xa9", None),
], ids=["percent", "utf-8"])
def test_path_info_is_not_decoded_twice(peers, path, decoded_again):
    # The front has decoded the path already: "%41" is what the client meant
    # (it sent %2541), and the UTF-8 bytes of "é" arrive as latin-1 code points.
    answers = everyone(peers, make_request(params(path)))
    assert seen(answers["gateways"])["PATH_INFO"] == seen(answers["uwsgi"])["PATH_INFO"] == path
    if decoded_again:
        assert seen(answers["gunicorn"])["PATH_INFO"] == decoded_again


def test_the_connection_closes_after_the_answer(peers):
    answers = everyone(peers, make_request(params()), to_eof=True)
    assert answers["gateways"][2] < 1.0 and answers["uwsgi"][2] < 1.0
    assert answers["gunicorn"][2] >= 1.5  # gunicorn keeps it open for its keep-alive


def test_a_malformed_packet_is_closed_without_an_answer(peers):
    packet = make_request(params(), modifier1=5)  # a PSGI packet
    answers = everyone(peers, packet)
    assert answers["gateways"][:2] == answers["uwsgi"][:2] == ("", b"")
    assert answers["gunicorn"][0] == "HTTP/1.1 500 Internal Server Error"
    _, daemon = peers["gateways"]
    line = wait_until(lambda: [x for x in daemon.log.text().splitlines()
                               if "modifier1 5" in x], what="the one warning line")
    assert len(line) == 1 and "WARNING" in line[0] and "Traceback" not in daemon.log.text()


# -- where uWSGI is wrong ----------------------------------------------------------------------------


def test_an_exception_before_start_response_is_a_500(peers):
    answers = everyone(peers, make_request(params("/error")))
    assert answers["gateways"][0] == "HTTP/1.1 500 Internal Server Error"
    assert b"raised before start_response" not in answers["gateways"][1]  # no traceback
    assert answers["uwsgi"][:2] == ("", b"")  # uWSGI closes: nginx answers 502


def test_start_response_with_exc_info_before_the_headers(peers):
    answers = everyone(peers, make_request(params("/exc-info")))
    for name in peers:
        assert answers[name][0] == "HTTP/1.1 503 Service Unavailable", name
    assert answers["gateways"][1] == answers["gunicorn"][1] == b"replaced"
    assert answers["uwsgi"][1] == b""  # uWSGI loses the body


def test_start_response_with_exc_info_after_the_headers_reraises(peers):
    answers = everyone(peers, make_request(params("/exc-info-late")))
    assert answers["gateways"][1] == b"first\nstart_response raised ValueError\n"
    # uWSGI raises an error of its own, not the application's exception.
    assert answers["uwsgi"][1] == b"first\nstart_response raised OSError\n"


def test_a_7_kb_header(peers):
    answers = everyone(peers, make_request(params(HTTP_COOKIE="c=" + "x" * 7000)))
    assert answers["gateways"][0] == "HTTP/1.1 200 OK"
    assert len(seen(answers["gateways"])["http"]["HTTP_COOKIE"]) == 7002
    assert answers["uwsgi"][:2] == ("", b"")  # uWSGI's buffer-size is 4096
