"""The sans-IO SCGI parser: every input fed whole, byte by byte and in random chunks."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.protocol import ProtocolError
from gateways.protocol.events import Data, EndOfBody, Request
from gateways.protocol.scgi import (
    BadContentLength,
    BadNetstringLength,
    BadSCGIVersion,
    ContentLengthNotFirst,
    DuplicateHeader,
    EmptyName,
    HeaderTooLarge,
    LeadingZero,
    MalformedHeaders,
    MissingColon,
    MissingComma,
    MissingSCGI,
    SCGIRequestParser,
    TooManyHeaders,
    Truncated,
    make_request,
)

ERRORS = [
    BadNetstringLength, LeadingZero, HeaderTooLarge, MissingColon, MissingComma,
    MalformedHeaders, EmptyName, ContentLengthNotFirst, BadContentLength, MissingSCGI,
    BadSCGIVersion, DuplicateHeader, TooManyHeaders, Truncated,
]

# The example of the spec, §5, byte for byte.
SPEC_EXAMPLE = (
    b"70:"
    b"CONTENT_LENGTH\x0027\x00"
    b"SCGI\x001\x00"
    b"REQUEST_METHOD\x00POST\x00"
    b"REQUEST_URI\x00/deepthought\x00"
    b","
    b"What is the answer to life?"
)


def netstring(block):
    return b"%d:%s," % (len(block), block)


def headers(*pairs):
    """A header block from (name, value) byte pairs, each NUL-terminated."""
    return b"".join(name + b"\0" + value + b"\0" for name, value in pairs)


CL0, SCGI1 = (b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1")


def splits(data):
    """(label, chunks): whole, byte by byte, and random chunks (some empty) for a few seeds."""
    yield "whole", [data]
    yield "bytes", [data[i:i + 1] for i in range(len(data))]
    for seed in range(6):
        rng, chunks, at = random.Random(seed), [], 0
        while at < len(data):
            size = rng.choice((0, 1, 2, 3, 7, 16, 64, 300))
            chunks.append(data[at:at + size])
            at += size
        yield f"seed {seed}", chunks


def feed_all(parser, chunks):
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def merged(events):
    """Events with consecutive Data chunks joined, so that any split compares equal."""
    out = []
    for event in events:
        if type(event) is Data and out and type(out[-1]) is Data:
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def parse(data, **limits):
    """The events of a complete request, checked to be the same for every split."""
    expected = None
    for label, chunks in splits(data):
        parser = SCGIRequestParser(**limits)
        events = feed_all(parser, chunks)
        assert parser.eof() == [], label
        assert parser.eof() == [], label  # idempotent once complete
        assert type(events[0]) is Request and events[-1] == EndOfBody(), label
        bodies = [e.data for e in events if type(e) is Data]
        assert all(type(b) is bytes and b for b in bodies), label
        assert sum(map(len, bodies)) == events[0].content_length, label
        events = merged(events)
        if expected is None:
            expected = events
        assert events == expected, label
    return expected


def test_spec_example():
    params = {"CONTENT_LENGTH": "27", "SCGI": "1", "REQUEST_METHOD": "POST",
              "REQUEST_URI": "/deepthought"}
    assert parse(SPEC_EXAMPLE) == [
        Request(params, 27), Data(b"What is the answer to life?"), EndOfBody()]
    assert make_request(params, b"What is the answer to life?") == SPEC_EXAMPLE


def test_minimal_request():
    data = make_request({})
    assert data == b"24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,"
    assert parse(data) == [Request({"CONTENT_LENGTH": "0", "SCGI": "1"}, 0), EndOfBody()]


def test_content_length_zero_ends_at_once():
    parser = SCGIRequestParser()
    data = make_request({"REQUEST_METHOD": "GET"})
    assert parser.feed(data[:-1]) == []
    assert parser.feed(data[-1:]) == [
        Request({"CONTENT_LENGTH": "0", "REQUEST_METHOD": "GET", "SCGI": "1"}, 0), EndOfBody()]


def test_body():
    body = bytes(range(256)) * 40
    events = parse(make_request({"REQUEST_METHOD": "POST"}, body))
    assert events[1:] == [Data(body), EndOfBody()]
    assert events[0].content_length == len(body)


def test_body_streams_as_it_arrives():
    parser = SCGIRequestParser()
    data = make_request({}, b"abcdef")
    head = len(data) - 6
    assert parser.feed(data[:head]) == [Request({"CONTENT_LENGTH": "6", "SCGI": "1"}, 6)]
    assert parser.feed(data[head:head + 2]) == [Data(b"ab")]
    assert parser.feed(bytearray(data[head + 2:])) == [Data(b"cdef"), EndOfBody()]


def test_content_length_may_have_leading_zeros():
    data = netstring(headers((b"CONTENT_LENGTH", b"007"), SCGI1)) + b"1234567"
    assert parse(data)[0].content_length == 7


def test_non_ascii_bytes_become_latin1_code_points():
    data = netstring(headers(CL0, SCGI1, (b"PATH_INFO", "/café".encode()),
                             (b"HTTP_X_\xff", b"\x80\xfe")))
    params = parse(data)[0].params
    assert params["PATH_INFO"] == "/caf\xc3\xa9"
    assert params["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café"
    assert params["HTTP_X_\xff"] == "\x80\xfe"
    assert all(type(k) is str and type(v) is str for k, v in params.items())


def test_empty_values():
    params = parse(make_request({"QUERY_STRING": "", "HTTP_X": ""}))[0].params
    assert params["QUERY_STRING"] == "" and params["HTTP_X"] == ""


def test_trailing_bytes_after_the_body_are_ignored():
    data = make_request({}, b"body")
    assert parse(data + b"GET / HTTP/1.1\r\n\r\n") == parse(data)
    parser = SCGIRequestParser()
    assert parser.feed(data + b"more")[-2:] == [Data(b"body"), EndOfBody()]
    assert parser.feed(b"still more") == []
    assert parser.eof() == []


def header_of_size(size):
    """A request whose header netstring's length is exactly ``size``."""
    block = headers(CL0, SCGI1, (b"X", b""))
    return netstring(block[:-1] + b"x" * (size - len(block)) + b"\0")


