"""A real ``gateways fastcgi`` server, driven record by record by the raw client.

No web server here: ``tests/fcgi_client.py`` plays the web server, so every
FastCGI rule the server must follow can be checked exactly, including what
nginx or Apache would never send.  Three servers are started once for the
module:

* ``main``: the probe application on a unix socket, 1 process x 4 threads,
  ``--max-body 1M``;
* ``strict``: TCP, ``--read-timeout 1``, ``FCGI_WEB_SERVER_ADDRS=127.0.0.1``,
  serving the probe plus two routes that write to ``wsgi.errors`` the way
  the probe does not (without flush, and an empty string);
* ``elsewhere``: TCP with ``FCGI_WEB_SERVER_ADDRS=127.0.0.2``.
"""

import hashlib
import os
import sys
import threading
import time

import pytest

import fcgi_client as fc
from daemons import APPS, Daemon, clean_environ, gateways_argv, stop_all
from fcgi_client import FastCGIClient, Response, abort, build_request, http_params, record

sys.path.insert(0, str(APPS))
import probe

THREADS = 4
TIMEOUT = 5.0

PROBE_PLUS = '''
from probe import application as probe_app


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    errors = environ["wsgi.errors"]
    if path == "/stderr-unflushed":
        errors.write("unflushed line\\n")  # PEP 3333 does not oblige the app to flush
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    if path == "/stderr-empty":
        errors.write("")
        errors.flush()
        errors.write("after an empty write\\n")
        errors.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return probe_app(environ, start_response)
'''


# -- the servers ---------------------------------------------------------------------------


class GatewaysServer(Daemon):
    """``python -m gateways fastcgi APP`` (1 process x THREADS threads), with its log file."""

    def __init__(self, tmp, name, app, bind, *options, env=None):
        super().__init__(gateways_argv("fastcgi", app, "--app-dir", str(APPS)), tmp, name,
                         bind=bind, args=["--processes", "1", "--threads", str(THREADS), *options],
                         log_file=True, env=clean_environ(**(env or {})))

    def client(self, **kw):
        return FastCGIClient(self.address, kw.pop("timeout", TIMEOUT), **kw)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fcgi")
    (tmp / "probe_plus.py").write_text(PROBE_PLUS)
    started = {}
    try:
        started["main"] = GatewaysServer(tmp, "main", "probe", "unix", "--max-body", "1M")
        started["strict"] = GatewaysServer(
            tmp, "strict", "%s:app" % (tmp / "probe_plus.py"), "tcp", "--read-timeout", "1",
            env={"FCGI_WEB_SERVER_ADDRS": "127.0.0.1"})
        started["elsewhere"] = GatewaysServer(
            tmp, "elsewhere", "probe", "tcp", env={"FCGI_WEB_SERVER_ADDRS": " 127.0.0.2 , ::1"})
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        statuses = stop_all(started, timeout=TIMEOUT)
    assert statuses == dict.fromkeys(started, 0), statuses


@pytest.fixture
def main(servers):
    server = servers["main"]
    server.log.mark()
    return server


@pytest.fixture
def strict(servers):
    server = servers["strict"]
    server.log.mark()
    return server


def get(client, path="/echo", query="", request_id=1, keep_conn=True, **kw):
    return client.request(http_params(path, query), request_id=request_id, keep_conn=keep_conn,
                          **kw)


def post(client, path, body, query="", keep_conn=True, **kw):
    return client.request(http_params(path, query, "POST", body), body, keep_conn=keep_conn,
                          **kw)


def check_complete(response, status=200):
    """A normal answer: the status, both streams ended, FCGI_REQUEST_COMPLETE."""
    assert response.status_code == status, response
    assert response.stdout_ended and response.protocol_status == fc.REQUEST_COMPLETE, response
    assert response.stderr_ended or not response.stderr, response
    types = [r[0] for r in response.records]
    assert types[-1] == fc.END_REQUEST and types.count(fc.END_REQUEST) == 1
    return response


def all_threads_serve(server, count=THREADS):
    """``count`` connections at once each get an answer: no worker thread is stuck."""
    clients = [server.client(timeout=TIMEOUT) for _ in range(count)]
    try:
        for client in clients:
            client.send_raw(build_request(http_params("/sleep", "t=0.2")))
        for client in clients:
            check_complete(Response(client.read_until_end()))
    finally:
        for client in clients:
            client.close()


