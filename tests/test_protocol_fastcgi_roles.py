"""The FastCGI core's roles: Responder, Authorizer (§6.3), and the ones it refuses (§5.5).

Every input is fed whole, byte by byte and in random chunks, with the helpers
of ``tests/test_protocol_fastcgi.py``; requests are built with the
independent encoder of ``tests/fcgi_client.py``.  What the two web servers
with an authorizer mode send was read off the wire (2026-11-30): Apache 2.4
mod_authnz_fcgi sends FCGI_BEGIN_REQUEST(AUTHORIZER) without FCGI_KEEP_CONN
and the FCGI_PARAMS stream, with FCGI_ROLE and FCGI_APACHE_ROLE, and no
FCGI_STDIN at all; lighttpd 1.4.69 the same without FCGI_ROLE, then an empty
FCGI_STDIN record.
"""

import pytest

from gateways.protocol.events import Abort, Data, EndOfBody
from gateways.protocol.fastcgi import (
    Connection,
    DuplicateBeginRequest,
    StdinBeforeParams,
    StreamAfterEnd,
    UnexpectedRecordType,
)

import fcgi_client as fc
from fcgi_client import abort, begin_request, build_request, encode_pairs, parse_records, record
from test_protocol_fastcgi import GET, check_invalid, end_request, received, run, stdin_end


def refused(rid, role_name):
    """What the core answers a request in a role it does not serve: a 500 page (lighttpd
    1.4.69 takes an authorizer's answer without one for "allowed"), FCGI_UNKNOWN_ROLE."""
    page = (b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n"
            b"This FastCGI application does not serve the role of this request (%s).\n"
            % role_name)
    return (record(fc.STDOUT, rid, page) + record(fc.STDOUT, rid)
            + end_request(rid, fc.UNKNOWN_ROLE))


ROLE_NAMES = {0: b"0", fc.RESPONDER: b"RESPONDER", fc.AUTHORIZER: b"AUTHORIZER",
              fc.FILTER: b"FILTER", 4: b"4", 0xFFFF: b"65535"}


@pytest.mark.parametrize(("role", "roles"), [
    (0, {fc.RESPONDER}), (fc.AUTHORIZER, {fc.RESPONDER}), (fc.FILTER, {fc.RESPONDER}),
    (4, {fc.RESPONDER}), (0xFFFF, {fc.RESPONDER}), (fc.RESPONDER, {fc.AUTHORIZER}),
    (fc.FILTER, {fc.RESPONDER, fc.AUTHORIZER})])
@pytest.mark.parametrize("keep_conn", [False, True])
def test_unknown_role(role, roles, keep_conn):
    data = build_request(GET, b"body", role=role, keep_conn=keep_conn) + record(fc.DATA, 1, b"d")
    events, outgoing, conn = run(data, roles=roles)
    assert events == []
    assert outgoing == refused(1, ROLE_NAMES[role])
    response = fc.Response(parse_records(bytes(outgoing)))
    assert (response.status_code, response.protocol_status) == (500, fc.UNKNOWN_ROLE)
    assert conn.request_id == 0
    assert conn.should_close is (not keep_conn)
    if keep_conn:  # the connection serves on
        served = next(iter(roles))
        assert conn.feed(build_request(GET, request_id=1, role=served)) == [
            received(GET, 1, False, ROLE_NAMES[served].decode()), EndOfBody(1)]


def test_the_default_roles_are_responder_only():
    assert Connection().roles == {fc.RESPONDER}


@pytest.mark.parametrize("roles", [(), (fc.FILTER,), (fc.RESPONDER, fc.FILTER), (0,), (7,)])
def test_only_responder_and_authorizer_can_be_served(roles):
    with pytest.raises(ValueError, match=r"RESPONDER \(1\) and AUTHORIZER \(2\)"):
        Connection(roles=roles)


# -- the Authorizer role (§6.3) ----------------------------------------------------------------

BOTH = {fc.RESPONDER, fc.AUTHORIZER}
# What Apache mod_authnz_fcgi sends: FCGI_ROLE and FCGI_APACHE_ROLE, no body, no paths.
APACHE_AUTHZ = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/private/file.txt?q=1",
                "QUERY_STRING": "q=1", "FCGI_ROLE": "AUTHORIZER",
                "FCGI_APACHE_ROLE": "AUTHENTICATOR", "REMOTE_USER": "u", "REMOTE_PASSWD": "p"}


def authorizer_request(params=APACHE_AUTHZ, rid=1, keep_conn=False, stdin=False,
                       params_record_size=None):
    """BEGIN_REQUEST(AUTHORIZER) and PARAMS; with ``stdin`` the empty STDIN record that
    lighttpd adds (Apache mod_authnz_fcgi sends none)."""
    return (begin_request(rid, fc.AUTHORIZER, keep_conn)
            + fc.stream(fc.PARAMS, rid, encode_pairs(params), params_record_size)
            + (stdin_end(rid) if stdin else b""))


