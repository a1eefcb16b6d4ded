#!/usr/bin/env python3
"""Mutation fuzzer for the sans-IO protocol cores (FastCGI, SCGI, uwsgi), in-process.

Each input is a valid request from ``corpus.py`` (built with the cores' own
encoders) with 1 to 5 mutations stacked on it: bit flips, interesting bytes,
inserted and deleted bytes, truncation, a splice of two inputs, a slice
repeated up to thousands of times, a length field set to a boundary value
(0, 1, 127, 128, 255, 65535, 0x7fffffff...) or to a huge digit string,
records inserted, dropped or repeated.  It is fed whole, byte by byte, in
random splits or cut at record edges, to a fresh core, while this script
plays the server (answers each request, clears ``outgoing``).  Input N of
seed S is always the same: ``--seed S --index N`` replays it.

A run FAILS (exit status 1) on the first of these, unless ``--keep-going``:

exception
    anything a core raises that is not ``gateways.protocol.ProtocolError``;
slow
    one ``feed()`` call that takes longer than ``--max-feed-ms`` (100 ms),
    twice in a row;
error-state
    a ``feed()`` after a ProtocolError that does not raise the same class
    again, nor ``eof()``;
cycle
    reference cycles holding a core object, left behind by an input (the
    cycle collector is off while inputs run, ``gc.collect()`` must then
    find none): they hold buffers and tracebacks until a full collection;
memory
    the resident set growing by more than ``--max-rss-growth-mb`` between
    the end of the warm-up and the end of the run;
invariant
    events that break the core's own promises (Data past CONTENT_LENGTH,
    empty Data, non-str params...);
splits
    (every ``--splits-every`` th input, 8) the input fed in its chunks and
    fed whole to a core nobody answers give different events, errors or
    answers.

Each failure writes the input to ``--out`` (default ``fuzz/crashes/``) as
``CORE-KIND-HASH.bin`` with a ``.json`` beside it (how it was fed, the
limits, the message) and prints the one-line reason and a repro command::

    python fuzz/cores.py --count 20000                  # every core
    python fuzz/cores.py --core scgi --count 1000000 --keep-going
    python fuzz/cores.py --repro fuzz/crashes/scgi-exception-0123456789.bin
"""

import argparse
import gc
import hashlib
import json
import os
import random
import sys
import time
import traceback

try:  # the installed gateways (scripts/test puts this checkout in .venv), else this checkout
    import gateways  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gateways.protocol import ProtocolError, scgi, uwsgi
from gateways.protocol import events as ev
from gateways.protocol import fastcgi as fcgi

import corpus

HERE = os.path.dirname(os.path.abspath(__file__))
CRASHES = os.path.join(HERE, "crashes")
PROTOCOLS = ("fastcgi", "scgi", "uwsgi")
KINDS = ("exception", "slow", "error-state", "cycle", "memory", "invariant", "splits")
# What is fed after an error, when the input has nothing left: a valid record / request.
PROBES = {"fastcgi": corpus.get_values(), "scgi": corpus.make_request({}),
          "uwsgi": uwsgi.make_request({})}


class Finding:
    """One failure: what went wrong and the input that shows it."""

    def __init__(self, protocol, kind, message, where="", details=""):
        self.protocol, self.kind, self.message = protocol, kind, message
        self.where, self.details = where, details  # details: a traceback, for --repro
        self.data = self.chunks = self.limits = self.index = self.seed = None
        self.count = 1
        self.elapsed = 0.0  # the slowest feed(), for "slow"

    @property
    def signature(self):
        """Findings with one signature are one bug (counted, saved once)."""
        if self.kind == "cycle":
            return "%s cycle %s" % (self.protocol, self.where)
        if self.kind == "error-state":  # one bug: no error state, or a wrong one
            return "%s %s %s" % (self.protocol, self.kind, "returned" in self.message)
        if self.kind in ("exception", "invariant"):
            return "%s %s %s %s" % (self.protocol, self.kind, self.message.split(":")[0],
                                    self.where)
        return "%s %s" % (self.protocol, self.kind)

    def line(self):
        where = " (%s)" % self.where if self.where else ""
        return "%s %s: %s%s" % (self.protocol, self.kind, one_line(self.message), where)


