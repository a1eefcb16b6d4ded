"""Valid inputs for the protocol cores, and the mutations the fuzzers apply to them.

Shared by ``cores.py`` (in-process), ``sockets.py`` (against a daemon) and
``tests/test_fuzz_smoke.py``.  The valid requests are built with the cores'
own encoders (:func:`gateways.protocol.fastcgi.record`, ``encode_pairs``,
:func:`gateways.protocol.scgi.make_request`) plus a few records written by
hand (padding, pairs that straddle records, repeated names), so the corpus
covers every event a core emits.  Everything here is deterministic given a
``random.Random``.
"""

import random
import struct

from gateways.protocol import fastcgi as fcgi
from gateways.protocol import uwsgi
from gateways.protocol.scgi import make_request

# -- FastCGI ------------------------------------------------------------------------------

HEADER = struct.Struct(">BBHHBx")


def record(rtype, rid, content=b"", padding=0, version=1):
    """A record with ``padding`` bytes of padding (the core's encoder has none)."""
    if not padding and version == 1:
        return fcgi.record(rtype, rid, content)
    return HEADER.pack(version, rtype, rid, len(content), padding) + content + b"\0" * padding


def stream(rtype, rid, data, size=None, padding=0):
    """``data`` as records of at most ``size`` bytes, then the empty end record."""
    size = size or fcgi.MAX_CONTENT
    parts = [record(rtype, rid, data[i:i + size], padding) for i in range(0, len(data), size)]
    return b"".join(parts) + record(rtype, rid, b"", padding)


def begin(rid=1, role=fcgi.RESPONDER, keep_conn=False, flags=None):
    flags = (fcgi.KEEP_CONN if keep_conn else 0) if flags is None else flags
    return record(fcgi.BEGIN_REQUEST, rid, fcgi.BEGIN_BODY.pack(role, flags))


def http_params(path="/", query="", method="GET", body=b"", **extra):
    """The meta-variables a web server like nginx sends (a list of pairs)."""
    params = [
        ("GATEWAY_INTERFACE", "CGI/1.1"), ("REQUEST_METHOD", method), ("SCRIPT_NAME", ""),
        ("PATH_INFO", path), ("QUERY_STRING", query),
        ("REQUEST_URI", path + ("?" + query if query else "")),
        ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "fuzz"), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
        ("HTTP_HOST", "localhost"),
    ]
    if body or method in ("POST", "PUT"):
        params += [("CONTENT_LENGTH", str(len(body))),
                   ("CONTENT_TYPE", "application/octet-stream")]
    params += list(extra.items())
    return params


def fastcgi_request(params, body=b"", rid=1, keep_conn=False, params_size=None,
                    stdin_size=None, padding=0):
    """A whole Responder request: BEGIN_REQUEST, PARAMS and STDIN streams."""
    return (begin(rid, keep_conn=keep_conn)
            + stream(fcgi.PARAMS, rid, fcgi.encode_pairs(params), params_size, padding)
            + stream(fcgi.STDIN, rid, body, stdin_size, padding))


def get_values(names=("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS")):
    return record(fcgi.GET_VALUES, 0, fcgi.encode_pairs([(n, "") for n in names]))


PARAM_SETS = [
    [("REQUEST_METHOD", "GET"), ("PATH_INFO", "/x"), ("QUERY_STRING", "a=1")],
    http_params("/echo", "a=1&b=2"),
    http_params("/upload", method="POST", body=b"x" * 10),
    http_params("/long", "q=" + "v" * 300, HTTP_X_LONG="y" * 200),  # 4-byte lengths
    http_params("/", **{"HTTP_" + "N" * 150: "long name"}),
    http_params("/latin", HTTP_X_BYTES="caf\xe9 \xff\x80"),
    http_params("/cookies") + [("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2")],  # nginx < 1.23
    http_params("/empty", HTTP_X_EMPTY=""),
    [("P%d" % i, "v%d" % i) for i in range(60)],
    [],
]