@pytest.mark.parametrize("limit", [100, 999, 1000, 65536])
def test_header_size_limit(limit):
    assert parse(header_of_size(limit), max_header_size=limit)[0].params["X"]
    check_invalid(header_of_size(limit + 1), HeaderTooLarge, max_header_size=limit)


@pytest.mark.parametrize(("limit", "prefix"), [
    (65536, b"65537"),  # over the limit before the ':' arrives
    (65536, b"100000"),  # more digits than the limit has
    (65536, b"1" * 6),
    (100, b"101"),
    (100, b"1000"),
])
def test_endless_length_digits_are_rejected_early(limit, prefix):
    parser = SCGIRequestParser(max_header_size=limit)
    for byte in prefix[:-1]:
        assert parser.feed(bytes([byte])) == []
    with pytest.raises(HeaderTooLarge):
        parser.feed(prefix[-1:])


@pytest.mark.parametrize("limit", [2, 3, 1000])
def test_params_limit(limit):
    pairs = [CL0, SCGI1] + [(b"H%d" % i, b"v") for i in range(limit - 2)]
    assert len(parse(block_with(*pairs), max_params=limit)[0].params) == limit
    check_invalid(block_with(*pairs, (b"EXTRA", b"")), TooManyHeaders, max_params=limit)


def check_invalid(data, error, **limits):
    """Every split raises exactly ``error`` while feeding; the parser stays dead."""
    for label, chunks in splits(data):
        parser = SCGIRequestParser(**limits)
        with pytest.raises(ProtocolError) as info:
            feed_all(parser, chunks)
        assert type(info.value) is error, (label, info.value)
        assert str(info.value) and info.value.reason == str(info.value)
        with pytest.raises(error):
            parser.feed(b"0")
        with pytest.raises(error):
            parser.eof()


def block_with(*pairs):
    return netstring(headers(*pairs))