def one_line(text, limit=240):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _where(exc):
    """file:line of the innermost frame in gateways/, else the innermost one."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if os.sep + "gateways" + os.sep in f.filename]
    frame = (inside or frames or [None])[-1]
    if frame is None:
        return ""
    path = frame.filename
    cut = path.rfind(os.sep + "gateways" + os.sep)
    return "%s:%d in %s" % (path[cut + 1:] if cut >= 0 else path, frame.lineno, frame.name)


def _exception(protocol, exc, when):
    return Finding(protocol, "exception", "%s: %s (%s)" % (type(exc).__name__, exc, when),
                   _where(exc), "".join(traceback.format_exception(type(exc), exc,
                                                                   exc.__traceback__)))


# -- one input -----------------------------------------------------------------------------


def make_core(protocol, limits):
    if protocol == "fastcgi":
        return fcgi.Connection(roles=(fcgi.RESPONDER, fcgi.AUTHORIZER), **limits)
    if protocol == "uwsgi":
        return uwsgi.UWSGIRequestParser(**limits)
    return scgi.SCGIRequestParser(**limits)


def _serve_fastcgi(conn, events):
    """Play the server: answer each finished request, check what the events promise."""
    for event in events:
        kind = type(event)
        if kind is ev.Data:
            if type(event.data) is not bytes or not event.data:
                return "Data event with %r" % (event.data[:20],)
        elif kind is ev.Request:
            if type(event.params) is not dict or not all(
                    type(k) is str and type(v) is str for k, v in event.params.items()):
                return "Request params are not a dict of str"
        elif kind is ev.EndOfBody:
            if event.request_id == conn.request_id:
                conn.stdout(b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                conn.stderr(b"a line for the error log\n")
                conn.end_request(b"ok")
        elif kind is ev.Abort:
            if event.request_id == conn.request_id:
                conn.end_request(b"", 1)
        else:
            return "unknown event %r" % (event,)
    conn.data_to_send()  # the server sends it
    return None


class _FramedState:
    """What a request framed by its CONTENT_LENGTH (SCGI, uwsgi) has shown so far."""

    __slots__ = ("request", "received", "ended")

    def __init__(self):
        self.request = None
        self.received = 0
        self.ended = False


def _check_framed(state, events):
    for event in events:
        kind = type(event)
        if state.ended:
            return "%r after EndOfBody" % (event,)
        if kind is ev.Request:
            if state.request is not None:
                return "a second Request event"
            if type(event.content_length) is not int or event.content_length < 0:
                return "content_length %r" % (event.content_length,)
            if type(event.params) is not dict or not all(
                    type(k) is str and type(v) is str for k, v in event.params.items()):
                return "Request params are not a dict of str"
            state.request = event
        elif state.request is None:
            return "%s before Request" % kind.__name__
        elif kind is ev.Data:
            if type(event.data) is not bytes or not event.data:
                return "Data event with %r" % (event.data[:20],)
            state.received += len(event.data)
            if state.received > state.request.content_length:
                return "Data past CONTENT_LENGTH %d" % state.request.content_length
        elif kind is ev.EndOfBody:
            if state.received != state.request.content_length:
                return "EndOfBody after %d of %d bytes" % (state.received,
                                                          state.request.content_length)
            state.ended = True
        else:
            return "unknown event %r" % (event,)
    return None


def run_input(protocol, chunks, limits, error_state=True, max_feed=0.1):
    """Feed ``chunks`` to a fresh core: None, or the :class:`Finding` (without its input).

    A feed() slower than ``max_feed`` s gives a "slow" finding that the caller
    confirms by running the input again.
    """
    core = make_core(protocol, limits)
    state = None if protocol == "fastcgi" else _FramedState()
    clock = time.perf_counter
    error = None
    index = 0
    for index, chunk in enumerate(chunks):
        started = clock()
        try:
            events = core.feed(chunk)
        except ProtocolError as exc:
            error = type(exc)
            break
        except Exception as exc:  # the bug this fuzzer is for
            return _exception(protocol, exc, "feed() #%d of %d" % (index + 1, len(chunks)))
        finally:
            elapsed = clock() - started
            if elapsed > max_feed:
                slow = Finding(protocol, "slow", "feed() #%d of %d (%d bytes) took %.0f ms"
                               % (index + 1, len(chunks), len(chunk), elapsed * 1000))
                slow.elapsed = elapsed
                return slow  # noqa: B012  (whatever the feed() did, this is the finding)
        try:
            problem = (_serve_fastcgi(core, events) if state is None
                       else _check_framed(state, events))
        except Exception as exc:
            return _exception(protocol, exc, "answering the events of feed() #%d" % (index + 1))
        if problem:
            return Finding(protocol, "invariant", problem)
    else:  # the input ended without an error: the peer closes
        try:
            events = core.eof()
            if state is not None:
                _check_framed(state, events)
        except ProtocolError as exc:
            error = type(exc)
            index = len(chunks)
        except Exception as exc:
            return _exception(protocol, exc, "at the end of the input")
    if error is None or not error_state:
        return None
    # The core is dead after an error: what comes next raises the same class again.
    rest = [c for c in chunks[index + 1:] if c][:1] or [PROBES[protocol]]
    calls = [("feed(%d bytes)" % len(rest[0]), lambda: core.feed(rest[0])), ("eof()", core.eof)]
    for name, call in calls:
        try:
            result = call()
        except ProtocolError as exc:
            if type(exc) is not error:
                return Finding(protocol, "error-state", "%s: %s after %s"
                               % (error.__name__, name, type(exc).__name__))
            continue
        except Exception as exc:
            return _exception(protocol, exc, "%s after %s" % (name, error.__name__))
        return Finding(protocol, "error-state", "%s: %s after it returned %s"
                       % (error.__name__, name, one_line(repr(result), 60)))
    return None


def passive(protocol, chunks, limits):
    """What a core makes of ``chunks`` when nobody answers: (error class or None, events
    with the body pieces of a request joined, outgoing bytes).  The same for any split."""
    core = make_core(protocol, limits)
    events, out = [], []
    try:
        for chunk in chunks:
            events += core.feed(chunk)
            out.append(core.data_to_send())
        events += core.eof()
    except Exception as exc:  # an exception here is reported by run_input already
        return type(exc).__name__, None, None
    merged = []
    for event in events:
        if type(event) is ev.Data:
            rid = getattr(event, "request_id", 0)
            if merged and type(merged[-1]) is tuple and merged[-1][0] == rid:
                merged[-1] = (rid, merged[-1][1] + event.data)
            else:
                merged.append((rid, event.data))
        else:
            merged.append(event)
    return None, merged, b"".join(out)


def check_splits(protocol, data, chunks, limits):
    """A :class:`Finding` when feeding ``chunks`` and feeding ``data`` whole differ."""
    split, whole = passive(protocol, chunks, limits), passive(protocol, [data], limits)
    if split == whole:
        return None
    if split[0] != whole[0]:
        what = "error %s in %d feed() calls, %s whole" % (split[0], len(chunks), whole[0])
    elif split[1] != whole[1]:
        what = "events differ in %d feed() calls and whole: %s / %s" % (
            len(chunks), one_line(repr(split[1]), 100), one_line(repr(whole[1]), 100))
    else:
        what = "outgoing differs in %d feed() calls and whole" % len(chunks)
    return Finding(protocol, "splits", what)


# -- inputs from a seed --------------------------------------------------------------------

CORPORA = {}


def _corpus(protocol):
    if protocol not in CORPORA:
        CORPORA[protocol] = {"fastcgi": corpus.fastcgi_corpus, "scgi": corpus.scgi_corpus,
                             "uwsgi": corpus.uwsgi_corpus}[protocol]()
    return CORPORA[protocol]


def limits_for(rng, protocol):
    """The core's limits: the defaults mostly, small ones sometimes (reach the checks)."""
    if rng.random() < 0.85:
        return {}
    if protocol == "fastcgi":
        return {"max_params_size": rng.choice((0, 10, 100, 1000)),
                "max_params": rng.choice((0, 1, 5))}
    return {"max_header_size": rng.choice((0, 1, 9, 10, 99, 100, 1000)),
            "max_params": rng.choice((0, 1, 2, 5))}


