#!/usr/bin/env python3
"""Socket-level fuzzer: malformed connections against a running FastCGI or SCGI daemon.

Starts ``python -m gateways fastcgi|scgi fuzzapp:application`` (2 processes x
4 threads, ``--log-file``) on a unix socket in a temporary directory, then
opens ``--count`` malformed connections from 12 client threads, each one of:

* a mutated request (the mutations of ``cores.py``), sent whole or in
  pieces, then half-closed or not, the answer read for up to half a second;
* a request framed right with odd meta-variables (a CONTENT_LENGTH of
  thousands of digits, repeated headers...);
* half a valid request, then a close;
* garbage (random bytes, an HTTP request line);
* a slow dribble of a request, a few bytes every few milliseconds, bounded
  to a fraction of a second;
* a streaming response interrupted: FCGI_ABORT_REQUEST (alone, or with
  FCGI_STDIN after it), FCGI_GET_VALUES, another BEGIN_REQUEST, garbage,
  a close;

and after every ``--valid-every`` (10) of them a valid request (sometimes two on
one FastCGI connection with FCGI_KEEP_CONN), which must be answered 200 with
the body the application computes for it.  Bounded in count and in time
(``--time-limit``).  Then the daemon's log must hold no "Traceback" and no
ERROR line.  Each distinct traceback is traced back to the connection that
causes it (the connections around it are replayed one at a time), whose
bytes are written to ``--out`` (default ``fuzz/crashes/``) with a repro
command.  The daemon is stopped by pid (SIGTERM, then SIGKILL for its
process group).  Exit status 1 on any traceback, ERROR line or failed valid
request::

    python fuzz/sockets.py --protocol fastcgi --count 1000
    python fuzz/sockets.py --protocol scgi --count 20000
    python fuzz/sockets.py --protocol fastcgi --seed 1 --index 123    # one connection
"""

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

try:  # the installed gateways (scripts/test puts this checkout in .venv), else this checkout
    import gateways  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateways.protocol import fastcgi as fcgi
from gateways.protocol import uwsgi

import corpus
import fuzzapp

HERE = os.path.dirname(os.path.abspath(__file__))
CRASHES = os.path.join(HERE, "crashes")
PROTOCOLS = ("fastcgi", "scgi", "uwsgi")
READ_TIMEOUT = 0.5  # how long a malformed connection waits for an answer
VALID_TIMEOUT = 15.0  # how long a valid request may take
DRIBBLE_BOUND = 0.3  # a dribble sends for at most this long


# -- the daemon ----------------------------------------------------------------------------


