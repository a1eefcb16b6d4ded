"""Differential tests: the same raw FastCGI requests to gateways and to flup6.

flup6 1.1.1 (``flup.server.fcgi.WSGIServer``, threaded) is what the seed
document deployed; gateways replaces it.  Both serve the probe application
from a unix socket.  flup6 serves ``probe.probe`` without the wsgiref
validator (flup6's environ would not pass it); gateways serves the
validated ``probe`` module, so a PEP 3333 slip on our side shows as a 500.

Where flup6 is right the answers must agree (status, Content-Type,
Content-Length, what the application saw, body digests).  Where it is known
to be wrong (field notes §3 pitfalls 1 and 6) both sides are asserted, so
the test fails if either changes.
"""

import hashlib
import os
import socket
import sys

import pytest

try:
    import flup.server.fcgi  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        pytest.fail("flup6 is required in CI for the differential tests: %s" % exc,
                    pytrace=False)
    pytest.skip("flup6 is not installed (pip install flup6==1.1.1): %s" % exc,
                allow_module_level=True)

import fcgi_client as fc
from daemons import APPS, Daemon, clean_environ, gateways_argv, stop_all
from fcgi_client import FastCGIClient, http_params, record

sys.path.insert(0, str(APPS))
import probe

TIMEOUT = 5.0