_BYTES = random.Random(0)  # the corpus is the same in every run
BODIES = [b"", b"hello", _BYTES.randbytes(300), bytes(range(256)) * 300]  # the last: > 65535


def fastcgi_corpus():
    """Valid FastCGI connections (bytes as a web server sends them)."""
    out = []
    for i, params in enumerate(PARAM_SETS):
        body = BODIES[i % len(BODIES)] if i % 3 else b""
        out.append(fastcgi_request(params, body, rid=1 + i))
    big = http_params("/upload", method="POST", body=BODIES[3])
    out += [
        fastcgi_request(big, BODIES[3]),
        fastcgi_request(PARAM_SETS[1], b"abc" * 50, params_size=1, stdin_size=7),  # straddling
        fastcgi_request(PARAM_SETS[3], b"pad", params_size=13, padding=7),
        fastcgi_request(PARAM_SETS[1], b"", rid=65535, keep_conn=True),
        # keep-conn: two requests one after the other on one connection
        fastcgi_request(PARAM_SETS[0], b"one", keep_conn=True)
        + fastcgi_request(PARAM_SETS[2], b"two" * 4, rid=2, keep_conn=True),
        get_values(),
        get_values(["FCGI_MAX_CONNS", "NOT_A_VALUE", "X" * 200]),
        get_values([]) + fastcgi_request(PARAM_SETS[0]),
        record(12, 0) + record(200, 0, b"abc"),  # unknown management types: answered
        # aborts: before the params end, after them, in the middle of the body
        begin(1) + record(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[0]))
        + record(fcgi.ABORT_REQUEST, 1),
        begin(1, keep_conn=True) + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[1]))
        + record(fcgi.ABORT_REQUEST, 1) + fastcgi_request(PARAM_SETS[0], rid=2),
        begin(1) + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[2]))
        + record(fcgi.STDIN, 1, b"part") + record(fcgi.ABORT_REQUEST, 1)
        + record(fcgi.STDIN, 1, b"more") + record(fcgi.STDIN, 1),
        begin(1) + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[2]))
        + record(fcgi.STDIN, 1, b"part") + record(fcgi.ABORT_REQUEST, 1)
        + record(fcgi.STDIN, 1),  # the end of the body right after the abort
        record(fcgi.ABORT_REQUEST, 9) + fastcgi_request(PARAM_SETS[0]),  # inactive id
        # the Authorizer role (§6.3): no body; Apache sends no FCGI_STDIN, lighttpd an
        # empty one (cores.py serves both roles, the daemons of sockets.py Responder only)
        begin(1, role=fcgi.AUTHORIZER) + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[0])),
        begin(1, role=fcgi.AUTHORIZER, keep_conn=True)
        + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[3])) + record(fcgi.STDIN, 1)
        + fastcgi_request(PARAM_SETS[1], b"after", rid=2),
        # roles we do not serve, a second request while one is active, FCGI_DATA
        begin(1, role=0) + fastcgi_request(PARAM_SETS[0], rid=2),
        begin(1, role=fcgi.FILTER, keep_conn=True) + get_values(),
        begin(1) + begin(2) + stream(fcgi.PARAMS, 1, fcgi.encode_pairs(PARAM_SETS[0]))
        + record(fcgi.DATA, 1, b"data") + stream(fcgi.STDIN, 1, b"body"),
        record(fcgi.PARAMS, 7, b"\x01\x01ab") + fastcgi_request(PARAM_SETS[0]),
    ]
    return out


# -- SCGI ------------------------------------------------------------------------------------


def scgi_raw(pairs, body=b""):
    """An SCGI request from (name, value) byte pairs sent as they are (repeats allowed)."""
    block = b"".join(name + b"\0" + value + b"\0" for name, value in pairs)
    return b"%d:%s,%s" % (len(block), block, body)


def scgi_params(path="/", query="", method="GET", **extra):
    params = dict(http_params(path, query, method))
    params.pop("CONTENT_LENGTH", None)
    params.update(extra)
    return params


SPEC_EXAMPLE = (b"70:CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00"
                b"REQUEST_URI\x00/deepthought\x00,What is the answer to life?")


