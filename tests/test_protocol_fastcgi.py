"""The sans-IO FastCGI core: every input fed whole, byte by byte and in random chunks.

Requests are built with the independent encoder of ``tests/fcgi_client.py``,
so an encoder bug in :mod:`gateways.protocol.fastcgi` cannot cancel out a
decoder bug.  Spec sections are those of FastCGI 1.0 (§N).
"""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.protocol import ProtocolError, Truncated
from gateways.protocol import fastcgi as core
from gateways.protocol.events import Abort, Data, EndOfBody, Request
from gateways.protocol.fastcgi import (
    BadBeginRequest,
    Connection,
    DuplicateBeginRequest,
    FastCGIError,
    MalformedParams,
    ManagementRecordForRequest,
    MissingRequestId,
    ParamsTooLarge,
    StdinBeforeParams,
    StreamAfterEnd,
    TooManyParams,
    UnexpectedRecordType,
    UnknownRecordType,
    UnsupportedVersion,
)

import fcgi_client as fc
from fcgi_client import abort, begin_request, build_request, encode_pairs, parse_records, record

ERRORS = [
    UnsupportedVersion, UnexpectedRecordType, UnknownRecordType, BadBeginRequest,
    DuplicateBeginRequest, ManagementRecordForRequest, MalformedParams, MissingRequestId,
    ParamsTooLarge,
    TooManyParams, StreamAfterEnd, StdinBeforeParams,
]

GET = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "QUERY_STRING": "a=1"}


# -- helpers ------------------------------------------------------------------------------


def splits(data, seeds=6, byte_by_byte=True):
    """(label, chunks): whole, byte by byte, and random chunks (some empty) for a few seeds."""
    yield "whole", [data]
    if byte_by_byte:
        yield "bytes", [data[i:i + 1] for i in range(len(data))]
    sizes = (0, 1, 2, 3, 7, 8, 9, 16, 64, 300, 4096, 70000)
    for seed in range(seeds):
        rng, chunks, at = random.Random(seed), [], 0
        while at < len(data):
            size = rng.choice(sizes)
            chunks.append(data[at:at + size])
            at += size
        yield "seed %d" % seed, chunks


def feed_all(conn, chunks):
    events = []
    for chunk in chunks:
        events += conn.feed(chunk)
    return events


def merged(events):
    """Events with consecutive Data pieces of one request joined, so any split compares equal."""
    out = []
    for event in events:
        if (type(event) is Data and out and type(out[-1]) is Data
                and out[-1].request_id == event.request_id):
            out[-1] = Data(out[-1].data + event.data, event.request_id)
        else:
            out.append(event)
    return out


def run(data, byte_by_byte=True, **options):
    """Feed ``data`` in every split: ``(events, outgoing, connection)``, the same for all.

    The connection returned is the one fed whole.  No split leaves bytes of
    an incomplete record behind.
    """
    expected = first = None
    for label, chunks in splits(data, byte_by_byte=byte_by_byte):
        conn = Connection(**options)
        events = feed_all(conn, chunks)
        assert all(type(e.data) is bytes and e.data for e in events if type(e) is Data), label
        result = (merged(events), conn.outgoing, conn.should_close, conn.request_id,
                  conn.mid_record)
        assert not conn.mid_record, label
        if expected is None:
            expected, first = result, conn
        assert result == expected, label
    return expected[0], expected[1], first


def raise_error(conn, data):
    """Feed ``data``, then one byte more: the error state raises by then at the latest
    (a feed() that completed events before the violation returns them first)."""
    conn.feed(data)
    conn.feed(b"\1")


def check_invalid(data, error, byte_by_byte=True, **options):
    """Every split raises exactly ``error`` while feeding (or, when the same feed()
    completed events before it, at the next feed()), and keeps raising it."""
    for label, chunks in splits(data, byte_by_byte=byte_by_byte):
        conn = Connection(**options)
        with pytest.raises(ProtocolError) as info:
            feed_all(conn, chunks)
            conn.feed(b"\1")
        assert type(info.value) is error, (label, info.value)
        assert str(info.value) and info.value.reason == str(info.value)
        assert type(conn.error) is error and str(conn.error) == str(info.value)
        with pytest.raises(error):
            conn.feed(build_request(GET))


def end_request(rid, protocol_status, app_status=0):
    return record(fc.END_REQUEST, rid, struct.pack(">IB3x", app_status, protocol_status))


def active(params=GET, rid=1, keep_conn=False):
    """BEGIN_REQUEST and the whole PARAMS stream: a request whose body is still to come."""
    return (begin_request(rid, keep_conn=keep_conn)
            + fc.stream(fc.PARAMS, rid, encode_pairs(params)))


def stdin_end(rid=1):
    return record(fc.STDIN, rid)


def received(params, rid=1, keep_conn=False, role="RESPONDER"):
    """The Request event for ``params`` sent in ``role``: the core adds FCGI_ROLE."""
    return Request(dict(params, FCGI_ROLE=role), None, rid, keep_conn)


# -- requests -----------------------------------------------------------------------------


def test_minimal_request():
    events, outgoing, conn = run(build_request(GET))
    assert events == [received(GET, 1, False), EndOfBody(1)]
    assert outgoing == b""
    assert conn.request_id == 1 and not conn.should_close


def test_empty_params_stream():
    events, _, _ = run(begin_request(3) + record(fc.PARAMS, 3) + record(fc.STDIN, 3))
    assert events == [received({}, 3, False), EndOfBody(3)]


