"""The CGI gateway (RFC 3875): one request from the environment, stdin and stdout.

A cgi-bin script is three lines::

    #!/usr/bin/python3
    from gateways.cgi import run
    from myapp import application
    run(application)

The web server starts a fresh interpreter for every request, so start-up time
is this gateway's main cost: it imports only :mod:`gateways.environ` and
:mod:`gateways.response`, which import nothing the interpreter had not already
loaded.

What it does beyond the WSGI core:

* Meta-variables come from ``os.environb`` (bytes), so that each value reaches
  the application as latin-1 code points whatever the locale (PEP 3333).
* ``wsgi.input`` never reads past ``CONTENT_LENGTH`` (RFC 3875 §4.2).  Without
  ``CONTENT_LENGTH`` a chunked request body (Apache mod_cgid forwards one
  that way) is read to the end of stdin and ``wsgi.input_terminated`` is set.
* The unread rest of the body is drained before exit: Apache mod_cgid drops
  the whole response of a script that exits without reading its input.
* While the application runs, ``sys.stdout`` points at stderr: a stray
  ``print()`` lands in the error log instead of corrupting the response.
* Nothing escapes between the headers and the body: lighttpd leaves the
  client hanging when a CGI program dies half-way.
* When the client goes away, the web server ends the CGI process: Apache
  mod_cgid and lighttpd mod_cgi send SIGTERM or close its stdout (EPIPE).
  Either way the application's iterable is closed (PEP 3333: ``close()``
  always runs) and the process exits quietly: no traceback, no "Exception
  ignored ... BrokenPipeError" in the error log.  The handler comes from the
  builtin ``_signal`` module (``signal`` would import ``enum``).
"""

import _signal  # type: ignore[import-not-found]  # typeshed has no stub for signal's C half
import os
import sys

from gateways.environ import (
    LimitedInput,
    build_environ,
    content_length,
    decode_environ,
    normalize_mount,
)
from gateways.response import (
    BAD_CONTENT_LENGTH,
    NO_APPLICATION,
    ClientDisconnected,
    FileWrapper,
)
from gateways.response import run as run_app


class StdoutTransport:
    """Writes the CGI response to stdout (see :mod:`gateways.response`);
    ``gone`` once a write failed (the web server closed its end)."""

    __slots__ = ("out", "gone")
    status_prefix = "Status: "  # RFC 3875 §6.3.3

    def __init__(self, out):
        self.out = out
        self.gone = False

    def send(self, data):
        try:
            self.out.write(data)
            self.out.flush()
        except OSError as exc:
            self.gone = True
            raise ClientDisconnected(str(exc)) from exc

    def finish(self, data, status=0):
        self.send(data)

    def abort(self):
        try:
            self.out.flush()
        except OSError:
            self.gone = True


class Terminated(BaseException):
    """SIGTERM arrived: the web server ends this request (the client went away).

    A BaseException, so that an application's ``except Exception`` does not
    swallow it on its way out to the code that closes the iterable.
    """


def _terminate(signum, frame):
    _signal.signal(signum, _signal.SIG_IGN)  # once: close() must not be cut short in turn
    raise Terminated