def serves(server):
    """One fresh connection gets a normal answer."""
    with server.client() as client:
        check_complete(get(client, "/pid", keep_conn=False))


def quiet_log(server):
    """The server logged nothing at info level or above since ``mark()``."""
    assert server.log.new_lines() == []


# -- keep-alive and connection closing ------------------------------------------------------


def test_sequential_requests_on_a_kept_connection(main):
    with main.client() as client:
        echo = check_complete(get(client, "/echo/a b", "x=1&y=%C3%A9")).json()
        assert echo["path_info"] == "/echo/a b" and echo["query_string"] == "x=1&y=%C3%A9"
        assert echo["gateway"] == "FastCGI" and echo["multithread"] is True
        for size in (0, 1, 1000, 65535, 65536, 300000):
            body = os.urandom(size)
            answer = check_complete(post(client, "/upload", body, stdin_record_size=8000)).json()
            assert answer == {"length": size, "sha256": hashlib.sha256(body).hexdigest()}
        big = check_complete(get(client, "/bytes", "n=1048576", request_id=2))
        assert big.body == probe.pattern(1048576)
        assert big.header("Content-Length") == "1048576"
        assert all(len(r[2]) <= 65535 for r in big.records)
        for mode in ("readline", "iter"):
            body = b"line one\nline two\n" * 1000
            answer = check_complete(post(client, "/upload", body, "mode=" + mode)).json()
            assert answer["length"] == len(body)
        assert check_complete(get(client, "/write")).body == b"written and returned"
        check_complete(get(client, "/echo", request_id=65535))
        assert not client.eof
    quiet_log(main)