def test_events_arrive_as_their_records_complete():
    conn = Connection()
    data = build_request(GET, b"body", stdin_record_size=2)
    params_end = len(active(GET))
    assert conn.feed(data[:params_end - 1]) == []
    assert conn.mid_record
    assert conn.feed(data[params_end - 1:params_end]) == [received(GET, 1, False)]
    assert not conn.mid_record
    assert conn.feed(data[params_end:params_end + 10]) == [Data(b"bo", 1)]
    assert conn.feed(data[params_end + 10:]) == [Data(b"dy", 1), EndOfBody(1)]


@pytest.mark.parametrize("record_size", [None, 1, 7, 8, 1000, 65535])
def test_body(record_size):
    body = bytes(range(256)) * (4 if record_size in (1, 7, 8) else 400)
    events, _, _ = run(build_request(dict(GET, REQUEST_METHOD="POST"), body,
                                     stdin_record_size=record_size),
                       byte_by_byte=len(body) < 2000)
    assert events == [received(dict(GET, REQUEST_METHOD="POST"), 1, False), Data(body, 1),
                      EndOfBody(1)]


def test_large_body_in_full_records():
    body = random.Random(1).randbytes(200000)
    events, _, _ = run(build_request(GET, body), byte_by_byte=False)
    assert events[1] == Data(body, 1)


@pytest.mark.parametrize("rid", [1, 2, 255, 256, 65535])
def test_request_ids(rid):
    events, _, conn = run(build_request(GET, b"x", request_id=rid))
    assert events == [received(GET, rid, False), Data(b"x", rid), EndOfBody(rid)]
    out = parse_records(conn.end_request(b"hi"))
    assert {r[1] for r in out} == {rid}


@pytest.mark.parametrize("keep_conn", [False, True])
def test_keep_conn_and_should_close(keep_conn):
    events, _, conn = run(build_request(GET, keep_conn=keep_conn))
    assert events[0].keep_conn is keep_conn and conn.keep_conn is keep_conn
    assert not conn.should_close  # not before the response ends
    conn.end_request(b"Status: 200 OK\r\n\r\n")
    assert conn.should_close is (not keep_conn)
    assert conn.request_id == 0


@pytest.mark.parametrize("flags", [0xFE, 0xFF])
def test_keep_conn_flag_ignores_other_bits(flags):
    conn = Connection()
    [request, _] = conn.feed(begin_request(1, flags=flags) + record(fc.PARAMS, 1) + stdin_end())
    assert request.keep_conn is bool(flags & 1)
    conn.end_request()
    assert conn.should_close is not request.keep_conn


def test_sequential_requests_on_one_connection():
    conn = Connection()
    for rid, body in [(1, b"one"), (1, b""), (7, b"three" * 1000), (1, b"four")]:
        events = feed_all(conn, [build_request(GET, body, request_id=rid, keep_conn=True)])
        assert merged(events) == [received(GET, rid, True)] + (
            [Data(body, rid)] if body else []) + [EndOfBody(rid)]
        out = parse_records(conn.end_request(b"answer %d" % rid))
        assert out[-1] == (fc.END_REQUEST, rid, struct.pack(">IB3x", 0, fc.REQUEST_COMPLETE))
        assert not conn.should_close and conn.request_id == 0
    assert conn.outgoing == b""


def test_request_pipelined_after_the_previous_end_in_one_chunk():
    """The web server may send the next request before reading our answer."""
    conn = Connection()
    first = build_request(GET, b"a", request_id=1, keep_conn=True)
    assert conn.feed(first[:-3]) == [received(GET, 1, True), Data(b"a", 1)]
    assert conn.feed(first[-3:]) == [EndOfBody(1)]
    conn.end_request()
    second = build_request(GET, b"b", request_id=2, keep_conn=True)
    assert conn.feed(second) == [received(GET, 2, True), Data(b"b", 2), EndOfBody(2)]


# -- FCGI_PARAMS: pairs across records, lengths, padding, duplicates ----------------------------

PAIRS = [("A", "1"), ("LONG_NAME_" + "N" * 140, "v"), ("V", "x" * 200), ("E", ""),
         ("HTTP_X", "\xe9t\xe9")]


def test_pairs_straddle_two_records_at_every_split_position():
    block = encode_pairs(PAIRS)
    expected = [received(dict(PAIRS), 1, False), EndOfBody(1)]
    for at in range(len(block) + 1):
        data = (begin_request(1) + record(fc.PARAMS, 1, block[:at])
                + record(fc.PARAMS, 1, block[at:]) + record(fc.PARAMS, 1) + stdin_end())
        if at in (0, len(block)):
            # An empty PARAMS record ends the stream: here the first or second
            # record is empty, so the stream ends early or has an extra record.
            continue
        conn = Connection()
        assert feed_all(conn, [data]) == expected, at
        conn = Connection()
        assert feed_all(conn, [data[i:i + 5] for i in range(0, len(data), 5)]) == expected, at


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 127, 128, 129, 1000])
def test_pairs_in_records_of_any_size(size):
    events, _, _ = run(build_request(PAIRS, params_record_size=size), byte_by_byte=size < 10)
    assert events == [received(dict(PAIRS), 1, False), EndOfBody(1)]