def scgi_corpus():
    out = [SPEC_EXAMPLE]
    for i, params in enumerate(PARAM_SETS):
        params = {k: v for k, v in params if k != "CONTENT_LENGTH"}
        out.append(make_request(params, BODIES[i % len(BODIES)]))
    out += [
        make_request(scgi_params("/echo", "a=1")),
        make_request(scgi_params("/upload", method="POST"), _BYTES.randbytes(1000)),
        make_request(scgi_params("/big", method="POST"), BODIES[3]),
        make_request({"SCGI": "1"}) + b"trailing bytes after the request",
        scgi_raw([(b"CONTENT_LENGTH", b"3"), (b"SCGI", b"1"), (b"HTTP_COOKIE", b"a=1"),
                  (b"HTTP_COOKIE", b"b=2"), (b"HTTP_X", b"1"), (b"HTTP_X", b"2")], b"abc"),
        scgi_raw([(b"CONTENT_LENGTH", b"007"), (b"SCGI", b"1")], b"leading"),
        scgi_raw([(b"CONTENT_LENGTH", b"0"), (b"SCGI", b"1"), (b"X", b"\xff\x80latin")]),
    ]
    return out


def uwsgi_raw(pairs, body=b"", modifier1=0, modifier2=0):
    """A uwsgi packet from (name, value) byte pairs, repeats and empty names allowed."""
    block = b"".join(len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
                     for k, v in pairs)
    return bytes((modifier1,)) + (len(block) & 0xFFFF).to_bytes(2, "little") + bytes(
        (modifier2,)) + block + body


def uwsgi_corpus():
    """Valid uwsgi requests (and two that uWSGI would take: modifier1 30, repeats)."""
    def params(path, query="", method="GET"):
        return {k: v for k, v in scgi_params(path, query, method).items() if k != "SCGI"}

    out = [uwsgi.make_request(dict(p)) for p in PARAM_SETS[:4]]
    out += [
        uwsgi.make_request(params("/echo", "a=1")),
        uwsgi.make_request(params("/upload", method="POST"), _BYTES.randbytes(1000)),
        uwsgi.make_request(params("/big", method="POST"), BODIES[3]),
        uwsgi.make_request({"SCRIPT_NAME": "/app", "PATH_INFO": "/app/x"}, modifier1=30),
        uwsgi_raw([(b"CONTENT_LENGTH", b"3"), (b"HTTP_COOKIE", b"a=1"), (b"HTTP_COOKIE", b"b=2"),
                   (b"PATH_INFO", b"/first"), (b"PATH_INFO", b"/last")], b"abc"),
        uwsgi_raw([(b"CONTENT_LENGTH", b"007")], b"leading"),
        uwsgi_raw([(b"X", b"\xff\x80latin")]),
    ]
    return out


def uwsgi_fields(data):
    """(offset, width) of the little-endian length fields of a uwsgi packet: datasize,
    then each variable's name and value lengths."""
    fields = [(1, 2)] if len(data) >= 4 else []
    pos, end = 4, min(len(data), 4 + int.from_bytes(data[1:3], "little"))
    while pos + 2 <= end:
        fields.append((pos, 2))
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
        if pos + 2 > end:
            break
        fields.append((pos, 2))
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    return fields


def odd_value(rng, name):
    if name == "CONTENT_LENGTH" and rng.random() < 0.8:
        return digits(rng).decode()
    return rng.choice((digits(rng).decode(), "", "-1", " 12", "1e3", "0x10", "\xff\x80",
                       "/" * 300, "%00", "\u00e9"))