def test_keep_conn_clear_closes_after_end_request(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/pid"), keep_conn=False))
        records = client.read_until_closed(TIMEOUT)
        assert client.eof
        assert records[-1][0] == fc.END_REQUEST
        check_complete(Response(records))


def test_many_requests_on_a_kept_connection(main):
    with main.client() as client:
        pids = {check_complete(get(client, "/pid")).body for _ in range(50)}
        assert len(pids) == 1


def test_pipelined_management_records_between_requests(main):
    with main.client() as client:
        client.send_raw(fc.get_values(["FCGI_MPXS_CONNS"]) + build_request(
            http_params("/pid"), keep_conn=True) + fc.get_values(["FCGI_MAX_CONNS"]))
        records = client.read_until_end()
        records += client.read_records(TIMEOUT)
        values = [fc.decode_pairs(r[2]) for r in records if r[0] == fc.GET_VALUES_RESULT]
        assert values == [[(b"FCGI_MPXS_CONNS", b"0")], [(b"FCGI_MAX_CONNS", b"4")]]
        check_complete(Response(records))


# -- management records, roles, multiplexing ----------------------------------------------------


def test_get_values(main):
    with main.client() as client:
        assert client.get_values() == {"FCGI_MAX_CONNS": "4", "FCGI_MAX_REQS": "4",
                                       "FCGI_MPXS_CONNS": "0"}
        assert client.get_values(["FCGI_MPXS_CONNS", "FCGI_NOPE", "FCGI_MAX_REQS"]) == {
            "FCGI_MPXS_CONNS": "0", "FCGI_MAX_REQS": "4"}
        assert client.get_values([]) == {}
        check_complete(get(client))  # the connection serves on


def test_get_values_while_a_response_streams(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/stream", "n=4&delay=0.1"), keep_conn=True))
        records = client.read_records(TIMEOUT)
        client.send_raw(fc.get_values(["FCGI_MPXS_CONNS"]))
        records += client.read_until_end()
        assert (fc.GET_VALUES_RESULT, 0, fc.encode_pairs([("FCGI_MPXS_CONNS", "0")])) in records
        response = check_complete(Response(records))
        assert response.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"


def test_unknown_management_type(main):
    with main.client() as client:
        client.send_raw(record(77, 0, b"what is this") + record(200, 0))
        records = client.read_records(TIMEOUT)
        if len(records) < 2:
            records += client.read_records(TIMEOUT)
        assert records == [(fc.UNKNOWN_TYPE, 0, bytes([77]) + bytes(7)),
                           (fc.UNKNOWN_TYPE, 0, bytes([200]) + bytes(7))]
        check_complete(get(client))
    quiet_log(main)


@pytest.mark.parametrize("role", [fc.AUTHORIZER, fc.FILTER, 9])
def test_unknown_role(main, role):
    """FCGI_UNKNOWN_ROLE after a 500 page (more in tests/test_authorizer.py)."""
    with main.client() as client:
        client.send_raw(build_request(http_params("/echo"), role=role, keep_conn=True))
        refused = Response(client.read_until_end(1, TIMEOUT))
        assert (refused.status_code, refused.protocol_status) == (500, fc.UNKNOWN_ROLE)
        check_complete(get(client))  # KEEP_CONN was set: the connection serves on
    with main.client() as client:
        client.send_raw(build_request(http_params("/echo"), role=role, keep_conn=False))
        refused = Response(client.read_until_closed(TIMEOUT))
        assert (refused.status_code, refused.protocol_status) == (500, fc.UNKNOWN_ROLE)
    quiet_log(main)


def test_second_begin_request_gets_cant_mpx_conn(main):
    params = http_params("/upload", method="POST", body=b"abc")
    with main.client() as client:
        client.send_raw(fc.begin_request(1, keep_conn=True)
                        + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params))
                        + record(fc.STDIN, 1, b"ab"))
        client.send_raw(build_request(http_params("/pid"), request_id=2, keep_conn=True))
        assert client.read_records(TIMEOUT) == [
            (fc.END_REQUEST, 2, fc.end_request_content(0, fc.CANT_MPX_CONN))]
        client.send_raw(record(fc.STDIN, 1, b"c") + record(fc.STDIN, 1))
        answer = check_complete(Response(client.read_until_end(1))).json()
        assert answer == {"length": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
        check_complete(get(client, request_id=2))


# -- FCGI_PARAMS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("record_size", [1, 7, 100, 65535])
def test_params_pairs_across_records_arrive_intact(main, record_size):
    long_value = "v" * 300
    params = http_params("/echo/caf\xc3\xa9", "q=%E2%82%AC&x=1", HTTP_X_LONG=long_value,
                         HTTP_X_LATIN1="\xe9\xff\x80", HTTP_COOKIE="a=1", HTTP_X_EMPTY="")
    with main.client() as client:
        response = client.request(params, keep_conn=True, params_record_size=record_size)
        echo = check_complete(response).json()
    assert echo["path_info"] == "/echo/caf\xc3\xa9" and echo["path_info_utf8"] == "/echo/café"
    assert echo["query_string"] == "q=%E2%82%AC&x=1"
    assert echo["http"] == {"HTTP_HOST": "localhost", "HTTP_X_LONG": long_value,
                            "HTTP_X_LATIN1": "\xe9\xff\x80", "HTTP_COOKIE": "a=1",
                            "HTTP_X_EMPTY": ""}
    assert echo["all_str"] is True


def test_repeated_params_are_joined(main):
    params = list(http_params("/echo").items()) + [
        ("HTTP_ACCEPT", "text/html"), ("HTTP_ACCEPT", "*/*"),
        ("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2")]
    with main.client() as client:
        echo = check_complete(client.request(params)).json()
    assert echo["http"]["HTTP_ACCEPT"] == "text/html, */*"
    assert echo["http"]["HTTP_COOKIE"] == "a=1; b=2"


def test_params_over_max_header_size_close_the_connection(main):
    params = http_params("/echo", HTTP_X_BIG="x" * 70000)
    with main.client() as client:
        client.send_raw(build_request(params))
        assert client.read_until_closed(TIMEOUT) == []
    lines = main.log.wait_for("closing a connection").splitlines()
    assert len(lines) == 1 and "FCGI_PARAMS stream over 65536 bytes" in lines[0], lines
    serves(main)


# -- FCGI_ABORT_REQUEST ---------------------------------------------------------------------------


def test_abort_while_streaming(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/stream", "n=20&delay=0.2"), keep_conn=True))
        first = client.read_records(TIMEOUT)
        assert first[0][0] == fc.STDOUT and b"chunk 0" in first[0][2]
        client.abort(1)
        aborted_at = time.monotonic()
        records = first + client.read_until_end(1, timeout=TIMEOUT)
        assert time.monotonic() - aborted_at < 2.0
        response = Response(records)
        assert response.protocol_status == fc.REQUEST_COMPLETE and response.app_status == 1
        assert response.stdout_ended
        assert response.body.startswith(b"chunk 0\n") and b"chunk 19" not in response.body
        check_complete(get(client))  # KEEP_CONN: the same connection serves on
    quiet_log(main)
    all_threads_serve(main)


def test_abort_while_streaming_without_keep_conn_closes(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/stream", "n=20&delay=0.2")))
        first = client.read_records(TIMEOUT)
        client.abort(1)
        records = first + client.read_until_closed(TIMEOUT)
        assert Response(records).app_status == 1 and records[-1][0] == fc.END_REQUEST


@pytest.mark.parametrize("where", ["params", "stdin"])
def test_abort_before_the_body_ends(main, where):
    params = http_params("/upload", method="POST", body=b"x" * 1000)
    head = fc.begin_request(1, keep_conn=True) + record(fc.PARAMS, 1, fc.encode_pairs(params))
    if where == "stdin":
        head += record(fc.PARAMS, 1) + record(fc.STDIN, 1, b"x" * 100)
    with main.client() as client:
        client.send_raw(head)
        client.abort(1)
        response = Response(client.read_until_end(1, timeout=2.0))
        assert response.protocol_status == fc.REQUEST_COMPLETE and response.app_status == 1
        assert response.stdout == b"" and response.stdout_ended
        client.send_raw(record(fc.STDIN, 1, b"late") + record(fc.STDIN, 1))  # ignored
        check_complete(get(client, "/pid"))
    quiet_log(main)


def test_abort_arriving_with_the_end_of_stdin(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/pid"), keep_conn=True) + abort(1))
        records = client.read_until_end(1)
        client.send_raw(build_request(http_params("/pid"), request_id=2, keep_conn=True))
        records += client.read_until_end(2)  # and whatever came before its answer
    assert [r for r in records if r[1] == 0] == []
    assert [r[1] for r in records if r[0] == fc.END_REQUEST] == [1, 2]


def test_abort_then_close_is_not_an_internal_error(main):
    params = http_params("/upload", method="POST", body=b"x" * 100)
    # With every thread busy the connection waits in the listen queue, so it
    # is closed before the server reads it: the answer to the abort cannot be
    # sent, every time.
    busy = [main.client() for _ in range(THREADS)]
    for client in busy:
        client.send_raw(build_request(http_params("/sleep", "t=0.3")))
    with main.client() as client:
        client.send_raw(fc.begin_request(1) + fc.stream(fc.PARAMS, 1, fc.encode_pairs(params))
                        + record(fc.STDIN, 1, b"x" * 10) + abort(1))
    for client in busy:
        check_complete(Response(client.read_until_end()))
        client.close()
    serves(main)
    time.sleep(0.2)  # the aborted connection's thread has logged by now, if anything
    assert [line for line in main.log.new_lines() if "ERROR" in line] == []


# -- malformed input ------------------------------------------------------------------------------

MALFORMED = [
    ("garbage", b"\xde\xad\xbe\xef" * 8, "record version 222, not 1"),
    ("http request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
     "an HTTP request arrived on the FastCGI socket"),
    ("bad version", record(fc.BEGIN_REQUEST, 1, bytes([0, 1, 1]) + bytes(5), version=2),
     "record version 2, not 1"),
    ("bad version mid-request", fc.begin_request(1) + record(fc.PARAMS, 1, version=0),
     "record version 0, not 1"),
    ("STDOUT from the web server", record(fc.STDOUT, 1, b"x"), "record type 6 is not for"),
    ("BEGIN of 7 bytes", record(fc.BEGIN_REQUEST, 1, bytes(7)), "FCGI_BEGIN_REQUEST body of 7"),
    ("STDIN before PARAMS end", fc.begin_request(1) + record(fc.STDIN, 1),
     "FCGI_STDIN arrived before the FCGI_PARAMS stream ended"),
]


@pytest.mark.parametrize(("data", "reason"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_input_closes_that_connection_only(main, data, reason):
    with main.client() as kept:
        check_complete(get(kept))
        with main.client() as client:
            client.send_raw(data)
            assert client.read_until_closed(TIMEOUT) == []
        lines = main.log.wait_for("closing a connection").splitlines()
        assert len(lines) == 1, lines
        assert "WARNING" in lines[0] and reason in lines[0], lines
        check_complete(get(kept))  # another connection, opened before, serves on
    serves(main)
    assert len(main.log.new_lines()) == 1


def test_a_warning_names_the_peer_on_a_unix_socket(main):
    with main.client() as client:
        client.send_raw(b"\xde\xad\xbe\xef" * 8)
        assert client.read_until_closed(TIMEOUT) == []
    [line] = main.log.wait_for("closing a connection").splitlines()
    assert "from a unix socket peer (pid %d, uid %d)" % (os.getpid(), os.getuid()) in line


def test_a_warning_names_the_peer_on_tcp(strict):
    with strict.client() as client:
        port = client.sock.getsockname()[1]
        client.send_raw(b"\xde\xad\xbe\xef" * 8)
        assert client.read_until_closed(TIMEOUT) == []
    [line] = strict.log.wait_for("closing a connection").splitlines()
    assert "WARNING" in line and "from 127.0.0.1:%d:" % port in line, line


def test_a_violation_after_a_request_in_one_write_answers_it_then_closes(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/pid"), keep_conn=True)
                        + record(fc.STDOUT, 1, b"x"))
        records = client.read_until_closed(TIMEOUT)
    check_complete(Response(records))
    [line] = main.log.wait_for("closing a connection").splitlines()
    assert "WARNING" in line and "record type 6 is not for an application" in line, line
    serves(main)


@pytest.mark.parametrize("where", ["params", "stdin"])
def test_stdin_after_an_abort_in_the_same_write(main, where):
    # Found by fuzzing: the records of an aborted request that follow the
    # abort in the same read crashed the connection's thread.
    params = http_params("/upload", method="POST", body=b"x" * 1000)
    head = fc.begin_request(1, keep_conn=True) + record(fc.PARAMS, 1, fc.encode_pairs(params))
    if where == "stdin":
        head += record(fc.PARAMS, 1) + record(fc.STDIN, 1, b"x" * 100)
    late = record(fc.STDIN, 1, b"x" * 100) + record(fc.STDIN, 1)
    with main.client() as client:
        client.send_raw(head + abort(1) + late)
        response = Response(client.read_until_end(1, timeout=TIMEOUT))
        assert response.protocol_status == fc.REQUEST_COMPLETE and response.app_status == 1
        assert response.stdout == b"" and response.stdout_ended
        check_complete(get(client, "/pid"))
    quiet_log(main)


def test_a_content_length_of_thousands_of_digits_is_400(main):
    params = http_params("/upload", method="POST", CONTENT_LENGTH="9" * 5000)
    with main.client() as client:
        response = check_complete(client.request(params, b"", keep_conn=True), 400)
        assert b"Content-Length" in response.body
        check_complete(get(client, "/pid"))
    [line] = main.log.wait_for("not a byte count").splitlines()
    assert "WARNING" in line and "Traceback" not in main.log.new_text()


def test_truncated_record_then_close_is_not_logged(main):
    data = build_request(http_params("/echo"))
    for cut in (3, 12, len(data) - 1):
        with main.client() as client:
            client.send_raw(data[:cut])
    serves(main)
    time.sleep(0.2)  # let the threads of the closed connections finish
    quiet_log(main)


def test_client_closing_mid_response(main):
    for _ in range(3):
        with main.client() as client:
            client.send_raw(build_request(http_params("/bytes", "n=20000000")))
            records = client.read_records(TIMEOUT)
            assert records and records[0][0] == fc.STDOUT
    all_threads_serve(main)
    with main.client() as client:
        assert len(check_complete(get(client, "/bytes", "n=3000000")).body) == 3000000
    assert [line for line in main.log.new_lines() if "ERROR" in line] == []


def test_client_closing_while_the_app_runs(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/sleep", "t=0.3")))
    all_threads_serve(main)
    time.sleep(0.2)
    assert [line for line in main.log.new_lines() if "ERROR" in line] == []


# -- wsgi.errors and application errors -----------------------------------------------------------


def test_wsgi_errors_go_to_fcgi_stderr(main):
    with main.client() as client:
        response = check_complete(get(client, "/stderr"))
        assert response.body == b"logged"
        assert response.stderr == b"probe: a line for the error log\n"
        assert response.stderr_ended
        types = [r[0] for r in response.records]
        assert types.index(fc.STDERR) < types.index(fc.END_REQUEST)
        assert response.records[-2] in ((fc.STDERR, 1, b""), (fc.STDOUT, 1, b""))
        # The next request on the connection has no stderr of its own.
        nxt = check_complete(get(client, "/pid"))
        assert nxt.stderr == b"" and fc.STDERR not in [r[0] for r in nxt.records]
    quiet_log(main)


def test_application_error_is_a_500_and_the_traceback_goes_to_stderr(main):
    with main.client() as client:
        response = check_complete(get(client, "/error"), 500)
        assert b"SECRET-MARKER" not in response.stdout
        assert response.header("Content-Type").startswith("text/html")
        assert int(response.header("Content-Length")) == len(response.body)
        stderr = response.stderr.decode()
        assert "Traceback" in stderr and "SECRET-MARKER raised before the headers" in stderr
        check_complete(get(client, "/pid"))
    quiet_log(main)


def test_application_error_app_status(main):
    with main.client() as client:
        assert get(client, "/error").app_status == 1


def test_error_after_the_headers_cuts_the_response_short(main):
    with main.client() as client:
        client.send_raw(build_request(http_params("/error-late"), keep_conn=True))
        records = client.read_until_closed(TIMEOUT)
    response = Response(records)
    assert response.body == b"first chunk\n"
    assert b"SECRET-MARKER raised after the headers" in response.stderr
    assert response.protocol_status is None and not response.stdout_ended
    serves(main)


# -- limits ---------------------------------------------------------------------------------------


def test_content_length_over_max_body_is_413_without_the_app(main):
    body = b"x" * (1024 * 1024 + 1)
    with main.client() as client:
        response = check_complete(post(client, "/upload", body), 413)
        assert response.body == b"Request body too large\n"
        # Declared but not sent: refused all the same.
        params = http_params("/upload", method="POST", CONTENT_LENGTH=str(10**12))
        response = check_complete(client.request(params, keep_conn=True), 413)
        # No CONTENT_LENGTH at all, body over the limit while it arrives.
        params = http_params("/upload", method="POST", CONTENT_LENGTH=None)
        response = check_complete(client.request(params, body, keep_conn=True), 413)
        # Exactly at the limit: the application runs.
        answer = check_complete(post(client, "/upload", body[:-1])).json()
        assert answer["length"] == 1024 * 1024
    quiet_log(main)


@pytest.mark.parametrize("value", ["abc", "-2", "1e3", " 12"])
def test_bad_content_length_is_400(main, value):
    params = http_params("/upload", method="POST", CONTENT_LENGTH=value)
    with main.client() as client:
        response = check_complete(client.request(params, b"", keep_conn=True), 400)
        assert b"Content-Length" in response.body
        check_complete(get(client, "/pid"))


def test_a_body_shorter_than_its_content_length_is_400_without_the_app(main):
    """FastCGI §6.2: FCGI_STDIN ended before CONTENT_LENGTH bytes (Apache resends a POST
    whose connection was reset without its body): not run, 400, one WARNING line."""
    with main.client() as client:
        params = http_params("/upload", method="POST", CONTENT_LENGTH="1000")
        response = check_complete(client.request(params, b"x" * 10, keep_conn=True), 400)
        assert b"shorter than its Content-Length" in response.body
        params = http_params("/upload", method="POST", CONTENT_LENGTH="1000")
        check_complete(client.request(params, b"", keep_conn=True), 400)
        # The whole body: the application runs, on the same connection.
        answer = check_complete(post(client, "/upload", b"y" * 1000)).json()
        assert answer["length"] == 1000
    lines = main.log.wait_for("of its CONTENT_LENGTH 1000").splitlines()
    warnings = [line for line in lines if "CONTENT_LENGTH 1000" in line]
    assert len(warnings) == 2 and all("WARNING" in line for line in warnings)
    assert "after 10 of its CONTENT_LENGTH 1000 bytes" in warnings[0]
    assert "Traceback" not in main.log.new_text()


def test_content_length_minus_one_is_a_body_of_unknown_length(main):
    """Caddy sends CONTENT_LENGTH -1 for a chunked upload (it was answered 400 before):
    the body runs to the end of FCGI_STDIN, and the application sees no CONTENT_LENGTH
    and wsgi.input_terminated."""
    body = os.urandom(300000)
    with main.client() as client:
        params = http_params("/upload", method="POST", CONTENT_LENGTH="-1")
        answer = check_complete(client.request(params, body, keep_conn=True)).json()
        assert answer == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        params = http_params("/echo", method="POST", CONTENT_LENGTH="-1")
        echo = check_complete(client.request(params, b"abc", keep_conn=True)).json()
        assert (echo["content_length"], echo["input_terminated"]) == (None, True)
    quiet_log(main)


@pytest.mark.parametrize("value", ["abc", "999999999999"])
def test_refusal_of_a_head_request_has_no_body(main, value):
    params = http_params("/upload", method="HEAD", CONTENT_LENGTH=value)
    with main.client() as client:
        response = check_complete(client.request(params, b"", keep_conn=True),
                                  400 if value == "abc" else 413)
        assert response.body == b""
        assert int(response.header("Content-Length")) > 0  # the GET answer's length
        check_complete(get(client, "/pid"))


@pytest.mark.parametrize("where", ["mid-record", "mid-request"])
def test_stalled_web_server_is_disconnected_after_read_timeout(strict, where):
    data = build_request(http_params("/echo"))
    cut = 5 if where == "mid-record" else len(data) - 8  # all but the STDIN end record
    with strict.client() as client:
        client.send_raw(data[:cut])
        start = time.monotonic()
        assert client.read_until_closed(TIMEOUT) == []
        waited = time.monotonic() - start
    assert 0.9 <= waited < 3.0
    lines = strict.log.wait_for("stalled").splitlines()
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    serves(strict)


# -- FCGI_WEB_SERVER_ADDRS ------------------------------------------------------------------------


def test_web_server_addrs_refuse_other_peers(servers):
    server = servers["elsewhere"]
    server.log.mark()
    with server.client() as client:
        client.send_raw(build_request(http_params("/pid")))
        assert client.read_until_closed(TIMEOUT) == []
    lines = server.log.wait_for("FCGI_WEB_SERVER_ADDRS").splitlines()
    assert len(lines) == 1 and "WARNING" in lines[0] and "127.0.0.1" in lines[0], lines
    server.log.mark()
    with server.client(source="127.0.0.2") as client:  # a listed peer is served
        check_complete(get(client, "/pid", keep_conn=False))
    quiet_log(server)


def test_web_server_addrs_allow_listed_peers(strict):
    with strict.client() as client:
        check_complete(get(client))
        assert client.get_values(["FCGI_MAX_CONNS"]) == {"FCGI_MAX_CONNS": "4"}
    quiet_log(strict)


# -- wsgi.errors written the way the probe does not ----------------------------------------------


def test_unflushed_wsgi_errors_text(strict):
    with strict.client() as client:
        client.send_raw(build_request(http_params("/stderr-unflushed"), keep_conn=True))
        records = client.read_until_end(1)
    assert [r for r in records if r[1] != 1] == []
    response = Response(records)
    assert response.body == b"ok"
    assert response.stderr == b"unflushed line\n" and response.stderr_ended


def test_empty_wsgi_errors_write(strict):
    with strict.client() as client:
        client.send_raw(build_request(http_params("/stderr-empty"), keep_conn=True))
        records = client.read_until_end(1)
    stderr = [r[2] for r in records if r[0] == fc.STDERR]
    assert stderr == [b"after an empty write\n", b""]


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_connections(main):
    results = []

    def work(n):
        with main.client() as client:
            for i in range(10):
                body = b"%d-%d " % (n, i) * 100
                answer = check_complete(post(client, "/upload", body)).json()
                results.append(answer["sha256"] == hashlib.sha256(body).hexdigest())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 3)
    assert results == [True] * 80
    quiet_log(main)