@pytest.mark.parametrize("size", [0, 1, 127, 128, 255, 256, 65535, 65536, 100000])
def test_name_and_value_lengths(size):
    name, value = "N" * max(size, 1), bytes(range(256)) * (size // 256) + bytes(size % 256)
    pairs = [(name, value), ("SHORT", "s"), ("Z" * 3, value)]
    block = encode_pairs(pairs)
    length = fc.encode_length(size)
    assert len(length) == (1 if size < 128 else 4)
    assert length[0] & 0x80 == (0 if size < 128 else 0x80)
    assert (int.from_bytes(length, "big") & 0x7FFFFFFF if size >= 128 else length[0]) == size
    assert core.encode_pairs(pairs) == block  # the core's encoder agrees with ours
    limit = 4 * size + 1000
    expected = {name: value.decode("latin-1"), "SHORT": "s", "ZZZ": value.decode("latin-1")}
    events, _, _ = run(build_request(pairs), byte_by_byte=size < 300,
                       max_params_size=limit)
    assert events == [received(expected, 1, False), EndOfBody(1)]
    assert core.decode_pairs(block, 10) == expected


def test_four_byte_length_for_a_short_item_is_accepted():
    """§3.4 allows the 4-byte form for any length; the high bit marks it."""
    block = b"\x80\x00\x00\x01\x80\x00\x00\x02" + b"Axy" + b"\x01\x00B"
    events, _, _ = run(begin_request(1) + fc.stream(fc.PARAMS, 1, block) + stdin_end())
    assert events[0].params == {"A": "xy", "B": "", "FCGI_ROLE": "RESPONDER"}


@pytest.mark.parametrize("padding", [0, 1, 7, 8, 255])
def test_padding(padding):
    data = build_request(PAIRS, b"body" * 10, params_record_size=50, stdin_record_size=13,
                         padding=padding)
    data += record(fc.GET_VALUES, 0, encode_pairs([("FCGI_MPXS_CONNS", "")]), padding)
    events, outgoing, _ = run(data)
    assert events == [received(dict(PAIRS), 1, False), Data(b"body" * 10, 1), EndOfBody(1)]
    assert parse_records(outgoing) == [
        (fc.GET_VALUES_RESULT, 0, encode_pairs([("FCGI_MPXS_CONNS", "0")]))]


def test_duplicate_names_are_joined():
    pairs = [("HTTP_ACCEPT", "text/html"), ("HTTP_COOKIE", "a=1"), ("HTTP_ACCEPT", "*/*"),
             ("HTTP_COOKIE", "b=2"), ("HTTP_COOKIE", "c=3"), ("HTTP_X_EMPTY", ""),
             ("HTTP_X_EMPTY", "")]
    events, _, _ = run(build_request(pairs, params_record_size=11))
    assert events[0].params == {"HTTP_ACCEPT": "text/html, */*",
                                "HTTP_COOKIE": "a=1; b=2; c=3", "HTTP_X_EMPTY": ", ",
                                "FCGI_ROLE": "RESPONDER"}


def test_names_and_values_are_latin1_code_points():
    pairs = [(b"PATH_INFO", "/café/€".encode()), (b"HTTP_X_\xff\x80", bytes(range(256))),
             (b"NUL\x00NAME", b"\x00")]
    events, _, _ = run(build_request(pairs))
    params = events[0].params
    assert params["PATH_INFO"] == "/caf\xc3\xa9/\xe2\x82\xac"
    assert params["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/€"
    assert params["HTTP_X_\xff\x80"] == bytes(range(256)).decode("latin-1")
    assert params["NUL\x00NAME"] == "\x00"
    assert all(type(k) is str and type(v) is str for k, v in params.items())


# -- limits -------------------------------------------------------------------------------


def params_of_size(size):
    """A PARAMS block of exactly ``size`` bytes (one pair named X)."""
    block = encode_pairs([("X", "v" * (size - 3 if size < 131 else size - 6))])
    assert len(block) == size
    return block


@pytest.mark.parametrize("limit", [10, 100, 65535, 65536, 100000])
def test_params_size_limit(limit):
    ok = begin_request(1) + fc.stream(fc.PARAMS, 1, params_of_size(limit), 1000) + stdin_end()
    events, _, _ = run(ok, byte_by_byte=limit < 200, max_params_size=limit)
    assert events[0].params.pop("FCGI_ROLE") == "RESPONDER"  # ours: not counted
    assert len(encode_pairs(events[0].params)) == limit
    over = begin_request(1) + fc.stream(fc.PARAMS, 1, params_of_size(limit + 1), 1000)
    check_invalid(over, ParamsTooLarge, byte_by_byte=limit < 200, max_params_size=limit)


def test_params_size_limit_is_checked_before_the_stream_ends():
    conn = Connection(max_params_size=1000)
    conn.feed(begin_request(1) + record(fc.PARAMS, 1, b"\x01\x05A"))
    with pytest.raises(ParamsTooLarge):
        conn.feed(record(fc.PARAMS, 1, b"x" * 998))  # 1001 bytes, no end record yet


@pytest.mark.parametrize("limit", [1, 2, 1000])
def test_params_count_limit(limit):
    pairs = [("H%d" % i, "v") for i in range(limit)]
    events, _, _ = run(build_request(pairs), byte_by_byte=limit < 10, max_params=limit)
    assert len(events[0].params) == limit + 1  # and FCGI_ROLE, not counted
    check_invalid(build_request(pairs + [("EXTRA", "")]), TooManyParams, byte_by_byte=False,
                  max_params=limit)


def test_params_count_limit_counts_repeated_names():
    check_invalid(build_request([("A", "1")] * 3), TooManyParams, max_params=2)


# -- FCGI_BEGIN_REQUEST: roles and multiplexing ------------------------------------------------


@pytest.mark.parametrize("state", ["params", "stdin", "running"])
@pytest.mark.parametrize("role", [fc.RESPONDER, fc.AUTHORIZER])
def test_second_begin_request_is_refused_and_the_first_continues(state, role):
    head = {"params": begin_request(1, keep_conn=True) + record(fc.PARAMS, 1, b"\x01\x01A"),
            "stdin": active(GET, keep_conn=True) + record(fc.STDIN, 1, b"in"),
            "running": active(GET, keep_conn=True) + record(fc.STDIN, 1, b"in") + stdin_end()}
    intruder = (begin_request(2, role=role, keep_conn=False)
                + fc.stream(fc.PARAMS, 2, encode_pairs(GET)) + record(fc.STDIN, 2, b"zz")
                + stdin_end(2) + abort(2))
    rest = {"params": record(fc.PARAMS, 1, b"1") + record(fc.PARAMS, 1)
            + record(fc.STDIN, 1, b"in") + stdin_end(),
            "stdin": stdin_end(), "running": b""}
    events, outgoing, conn = run(head[state] + intruder + rest[state])
    params = {"A": "1"} if state == "params" else GET
    assert events == [received(params, 1, True), Data(b"in", 1), EndOfBody(1)]
    assert outgoing == end_request(2, fc.CANT_MPX_CONN)
    assert conn.request_id == 1 and not conn.should_close
    out = parse_records(conn.end_request(b"done"))
    assert {r[1] for r in out} == {1}


# -- management records -------------------------------------------------------------------------

NAMES = ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"]


@pytest.mark.parametrize("asked", [
    NAMES,
    list(reversed(NAMES)),
    ["FCGI_MPXS_CONNS"],
    ["FCGI_MAX_REQS", "UNKNOWN", "fcgi_max_conns", "FCGI_MAX_CONNS"],
    ["NOT_A_VALUE"],
    [],
])
def test_get_values(asked):
    data = record(fc.GET_VALUES, 0, encode_pairs([(name, "") for name in asked]))
    events, outgoing, conn = run(data, max_conns=8, max_reqs=16)
    truth = {"FCGI_MAX_CONNS": "8", "FCGI_MAX_REQS": "16", "FCGI_MPXS_CONNS": "0"}
    assert events == [] and conn.request_id == 0 and not conn.should_close
    [(rtype, rid, content)] = parse_records(outgoing)
    assert (rtype, rid) == (fc.GET_VALUES_RESULT, 0)
    assert fc.decode_pairs(content) == [
        (name.encode(), truth[name].encode()) for name in asked if name in truth]


def test_get_values_defaults_and_values_sent_with_the_names():
    data = record(fc.GET_VALUES, 0, encode_pairs([("FCGI_MAX_CONNS", "999")]))
    _, outgoing, _ = run(data)
    assert parse_records(outgoing) == [
        (fc.GET_VALUES_RESULT, 0, encode_pairs([("FCGI_MAX_CONNS", "1")]))]


def test_get_values_in_the_middle_of_a_request():
    data = (begin_request(1) + record(fc.PARAMS, 1, encode_pairs(GET)[:5])
            + fc.get_values(["FCGI_MAX_REQS"])
            + record(fc.PARAMS, 1, encode_pairs(GET)[5:]) + record(fc.PARAMS, 1)
            + fc.get_values(["FCGI_MPXS_CONNS"]) + record(fc.STDIN, 1, b"x") + stdin_end())
    events, outgoing, _ = run(data, max_reqs=3)
    assert events == [received(GET, 1, False), Data(b"x", 1), EndOfBody(1)]
    assert parse_records(outgoing) == [
        (fc.GET_VALUES_RESULT, 0, encode_pairs([("FCGI_MAX_REQS", "3")])),
        (fc.GET_VALUES_RESULT, 0, encode_pairs([("FCGI_MPXS_CONNS", "0")]))]


@pytest.mark.parametrize("rtype", [0, 12, 13, 100, 255])
def test_unknown_management_type(rtype):
    data = record(rtype, 0, b"whatever") + record(rtype, 0) + build_request(GET)
    events, outgoing, _ = run(data)
    assert events == [received(GET, 1, False), EndOfBody(1)]  # not fatal
    answer = record(fc.UNKNOWN_TYPE, 0, bytes((rtype,)) + bytes(7))
    assert outgoing == answer + answer
    assert parse_records(outgoing)[0][2][0] == rtype


# -- inactive request ids -----------------------------------------------------------------------


def foreign(rid):
    """Request records for ``rid`` that must be ignored while ``rid`` is not active."""
    return (record(fc.PARAMS, rid, encode_pairs(GET)) + record(fc.PARAMS, rid)
            + record(fc.STDIN, rid, b"zz") + record(fc.STDIN, rid) + abort(rid)
            + record(fc.DATA, rid, b"data") + record(fc.DATA, rid))


def test_records_for_inactive_ids_are_ignored_when_idle():
    events, outgoing, conn = run(foreign(5) + foreign(1) + build_request(GET, request_id=5))
    assert events == [received(GET, 5, False), EndOfBody(5)]
    assert outgoing == b"" and conn.request_id == 5


def test_records_for_inactive_ids_are_ignored_during_a_request():
    data = active() + foreign(2) + foreign(65535) + record(fc.STDIN, 1, b"in") + stdin_end()
    events, outgoing, _ = run(data)
    assert events == [received(GET, 1, False), Data(b"in", 1), EndOfBody(1)]
    assert outgoing == b""


def test_records_for_an_ended_request_are_ignored():
    conn = Connection()
    conn.feed(build_request(GET, keep_conn=True))
    conn.end_request(b"x")
    assert conn.feed(record(fc.STDIN, 1, b"late") + stdin_end() + abort(1)
                     + record(fc.PARAMS, 1)) == []
    assert conn.outgoing == b"" and conn.request_id == 0


def test_data_records_of_the_active_request_are_ignored():
    data = active() + record(fc.DATA, 1, b"file") + record(fc.DATA, 1) + stdin_end()
    events, _, _ = run(data)
    assert events == [received(GET, 1, False), EndOfBody(1)]


# -- FCGI_ABORT_REQUEST -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["after begin", "mid params", "after params", "mid stdin",
                                   "after stdin"])