def odd_request(rng, protocol):
    """A request framed right whose meta-variables are odd: CONTENT_LENGTH of thousands
    of digits, with leading zeros, negative; odd paths and methods; repeated headers."""
    names = rng.sample(("CONTENT_LENGTH", "CONTENT_LENGTH", "REQUEST_METHOD", "HTTP_HOST",
                        "PATH_INFO", "SCRIPT_NAME", "QUERY_STRING", "HTTP_X", "HTTP_COOKIE"),
                       rng.choice((1, 1, 2, 3)))
    odd = {name: odd_value(rng, name) for name in names}
    base = [(k, v) for k, v in rng.choice(PARAM_SETS) if k not in odd]
    body = rng.choice(BODIES[:3])
    if protocol == "fastcgi":
        params = base + list(odd.items())
        if rng.random() < 0.2:
            params += [("HTTP_COOKIE", "a=1"), ("HTTP_COOKIE", "b=2")]
        return fastcgi_request(params, body, rid=rng.choice((1, 2)), keep_conn=rng.random() < 0.5)
    length = odd.pop("CONTENT_LENGTH", str(len(body)))
    pairs = [(b"CONTENT_LENGTH", length.encode("latin-1")), (b"SCGI", b"1")]
    pairs += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in base + list(odd.items())
              if k not in ("CONTENT_LENGTH", "SCGI")]
    if rng.random() < 0.2:
        pairs += [(b"HTTP_COOKIE", b"a=1"), (b"HTTP_COOKIE", b"b=2")]
    if protocol == "uwsgi":
        return uwsgi_raw([p for p in pairs if p[0] != b"SCGI"], body)
    return scgi_raw(pairs, body)


# -- mutations -------------------------------------------------------------------------------

BOUNDARY = (0, 1, 2, 7, 8, 127, 128, 255, 256, 4096, 65535, 65536, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFFF)
INTERESTING_BYTES = b"\x00\x01\x7f\x80\xff:,0123456789\x02\x05\x0b"
DIGIT_COUNTS = (0, 1, 5, 6, 19, 20, 100, 4299, 4300, 4301, 5000, 20000)
MAX_SIZE = 256 * 1024  # inputs grow no larger (amplification stops here)


def fastcgi_fields(data):
    """(offset, width) of the length-like fields of the records in ``data``: request id,
    content and padding lengths, and the name-value lengths of PARAMS/GET_VALUES."""
    fields = []
    pos, size = 0, len(data)
    while pos + 8 <= size:
        rtype, clen, plen = data[pos + 1], (data[pos + 4] << 8) | data[pos + 5], data[pos + 6]
        fields += [(pos + 2, 2), (pos + 4, 2), (pos + 6, 1), (pos + 1, 1), (pos, 1)]
        start, end = pos + 8, min(pos + 8 + clen, size)
        if rtype in (fcgi.PARAMS, fcgi.GET_VALUES):
            at = start
            while at < end:
                lengths = []
                for _ in (0, 1):
                    if at >= end:
                        break
                    if data[at] < 128:
                        fields.append((at, 1))
                        lengths.append(data[at])
                        at += 1
                    elif at + 4 <= end:
                        fields.append((at, 4))
                        lengths.append(int.from_bytes(data[at:at + 4], "big") & 0x7FFFFFFF)
                        at += 4
                    else:
                        at = end
                at += sum(lengths)
        pos = pos + 8 + clen + plen
    return fields


def record_offsets(data):
    """Offsets where FastCGI records start (and the end), walking the headers."""
    offsets, pos = [], 0
    while pos + 8 <= len(data):
        offsets.append(pos)
        pos += 8 + ((data[pos + 4] << 8) | data[pos + 5]) + data[pos + 6]
    offsets.append(min(pos, len(data)))
    return offsets


def scgi_fields(data):
    """(start, end) of the digit runs an SCGI request is steered by: the netstring
    length and the CONTENT_LENGTH value."""
    fields = []
    colon = data.find(b":", 0, 30)
    if colon > 0:
        fields.append((0, colon))
    at = data.find(b"CONTENT_LENGTH\0")
    if at >= 0:
        start = at + 15
        end = data.find(b"\0", start)
        if end > 0:
            fields.append((start, end))
    return fields


def _grow_netstring(data, delta):
    """Add ``delta`` to the netstring length at the start of ``data`` (if there is one)."""
    colon = data.find(b":", 0, 30)
    if colon > 0 and data[:colon].isdigit():
        data[:colon] = str(max(int(data[:colon]) + delta, 0)).encode()