def _catch_sigterm():
    """Turn SIGTERM into :class:`Terminated`; the previous handler (None: not ours to change)."""
    try:
        return _signal.signal(_signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread
        return None


def _silence(stream):
    """Point the file descriptor under ``stream`` at /dev/null: the web server has gone,
    and what is left in the buffer must not fail again at exit ("Exception ignored in
    <stdout> ... BrokenPipeError") or block on a pipe nobody reads."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation: not a file
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)


def _content_length(env):
    """``(length, ok)``: ``None`` means a body read to EOF (chunked upload)."""
    value = env.get("CONTENT_LENGTH")
    if value:
        length = content_length(value)
        return (0, False) if length is None else (length, True)
    if "chunked" in env.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None, True
    return 0, True


def debug_from_env(environ=None):
    """``GATEWAYS_DEBUG=1`` (or ``true``/``yes``/``on``) turns debug mode on.

    Read by the settings table's own parser (imported only when the variable
    is set), so that a value it does not know is an error here as in every
    other gateway: :class:`gateways.errors.ConfigError`.
    """
    value = (environ if environ is not None else os.environ).get("GATEWAYS_DEBUG", "")
    if not value:
        return False
    from gateways.settings import env_flag

    return env_flag("debug", value)


def _startup_error(error, as_cgi, debug=False):
    """The one line to stderr (the error log); a visitor gets a plain 500 page."""
    from gateways.errors import report

    status = report(error, debug)
    if as_cgi:
        _answer(StdoutTransport(sys.stdout.buffer), NO_APPLICATION)
    return status


def _answer(transport, refusal):
    try:
        transport.finish(refusal.render())
    except ClientDisconnected:
        pass


def run(app, *, debug=None, script_name=None, iis=False, stdin=None, stdout=None, stderr=None,
        environ=None):
    """Handle the one request of this CGI process with ``app``.

    ``debug`` puts tracebacks in error pages (default: ``GATEWAYS_DEBUG``);
    ``script_name`` forces the mount point (default: ``GATEWAYS_SCRIPT_NAME``,
    which a web server can set with SetEnv); ``iis`` strips the SCRIPT_NAME
    that IIS repeats at the start of PATH_INFO.  ``stdin``/``stdout`` (binary)
    and ``stderr`` (text) and ``environ`` default to the process's own.
    Returns 0 when the response was complete, 1 when the application failed
    or the web server ended the request (SIGTERM, or stdout closed): then the
    iterable has been closed, and stdout is /dev/null from there on.
    """
    if environ is None:
        environ = os.environb if hasattr(os, "environb") else os.environ
    env = decode_environ(environ)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    errors = stderr if stderr is not None else sys.stderr
    transport = StdoutTransport(stdout)
    if any(key.startswith("GATEWAYS_") for key in env):
        # Options a web server set (SetEnv, setenv.add-environment): read and
        # checked by the settings table, imported only when there are some.
        from gateways.errors import ConfigError, report
        from gateways.settings import resolve

        try:
            config = resolve("cgi", {}, env)
        except ConfigError as exc:  # one line to the error log, a plain 500
            report(exc, stream=errors)
            _answer(transport, NO_APPLICATION)
            return 1
        debug = config.debug if debug is None else debug
        script_name = config.script_name if script_name is None else script_name
        iis = iis or config.iis

    length, ok = _content_length(env)
    if not ok:
        errors.write("gateways: CONTENT_LENGTH %r is %s\n"
                     % (env["CONTENT_LENGTH"][:40], BAD_CONTENT_LENGTH.reason))
        _answer(transport, BAD_CONTENT_LENGTH)
        return 1
    wsgi_input = LimitedInput(stdin, length)
    environ = build_environ(
        env,
        wsgi_input,
        errors,
        multithread=False,
        multiprocess=True,
        run_once=True,
        gateway="CGI",
        mount=normalize_mount(script_name),
        iis=iis,
        file_wrapper=FileWrapper,
        input_terminated=length is None,
    )
    saved_stdout = sys.stdout
    sys.stdout = errors
    previous = _catch_sigterm()
    try:
        try:
            status = run_app(app, environ, transport, debug)  # closes the iterable, always
        finally:
            if previous is not None:
                _signal.signal(_signal.SIGTERM, previous)
    except Terminated:
        transport.gone, status = True, 1
    finally:
        sys.stdout = saved_stdout
    if transport.gone:
        _silence(stdout)  # nobody reads the rest, nor the body: no drain
        return status
    try:
        wsgi_input.drain()
    except OSError:
        pass
    return status


def main(spec, *, app_dir=None, debug=None, script_name=None, iis=False):
    """Load the application named by ``spec`` and serve this CGI request.

    This is what ``gateways cgi APP`` and scripts written by
    ``gateways cgi-script`` run.  When the application cannot be loaded the
    visitor gets a plain 500 page, the reason goes to the error log in one
    line (the traceback too in debug mode), and the exit status is 2.
    Otherwise the exit status is 0, even when the application failed: the
    error page was the answer, and the error log has the traceback.
    """
    from gateways.errors import OperatorError
    from gateways.loader import load_app

    try:
        if debug is None and os.environ.get("GATEWAYS_DEBUG"):
            debug = debug_from_env()
        app = load_app(spec, app_dir)
    except OperatorError as exc:
        return _startup_error(exc, "GATEWAY_INTERFACE" in os.environ, bool(debug))
    run(app, debug=debug, script_name=script_name, iis=iis)
    return 0