def test_abort_becomes_an_event(where):
    parts = {
        "after begin": begin_request(1, keep_conn=True),
        "mid params": begin_request(1, keep_conn=True) + record(fc.PARAMS, 1, b"\x01\x01A"),
        "after params": active(keep_conn=True),
        "mid stdin": active(keep_conn=True) + record(fc.STDIN, 1, b"part"),
        "after stdin": active(keep_conn=True) + record(fc.STDIN, 1, b"part") + stdin_end(),
    }
    events, outgoing, conn = run(parts[where] + abort(1))
    assert events[-1] == Abort(1) and outgoing == b""
    assert conn.request_id == 1  # the server ends it, with a real FCGI_END_REQUEST
    out = parse_records(conn.end_request(b"", 1))
    assert out == [(fc.STDOUT, 1, b""), (fc.END_REQUEST, 1, struct.pack(">IB3x", 1, 0))]
    assert conn.request_id == 0 and not conn.should_close
    # Whatever the web server still sends for the aborted request is ignored,
    # and the connection takes the next request.
    assert conn.feed(record(fc.STDIN, 1, b"late") + stdin_end() + build_request(GET)) == [
        received(GET, 1, False), EndOfBody(1)]


def test_abort_twice():
    events, _, _ = run(active() + abort(1) + abort(1))
    assert events[-2:] == [Abort(1), Abort(1)]