def _set_width(data, offset, width, value):
    value &= (1 << (8 * width)) - 1
    if width == 4 and value < 128 and value:
        value |= 0x80000000  # keep the 4-byte form: a long length with a small value
    data[offset:offset + width] = value.to_bytes(width, "big")


def digits(rng):
    """A digit string: a boundary value, or a huge number, or leading zeros."""
    pick = rng.random()
    if pick < 0.4:
        return str(rng.choice(BOUNDARY)).encode()
    count = rng.choice(DIGIT_COUNTS)
    if pick < 0.7:
        return b"1" + b"0" * count
    if pick < 0.85:
        return b"0" * count + b"1"
    return bytes(rng.choice(b"0123456789") for _ in range(min(count, 64))) + b"9" * count


def mutate(rng, data, corpus, protocol):
    """One mutated input from ``data`` (bytes): 1 to 5 stacked mutations."""
    data = bytearray(data)
    for _ in range(1 + int(rng.expovariate(1.0)) % 5):
        op = rng.randrange(15)
        size = len(data)
        if op == 0 and size:  # flip bits
            for _ in range(rng.choice((1, 1, 2, 4, 8))):
                data[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif op == 1 and size:  # an interesting byte
            data[rng.randrange(size)] = rng.choice(INTERESTING_BYTES)
        elif op == 2:  # insert bytes
            at = rng.randint(0, size)
            data[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 2, 4, 16))))
        elif op == 3 and size:  # delete a range
            at = rng.randrange(size)
            del data[at:at + rng.choice((1, 1, 2, 8, 64, 1000))]
        elif op == 4 and size:  # truncate
            del data[rng.randint(0, size):]
        elif op == 5:  # splice: a prefix of this one, a suffix of another
            other = rng.choice(corpus)
            data = data[:rng.randint(0, size)] + other[rng.randint(0, len(other)):]
        elif op == 6 and size:  # repeat a slice many times (amplification)
            at = rng.randrange(size)
            piece = data[at:at + rng.choice((1, 8, 16, 24, 100))]
            times = min(int(2 ** rng.uniform(0, 15)), (MAX_SIZE - size) // max(len(piece), 1))
            data[at:at] = piece * max(times, 0)
        elif op == 7:  # a length field set to a boundary value
            if protocol == "uwsgi":
                fields = uwsgi_fields(data)
                if fields:
                    offset, width = rng.choice(fields)
                    data[offset:offset + width] = (rng.choice(BOUNDARY) & 0xFFFF).to_bytes(
                        2, "little")
            elif protocol == "fastcgi":
                fields = fastcgi_fields(data)
                if fields:
                    offset, width = rng.choice(fields)
                    _set_width(data, offset, width, rng.choice(BOUNDARY))
            else:
                fields = scgi_fields(data)
                if fields:
                    start, end = rng.choice(fields)
                    new = digits(rng)
                    data[start:end] = new
                    if start and rng.random() < 0.8:  # inside the block: keep the framing
                        _grow_netstring(data, len(new) - (end - start))
        elif op == 8 and protocol == "fastcgi":  # a record inserted between two records
            offsets = record_offsets(data)
            at = rng.choice(offsets)
            rtype = rng.choice((1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 255, rng.randrange(256)))
            rid = rng.choice((0, 1, 1, 2, 65535))
            content = (fcgi.BEGIN_BODY.pack(rng.choice((1, 1, 2, 3, 0)), rng.randrange(2))
                       if rtype == 1 else bytes(rng.getrandbits(8)
                                                for _ in range(rng.choice((0, 0, 1, 8, 30)))))
            data[at:at] = record(rtype, rid, content, rng.choice((0, 0, 1, 255)))
        elif op == 9 and protocol == "fastcgi":  # drop or duplicate a whole record
            offsets = record_offsets(data)
            if len(offsets) > 1:
                i = rng.randrange(len(offsets) - 1)
                start, end = offsets[i], offsets[i + 1]
                if rng.random() < 0.5:
                    del data[start:end]
                else:  # sometimes thousands of times: answers pile up in one feed()
                    times = rng.choice((1, 2, 100, int(2 ** rng.uniform(0, 15))))
                    times = min(times, (MAX_SIZE - size) // max(end - start, 1))
                    data[end:end] = data[start:end] * max(times, 0)
        elif op == 10 and protocol == "uwsgi" and size >= 4:  # modifier1, a rare one
            data[0] = rng.choice((0, 0, 30, 5, 72, 100, 255, rng.randrange(256)))
        elif op == 11 and protocol == "uwsgi" and size >= 4:  # a variable inserted
            name = rng.choice((b"CONTENT_LENGTH", b"HTTP_X", b"PATH_INFO", b"", b"A" * 300))
            value = rng.choice((b"1", b"", digits(rng)[:60000], b"\xff"))
            pair = len(name).to_bytes(2, "little") + name + len(value).to_bytes(2, "little") + value
            data[4:4] = pair
            if rng.random() < 0.8:
                new = int.from_bytes(data[1:3], "little") + len(pair)
                data[1:3] = (new & 0xFFFF).to_bytes(2, "little")
        elif op == 10 and protocol == "scgi":  # the netstring length made to agree or not
            colon = data.find(b":", 0, 30)
            comma = data.rfind(b",")
            if colon > 0 and comma > colon:
                data[:colon] = str(comma - colon - 1 + rng.choice((0, 0, -1, 1))).encode()
        elif op == 11 and protocol == "scgi":  # a header inserted into the block
            colon = data.find(b":", 0, 30)
            if colon > 0:
                name = rng.choice((b"SCGI", b"CONTENT_LENGTH", b"HTTP_X", b"", b"A" * 300))
                value = rng.choice((b"1", b"0", b"", digits(rng), b"\xff"))
                data[colon + 1:colon + 1] = name + b"\0" + value + b"\0"
                if rng.random() < 0.8:
                    _grow_netstring(data, len(name) + len(value) + 2)
        elif op == 12:  # a whole other input appended (pipelining, garbage after)
            data += rng.choice(corpus)
        elif op == 13 and protocol == "fastcgi" and rng.random() < 0.3:
            # A run of one small record, up to ~20,000 of them: each may be answered
            # (unknown management type, FCGI_GET_VALUES, a second BEGIN_REQUEST).
            rtype, rid = rng.choice(((12, 0), (255, 0), (9, 0), (1, 2), (1, 1), (5, 7), (2, 3)))
            content = fcgi.BEGIN_BODY.pack(rng.choice((1, 2)), 1) if rtype == 1 else b""
            one = record(rtype, rid, content)
            times = min(int(2 ** rng.uniform(6, 14.6)), (MAX_SIZE - size) // len(one))
            at = rng.choice(record_offsets(data))
            data[at:at] = one * max(times, 0)
        elif op == 14 and protocol == "fastcgi":  # a well-framed request, odd meta-variables
            at = rng.choice(record_offsets(data))
            data[at:at] = odd_request(rng, protocol)
        if len(data) > MAX_SIZE:
            del data[MAX_SIZE:]
    return bytes(data)


def chunkings(rng, data, protocol):
    """How ``data`` is fed: whole, byte by byte, random splits, or at record edges."""
    size = len(data)
    pick = rng.random()
    if pick < 0.4 or size < 2:
        return [data]
    if pick < 0.5 and size <= 3000:
        return [data[i:i + 1] for i in range(size)]
    if pick < 0.9 or protocol != "fastcgi":
        chunks, at = [], 0
        while at < size:
            step = rng.choice((0, 1, 2, 3, 7, 8, 9, 16, 64, 300, 4096, 70000))
            chunks.append(data[at:at + step])
            at += step
        return chunks
    cuts = sorted({max(0, min(size, o + rng.choice((-1, 0, 0, 1)))) for o in record_offsets(data)})
    edges = [0, *cuts, size]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]
