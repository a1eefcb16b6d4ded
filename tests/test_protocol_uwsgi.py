"""The sans-IO uwsgi core: every input fed whole, byte by byte and in random chunks.

Requests are built here with struct (an encoder of the test's own), so that
an encoder bug in gateways.protocol.uwsgi.make_request cannot cancel out a
decoder bug; the round trip through make_request is tested on its own.
"""

import gc
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.protocol import ProtocolError, Truncated
from gateways.protocol.events import Data, EndOfBody, Request
from gateways.protocol.uwsgi import (
    EmptyName,
    HeaderTooLarge,
    MalformedVars,
    TooManyVars,
    UnsupportedModifier,
    UWSGIRequestParser,
    make_request,
)

ERRORS = [UnsupportedModifier, HeaderTooLarge, MalformedVars, EmptyName, TooManyVars]


def pairs(*items):
    """A block of variables from (name, value) byte pairs."""
    return b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in items)


def packet(block, body=b"", modifier1=0, modifier2=0, size=None):
    return struct.pack("<BHB", modifier1, len(block) if size is None else size,
                       modifier2) + block + body


GET = pairs((b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/x"), (b"QUERY_STRING", b"a=1"))
GET_PARAMS = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "QUERY_STRING": "a=1"}


def splits(data):
    yield "whole", [data]
    yield "bytes", [data[i:i + 1] for i in range(len(data))]
    for seed in range(6):
        rng, chunks, at = random.Random(seed), [], 0
        while at < len(data):
            size = rng.choice((0, 1, 2, 3, 4, 5, 7, 16, 64, 300))
            chunks.append(data[at:at + size])
            at += size
        yield "seed %d" % seed, chunks


def feed_all(parser, chunks):
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def merged(events):
    out = []
    for event in events:
        if type(event) is Data and out and type(out[-1]) is Data:
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def parse(data, **limits):
    """The events of a complete request, the same for every split."""
    expected = None
    for label, chunks in splits(data):
        parser = UWSGIRequestParser(**limits)
        events = feed_all(parser, chunks)
        assert parser.eof() == [] and parser.should_close and not parser.error, label
        bodies = [e.data for e in events if type(e) is Data]
        assert all(type(b) is bytes and b for b in bodies), label
        assert sum(map(len, bodies)) == events[0].content_length, label
        events = merged(events)
        if expected is None:
            expected = events
        assert events == expected, label
    return expected


def check_invalid(data, error, **limits):
    """Every split raises exactly ``error``; the parser stays dead."""
    for label, chunks in splits(data):
        parser = UWSGIRequestParser(**limits)
        with pytest.raises(ProtocolError) as info:
            feed_all(parser, chunks)
        assert type(info.value) is error, (label, info.value)
        assert str(info.value) and info.value.reason == str(info.value)
        assert type(parser.error) is error
        with pytest.raises(error):
            parser.feed(b"more")
        with pytest.raises(error):
            parser.eof()


# -- valid requests ---------------------------------------------------------------------------


def test_get():
    assert parse(packet(GET)) == [Request(GET_PARAMS, 0), EndOfBody()]


def test_post_body_to_content_length():
    block = pairs((b"REQUEST_METHOD", b"POST"), (b"CONTENT_LENGTH", b"11"))
    events = parse(packet(block, b"hello world"))
    assert events == [Request({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "11"}, 11),
                      Data(b"hello world"), EndOfBody()]


def test_bytes_after_the_body_are_ignored():
    block = pairs((b"CONTENT_LENGTH", b"3"),)
    parser = UWSGIRequestParser()
    events = parser.feed(packet(block, b"abcXYZ"))
    assert events == [Request({"CONTENT_LENGTH": "3"}, 3), Data(b"abc"), EndOfBody()]
    assert parser.feed(b"more") == [] and parser.should_close


def test_no_variables_at_all():
    assert parse(packet(b"")) == [Request({}, 0), EndOfBody()]


def test_values_are_latin1_code_points():
    block = pairs((b"PATH_INFO", "/h\u00e9".encode("utf-8")), (b"HTTP_X", b"\xff"))
    [request, _] = parse(packet(block))
    assert request.params == {"PATH_INFO": "/h\xc3\xa9", "HTTP_X": "\xff"}


def test_repeated_headers_are_joined_and_other_names_take_the_last_value():
    block = pairs((b"HTTP_ACCEPT", b"a"), (b"PATH_INFO", b"/first"), (b"HTTP_ACCEPT", b"b"),
                  (b"HTTP_COOKIE", b"x=1"), (b"HTTP_COOKIE", b"y=2"), (b"PATH_INFO", b"/last"))
    [request, _] = parse(packet(block))
    assert request.params == {"HTTP_ACCEPT": "a, b", "PATH_INFO": "/last",
                              "HTTP_COOKIE": "x=1; y=2"}


def test_modifier2_is_not_looked_at():
    assert parse(packet(GET, modifier2=7)) == [Request(GET_PARAMS, 0), EndOfBody()]


def test_modifier1_30_strips_script_name_from_path_info():
    block = pairs((b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/app/x/y"))
    [request, _] = parse(packet(block, modifier1=30))
    assert request.params == {"SCRIPT_NAME": "/app", "PATH_INFO": "/x/y"}
    other = pairs((b"SCRIPT_NAME", b"/app"), (b"PATH_INFO", b"/other"))
    assert parse(packet(other, modifier1=30))[0].params["PATH_INFO"] == "/other"


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1e3", b" 12", b"9" * 21])
def test_a_bad_content_length_frames_no_body(value):
    # The server answers 400 from the params; the framing has no body.
    block = pairs((b"CONTENT_LENGTH", value),)
    assert parse(packet(block)) == [Request({"CONTENT_LENGTH": value.decode()}, 0),
                                    EndOfBody()]


def test_leading_zeros_in_a_long_content_length():
    block = pairs((b"CONTENT_LENGTH", b"0" * 5000 + b"2"),)
    assert parse(packet(block, b"ok"), max_header_size=65535)[1:] == [Data(b"ok"), EndOfBody()]


def test_largest_block_the_protocol_allows():
    block = pairs((b"HTTP_X", b"v" * (65535 - 2 - 6 - 2)),)
    assert len(block) == 65535
    assert parse(packet(block), max_header_size=65535)[0].params["HTTP_X"] == "v" * 65525


# -- the core interface -----------------------------------------------------------------------


def test_busy_from_the_first_byte():
    parser = UWSGIRequestParser()
    assert not parser.busy and parser.data_to_send() == b""
    parser.feed(b"\0")
    assert parser.busy and not parser.should_close


@pytest.mark.parametrize(("cut", "reason"), [
    (1, "after 1 bytes of the request's header"), (6, "after 6 bytes of the request's variables"),
])
def test_eof_in_the_middle_is_truncated(cut, reason):
    parser = UWSGIRequestParser()
    parser.feed(packet(GET)[:cut])
    with pytest.raises(Truncated, match=reason):
        parser.eof()


def test_eof_in_the_body_is_truncated():
    parser = UWSGIRequestParser()
    parser.feed(packet(pairs((b"CONTENT_LENGTH", b"4"),), b"abc"))
    with pytest.raises(Truncated, match="3 of 4 body bytes"):
        parser.eof()


def test_eof_before_anything_is_truncated_too():
    with pytest.raises(Truncated):
        UWSGIRequestParser().eof()


# -- violations -------------------------------------------------------------------------------


@pytest.mark.parametrize("modifier1", [1, 5, 7, 9, 17, 72, 100, 255])
def test_other_modifiers_are_not_ours(modifier1):
    check_invalid(packet(GET, modifier1=modifier1), UnsupportedModifier)


def test_unsupported_modifier_names_the_packet_type():
    with pytest.raises(UnsupportedModifier, match=r"modifier1 5 .*PSGI"):
        UWSGIRequestParser().feed(packet(GET, modifier1=5))


INVALID = [
    ("vars over the limit", packet(GET), HeaderTooLarge, {"max_header_size": 20}),
    ("name length cut off", packet(GET + b"\x05"), MalformedVars, {}),
    ("name past the end", packet(b"\x05\x00ab"), MalformedVars, {}),
    ("value past the end", packet(pairs((b"A", b"1")) + b"\x01\x00B\x09\x00xy"), MalformedVars,
     {}),
    ("value length cut off", packet(b"\x01\x00A\x01"), MalformedVars, {}),
    ("empty name", packet(pairs((b"", b"x"),)), EmptyName, {}),
    ("too many", packet(pairs(*[(b"V%d" % i, b"") for i in range(11)])), TooManyVars,
     {"max_params": 10}),
]


@pytest.mark.parametrize(("data", "error", "limits"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid(data, error, limits):
    check_invalid(data, error, **limits)


def test_a_too_large_block_is_refused_from_the_header_alone():
    parser = UWSGIRequestParser(max_header_size=100)
    with pytest.raises(HeaderTooLarge, match="60000 bytes"):
        parser.feed(struct.pack("<BHB", 0, 60000, 0))


def test_every_error_class_is_tested_and_documented():
    tested = {case[2] for case in INVALID} | {UnsupportedModifier}
    assert tested == set(ERRORS)
    for error in ERRORS:
        assert issubclass(error, ProtocolError) and error.__doc__


def test_a_parser_in_error_leaves_no_reference_cycle():
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            parser = UWSGIRequestParser()
            for data in (packet(GET, modifier1=5), b"y"):
                try:
                    parser.feed(data)
                except ProtocolError:
                    pass
        assert gc.collect() == 0
    finally:
        gc.enable()


# -- make_request and property tests ------------------------------------------------------


def test_make_request_matches_the_test_encoder():
    assert make_request(GET_PARAMS) == packet(GET)
    assert make_request({"A": "1"}, b"xy", modifier1=30, modifier2=1) == packet(
        pairs((b"A", b"1"), (b"CONTENT_LENGTH", b"2")), b"xy", 30, 1)
    with pytest.raises(ValueError, match="65535"):
        make_request({"A": "x" * 65531})


names = st.text(st.characters(min_codepoint=1, max_codepoint=255), min_size=1, max_size=30)
latin1_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=200)


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(names.filter(lambda n: n != "CONTENT_LENGTH"), latin1_text,
                              max_size=30),
       body=st.binary(max_size=3000), sizes=st.lists(st.integers(0, 200), max_size=40))
def test_round_trip(params, body, sizes):
    data = make_request(params, body)
    parser, events, at = UWSGIRequestParser(), [], 0
    for size in sizes:
        events += parser.feed(data[at:at + size])
        at += size
    events += parser.feed(data[at:])
    assert parser.eof() == []
    expected = dict(params, CONTENT_LENGTH=str(len(body))) if body else params
    assert merged(events) == [Request(expected, len(body))] + (
        [Data(body)] if body else []) + [EndOfBody()]


@settings(max_examples=500, deadline=None)
@given(at=st.integers(0, 10**6), byte=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_mutated_requests_parse_or_raise_protocol_errors(at, byte, cut):
    data = bytearray(packet(pairs((b"REQUEST_METHOD", b"POST"), (b"CONTENT_LENGTH", b"3")),
                            b"xyz"))
    data[at % len(data)] = byte
    cut %= len(data)
    parser = UWSGIRequestParser()
    try:
        events = parser.feed(bytes(data[:cut])) + parser.feed(bytes(data[cut:]))
        parser.eof()
    except ProtocolError:
        return
    assert type(events[0]) is Request and events[-1] == EndOfBody()


@given(data=st.binary(max_size=300))
def test_garbage_only_raises_protocol_errors(data):
    parser = UWSGIRequestParser()
    try:
        parser.feed(data)
        parser.eof()
    except ProtocolError:
        pass