def generate(protocol, seed, index, rng=None):
    """Input ``index`` of ``seed``: (data, chunks, limits), the same on every run."""
    rng = rng or random.Random()
    rng.seed(seed * 1_000_000_007 + index)
    inputs = _corpus(protocol)
    data = rng.choice(inputs)
    if rng.random() < 0.97:  # a few stay valid: the valid paths run too
        data = corpus.mutate(rng, data, inputs, protocol)
    return data, corpus.chunkings(rng, data, protocol), limits_for(rng, protocol)


def rss_kb():
    """This process's resident set (kB) from /proc; 0 where there is none."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError):
        return 0


def _garbage_types():
    """The type names of the cyclic garbage gc finds now (and frees it)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        names = sorted({type(o).__name__ for o in gc.garbage})
        count = len(gc.garbage)
    finally:
        gc.garbage.clear()
        gc.set_debug(0)
    gc.collect()
    return count, names


CORE_CLASSES = {"Connection", "SCGIRequestParser", "UWSGIRequestParser"}


def _cycle_key(names):
    """What identifies a cycle: the core's class in it (else every type in it)."""
    ours = [n for n in names if n in CORE_CLASSES]
    return ",".join(ours or names)


class Fuzzer:
    """Runs the inputs of one core; collects findings by signature."""

    def __init__(self, protocol, seed=1, error_state=True, max_feed_ms=100.0,
                 max_rss_growth_mb=64.0, cycle_every=1000, keep_going=False, out=CRASHES,
                 log=sys.stdout, splits_every=8):
        self.protocol, self.seed = protocol, seed
        self.error_state, self.max_feed = error_state, max_feed_ms / 1000
        self.max_rss_growth_kb = max_rss_growth_mb * 1024
        self.cycle_every, self.keep_going = cycle_every, keep_going
        self.splits_every = splits_every
        self.out, self.log = out, log
        self.findings = {}  # signature: first Finding (with its count)
        self.inputs = 0
        self.elapsed = 0.0
        self.rss = (0, 0)

    def _run(self, index, rng):
        data, chunks, limits = generate(self.protocol, self.seed, index, rng)
        finding = run_input(self.protocol, chunks, limits, self.error_state, self.max_feed)
        if finding is not None and finding.kind == "slow" and finding.elapsed < 3 * self.max_feed:
            # Confirm: not a hiccup of a machine shared with others.
            again = run_input(self.protocol, chunks, limits, self.error_state, self.max_feed)
            if again is None or again.kind != "slow":
                finding = None
        if finding is None and self.splits_every and not index % self.splits_every \
                and len(chunks) > 1 and len(data) <= 65536:
            finding = check_splits(self.protocol, data, chunks, limits)
        if finding is not None:
            finding.data, finding.chunks, finding.limits = data, chunks, limits
            finding.index, finding.seed = index, self.seed
        return finding

    def _record(self, finding):
        """Count a finding; save and print it when its signature is new.  True: stop."""
        known = self.findings.get(finding.signature)
        if known is not None:
            known.count += 1
            return False
        self.findings[finding.signature] = finding
        save(finding, self.out, self.error_state)
        report(finding, self.out, self.log, self.error_state)
        return not self.keep_going

    def _cycles(self, window, rng):
        """Did the inputs of ``window`` leave cyclic garbage?  Find the first that does.
        True: stop the run."""
        count, names = _garbage_types()
        if not count or not set(names) & CORE_CLASSES:
            return False  # none, or not ours (a test runner's, say)
        known = self.findings.get("%s cycle %s" % (self.protocol, _cycle_key(names)))
        if known is not None:
            known.count += 1
            return False
        for index in window:
            self._run(index, rng)
            found, names = _garbage_types()
            if found:
                finding = Finding(self.protocol, "cycle", "%d objects in reference cycles "
                                  "after one input: %s" % (found, ", ".join(names)),
                                  _cycle_key(names))
                data, chunks, limits = generate(self.protocol, self.seed, index, rng)
                finding.data, finding.chunks, finding.limits = data, chunks, limits
                finding.index, finding.seed = index, self.seed
                return self._record(finding)
        return False  # not reproducible alone (garbage of the harness?): let it go

    def run(self, count, start=0, time_limit=None):
        """Inputs ``start`` .. ``start + count - 1``; returns self (see ``findings``)."""
        rng = random.Random()
        warm = start + min(1000, max(count // 10, 1))
        gc.collect()
        enabled = gc.isenabled()
        gc.disable()
        began = time.perf_counter()
        deadline = began + time_limit if time_limit else None
        window = []
        rss_warm = rss_kb()
        try:
            for index in range(start, start + count):
                if index == warm:
                    gc.collect()
                    rss_warm = rss_kb()
                finding = self._run(index, rng)
                self.inputs += 1
                if finding is not None and self._record(finding):
                    return self
                if self.cycle_every:
                    window.append(index)
                    if len(window) >= self.cycle_every:
                        if self._cycles(window, rng):
                            return self
                        window = []
                if deadline and not self.inputs % 256 and time.perf_counter() > deadline:
                    break
            if self.cycle_every and window and self._cycles(window, rng):
                return self
            gc.collect()
            self.rss = (rss_warm, rss_kb())
            if self.inputs > 2 * (warm - start) and self.rss[1] - self.rss[0] > \
                    self.max_rss_growth_kb:
                memory = Finding(self.protocol, "memory", "resident set grew from %d to %d kB"
                                 " over inputs %d-%d" % (self.rss[0], self.rss[1], warm,
                                                          start + self.inputs - 1))
                memory.seed, memory.index = self.seed, start + self.inputs  # (the --count)
                self._record(memory)
        finally:
            self.elapsed = time.perf_counter() - began
            if enabled:
                gc.enable()
        return self

    def summary(self):
        rate = self.inputs / self.elapsed if self.elapsed else 0
        by_kind = {}
        for finding in self.findings.values():
            by_kind[finding.kind] = by_kind.get(finding.kind, 0) + finding.count
        found = ", ".join("%s %d" % (kind, by_kind[kind]) for kind in KINDS if kind in by_kind)
        return ("%s: %d inputs in %.1f s (%.0f inputs/s), RSS %d -> %d kB; %s"
                % (self.protocol, self.inputs, self.elapsed, rate, self.rss[0], self.rss[1],
                   "failures: " + found + " (%d distinct)" % len(self.findings)
                   if self.findings else "no failures"))


# -- crash files ---------------------------------------------------------------------------


def crash_path(finding, out):
    digest = hashlib.sha1(finding.data or b"").hexdigest()[:10]
    return os.path.join(out, "%s-%s-%s.bin" % (finding.protocol, finding.kind, digest))


def repro_command(finding, out, error_state):
    if finding.data is None:  # memory: the run itself
        return "python %s --core %s --seed %d --count %d" % (
            os.path.relpath(os.path.abspath(__file__)), finding.protocol, finding.seed or 1,
            finding.index or 0)
    flag = "" if error_state else " --no-error-state"
    return "python %s --repro %s%s" % (os.path.relpath(os.path.abspath(__file__)),
                                       os.path.relpath(crash_path(finding, out)), flag)


def save(finding, out, error_state):
    if finding.data is None:
        return
    os.makedirs(out, exist_ok=True)
    path = crash_path(finding, out)
    with open(path, "wb") as f:
        f.write(finding.data)
    meta = {"protocol": finding.protocol, "kind": finding.kind, "message": finding.message,
            "where": finding.where, "seed": finding.seed, "index": finding.index,
            "limits": finding.limits, "chunks": [len(c) for c in finding.chunks],
            "error_state": error_state}
    with open(path[:-4] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def report(finding, out, log, error_state):
    print("FAIL " + finding.line(), file=log)
    if finding.data is not None:
        print("  input #%d of seed %d: %d bytes in %d feed() calls -> %s" % (
            finding.index, finding.seed, len(finding.data), len(finding.chunks),
            os.path.relpath(crash_path(finding, out))), file=log)
    print("  repro: " + repro_command(finding, out, error_state), file=log)
    log.flush()


def run_alone(protocol, data, chunks, limits, error_state=True, max_feed_ms=100.0):
    """One input with every check a run makes (cycles and splits too): None or a Finding."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        finding = run_input(protocol, chunks, limits, error_state, max_feed_ms / 1000)
        if finding is None and len(chunks) > 1:
            finding = check_splits(protocol, data, chunks, limits)
        count, names = _garbage_types()
        if finding is None and count and set(names) & CORE_CLASSES:
            finding = Finding(protocol, "cycle", "%d objects in reference cycles after one "
                              "input: %s" % (count, ", ".join(names)), _cycle_key(names))
    finally:
        if enabled:
            gc.enable()
    return finding


def replay(path, error_state=True, max_feed_ms=100.0, log=sys.stdout):
    """Run a saved input again the way it was fed; print what happens.  Exit status."""
    with open(path, "rb") as f:
        data = f.read()
    meta = {}
    if os.path.exists(path[:-4] + ".json"):
        with open(path[:-4] + ".json") as f:
            meta = json.load(f)
    protocol = meta.get("protocol") or os.path.basename(path).split("-")[0]
    feeds = []
    if meta.get("chunks"):
        chunks, at = [], 0
        for size in meta["chunks"]:
            chunks.append(data[at:at + size])
            at += size
        feeds.append(("as recorded (%d feed() calls)" % len(chunks), chunks))
    feeds += [("whole", [data]), ("byte by byte", [data[i:i + 1] for i in range(len(data))])]
    status = 0
    limits = meta.get("limits") or {}
    for label, chunks in feeds:
        finding = run_alone(protocol, data, chunks, limits, error_state, max_feed_ms)
        print("%s, %d bytes fed %s: %s" % (protocol, len(data), label,
                                           finding.line() if finding else "ok"), file=log)
        if finding is not None:
            status = 1
            if finding.details:
                print(finding.details.rstrip(), file=log)
    return status


# -- command line --------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python fuzz/cores.py",
        description=__doc__.split("\n\n")[0].split("\n", 1)[0],
        epilog="Exit status: 0 without failures, 1 with any.  See fuzz/README.rst.")
    parser.add_argument("--core", choices=(*PROTOCOLS, "all"), default="all",
                        help="the core to fuzz (default: all)")
    parser.add_argument("--count", type=int, default=20000,
                        help="inputs per core (default: 20000)")
    parser.add_argument("--seed", type=int, default=1, help="input N of a seed is always the "
                        "same (default: 1)")
    parser.add_argument("--start", type=int, default=0, help="first input index (default: 0)")
    parser.add_argument("--index", type=int, help="run input INDEX of --seed alone, verbosely")
    parser.add_argument("--time-limit", type=float, help="stop each core after this many s")
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop at the first failure: count failures by kind, save "
                        "one input per distinct failure")
    parser.add_argument("--no-error-state", action="store_true",
                        help="do not require the FastCGI core to raise again after an error "
                        "(the SCGI parser is always checked)")
    parser.add_argument("--max-feed-ms", type=float, default=100.0,
                        help="slowest acceptable feed() call (default: 100)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0,
                        help="largest acceptable growth of the resident set after the "
                        "warm-up (default: 64)")
    parser.add_argument("--cycle-every", type=int, default=1000,
                        help="look for reference cycles every N inputs; 0: never "
                        "(default: 1000)")
    parser.add_argument("--splits-every", type=int, default=8,
                        help="compare split and whole feeding every N inputs; 0: never "
                        "(default: 8)")
    parser.add_argument("--out", default=CRASHES,
                        help="where failing inputs are written (default: fuzz/crashes)")
    parser.add_argument("--repro", metavar="FILE", help="replay a saved input and exit")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    error_state = not args.no_error_state
    if args.repro:
        return replay(args.repro, error_state, args.max_feed_ms)
    protocols = PROTOCOLS if args.core == "all" else (args.core,)
    if args.index is not None:
        status = 0
        for protocol in protocols:
            data, chunks, limits = generate(protocol, args.seed, args.index)
            print("%s input #%d of seed %d: %d bytes in %d feed() calls, limits %r: %r%s" % (
                protocol, args.index, args.seed, len(data), len(chunks), limits, data[:200],
                "..." if len(data) > 200 else ""))
            finding = run_alone(protocol, data, chunks, limits, error_state, args.max_feed_ms)
            print("  " + (finding.line() if finding else "ok"))
            if finding is not None:
                status = 1
                if finding.details:
                    print(finding.details.rstrip())
        return status
    status = 0
    for protocol in protocols:
        fuzzer = Fuzzer(protocol, args.seed, error_state, args.max_feed_ms,
                        args.max_rss_growth_mb, args.cycle_every, args.keep_going, args.out,
                        splits_every=args.splits_every)
        fuzzer.run(args.count, args.start, args.time_limit)
        print(fuzzer.summary())
        sys.stdout.flush()
        if fuzzer.findings:
            status = 1
            if not args.keep_going:
                break
    return status


if __name__ == "__main__":
    sys.exit(main())