# -- output ---------------------------------------------------------------------------------------


def started(rid=1, keep_conn=False):
    conn = Connection()
    conn.feed(build_request(GET, request_id=rid, keep_conn=keep_conn))
    return conn


@pytest.mark.parametrize("app_status", [0, 1, 255, 2**31, 2**32 - 1])
def test_end_request_without_stderr(app_status):
    conn = started(9)
    out = parse_records(conn.end_request(b"Status: 200 OK\r\n\r\nhi", app_status))
    assert out == [(fc.STDOUT, 9, b"Status: 200 OK\r\n\r\nhi"), (fc.STDOUT, 9, b""),
                   (fc.END_REQUEST, 9, struct.pack(">IB3x", app_status, fc.REQUEST_COMPLETE))]
    assert fc.Response(out, 9).app_status == app_status


def test_end_request_negative_app_status_wraps():
    out = parse_records(started().end_request(b"", -1))
    assert fc.end_request_body(out[-1][2]) == (2**32 - 1, 0)


def test_end_request_with_empty_data():
    assert parse_records(started().end_request()) == [
        (fc.STDOUT, 1, b""), (fc.END_REQUEST, 1, struct.pack(">IB3x", 0, 0))]


def test_end_request_after_stderr():
    conn = started()
    out = conn.stdout(b"Status: 200 OK\r\n\r\n") + conn.stderr(b"warning\n")
    out += conn.stdout(b"body") + conn.stderr(b"more\n") + conn.end_request(b"!", 3)
    assert parse_records(out) == [
        (fc.STDOUT, 1, b"Status: 200 OK\r\n\r\n"), (fc.STDERR, 1, b"warning\n"),
        (fc.STDOUT, 1, b"body"), (fc.STDERR, 1, b"more\n"), (fc.STDOUT, 1, b"!"),
        (fc.STDOUT, 1, b""), (fc.STDERR, 1, b""),
        (fc.END_REQUEST, 1, struct.pack(">IB3x", 3, 0))]
    response = fc.Response(parse_records(out))
    assert response.body == b"body!" and response.stderr == b"warning\nmore\n"
    assert response.stdout_ended and response.stderr_ended


def test_stderr_of_one_request_does_not_end_stderr_of_the_next():
    conn = started(keep_conn=True)
    conn.stderr(b"x")
    conn.end_request()
    conn.feed(build_request(GET, request_id=2))
    assert parse_records(conn.end_request()) == [
        (fc.STDOUT, 2, b""), (fc.END_REQUEST, 2, struct.pack(">IB3x", 0, 0))]


