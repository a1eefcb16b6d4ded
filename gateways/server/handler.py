"""What the FastCGI and SCGI connection handlers share.

A handler serves the connections one worker thread accepts, one at a time;
a protocol subclass implements :meth:`BaseHandler.serve` with its sans-IO
core.  Everything about the WSGI request itself lives here, once: the
settings read per thread, the body collection with ``--max-body``, and the
request run through :func:`gateways.environ.build_environ` and
:func:`gateways.response.run`.
"""

import _socket
import struct

from gateways.environ import EnvironBuilder, normalize_mount
from gateways.response import FileWrapper
from gateways.response import run as run_app
from gateways.server.body import Body, BodyTooLarge, check_length
from gateways.server.workers import TICK

TOO_LARGE = "413 Content Too Large"
RECV_SIZE = 65536  # below glibc's mmap threshold: recv buffers come from the heap
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_SO_PEERCRED = getattr(_socket, "SO_PEERCRED", 17)


def describe_peer(sock, address):
    """``127.0.0.1:41234``, or for a unix socket the peer's pid and uid (SO_PEERCRED)."""
    if isinstance(address, tuple) and address:
        host = address[0]
        return ("[%s]:%s" if ":" in host else "%s:%s") % (host, address[1])
    try:
        pid, uid, _ = _CRED.unpack(sock.getsockopt(_socket.SOL_SOCKET, _SO_PEERCRED, _CRED.size))
    except (OSError, AttributeError):
        return "a unix socket peer"
    return "a unix socket peer (pid %d, uid %d)" % (pid, uid)


class BaseHandler:
    """Per-thread handler; subclasses set ``gateway`` and define ``serve(channel, address)``.

    ``channel`` is a :class:`gateways.server.channel.Channel`.
    """

    gateway = None

    def __init__(self, app, config, log, errors, multiprocess, state):
        self.app = app
        self.log = log
        self.errors = errors  # the server's log stream, for wsgi.errors where needed
        self.state = state
        self.debug = config.debug
        self.environ = EnvironBuilder(
            multithread=config.threads > 1, multiprocess=multiprocess, run_once=False,
            gateway=self.gateway, mount=normalize_mount(config.script_name),
            file_wrapper=FileWrapper)
        self.read_timeout = config.read_timeout
        self.max_body = config.max_body
        self.spool_threshold = config.spool_threshold
        self.max_header_size = config.max_header_size
        self.max_params = config.max_params
        self.setup(config)

    @classmethod
    def factory(cls, app, config, log, errors, multiprocess):
        """What the worker engine calls once per thread to get that thread's handler."""

        def make_handler(state):
            return cls(app, config, log, errors, multiprocess, state)

        return make_handler

    def setup(self, config):
        """Read protocol-specific settings (subclass hook)."""

    def __call__(self, channel, address):
        self.channel, self.address = channel, address  # for log lines about the peer
        try:
            self.serve(channel, address)
        finally:
            self.state.end()  # a no-op unless the connection broke mid-request

    def peer(self):
        """Who is on the other end of the connection, for a log line."""
        return describe_peer(self.channel.sock, self.address)

    def protocol_error(self, exc):
        """The peer broke the protocol: one WARNING line naming it and the violation."""
        self.log.warning("%s: closing a connection from %s: %s", self.gateway, self.peer(),
                         exc)

    def receive(self, recv, busy, idle_limit):
        """The next bytes from the peer (``b""`` at its end), or None: close now.

        ``recv`` returns after at most TICK (SO_RCVTIMEO).  ``busy``: a request
        is under way, and a peer that stalls past ``--read-timeout`` is logged
        and dropped; otherwise the connection is idle and is closed when the
        worker stops or after ``idle_limit`` seconds.
        """
        waited = 0.0
        while True:
            try:
                return recv(RECV_SIZE)
            except BlockingIOError:
                waited += TICK
                if busy:
                    if waited >= self.read_timeout:
                        self.log.warning("%s: %s stalled for %g s in the middle of a "
                                         "request; closing the connection",
                                         self.gateway, self.peer(), waited)
                        return None
                elif self.state.stopping or waited >= idle_limit:
                    return None
            except OSError as exc:
                self.log.debug("%s: connection error: %s", self.gateway, exc)
                return None

    def begin(self, params):
        """A request's meta-variables arrived: ``(body, rejection status or None)``."""
        self.state.begin()
        body = Body(self.spool_threshold, self.max_body)
        length = params.get("CONTENT_LENGTH")
        reject = check_length(length, self.max_body)
        if reject is not None and reject != TOO_LARGE:
            self.log.warning("%s: %s sent CONTENT_LENGTH %r, not a byte count; answering %s",
                             self.gateway, self.peer(), length[:40], reject)
        return body, reject

    @staticmethod
    def collect(body, data, reject):
        """Add body bytes unless the request is already refused; the new refusal."""
        if reject is None:
            try:
                body.add(data)
            except BodyTooLarge:
                body.close()
                return TOO_LARGE
        return reject

    def run_request(self, params, body, errors, transport):
        """Build the environ and run the application for one request."""
        environ = self.environ.build(params, body.stream(), errors)
        try:
            run_app(self.app, environ, transport, self.debug)
        finally:
            body.close()
