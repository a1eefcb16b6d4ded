"""Operator errors as values, and the one place that prints them.

An operator's mistake — a bad option, an application that does not load, an
address in use, a pid file held by a live daemon — is an
:class:`OperatorError` carrying the exit status.  Whatever layer finds it
raises it; :func:`report` (called by ``gateways.cli.main``, the launcher and
the CGI entry point) writes the one line ``gateways: error: ...`` and gives
the exit status back.  No traceback unless debug mode asks for one.

HTTP refusals (400, 413, 500 pages a gateway answers by itself) are values
too: :class:`gateways.response.Refusal`.

This module imports nothing beyond ``sys`` (it is on the CGI path, which pays
for every import): every layer may use it.  Its annotations are strings.
"""

import sys

PROG = "gateways"
TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from typing import TextIO


class OperatorError(Exception):
    """A mistake an operator can fix: one line, exit status ``status``."""

    status = 2

    def __init__(self, message: str, status: "int | None" = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class ConfigError(OperatorError):
    """A bad option, argument or environment variable (exit status 2)."""


class AddressInUse(ConfigError):
    """Another server has the address (exit status 1: not a typo, try later)."""

    status = 1


class AlreadyRunning(ConfigError):
    """Another daemon holds the pid file (exit status 1)."""

    status = 1


class AppLoadError(OperatorError):
    """The application named by APP could not be loaded (exit status 2).

    ``raised`` is True when the application's own code failed (an exception
    or a syntax error while importing it, its factory raised): its traceback
    says why, where the other failures (not found, wrong name) need APP,
    --app-dir or an installation corrected.
    """

    def __init__(self, spec: str, reason: str, raised: bool = False) -> None:
        super().__init__("cannot load application %r: %s" % (spec, reason))
        self.spec = spec
        self.reason = reason
        self.raised = raised


def stderr_open() -> bool:
    """True when fd 2 is open and Python has a stream for it (a web server that
    spawns FastCGI may close it)."""
    if sys.stderr is None:
        return False
    try:
        import os

        os.fstat(2)
    except OSError:
        return False
    return True


def traceback_text(exc: BaseException) -> str:
    """The traceback of ``exc`` for debug mode, its causes included, without its own
    last line: :func:`report` prints the message once, as the one line."""
    import traceback

    found = traceback.TracebackException.from_exception(exc)
    lines = list(found.format())
    tail = list(found.format_exception_only())
    if lines[-len(tail):] == tail:
        del lines[-len(tail):]
    return "".join(lines)


def report(error: OperatorError, debug: bool = False, stream: "TextIO | None" = None) -> int:
    """Write ``gateways: error: MESSAGE`` to ``stream`` (default: stderr, when it is
    open), one line, in debug mode after the traceback of what caused it, and
    return the exit status."""
    if stream is None:
        if not stderr_open():
            return error.status
        stream = sys.stderr
    try:
        if debug and (error.__cause__ is not None or error.__context__ is not None):
            stream.write(traceback_text(error))
        stream.write("%s: error: %s\n" % (PROG, error))
        stream.flush()
    except (OSError, ValueError):
        pass
    return error.status
