"""One accepted connection, with timeouts that cost nothing until they are needed.

A thread must never wait forever on a peer: ``recv`` and ``send`` carry
``SO_RCVTIMEO``/``SO_SNDTIMEO`` (see :mod:`gateways.server.runners`).  An
accepted TCP socket inherits them from the listener; an accepted unix socket
does not, and two ``setsockopt`` calls per connection cost a measurable share
of a small request.  So on a unix socket the first ``recv`` and ``send`` are
tried without blocking (``MSG_DONTWAIT``): a request that has arrived whole
and a response that fits the socket buffer — the common case — never need a
timeout.  Only when a call would block are the timeouts set, once, and the
call repeated as a blocking one.
"""

from __future__ import annotations

import _socket

_DONTWAIT = _socket.MSG_DONTWAIT
_LEVEL, _RCV, _SND = _socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO


class Channel:
    """``recv``/``sendall`` on ``sock``, arming ``timeouts`` (packed timevals) lazily.

    ``timeouts`` is None when the socket already has them (inherited).
    """

    __slots__ = ("sock", "timeouts", "armed")

    def __init__(self, sock: _socket.socket, timeouts: tuple[bytes, bytes] | None = None) -> None:
        self.sock = sock
        self.timeouts = timeouts
        self.armed = timeouts is None

    def arm(self) -> None:
        receive, send = self.timeouts  # type: ignore[misc]  # not armed: there are timeouts
        self.sock.setsockopt(_LEVEL, _RCV, receive)
        self.sock.setsockopt(_LEVEL, _SND, send)
        self.armed = True

    def recv(self, size: int) -> bytes:
        """Block up to the receive timeout; ``BlockingIOError`` when it passed."""
        if not self.armed:
            try:
                return self.sock.recv(size, _DONTWAIT)
            except BlockingIOError:
                self.arm()
        return self.sock.recv(size)

    def recv_ready(self, size: int) -> bytes:
        """What has arrived, without waiting (``BlockingIOError`` when nothing)."""
        return self.sock.recv(size, _DONTWAIT)

    def sendall(self, data: bytes | memoryview) -> None:
        """Send everything; ``BlockingIOError`` when the peer stops reading."""
        if not self.armed:
            try:
                sent = self.sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            self.arm()
            data = memoryview(data)[sent:]
        self.sock.sendall(data)

    @property
    def family(self) -> int:
        return self.sock.family