@pytest.mark.parametrize("stdin", [False, True], ids=["apache", "lighttpd"])
@pytest.mark.parametrize("roles", [{fc.AUTHORIZER}, BOTH])
def test_an_authorizer_request_is_complete_when_its_params_end(stdin, roles):
    events, outgoing, conn = run(authorizer_request(stdin=stdin, params_record_size=9),
                                 roles=roles)
    assert events == [received(APACHE_AUTHZ, 1, False, "AUTHORIZER"), EndOfBody(1)]
    assert outgoing == b"" and conn.request_id == 1 and not conn.mid_record
    out = parse_records(conn.end_request(b"Status: 200 OK\r\nVariable-USER: u\r\n\r\n"))
    assert out[-1] == (fc.END_REQUEST, 1, fc.end_request_content())
    assert conn.should_close and conn.request_id == 0


@pytest.mark.parametrize("role", [fc.RESPONDER, fc.AUTHORIZER])
@pytest.mark.parametrize("sent", [None, "RESPONDER", "AUTHORIZER", "FILTER", ""])
def test_fcgi_role_comes_from_begin_request_whatever_params_say(role, sent):
    params = dict(GET) if sent is None else dict(GET, FCGI_ROLE=sent)
    data = (begin_request(1, role) + fc.stream(fc.PARAMS, 1, encode_pairs(params))
            + stdin_end())
    events, _, _ = run(data, roles=BOTH)
    assert events[0].params["FCGI_ROLE"] == ROLE_NAMES[role].decode()
    assert events[-1] == EndOfBody(1)


def test_the_body_of_an_authorizer_request_is_dropped():
    # §6.3 says the web server sends none; a body sent anyway is of no use to anyone.
    body = bytes(range(256)) * 300
    data = authorizer_request() + fc.stream(fc.STDIN, 1, body, record_size=1000, padding=3)
    events, _, conn = run(data, byte_by_byte=False, roles=BOTH)
    assert events == [received(APACHE_AUTHZ, 1, False, "AUTHORIZER"), EndOfBody(1)]
    assert conn.request_id == 1 and not conn.mid_record


def test_roles_alternate_on_a_kept_connection():
    conn = Connection(roles=BOTH)
    sequence = [(fc.AUTHORIZER, 1, True), (fc.RESPONDER, 1, False), (fc.AUTHORIZER, 2, True),
                (fc.AUTHORIZER, 3, False), (fc.RESPONDER, 4, True), (fc.RESPONDER, 5, False)]
    for role, rid, stdin in sequence:
        if role == fc.AUTHORIZER:
            data = authorizer_request(rid=rid, keep_conn=True, stdin=stdin)
            expected = [received(APACHE_AUTHZ, rid, True, "AUTHORIZER"), EndOfBody(rid)]
        else:
            data = build_request(GET, b"b" if stdin else b"", request_id=rid, keep_conn=True)
            expected = [received(GET, rid, True)] + ([Data(b"b", rid)] if stdin else []) + [
                EndOfBody(rid)]
        assert conn.feed(data) == expected, (role, rid)
        conn.end_request(b"Status: 200 OK\r\n\r\n")
        assert not conn.should_close and conn.request_id == 0
    assert conn.outgoing == b""


def test_stdin_after_an_authorizer_request_ended_is_for_an_inactive_id():
    # lighttpd's empty STDIN record may come after the answer went out: ignored (§3.3).
    conn = Connection(roles=BOTH)
    assert conn.feed(authorizer_request(keep_conn=True))[-1] == EndOfBody(1)
    conn.end_request(b"Status: 403 Forbidden\r\n\r\n")
    assert conn.feed(stdin_end() + build_request(GET, request_id=2, keep_conn=True)) == [
        received(GET, 2, True), EndOfBody(2)]


@pytest.mark.parametrize("where", ["after params", "with stdin"])
def test_an_authorizer_request_can_be_aborted(where):
    data = authorizer_request(stdin=where == "with stdin") + abort(1)
    events, _, conn = run(data, roles=BOTH)
    assert events == [received(APACHE_AUTHZ, 1, False, "AUTHORIZER"), EndOfBody(1), Abort(1)]
    assert conn.request_id == 1


AUTHORIZER_INVALID = [
    ("params after the end", authorizer_request() + record(fc.PARAMS, 1, b"\x01\x01AB"),
     StreamAfterEnd),
    ("stdin before params", begin_request(1, fc.AUTHORIZER) + record(fc.STDIN, 1, b"x"),
     StdinBeforeParams),
    ("second begin request", authorizer_request() + begin_request(1, fc.AUTHORIZER),
     DuplicateBeginRequest),
    ("stdout from the web server", authorizer_request() + record(fc.STDOUT, 1, b"x"),
     UnexpectedRecordType),
]


@pytest.mark.parametrize(("data", "error"), [case[1:] for case in AUTHORIZER_INVALID],
                         ids=[case[0] for case in AUTHORIZER_INVALID])
def test_authorizer_violations(data, error):
    check_invalid(data, error, roles=BOTH)
