"""One accepted connection's socket, with timeouts that cost nothing until they are needed.

A worker thread never waits long on a peer.  Reading: what has arrived is
taken without blocking (``MSG_DONTWAIT``); when a request is late by a few
microseconds the thread waits a moment more (:meth:`Channel.wait_recv`, with
a short ``SO_RCVTIMEO`` set then), and a connection whose bytes are still
not there is parked in the worker's poller (:mod:`gateways.server.poller`),
not waited on.  Writing: a response that fits the socket buffer — the common
case — goes out without blocking; only when a send would block is
``SO_SNDTIMEO`` set (the write timeout), once, and the send repeated as a
blocking one, so that a peer that stops reading our response is dropped
after that long instead of holding the thread.  An accepted TCP socket
inherits the listener's timeouts; the setsockopt calls are made on the slow
paths only (two per connection cost a measurable share of a small request).
"""

from __future__ import annotations

import _socket
import struct

_DONTWAIT = _socket.MSG_DONTWAIT
_LEVEL, _RCV, _SND = _socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _socket.SO_SNDTIMEO


def timeval(seconds: float) -> bytes:
    """``seconds`` as the struct timeval SO_RCVTIMEO and SO_SNDTIMEO take."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


class Channel:
    """``recv``/``sendall`` on ``sock`` (see the module docstring).

    ``send_timeout`` is the packed SO_SNDTIMEO to set when a send would
    block, or None when the socket has it already (inherited from a TCP
    listener).
    """

    __slots__ = ("sock", "send_timeout", "receive_timeout")

    def __init__(self, sock: _socket.socket, send_timeout: bytes | None = None) -> None:
        self.sock = sock
        self.send_timeout = send_timeout
        self.receive_timeout = 0.0  # the SO_RCVTIMEO set by wait_recv, if any

    def recv_ready(self, size: int) -> bytes:
        """What has arrived, without waiting (``BlockingIOError`` when nothing)."""
        return self.sock.recv(size, _DONTWAIT)

    def wait_recv(self, size: int, seconds: float) -> bytes:
        """Wait up to ``seconds`` for bytes (``BlockingIOError`` when none came)."""
        if self.receive_timeout != seconds:
            self.sock.setsockopt(_LEVEL, _RCV, timeval(seconds))
            self.receive_timeout = seconds
        return self.sock.recv(size)

    def sendall(self, data: bytes | memoryview) -> None:
        """Send everything; ``BlockingIOError`` when the peer stops reading."""
        if self.send_timeout is not None:
            try:
                sent = self.sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            self.sock.setsockopt(_LEVEL, _SND, self.send_timeout)
            self.send_timeout = None
            data = memoryview(data)[sent:]
        self.sock.sendall(data)

    @property
    def family(self) -> int:
        return self.sock.family