FLUP_RUNNER = """
import sys

sys.path.insert(0, sys.argv[2])
import probe
from flup.server.fcgi import WSGIServer

WSGIServer(probe.probe, bindAddress=sys.argv[1]).run()  # debug=True is flup6's default
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """{"gateways": socket path, "flup": socket path}."""
    tmp = tmp_path_factory.mktemp("flupdiff")
    (tmp / "run_flup.py").write_text(FLUP_RUNNER)
    flup_sock = str(tmp / "flup.sock")
    started = {}
    try:
        started["gateways"] = Daemon(
            gateways_argv("fastcgi", "probe", "--app-dir", str(APPS)), tmp, "gateways",
            bind="unix", args=["--processes", "1", "--threads", "4"], log_file=True,
            env=clean_environ())
        started["flup"] = Daemon([sys.executable, str(tmp / "run_flup.py"), flup_sock, str(APPS)],
                                 tmp, "flup", address=flup_sock, env=clean_environ())
        for daemon in started.values():
            daemon.wait_ready(needle=None)
        yield {name: daemon.address for name, daemon in started.items()}
    finally:
        statuses = stop_all(started, timeout=TIMEOUT)
    assert statuses["gateways"] == 0, statuses


def ask(address, params, body=b"", **options):
    with FastCGIClient(address, TIMEOUT) as client:
        response = client.request(params, body, **options)
    assert response.protocol_status == fc.REQUEST_COMPLETE and response.stdout_ended, response
    return response


def both(servers, params, body=b"", **options):
    return ask(servers["gateways"], params, body, **options), ask(
        servers["flup"], params, body, **options)


SEEN = ("script_name", "path_info", "query_string", "method", "content_length",
        "content_type", "url_scheme", "server_name", "server_port", "http")


def assert_same(gateways, flup, same_length=True):
    """Same status and Content-Type; Content-Length true on both sides, and equal
    unless the bodies may differ (the echo reports the gateway and the pid)."""
    assert gateways.status == flup.status
    assert gateways.header("Content-Type") == flup.header("Content-Type")
    for response in (gateways, flup):
        assert response.header("Content-Length") == str(len(response.body))
    if same_length:
        assert gateways.header("Content-Length") == flup.header("Content-Length")


# -- where flup6 is right, the answers agree -------------------------------------------------------


@pytest.mark.parametrize(("script_name", "path", "query"), [
    ("", "/echo", ""),
    ("", "/echo/some/deep/path", ""),
    ("", "/echo/with space", ""),
    ("", "/echo", "a=1&b=%20x&c"),
    ("", "/echo", "q=%E2%82%AC&empty=&flag"),
    ("/app", "/echo/x", "y=2"),
], ids=["plain", "deep", "space", "query", "encoded query", "script name"])
def test_get(servers, script_name, path, query):
    params = http_params(path, query, script_name=script_name)
    gateways, flup = both(servers, params)
    assert_same(gateways, flup, same_length=False)
    ours, theirs = gateways.json(), flup.json()
    assert {k: ours[k] for k in SEEN} == {k: theirs[k] for k in SEEN}
    assert ours["path_info"] == path and ours["query_string"] == query
    assert ours["script_name"] == script_name


def test_latin1_bytes_in_values(servers):
    params = http_params("/echo/caf\xc3\xa9", "n=%C3%A9", HTTP_X_LATIN1="\xe9\xff\x80",
                         HTTP_ACCEPT_LANGUAGE="fr")
    gateways, flup = both(servers, params)
    assert_same(gateways, flup, same_length=False)
    ours, theirs = gateways.json(), flup.json()
    assert {k: ours[k] for k in SEEN} == {k: theirs[k] for k in SEEN}
    assert ours["path_info_utf8"] == theirs["path_info_utf8"] == "/echo/café"
    assert ours["http"]["HTTP_X_LATIN1"] == "\xe9\xff\x80"


@pytest.mark.parametrize("size", [0, 1, 65536, 300000])
def test_post_body(servers, size):
    body = os.urandom(size)
    params = http_params("/upload", method="POST", body=body)
    gateways, flup = both(servers, params, body)
    assert_same(gateways, flup)
    assert gateways.json() == flup.json() == {
        "length": size, "sha256": hashlib.sha256(body).hexdigest()}


def test_post_body_in_small_records(servers):
    body = os.urandom(65536)
    params = http_params("/upload", "mode=readline", method="POST", body=body)
    gateways, flup = both(servers, params, body, stdin_record_size=1000)
    assert gateways.json() == flup.json()


@pytest.mark.parametrize("query", ["n=0", "n=1048576", "n=100000&chunk=1000"])
def test_response_body(servers, query):
    gateways, flup = both(servers, http_params("/bytes", query))
    assert_same(gateways, flup)
    n = int(query.split("&")[0][2:])
    assert gateways.body == flup.body == probe.pattern(n)


def test_response_without_content_length(servers):
    """Both are right: flup6 adds Content-Length to a one-chunk list, gateways
    leaves it to the web server (which chunks or closes)."""
    gateways, flup = both(servers, http_params("/bytes", "n=5000&cl=0"))
    assert gateways.body == flup.body == probe.pattern(5000)
    assert gateways.header("Content-Length") is None
    assert flup.header("Content-Length") == "5000"


def test_status_and_repeated_headers(servers):
    gateways, flup = both(servers, http_params("/status/404"))
    assert gateways.status == flup.status == "404 Not Found"
    gateways, flup = both(servers, http_params("/cookies"))
    cookies = [v for k, v in gateways.headers if k == "Set-Cookie"]
    assert cookies == [v for k, v in flup.headers if k == "Set-Cookie"] == [
        "a=1; Path=/", "b=2; Path=/"]


def test_keep_conn(servers):
    for address in servers.values():
        with FastCGIClient(address, TIMEOUT) as client:
            bodies = {client.request(http_params("/pid"), keep_conn=True).body
                      for _ in range(5)}
            assert len(bodies) == 1
            client.send_raw(fc.build_request(http_params("/pid")))  # KEEP_CONN clear
            assert client.read_until_closed(TIMEOUT)[-1][0] == fc.END_REQUEST


# -- where flup6 is wrong: both sides asserted -----------------------------------------------------


def test_get_values_flup_answers_empty(servers):
    """Field notes §3 pitfall 6: flup6 looks bytes names up in a str-keyed dict."""
    with FastCGIClient(servers["gateways"], TIMEOUT) as client:
        assert client.get_values() == {"FCGI_MAX_CONNS": "4", "FCGI_MAX_REQS": "4",
                                       "FCGI_MPXS_CONNS": "0"}
    with FastCGIClient(servers["flup"], TIMEOUT) as client:
        assert client.get_values() == {}


def test_params_split_inside_a_value_flup_garbles(servers):
    """Field notes §3 pitfall 1: flup6 decodes each FCGI_PARAMS record alone.

    The record boundary falls inside the value of X-Split, whose rest looks
    like an encoded pair: flup6 truncates the value and takes its rest as a
    header of its own (a header smuggled past the web server).
    """
    smuggled = fc.encode_pairs([("HTTP_SMUGGLED", "yes")]).decode("latin-1")
    value = "ab" + smuggled
    pairs = list(http_params("/echo").items())
    pairs.insert(3, ("HTTP_X_SPLIT", value))
    block = fc.encode_pairs(pairs)
    cut = block.index(value.encode("latin-1")) + 2
    data = (fc.begin_request(1) + record(fc.PARAMS, 1, block[:cut])
            + record(fc.PARAMS, 1, block[cut:]) + record(fc.PARAMS, 1) + record(fc.STDIN, 1))
    answers = {}
    for name, address in servers.items():
        with FastCGIClient(address, TIMEOUT) as client:
            client.send_raw(data)
            answers[name] = fc.Response(client.read_until_end()).json()["http"]
    assert answers["gateways"] == {"HTTP_HOST": "localhost", "HTTP_X_SPLIT": value}
    assert answers["flup"] == {"HTTP_HOST": "localhost", "HTTP_X_SPLIT": "ab",
                               "HTTP_SMUGGLED": "yes"}


def test_unknown_management_type_flup_never_answers(servers):
    """flup6's _do_unknown_type writes an undefined name (NameError, swallowed by
    its thread pool): no FCGI_UNKNOWN_TYPE, and the connection is dead."""
    request = fc.build_request(http_params("/pid"), keep_conn=True)
    with FastCGIClient(servers["gateways"], TIMEOUT) as client:
        client.send_raw(record(77, 0, b""))
        assert client.read_records() == [(fc.UNKNOWN_TYPE, 0, bytes([77]) + bytes(7))]
        client.send_raw(request)
        assert fc.Response(client.read_until_end()).status_code == 200
    with FastCGIClient(servers["flup"], TIMEOUT) as client:
        client.send_raw(record(77, 0, b"") + request)
        try:
            records = client.read_records(timeout=1.0)
        except socket.timeout:
            records = []
        assert records == []  # neither the answer nor the response
