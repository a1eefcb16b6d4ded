"""A short run of the fuzzers of fuzz/ (see fuzz/README.rst): every check, both cores.

In-process, 20,000 mutated inputs per protocol core (``fuzz/cores.py``,
seed 1), each failure kind its own test; then 1,000 connections per
protocol against a real daemon (``fuzz/sockets.py``), whose log must hold no
traceback.  The long runs are documented in fuzz/README.rst.

The bugs the fuzzers find today are marked ``xfail(strict=True)`` with the
bug named: when a fix lands, its test passes, fails as XPASS, and the mark
goes.  Any other failure is a new bug: the message says how to reproduce it.
"""

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import cores  # noqa: E402  (fuzz/ is a directory of scripts, not a package)
import sockets  # noqa: E402

COUNT = 20000  # inputs per core
CONNECTIONS = 1000  # malformed connections per protocol (and a valid request per 10)
SEED = 1

# (protocol, kind): the known bug that makes that check fail today (none now: the
# quadratic answers, the FastCGI error state, the 4300-digit CONTENT_LENGTH and the
# SCGI reference cycle these marks named are fixed).
KNOWN_CORE: dict = {}


def _case(protocol, kind, known):
    reason = known.get((protocol, kind))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(protocol, kind, marks=marks, id="%s-%s" % (protocol, kind))


_core_runs = {}


def core_run(protocol, out):
    """One keep-going run per core, shared by the tests of each failure kind."""
    if protocol not in _core_runs:
        _core_runs[protocol] = cores.Fuzzer(protocol, SEED, keep_going=True, out=str(out),
                                            log=sys.stderr).run(COUNT)
    return _core_runs[protocol]


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    return tmp_path_factory.mktemp("crashes")


@pytest.mark.parametrize(("protocol", "kind"), [
    _case(protocol, kind, KNOWN_CORE) for protocol in cores.PROTOCOLS for kind in cores.KINDS])
def test_core(protocol, kind, crashes):
    fuzzer = core_run(protocol, crashes)
    assert fuzzer.inputs == COUNT, fuzzer.summary()
    found = [f for f in fuzzer.findings.values() if f.kind == kind]
    assert not found, "\n".join(
        "%s (%d inputs like it); first: input #%s, repro: python fuzz/cores.py --core %s "
        "--seed %d --index %s" % (f.line(), f.count, f.index, protocol, SEED, f.index)
        for f in found) + "\n" + fuzzer.summary()


# -- against a daemon -------------------------------------------------------------------------

# Tracebacks in the daemon's log, by what they are: (protocol, name): (patterns, bug);
# a traceback is that bug when it holds every pattern (a tuple: any of its strings).
KNOWN_SOCKET: dict = {}  # (the abort-then-stdin and CONTENT_LENGTH crashes are fixed)

_socket_runs = {}


def socket_run(protocol):
    if protocol not in _socket_runs:
        _socket_runs[protocol] = sockets.fuzz(protocol, CONNECTIONS, SEED, triage=False,
                                              log=sys.stderr)
    return _socket_runs[protocol]


def _classify(protocol, text):
    for (known_protocol, name), (patterns, _) in KNOWN_SOCKET.items():
        if known_protocol == protocol and all(
                any(one in text for one in (pattern if isinstance(pattern, tuple) else (pattern,)))
                for pattern in patterns):
            return name
    return "other"


@pytest.mark.parametrize("protocol", sockets.PROTOCOLS)
def test_sockets_valid_requests_all_answered(protocol):
    result = socket_run(protocol)
    assert result.connections - result.valid == CONNECTIONS, result.summary()
    assert result.valid == CONNECTIONS // 10, result.summary()
    assert not result.failed_valid, result.summary()


@pytest.mark.parametrize(("protocol", "name"), [
    *[pytest.param(p, n, marks=pytest.mark.xfail(strict=True, reason=bug), id="%s-%s" % (p, n))
      for (p, n), (_, bug) in KNOWN_SOCKET.items()],
    *[pytest.param(p, "other", id="%s-other" % p) for p in sockets.PROTOCOLS]])
def test_sockets_no_traceback(protocol, name):
    result = socket_run(protocol)
    found = [sig for _, sig, text in result.tracebacks if _classify(protocol, text) == name]
    if name == "other":  # and ERROR lines without a traceback
        found += result.lone_errors()
    assert not found, ("%d in the daemon's log, e.g. %s\nfind the connection: python "
                       "fuzz/sockets.py --protocol %s --count %d --seed %d\n%s" % (
                           len(found), found[0], protocol, CONNECTIONS, SEED,
                           result.summary()))
