"""One accepted connection as the engine passes it around.

A worker thread serves it while there is a request to run or a response to
write; in between it may wait in the worker's poller
(:mod:`gateways.server.poller`) and come back to another thread.  What it
carries from one to the other lives here: the socket (its
:class:`~gateways.server.channel.Channel`), the peer's address, the
protocol core with its state, the request taken in so far and the events
not yet acted on.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    import _socket
    from typing import Any

    from gateways.protocol import Core
    from gateways.response import Refusal
    from gateways.server.body import Body
    from gateways.server.channel import Channel


class Conn:
    """One accepted connection as it passes between the worker's threads and the poller
    (:mod:`gateways.server.poller`): the socket, the protocol core, the request taken in
    so far (params, body, refusal) and the events not yet acted on."""

    __slots__ = ("channel", "address", "core", "params", "body", "reject", "pending",
                 "served", "queued", "deadline")

    def __init__(self, channel: Channel, address: Any) -> None:
        self.channel = channel
        self.address = address
        self.core: Core = None  # type: ignore[assignment]  # set before it is served
        self.params: dict[str, str] | None = None
        self.body: Body | None = None
        self.reject: Refusal | None = None
        self.pending: list[Any] | None = None
        self.served = False  # it has carried a request (FastCGI keep-alive)
        self.queued = False  # it waited for a thread (parked, or in the drain at a stop)
        self.deadline = 0.0

    @property
    def sock(self) -> _socket.socket:
        return self.channel.sock