@pytest.mark.parametrize("size", [1, 65534, 65535, 65536, 131070, 131071, 200000])
@pytest.mark.parametrize("stream", ["stdout", "stderr", "end_request"])
def test_output_is_split_into_records_of_at_most_65535_bytes(size, stream):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    conn = started()
    out = parse_records(getattr(conn, stream)(data))
    if stream == "end_request":
        assert out[-2:] == [(fc.STDOUT, 1, b""), (fc.END_REQUEST, 1, bytes(8))]
        out = out[:-2]
    rtype = fc.STDERR if stream == "stderr" else fc.STDOUT
    assert all(r[:2] == (rtype, 1) for r in out)
    lengths = [len(r[2]) for r in out]
    assert lengths == [65535] * (size // 65535) + ([size % 65535] if size % 65535 else [])
    assert b"".join(r[2] for r in out) == data


def test_output_accepts_memoryview_and_bytearray():
    conn = started()
    data = bytes(range(200)) * 700
    assert conn.stdout(memoryview(data)) == conn.stdout(bytearray(data)) == conn.stdout(data)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_empty_output_is_no_record(stream):
    conn = started()
    assert getattr(conn, stream)(b"") == b""


def test_core_encoders_agree_with_the_client():
    assert core.record(fc.STDOUT, 3, b"abc") == record(fc.STDOUT, 3, b"abc")
    data = bytes(200000)
    assert core.stream_records(fc.STDIN, 2, data) + core.record(fc.STDIN, 2) == fc.stream(
        fc.STDIN, 2, data)


# -- events ---------------------------------------------------------------------------------------


def test_events():
    assert Request({"A": "1"}, None, 1, True) == Request({"A": "1"}, None, 1, True)
    assert Request({"A": "1"}, None, 1, True) != Request({"A": "1"}, None, 1, False)
    assert Data(b"x", 1) != Data(b"x", 2) and EndOfBody(1) != Abort(1)
    assert Abort(3) == Abort(3) and EndOfBody(1) == EndOfBody(1)
    assert repr(Data(b"x", 1)) == "Data(data=b'x', request_id=1)"
    assert repr(Abort(2)) == "Abort(request_id=2)"
    with pytest.raises(AttributeError):
        Data(b"x", 1).other = 1  # slotted
    with pytest.raises(TypeError):
        hash(Abort(1))


# -- invalid input --------------------------------------------------------------------------------


def bad_version(version):
    data = bytearray(record(fc.PARAMS, 1, b"x"))
    data[0] = version
    return bytes(data)


INVALID = [
    ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", UnsupportedVersion),
    ("http post", b"POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n", UnsupportedVersion),
    ("tls client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
     UnsupportedVersion),
    ("garbage", b"\xde\xad\xbe\xef" * 8, UnsupportedVersion),
    ("zeros", bytes(16), UnsupportedVersion),
    ("version 0", bad_version(0), UnsupportedVersion),
    ("version 2", bad_version(2), UnsupportedVersion),
    ("version 2 after a request", build_request(GET, keep_conn=True) + bad_version(2),
     UnsupportedVersion),
    ("bad version mid-request", active() + bad_version(0x81), UnsupportedVersion),
    ("STDOUT from the web server", active() + record(fc.STDOUT, 1, b"x"), UnexpectedRecordType),
    ("empty STDOUT", active() + record(fc.STDOUT, 1), UnexpectedRecordType),
    ("STDERR", active() + record(fc.STDERR, 1, b"x"), UnexpectedRecordType),
    ("END_REQUEST", active() + end_request(1, 0), UnexpectedRecordType),
    ("END_REQUEST idle", end_request(1, 0), UnexpectedRecordType),
    ("STDOUT inactive id", record(fc.STDOUT, 4, b"x"), UnexpectedRecordType),
    ("STDOUT id 0", record(fc.STDOUT, 0, b"x"), UnexpectedRecordType),
    ("GET_VALUES_RESULT", record(fc.GET_VALUES_RESULT, 0), UnexpectedRecordType),
    ("UNKNOWN_TYPE", record(fc.UNKNOWN_TYPE, 0, bytes(8)), UnexpectedRecordType),
    ("UNKNOWN_TYPE for the request", active() + record(fc.UNKNOWN_TYPE, 1, bytes(8)),
     UnexpectedRecordType),
    ("unknown type for the request", active() + record(12, 1, b"x"), UnknownRecordType),
    ("type 255 for the request", active() + record(255, 1), UnknownRecordType),
    ("unknown type inactive id", record(12, 3, b"x"), UnknownRecordType),
    ("BEGIN body of 7 bytes", record(fc.BEGIN_REQUEST, 1, bytes([0, 1, 1, 0, 0, 0, 0])),
     BadBeginRequest),
    ("BEGIN body of 9 bytes", record(fc.BEGIN_REQUEST, 1, bytes([0, 1, 1]) + bytes(6)),
     BadBeginRequest),
    ("BEGIN empty body", record(fc.BEGIN_REQUEST, 1), BadBeginRequest),
    ("BEGIN of 7 bytes while active", active() + record(fc.BEGIN_REQUEST, 2, bytes(7)),
     BadBeginRequest),
    ("BEGIN id 0", begin_request(0), BadBeginRequest),
    ("BEGIN id 0 while active", active() + begin_request(0), BadBeginRequest),
    ("duplicate BEGIN", begin_request(1) + begin_request(1), DuplicateBeginRequest),
    ("duplicate BEGIN after params", active() + begin_request(1), DuplicateBeginRequest),
    ("duplicate BEGIN running", active() + stdin_end() + begin_request(1, keep_conn=True),
     DuplicateBeginRequest),
    ("PARAMS id 0", record(fc.PARAMS, 0, encode_pairs(GET)), MissingRequestId),
    ("STDIN id 0", active() + record(fc.STDIN, 0, b"x"), MissingRequestId),
    ("ABORT id 0", active() + abort(0), MissingRequestId),
    ("DATA id 0", record(fc.DATA, 0), MissingRequestId),
    ("GET_VALUES for a request", record(fc.GET_VALUES, 5, encode_pairs([("FCGI_MAX_CONNS", "")])),
     ManagementRecordForRequest),
    ("pair overruns the stream", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\x01\x0aAshort"),
     MalformedParams),
    ("pair overruns by one", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\x02\x02ABx"),
     MalformedParams),
    ("name length cut off", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\x01\x01AB\x80\x00"),
     MalformedParams),
    ("value length missing", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\x01\x01AB\x05"),
     MalformedParams),
    ("value length cut off", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\x01\x80\x00\x00"),
     MalformedParams),
    ("huge length", begin_request(1) + fc.stream(fc.PARAMS, 1, b"\xff\xff\xff\xff\x00"),
     MalformedParams),
    ("GET_VALUES malformed", record(fc.GET_VALUES, 0, b"\x0e\x00FCGI_MAX"), MalformedParams),
    ("PARAMS over 64 KiB", begin_request(1) + fc.stream(fc.PARAMS, 1, params_of_size(65537)),
     ParamsTooLarge),
    ("1001 params", build_request([("H%d" % i, "") for i in range(1001)]), TooManyParams),
    ("GET_VALUES with 1001 names", fc.get_values(["N%d" % i for i in range(1001)]),
     TooManyParams),
    ("STDIN before PARAMS end", begin_request(1) + record(fc.PARAMS, 1, encode_pairs(GET))
     + record(fc.STDIN, 1, b"x"), StdinBeforeParams),
    ("empty STDIN before PARAMS end", begin_request(1) + stdin_end(), StdinBeforeParams),
    ("PARAMS after its end", active() + record(fc.PARAMS, 1, b"\x01\x01AB"), StreamAfterEnd),
    ("empty PARAMS after its end", active() + record(fc.PARAMS, 1), StreamAfterEnd),
    ("STDIN after its end", active() + stdin_end() + record(fc.STDIN, 1, b"x"), StreamAfterEnd),
    ("empty STDIN twice", active() + stdin_end() + stdin_end(), StreamAfterEnd),
]


@pytest.mark.parametrize(("data", "error"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid(data, error):
    check_invalid(data, error, byte_by_byte=len(data) < 20000)


def test_invalid_corpus_covers_every_error():
    defined = {obj for obj in vars(core).values()
               if isinstance(obj, type) and issubclass(obj, FastCGIError)} - {FastCGIError}
    assert defined == set(ERRORS)
    assert {case[2] for case in INVALID} == set(ERRORS)


@pytest.mark.parametrize("error", ERRORS)
def test_default_reason_is_the_docstring(error):
    assert issubclass(error, FastCGIError) and issubclass(error, ProtocolError)
    assert error().reason == error.__doc__.strip().splitlines()[0]
    assert error("specific").reason == "specific"


def test_error_messages_name_the_culprit():
    with pytest.raises(UnsupportedVersion, match="HTTP request"):
        Connection().feed(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(UnsupportedVersion, match="version 2"):
        Connection().feed(bad_version(2))
    with pytest.raises(UnknownRecordType, match="type 12"):
        raise_error(Connection(), active() + record(12, 1))
    with pytest.raises(BadBeginRequest, match="7 bytes"):
        Connection().feed(record(fc.BEGIN_REQUEST, 1, bytes(7)))
    with pytest.raises(DuplicateBeginRequest, match="request id 3"):
        raise_error(Connection(), begin_request(3) + begin_request(3))


@pytest.mark.parametrize("active_request", [False, True], ids=["idle", "active"])
def test_get_values_with_a_request_id_is_management_record_for_request(active_request):
    data = (active() if active_request else b"") + record(
        fc.GET_VALUES, 1, encode_pairs([("FCGI_MAX_CONNS", "")]))
    check_invalid(data, ManagementRecordForRequest)


@pytest.mark.parametrize("data", [
    build_request(PAIRS, b"0123456789", keep_conn=True, params_record_size=9),
    build_request({"REQUEST_METHOD": "GET"}),
], ids=["body", "no body"])
def test_truncated_anywhere_is_mid_record_or_mid_request(data):
    for cut in range(1, len(data)):
        conn = Connection()
        conn.feed(data[:cut])
        assert conn.busy, cut
        with pytest.raises(Truncated):
            conn.eof()
        with pytest.raises(Truncated):  # the error state: it stays closed
            conn.feed(data[cut:])
        conn = Connection()
        conn.feed(data[:cut])
        conn.feed(data[cut:])
        with pytest.raises(Truncated, match="connection closed during request 1"):
            conn.eof()
    conn = Connection()
    conn.feed(data)
    conn.end_request()
    assert conn.eof() == [] and not conn.mid_record and not conn.busy


def test_eof_reasons():
    assert Connection().eof() == []
    conn = Connection()
    conn.feed(b"\x01\x01")
    assert conn.mid_record and conn.busy
    with pytest.raises(Truncated, match="connection closed in the middle of a record"):
        conn.eof()
    conn = Connection()
    conn.feed(b"\x01\x01")
    conn.feed(b"\x00\x01\x00\x08\x00\x00" + bytes([0, 1, 0, 0, 0, 0, 0]))
    assert conn.mid_record
    conn.feed(b"\x00")
    assert not conn.mid_record and conn.busy
    with pytest.raises(Truncated, match="connection closed during request 1"):
        conn.eof()


# -- property tests -------------------------------------------------------------------------------

latin1_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=300)
record_sizes = st.one_of(st.none(), st.integers(1, 400))


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(latin1_text, latin1_text, max_size=20),
       body=st.binary(max_size=5000), params_size=record_sizes, stdin_size=record_sizes,
       padding=st.integers(0, 255), keep_conn=st.booleans(), rid=st.integers(1, 65535),
       chunks=st.lists(st.integers(0, 500), min_size=1, max_size=60))
def test_round_trip(params, body, params_size, stdin_size, padding, keep_conn, rid, chunks):
    data = build_request(params, body, rid, keep_conn, params_record_size=params_size,
                         stdin_record_size=stdin_size, padding=padding)
    conn, events, at = Connection(max_params_size=1 << 20), [], 0
    for size in chunks:
        events += conn.feed(data[at:at + size])
        at += size
    events += conn.feed(data[at:])
    assert merged(events) == [received(params, rid, keep_conn)] + (
        [Data(body, rid)] if body else []) + [EndOfBody(rid)]
    assert conn.outgoing == b"" and not conn.mid_record


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=300), cut=st.integers(0, 300))
def test_garbage_only_raises_protocol_errors(data, cut):
    conn = Connection()
    try:
        conn.feed(data[:cut])
        conn.feed(data[cut:])
    except ProtocolError:
        pass