INVALID = [
    ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", BadNetstringLength),
    ("empty length", b":" + headers(CL0, SCGI1) + b",", BadNetstringLength),
    ("space before length", b" 24:" + headers(CL0, SCGI1) + b",", BadNetstringLength),
    ("sign", b"+24:" + headers(CL0, SCGI1) + b",", BadNetstringLength),
    ("leading zero", b"024:" + headers(CL0, SCGI1) + b",", LeadingZero),
    ("zero zero", b"00:,", LeadingZero),
    ("over the limit", b"65537:" + b"x" * 70000, HeaderTooLarge),
    ("endless digits", b"9" * 100, HeaderTooLarge),
    ("semicolon", b"24;" + headers(CL0, SCGI1) + b",", MissingColon),
    ("letter in length", b"2x4:" + headers(CL0, SCGI1) + b",", MissingColon),
    ("space after length", b"24 :" + headers(CL0, SCGI1) + b",", MissingColon),
    ("no comma", b"24:" + headers(CL0, SCGI1) + b";", MissingComma),
    ("length too short", b"23:" + headers(CL0, SCGI1) + b",", MissingComma),
    ("length too long", b"25:" + headers(CL0, SCGI1) + b",xx", MissingComma),
    ("last value not NUL-terminated", netstring(headers(CL0) + b"SCGI\x001"), MalformedHeaders),
    ("name without value", netstring(headers(CL0, SCGI1) + b"X\0"), MalformedHeaders),
    ("a lone NUL", b"1:\0,", MalformedHeaders),
    ("empty name", block_with(CL0, SCGI1, (b"", b"v")), EmptyName),
    ("empty name last", block_with(CL0, SCGI1, (b"A", b"1"), (b"", b"")), EmptyName),
    ("empty block", b"0:,", ContentLengthNotFirst),
    ("SCGI first", block_with(SCGI1, CL0), ContentLengthNotFirst),
    ("no CONTENT_LENGTH", block_with(SCGI1, (b"REQUEST_METHOD", b"GET")), ContentLengthNotFirst),
    ("lower-case name", block_with((b"content_length", b"0"), SCGI1), ContentLengthNotFirst),
    ("empty CONTENT_LENGTH", block_with((b"CONTENT_LENGTH", b""), SCGI1), BadContentLength),
    ("negative", block_with((b"CONTENT_LENGTH", b"-1"), SCGI1), BadContentLength),
    ("spaces", block_with((b"CONTENT_LENGTH", b" 1"), SCGI1), BadContentLength),
    ("underscore", block_with((b"CONTENT_LENGTH", b"1_0"), SCGI1), BadContentLength),
    ("hex", block_with((b"CONTENT_LENGTH", b"0x1"), SCGI1), BadContentLength),
    ("superscript two", block_with((b"CONTENT_LENGTH", b"\xb2"), SCGI1), BadContentLength),
    ("no SCGI", block_with(CL0, (b"REQUEST_METHOD", b"GET")), MissingSCGI),
    ("only CONTENT_LENGTH", block_with(CL0), MissingSCGI),
    ("SCGI 2", block_with(CL0, (b"SCGI", b"2")), BadSCGIVersion),
    ("SCGI empty", block_with(CL0, (b"SCGI", b"")), BadSCGIVersion),
    ("SCGI 01", block_with(CL0, (b"SCGI", b"01")), BadSCGIVersion),
    ("duplicate", block_with(CL0, SCGI1, (b"A", b"1"), (b"A", b"1")), DuplicateHeader),
    ("duplicate SCGI", block_with(CL0, SCGI1, SCGI1), DuplicateHeader),
    ("duplicate CONTENT_LENGTH", block_with(CL0, SCGI1, (b"CONTENT_LENGTH", b"5")),
     DuplicateHeader),
    ("too many", block_with(CL0, SCGI1, *((b"H%d" % i, b"") for i in range(999))),
     TooManyHeaders),
]


@pytest.mark.parametrize(("data", "error"), [case[1:] for case in INVALID],
                         ids=[case[0] for case in INVALID])
def test_invalid(data, error):
    check_invalid(data, error)


def test_invalid_corpus_covers_every_error():
    assert {case[2] for case in INVALID} == set(ERRORS) - {Truncated}


def test_error_messages_name_the_culprit():
    parser = SCGIRequestParser()
    with pytest.raises(DuplicateHeader, match="'REMOTE_ADDR'"):
        parser.feed(block_with(CL0, SCGI1, (b"REMOTE_ADDR", b"a"), (b"REMOTE_ADDR", b"b")))
    with pytest.raises(BadSCGIVersion, match="'2'"):
        SCGIRequestParser().feed(block_with(CL0, (b"SCGI", b"2")))


@pytest.mark.parametrize("error", ERRORS)
def test_default_reason_is_the_docstring(error):
    assert issubclass(error, ProtocolError)
    assert error().reason == error.__doc__.strip().splitlines()[0]
    assert error("specific").reason == "specific"


@pytest.mark.parametrize("data", [
    make_request({"REQUEST_METHOD": "POST", "HTTP_X": "y"}, b"0123456789"),
    make_request({"REQUEST_METHOD": "GET"}),
], ids=["body", "no body"])
def test_truncated_anywhere(data):
    for cut in range(len(data)):
        for _label, chunks in splits(data[:cut]):
            parser = SCGIRequestParser()
            feed_all(parser, chunks)
            with pytest.raises(Truncated):
                parser.eof()
            with pytest.raises(Truncated):  # still dead
                parser.eof()
            with pytest.raises(Truncated):
                parser.feed(data[cut:])


def test_truncated_says_where():
    parser = SCGIRequestParser()
    parser.feed(make_request({}, b"abcd")[:-1])
    with pytest.raises(Truncated, match="3 of 4 body bytes"):
        parser.eof()
    with pytest.raises(Truncated, match="after 0 bytes"):
        SCGIRequestParser().eof()


def test_events():
    assert Request({"A": "1"}, 0) == Request({"A": "1"}, 0) != Request({"A": "2"}, 0)
    assert Data(b"x") != EndOfBody() and EndOfBody() == EndOfBody()
    assert repr(Data(b"x")) == "Data(data=b'x', request_id=0)"
    assert repr(Request({}, 3)) == (
        "Request(params={}, content_length=3, request_id=0, keep_conn=False)")
    with pytest.raises(AttributeError):
        Data(b"x").other = 1  # slotted


