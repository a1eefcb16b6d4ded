"""Where a FastCGI or SCGI server writes its log.

A web server that spawns a FastCGI application may close its stdout and
stderr (FastCGI 1.0 §2.2), so the log goes to ``--log-file`` when given,
else to stderr only when stderr is open, else nowhere.  Messages are
formatted only when their level is on (the logging module's ``%`` style
arguments), never on the request path.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

from gateways.errors import ConfigError, stderr_open

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import ErrorStream

FORMAT = "%(asctime)s gateways[%(process)d] %(levelname)s: %(message)s"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


class _NullStream:
    """A text stream that drops what it is given (no stderr, no log file)."""

    def write(self, text: str) -> int:
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        pass

    def flush(self) -> None:
        pass


class HandlerStream:
    """A text stream that writes into a log handler's current file.

    ``wsgi.errors`` of the gateways without an error channel of their own
    (SCGI; FastCGI outside a request).  It must not be the handler's stream
    itself: after logrotate renames the file (no copytruncate), the
    WatchedFileHandler closes that stream and opens a new file, and every
    later write to the old stream would fail.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: logging.handlers.WatchedFileHandler) -> None:
        self.handler = handler

    def write(self, text: str) -> int:
        handler = self.handler
        handler.acquire()
        try:
            handler.reopenIfNeeded()  # as the handler does before each log record
            if handler.stream is None:  # closed (logging.shutdown): open as emit() does
                handler.stream = handler._open()
            handler.stream.write(text)
        finally:
            handler.release()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.handler.flush()


def setup(level: str = "info", log_file: str | None = None) -> tuple[logging.Logger, ErrorStream]:
    """Configure the ``gateways`` logger; return ``(logger, stream)``.

    ``stream`` is the text stream the log goes to; gateways without an error
    channel of their own (SCGI) use it as ``wsgi.errors``.
    """
    log = logging.getLogger("gateways")
    log.setLevel(LEVELS[level])
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
    stream: ErrorStream
    if log_file:
        try:
            handler = logging.handlers.WatchedFileHandler(log_file)  # logrotate-friendly
        except OSError as exc:
            raise ConfigError("--log-file %s: cannot open it: %s" % (
                log_file, exc.strerror or exc)) from None
        stream = HandlerStream(handler)
    elif stderr_open():
        handler = logging.StreamHandler(sys.stderr)
        stream = sys.stderr
    else:
        handler = logging.NullHandler()
        stream = _NullStream()
    handler.setFormatter(logging.Formatter(FORMAT))
    log.addHandler(handler)
    return log, stream