any_record = st.builds(
    record,
    st.sampled_from(list(range(14)) + [255]), st.sampled_from([0, 1, 2]),
    st.one_of(st.binary(max_size=40), st.just(bytes([0, 1, 1, 0, 0, 0, 0, 0])),
              st.just(bytes([0, 2, 0, 0, 0, 0, 0, 0])),
              st.just(encode_pairs(GET)), st.just(encode_pairs([("FCGI_MAX_CONNS", "")]))),
    st.sampled_from([0, 0, 1, 7]))


@settings(max_examples=1000, deadline=None)
@given(records=st.lists(any_record, max_size=12), cut=st.integers(0, 1000))
def test_random_records_only_raise_protocol_errors(records, cut):
    """Well-framed records of any type, id and content: events or a ProtocolError."""
    data = b"".join(records)
    conn = Connection(max_params_size=200)
    try:
        events = conn.feed(data[:cut]) + conn.feed(data[cut:])
    except ProtocolError:
        return
    for event in events:
        assert type(event) in (Request, Data, EndOfBody, Abort)
    for rtype, rid, _ in parse_records(conn.outgoing):
        # FCGI_STDOUT: the 500 page before FCGI_UNKNOWN_ROLE
        assert rtype in (fc.END_REQUEST, fc.GET_VALUES_RESULT, fc.UNKNOWN_TYPE, fc.STDOUT)
        assert rid == 0 or rtype in (fc.END_REQUEST, fc.STDOUT)