class Daemon:
    """``gateways PROTOCOL fuzzapp:application`` on a unix socket in ``directory``."""

    def __init__(self, protocol, directory, processes=2, threads=4):
        self.protocol = protocol
        self.address = os.path.join(directory, protocol + ".sock")
        self.log_path = os.path.join(directory, protocol + ".log")
        self.output = os.path.join(directory, protocol + ".out")
        package = os.path.dirname(os.path.dirname(os.path.abspath(fcgi.__file__)))
        env = dict(os.environ, PYTHONPATH=os.path.dirname(package))  # this gateways
        env = {k: v for k, v in env.items() if not k.startswith(("GATEWAYS_", "LISTEN_",
                                                                 "FCGI_"))}
        argv = [sys.executable, "-m", "gateways", protocol, "fuzzapp:application",
                "--app-dir", HERE, "--bind", "unix:" + self.address,
                "--processes", str(processes), "--threads", str(threads),
                "--read-timeout", "5", "--timeout", "30", "--graceful-timeout", "5",
                "--log-file", self.log_path,
                "--log-level", os.environ.get("FUZZ_LOG_LEVEL", "info")]
        if protocol == "fastcgi":
            argv += ["--keepalive-timeout", "2"]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=env, cwd=directory,
                                            start_new_session=True)
        self.pid = self.process.pid

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while "ready:" not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the %s daemon did not start (exit status %s):\n%s\n%s" % (
                    self.protocol, self.process.poll(), self.read(self.output),
                    self.log_text()))
            time.sleep(0.05)
        return self

    @staticmethod
    def read(path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_text(self):
        return self.read(self.log_path)

    def stop(self, timeout=15.0):
        """SIGTERM by pid; SIGKILL to its process group if it does not exit in time."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # workers left behind, if any
        self.process.wait(5)


# -- what one connection does --------------------------------------------------------------


def _connect(address, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    return sock


def _drain(sock, timeout):
    """Read until EOF, an error or ``timeout`` s; the bytes read."""
    deadline = time.monotonic() + timeout
    got = []
    with contextlib.suppress(OSError):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                break
            got.append(data)
    return b"".join(got)


def valid_request(rng, protocol):
    """A valid exchange: [(bytes to send, request id, expected body)...], one at a time
    (two on one FastCGI connection with FCGI_KEEP_CONN, the second sent once the first
    is answered, as web servers do: this application does not multiplex)."""
    count = 1 if protocol != "fastcgi" or rng.random() < 0.7 else 2
    exchanges = []
    for n in range(count):
        method = rng.choice(("GET", "POST", "POST"))
        body = rng.randbytes(rng.choice((0, 1, 100, 5000, 70000, 200000))) \
            if method == "POST" else b""
        path = "/p%d/%s" % (rng.randrange(1000), rng.choice(("", "x", "caf\xe9")))
        query = "q=%d" % rng.randrange(10 ** 6)
        params = corpus.http_params(path, query, method, body)
        rid = rng.choice((1, 2, 7, 65535))
        if protocol == "fastcgi":
            data = corpus.fastcgi_request(
                params, body, rid=rid, keep_conn=n < count - 1,
                params_size=rng.choice((None, None, 1, 50)),
                stdin_size=rng.choice((None, None, 1000, 65535)))
        elif protocol == "scgi":
            data = corpus.make_request({k: v for k, v in params if k != "CONTENT_LENGTH"}, body)
        else:
            data = uwsgi.make_request({k: v for k, v in params if k != "CONTENT_LENGTH"}, body)
        exchanges.append((data, rid, fuzzapp.answer(method, path, query, body)))
    return exchanges


def plan(protocol, seed, index, valid_every):
    """What connection ``index`` of ``seed`` does (deterministic): a dict.  After every
    ``valid_every`` malformed connections comes a valid one."""
    rng = random.Random(seed * 1_000_000_007 + index)
    inputs = corpus.fastcgi_corpus() if protocol == "fastcgi" else _CORPORA[protocol]
    if valid_every and index % (valid_every + 1) == valid_every:
        exchanges = valid_request(rng, protocol)
        return {"kind": "valid", "protocol": protocol, "exchanges": exchanges,
                "data": b"".join(data for data, _, _ in exchanges),
                "pieces": [None] if rng.random() < 0.7 else [rng.randrange(1, 5000)]}
    pick = rng.random()
    if pick < 0.1:  # a streaming response, interrupted
        params = corpus.http_params("/stream")
        if protocol == "fastcgi":
            rid = rng.choice((1, 2))
            data = corpus.fastcgi_request(params, rid=rid, keep_conn=rng.random() < 0.5)
            then = rng.choice((corpus.record(fcgi.ABORT_REQUEST, rid),
                               corpus.record(fcgi.ABORT_REQUEST, rid) + corpus.record(
                                   fcgi.STDIN, rid, b"late"), corpus.get_values(),
                               corpus.begin(rid + 1), corpus.begin(rid),
                               corpus.record(12, 0) * 100, b"\x07garbage", b""))
        else:
            make = corpus.make_request if protocol == "scgi" else uwsgi.make_request
            data = make(dict(params))
            then = rng.choice((b"", b"more bytes after the request"))
        return {"kind": "interrupt", "data": data, "then": then, "shutdown": False,
                "pieces": [len(data)], "close": rng.random() < 0.3}
    if pick < 0.25:
        data = corpus.odd_request(rng, protocol)
        return {"kind": "odd", "data": data, "shutdown": rng.random() < 0.5,
                "pieces": [len(data)]}
    if pick < 0.6:
        data = rng.choice(inputs)
        if rng.random() < 0.95:
            data = corpus.mutate(rng, data, inputs, protocol)
        return {"kind": "mutated", "data": data, "shutdown": rng.random() < 0.7,
                "pieces": [len(data)] if rng.random() < 0.6 else _pieces(rng, len(data))}
    if pick < 0.8:
        data = rng.choice(inputs)
        cut = rng.randint(0, max(len(data) - 1, 0))
        return {"kind": "half", "data": data[:cut], "shutdown": False, "pieces": [cut],
                "read": rng.random() < 0.3}
    if pick < 0.95:
        if rng.random() < 0.3:
            data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        else:
            data = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 7, 8, 100, 3000))))
        return {"kind": "garbage", "data": data, "shutdown": rng.random() < 0.5,
                "pieces": [len(data)]}
    data = rng.choice(inputs)
    if rng.random() < 0.5:
        data = corpus.mutate(rng, data, inputs, protocol)
    return {"kind": "dribble", "data": data[:2000], "shutdown": rng.random() < 0.5,
            "pieces": _pieces(rng, min(len(data), 2000), small=True),
            "delay": rng.choice((0.001, 0.005, 0.02))}


_CORPORA = {"scgi": corpus.scgi_corpus(), "uwsgi": corpus.uwsgi_corpus()}


def _pieces(rng, size, small=False):
    out, left = [], size
    while left > 0:
        step = min(left, rng.choice((1, 2, 5, 16) if small else (1, 8, 100, 4096, 65536)))
        out.append(step)
        left -= step
    return out


def _send(sock, data, pieces, delay=0.0, bound=None):
    at = 0
    started = time.monotonic()
    for size in pieces:
        if at >= len(data):
            break  # (an empty send to a peer that answered and closed fails: EPIPE)
        sock.sendall(data[at:at + size])
        at += size
        if delay:
            if bound and time.monotonic() - started > bound:
                break
            time.sleep(delay)


def read_fastcgi(sock, rid, timeout, buf=b""):
    """FCGI_STDOUT of request ``rid`` up to its FCGI_END_REQUEST, reading after ``buf``:
    (stdout, the bytes read past the END_REQUEST)."""
    deadline = time.monotonic() + timeout
    stdout = []
    while True:
        while len(buf) >= 8:
            _, rtype, r, clen, plen = struct.unpack_from(">BBHHB", buf)
            if len(buf) < 8 + clen + plen:
                break
            content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
            if r == rid and rtype == fcgi.STDOUT:
                stdout.append(content)
            elif r == rid and rtype == fcgi.END_REQUEST:
                return b"".join(stdout), buf
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no FCGI_END_REQUEST in %g s" % timeout)
        sock.settimeout(left)
        data = sock.recv(262144)
        if not data:
            raise ConnectionError("closed before FCGI_END_REQUEST")
        buf += data


def _body(response):
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no blank line after the headers: %r" % response[:200])
    status = 200
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"status:") or line.startswith(b"HTTP/"):
            status = int(line.split()[1])  # CGI format, or uwsgi's HTTP status line
    return status, body


def run_connection(address, conn):
    """Do what ``conn`` (a :func:`plan`) says; for a valid one, None or why it failed."""
    if conn["kind"] == "valid":
        try:
            sock = _connect(address, VALID_TIMEOUT)
        except OSError as exc:
            return "connect: %s" % exc
        with sock:
            try:
                rest = b""
                for data, rid, expected in conn["exchanges"]:
                    piece = conn["pieces"][0] or len(data)  # sent in pieces of this size
                    _send(sock, data, [piece] * -(-len(data) // piece))
                    if conn["protocol"] != "fastcgi":
                        stdout = _drain(sock, VALID_TIMEOUT)  # up to the close
                    else:
                        stdout, rest = read_fastcgi(sock, rid, VALID_TIMEOUT, rest)
                    status, body = _body(stdout)
                    problem = _compare(status, body, expected)
                    if problem:
                        return problem
            except (OSError, ValueError, TimeoutError) as exc:
                return "%s: %s" % (type(exc).__name__, exc)
        return None
    try:
        sock = _connect(address, READ_TIMEOUT)
    except OSError:
        return None  # a full listen queue is not what this is about
    with sock:
        try:
            _send(sock, conn["data"], conn["pieces"], conn.get("delay", 0.0), DRIBBLE_BOUND)
            if conn["kind"] == "interrupt":  # once the response streams: interrupt it
                sock.recv(1)
                if conn["close"]:
                    return None
                if conn["then"]:
                    sock.sendall(conn["then"])
            if conn.get("shutdown"):
                sock.shutdown(socket.SHUT_WR)
            if conn["kind"] != "half" or conn.get("read"):
                _drain(sock, READ_TIMEOUT)
        except OSError:
            pass  # the daemon closed on us: fine
    return None


def _compare(status, body, expected):
    if status != 200 or body != expected:
        return "status %d, body %r, expected %r" % (status, body[:120], expected[:120])
    return None


# -- the log ------------------------------------------------------------------------------

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) gateways\[\d+\] (\w+): ")


def tracebacks(text):
    """The tracebacks in a log: [(time of the record before, signature, text)]."""
    found = []
    lines = text.splitlines()
    stamp, heading = 0.0, ""
    i = 0
    while i < len(lines):
        match = STAMP.match(lines[i])
        if match:
            stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")) + \
                int(match.group(2)) / 1000
            heading = lines[i]
        if lines[i].startswith("Traceback (most recent call last):"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j]):
                j += 1
            block = [heading, *lines[i:j + 1]]  # the log record it belongs to, first
            where = [x.strip() for x in block if x.strip().startswith("File ")]
            last = where[-1] if where else ""
            last = re.sub(r'File ".*?/(gateways/[^"]*)"', r"\1", last)
            exc = block[-1].split(":")[0] if len(block) > 1 else "?"
            found.append((stamp, "%s at %s" % (exc, last), "\n".join(block)))
            i = j
        i += 1
    return found


def error_lines(text):
    """The ERROR (and CRITICAL) records of a log."""
    found = []
    for line in text.splitlines():
        match = STAMP.match(line)
        if match and match.group(3) in ("ERROR", "CRITICAL"):
            found.append(line)
    return found


# -- the run ----------------------------------------------------------------------------


class Result:
    def __init__(self, protocol):
        self.protocol = protocol
        self.connections = self.valid = 0
        self.failed_valid = []  # (index, why)
        self.tracebacks = []  # (stamp, signature, text)
        self.errors = []  # ERROR lines
        self.culprits = {}  # signature: (index, path)
        self.elapsed = 0.0
        self.by_kind = {}

    def lone_errors(self):
        """ERROR lines that are not the record of a traceback."""
        headings = {text.split("\n", 1)[0] for _, _, text in self.tracebacks}
        return [line for line in self.errors if line not in headings]

    @property
    def ok(self):
        return not (self.failed_valid or self.tracebacks or self.errors)

    def signatures(self):
        counts = {}
        for _, signature, _ in self.tracebacks:
            counts[signature] = counts.get(signature, 0) + 1
        return counts

    def summary(self):
        rate = self.connections / self.elapsed if self.elapsed else 0
        malformed = self.connections - self.valid
        kinds = ", ".join("%s %d" % kv for kv in sorted(self.by_kind.items()))
        text = ("%s: %d malformed connections and %d valid requests (%s) in %.1f s (%.0f "
                "connections/s); valid requests failed: %d; log: %d Traceback, %d ERROR lines"
                % (self.protocol, malformed, self.valid, kinds, self.elapsed, rate,
                    len(self.failed_valid), len(self.tracebacks), len(self.errors)))
        for signature, count in sorted(self.signatures().items()):
            text += "\n  %dx %s" % (count, signature)
            if signature in self.culprits:
                index, path = self.culprits[signature]
                text += "\n     connection #%d -> %s" % (index, path)
        for line in self.lone_errors()[:10]:
            text += "\n  " + line
        for index, why in self.failed_valid[:10]:
            text += "\n  valid request #%d failed: %s" % (index, why)
        return text


def fuzz(protocol, count=1000, seed=1, valid_every=10, time_limit=600.0, workers=12,
         out=CRASHES, triage=True, log=sys.stdout):
    """Run ``count`` connections against a fresh daemon: a :class:`Result`."""
    result = Result(protocol)
    directory = tempfile.mkdtemp(prefix="gw-fuzz-", dir="/tmp")
    daemon = Daemon(protocol, directory).wait_ready()
    windows = {}  # index: (start, end)
    lock = threading.Lock()
    began = time.monotonic()
    deadline = began + time_limit

    def one(index):
        if time.monotonic() > deadline:
            return
        conn = plan(protocol, seed, index, valid_every)
        start = time.time()
        problem = run_connection(daemon.address, conn)
        with lock:
            windows[index] = (start, time.time())
            result.connections += 1
            result.by_kind[conn["kind"]] = result.by_kind.get(conn["kind"], 0) + 1
            if conn["kind"] == "valid":
                result.valid += 1
                if problem:
                    result.failed_valid.append((index, problem))

    try:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            total = count + (count // valid_every if valid_every else 0)
            for future in [pool.submit(one, index) for index in range(total)]:
                future.result()
        result.elapsed = time.monotonic() - began
        time.sleep(0.5)  # the last log lines
        text = daemon.log_text()
        result.tracebacks, result.errors = tracebacks(text), error_lines(text)
        if triage and result.tracebacks:
            _triage(result, daemon, windows, seed, valid_every, out, log)
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _triage(result, daemon, windows, seed, valid_every, out, log):
    """Replay the connections around the first traceback of each signature, one at a
    time, until one gives that traceback again; save its bytes."""
    first = {}
    for stamp, signature, _ in result.tracebacks:
        first.setdefault(signature, stamp)
    for signature, stamp in list(first.items())[:8]:
        near = sorted(windows, key=lambda i: (0 if windows[i][0] - 0.05 <= stamp
                                              <= windows[i][1] + 1.5 else 1,
                                              abs(windows[i][0] - stamp)))[:64]
        for index in near:
            conn = plan(result.protocol, seed, index, valid_every)
            before = len(daemon.log_text())
            run_connection(daemon.address, conn)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                new = daemon.log_text()[before:]
                if "Traceback" in new:
                    break
                time.sleep(0.02)
            if any(sig == signature for _, sig, _ in tracebacks(new)):
                result.culprits[signature] = (index, save(result.protocol, seed, index, conn,
                                                          signature, valid_every, out))
                break


def save(protocol, seed, index, conn, signature, valid_every, out):
    os.makedirs(out, exist_ok=True)
    digest = hashlib.sha1(conn["data"]).hexdigest()[:10]
    path = os.path.join(out, "socket-%s-%s.bin" % (protocol, digest))
    with open(path, "wb") as f:
        f.write(conn["data"])
    meta = {"protocol": protocol, "seed": seed, "index": index, "kind": conn["kind"],
            "pieces": conn["pieces"], "shutdown": conn.get("shutdown"),
            "valid_every": valid_every, "traceback": signature,
            "repro": "python fuzz/sockets.py --protocol %s --seed %d --index %d%s" % (
                protocol, seed, index,
                "" if valid_every == 10 else " --valid-every %d" % valid_every)}
    with open(path[:-4] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return os.path.relpath(path)


def replay_one(protocol, seed, index, valid_every, log=sys.stdout):
    """Connection ``index`` alone against a fresh daemon; print the daemon's log."""
    directory = tempfile.mkdtemp(prefix="gw-fuzz-", dir="/tmp")
    daemon = Daemon(protocol, directory).wait_ready()
    try:
        conn = plan(protocol, seed, index, valid_every)
        before = len(daemon.log_text())
        print("%s connection #%d of seed %d: %s, %d bytes in %d pieces%s: %r%s" % (
            protocol, index, seed, conn["kind"], len(conn["data"]), len(conn["pieces"]),
            ", then SHUT_WR" if conn.get("shutdown") else "", conn["data"][:200],
            "..." if len(conn["data"]) > 200 else ""), file=log)
        problem = run_connection(daemon.address, conn)
        time.sleep(0.5)
        new = daemon.log_text()[before:]
        print(new.rstrip() or "(nothing logged)", file=log)
        if problem:
            print("valid request failed: %s" % problem, file=log)
        return 1 if problem or tracebacks(new) or error_lines(new) else 0
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python fuzz/sockets.py", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 when the log is clean and every valid request was answered "
        "right, 1 otherwise.  See fuzz/README.rst.")
    parser.add_argument("--protocol", choices=(*PROTOCOLS, "all"), default="all",
                        help="the daemon to fuzz (default: all, one after the other)")
    parser.add_argument("--count", type=int, default=1000,
                        help="malformed connections per protocol (default: 1000)")
    parser.add_argument("--seed", type=int, default=1, help="(default: 1)")
    parser.add_argument("--valid-every", type=int, default=10,
                        help="a valid request after every N malformed connections; 0: none "
                        "(default: 10)")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="stop opening connections after this many s (default: 600)")
    parser.add_argument("--workers", type=int, default=12,
                        help="client threads (default: 12)")
    parser.add_argument("--index", type=int, help="run connection INDEX of --seed alone "
                        "against a fresh daemon and show what it logged")
    parser.add_argument("--out", default=CRASHES,
                        help="where the connections that cause tracebacks are written "
                        "(default: fuzz/crashes)")
    args = parser.parse_args(argv)
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    status = 0
    for protocol in protocols:
        if args.index is not None:
            status |= replay_one(protocol, args.seed, args.index, args.valid_every)
            continue
        result = fuzz(protocol, args.count, args.seed, args.valid_every, args.time_limit,
                      args.workers, args.out)
        print(result.summary())
        sys.stdout.flush()
        if not result.ok:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