def test_make_request():
    data = make_request({"SCGI": "1", "REQUEST_METHOD": "GET", "CONTENT_LENGTH": "2"}, b"hi")
    assert data == b"43:CONTENT_LENGTH\x002\x00SCGI\x001\x00REQUEST_METHOD\x00GET\x00,hi"
    with pytest.raises(ValueError, match="CONTENT_LENGTH"):
        make_request({"CONTENT_LENGTH": "3"}, b"hi")
    for bad in ({"": "x"}, {"A\0B": "x"}, {"A": "x\0"}, {"A": "\u20ac"}):
        with pytest.raises(ValueError):
            make_request(bad)
    # A given SCGI value is sent as it is, so tests can build a wrong version.
    check_invalid(make_request({"SCGI": "2"}), BadSCGIVersion)


latin1 = st.characters(min_codepoint=1, max_codepoint=255)  # no NUL
latin1_text = st.text(latin1)
names = st.text(latin1, min_size=1).filter(lambda name: name not in ("CONTENT_LENGTH", "SCGI"))


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(names, latin1_text, max_size=30), body=st.binary(max_size=3000),
       sizes=st.lists(st.integers(0, 200), min_size=1, max_size=40))
def test_round_trip(params, body, sizes):
    data = make_request(params, body)
    parser, events, at = SCGIRequestParser(), [], 0
    for size in sizes:
        events += parser.feed(data[at:at + size])
        at += size
    events += parser.feed(data[at:])
    assert parser.eof() == []
    expected = dict(params, CONTENT_LENGTH=str(len(body)), SCGI="1")
    assert merged(events) == [Request(expected, len(body))] + (
        [Data(body)] if body else []) + [EndOfBody()]
    assert next(iter(events[0].params)) == "CONTENT_LENGTH"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_only_raises_protocol_errors(data):
    parser = SCGIRequestParser()
    try:
        parser.feed(data)
        parser.eof()
    except ProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(at=st.integers(0, 10**6), byte=st.integers(0, 255), cut=st.integers(0, 10**6))
def test_mutated_requests_parse_or_raise_protocol_errors(at, byte, cut):
    data = bytearray(make_request({"REQUEST_METHOD": "POST", "QUERY_STRING": "a=1"}, b"xyz"))
    data[at % len(data)] = byte
    cut %= len(data)
    parser = SCGIRequestParser()
    try:
        events = parser.feed(bytes(data[:cut])) + parser.feed(bytes(data[cut:]))
        parser.eof()
    except ProtocolError:
        return
    assert type(events[0]) is Request and events[-1] == EndOfBody()


def test_repeated_http_headers_are_joined():
    # nginx before 1.23 sends a repeated request header twice (field notes §5).
    data = block_with(CL0, SCGI1, (b"HTTP_X_DUP", b"a"), (b"HTTP_COOKIE", b"c=1"),
                      (b"HTTP_X_DUP", b"b"), (b"HTTP_COOKIE", b"d=2"))
    events = SCGIRequestParser().feed(data)
    assert events[0].params["HTTP_X_DUP"] == "a, b"
    assert events[0].params["HTTP_COOKIE"] == "c=1; d=2"


# -- found by fuzzing ----------------------------------------------------------------------


@pytest.mark.parametrize("digits", [21, 4301, 60000])
def test_a_content_length_of_thousands_of_digits_is_a_protocol_error(digits):
    block = headers((b"CONTENT_LENGTH", b"9" * digits), SCGI1)
    check_invalid(netstring(block), BadContentLength, max_header_size=100000)


def test_leading_zeros_do_not_make_a_length_too_long():
    block = headers((b"CONTENT_LENGTH", b"0" * 5000 + b"3"), SCGI1)
    events = SCGIRequestParser(max_header_size=100000).feed(netstring(block) + b"abc")
    assert events[0].content_length == 3 and events[1:] == [Data(b"abc"), EndOfBody()]


def test_a_parser_in_error_leaves_no_reference_cycle():
    import gc

    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            parser = SCGIRequestParser()
            for data in (b"x", b"y"):
                try:
                    parser.feed(data)
                except ProtocolError:
                    pass
            try:
                parser.eof()
            except ProtocolError:
                pass
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_length_too_large_then_garbage_is_the_same_error_in_any_split():
    # Found by the fuzzer: whole, "70000x:" was MissingColon; byte by byte the fifth
    # digit already made it HeaderTooLarge.  The first violation in the stream wins.
    check_invalid(b"70000x:", HeaderTooLarge)
    check_invalid(b"0070000x:", LeadingZero)
    check_invalid(b"7x0:", MissingColon)