@settings(max_examples=500, deadline=None)
@given(at=st.integers(0, 10**6), byte=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_mutated_requests_parse_or_raise_protocol_errors(at, byte, cut):
    data = bytearray(build_request(GET, b"xyz", params_record_size=5))
    data[at % len(data)] = byte
    cut %= len(data)
    conn = Connection()
    try:
        conn.feed(bytes(data[:cut]))
        conn.feed(bytes(data[cut:]))
    except ProtocolError:
        pass


# -- the error state and its costs (issue: defects found by fuzzing) -------------------------


def test_a_violation_after_a_complete_request_delivers_the_request_first():
    conn = Connection()
    events = conn.feed(build_request(GET, b"body") + bad_version(2))
    assert merged(events) == [received(GET, 1, False), Data(b"body", 1), EndOfBody(1)]
    assert type(conn.error) is UnsupportedVersion
    for later in (b"", b"\0", build_request(GET)):
        with pytest.raises(UnsupportedVersion):
            conn.feed(later)


def test_a_violation_with_nothing_before_it_raises_at_once():
    conn = Connection()
    with pytest.raises(UnsupportedVersion):
        conn.feed(bad_version(2))
    with pytest.raises(UnsupportedVersion):
        conn.feed(build_request(GET))


@pytest.mark.parametrize("where", ["mid params", "after params", "mid stdin"])
def test_stdin_after_abort_in_the_same_read_is_dropped(where):
    head = {
        "mid params": begin_request(1, keep_conn=True) + record(fc.PARAMS, 1, b"\x01\x01A"),
        "after params": active(keep_conn=True),
        "mid stdin": active(keep_conn=True) + record(fc.STDIN, 1, b"part"),
    }[where]
    late = record(fc.STDIN, 1, b"late") + record(fc.PARAMS, 1) + stdin_end()
    events, _, conn = run(head + abort(1) + late)
    assert [type(e) for e in events if type(e) is not Request] == (
        [Data, Abort] if where == "mid stdin" else [Abort])
    assert conn.error is None
    conn.end_request(b"", 1)
    assert conn.feed(build_request(GET, request_id=2)) == [received(GET, 2, False), EndOfBody(2)]


def _garbage_after_errors(feed_bad, count=200):
    """How many objects the collector finds unreachable after ``count`` connections
    that ended in a protocol error and were dropped (0: no reference cycles)."""
    import gc

    gc.collect()
    gc.disable()
    try:
        for _ in range(count):
            feed_bad()
        return gc.collect()
    finally:
        gc.enable()


def test_a_connection_in_error_leaves_no_reference_cycle():
    def feed_bad():
        conn = Connection()
        try:
            raise_error(conn, build_request(GET) + bad_version(2))
        except ProtocolError:
            pass

    assert _garbage_after_errors(feed_bad) == 0


def test_many_answers_in_one_read_stay_linear():
    # 65,536 unknown management records in one read: each is answered with
    # FCGI_UNKNOWN_TYPE.  Appending to immutable bytes made this quadratic
    # (34 GB copied); linear, it takes a fraction of a second.
    import time

    count = 65536
    data = record(200, 0) * count
    conn = Connection()
    started = time.monotonic()
    assert conn.feed(data) == []
    answers = conn.data_to_send()
    assert time.monotonic() - started < 10.0
    assert len(answers) == 16 * count and conn.outgoing == b""
    assert parse_records(answers[:16]) == [(fc.UNKNOWN_TYPE, 0, bytes((200,)) + bytes(7))]


@pytest.mark.parametrize("size", [1, 7, 8, 4095, 4096, 4097, 40000])
def test_stderr_records_are_padded_and_small_when_asked(size):
    """HAProxy 2.6 crashes on an FCGI_STDERR record that fills its buffer alone (an
    unpadded one on its own, or one of 16 KB): the server asks for padded records of
    at most SAFE_STDERR_RECORD bytes."""
    conn = core.Connection(stderr_record_size=core.SAFE_STDERR_RECORD)
    conn.feed(build_request(GET))
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out = conn.stderr(data)
    pos, pieces = 0, []
    while pos < len(out):
        version, rtype, rid, clen, plen = struct.unpack_from(">BBHHB", out, pos)
        assert (version, rtype, rid) == (1, fc.STDERR, 1)
        assert 1 <= plen <= 8 and (clen + plen) % 8 == 0 and clen <= 4096
        pieces.append(out[pos + 8:pos + 8 + clen])
        assert out[pos + 8 + clen:pos + 8 + clen + plen] == bytes(plen)
        pos += 8 + clen + plen
    assert b"".join(pieces) == data and len(pieces) == -(-size // 4096)
