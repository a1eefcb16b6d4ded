"""Request bodies for the FastCGI and SCGI gateways: memory, then disk.

The body is read completely before the application runs.  Up to
``--spool-threshold`` bytes stay in memory; a larger body goes to an
anonymous temporary file, so a 1 GB upload costs disk, not RAM.  Past
``--max-body`` bytes :class:`BodyTooLarge` is raised and the gateway answers
413 without calling the application.  ``wsgi.input`` is then a real file
that ends exactly at the end of the body (PEP 3333: never read past
CONTENT_LENGTH; ``wsgi.input_terminated`` holds).
"""

from __future__ import annotations

import io
import tempfile

from gateways.environ import UNKNOWN_LENGTH, content_length
from gateways.response import BAD_CONTENT_LENGTH, TOO_LARGE

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from typing import IO

    from gateways.response import Refusal

EMPTY = b""


class BodyTooLarge(Exception):
    """The request body is larger than ``--max-body``."""


class Body:
    """Collects one request body (see the module docstring)."""

    __slots__ = ("parts", "size", "file", "threshold", "limit", "expected")

    def __init__(self, threshold: int, limit: int, expected: int = 0) -> None:
        self.parts: list[bytes] | None = []  # None once the body went to self.file
        self.size = 0
        self.expected = expected  # CONTENT_LENGTH (0: none, or unknown)
        self.file: IO[bytes] | None = None
        self.threshold = threshold
        self.limit = limit

    def add(self, data: bytes) -> None:
        size = self.size + len(data)
        if size > self.limit:
            raise BodyTooLarge("request body over %d bytes" % self.limit)
        self.size = size
        if self.file is not None:
            self.file.write(data)
        elif size > self.threshold:
            self.file = tempfile.TemporaryFile(prefix="gateways-body-")
            for part in self.parts:  # type: ignore[union-attr]  # None only with a file
                self.file.write(part)
            self.file.write(data)
            self.parts = None
        else:
            self.parts.append(data)  # type: ignore[union-attr]  # None only with a file

    def stream(self) -> IO[bytes]:
        """The body as a file positioned at its start."""
        if self.file is not None:
            self.file.seek(0)
            return self.file
        parts = self.parts
        if not parts:
            return io.BytesIO()
        return io.BytesIO(parts[0] if len(parts) == 1 else EMPTY.join(parts))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def check_length(value: str | None, limit: int) -> tuple[int, Refusal | None]:
    """``(length, None)`` when a CONTENT_LENGTH value is acceptable (0 for none), else
    ``(0, the Refusal)``.

    ``-1`` is what Caddy sends for a chunked upload: the length is unknown, the
    body is read to the end of its stream (:data:`gateways.environ.UNKNOWN_LENGTH`).
    """
    if not value or value in UNKNOWN_LENGTH:
        return 0, None
    length = content_length(value)
    if length is None:
        return 0, BAD_CONTENT_LENGTH
    if length > limit:
        return 0, TOO_LARGE
    return length, None
