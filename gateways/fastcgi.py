"""The FastCGI gateway: the protocol core on a socket, the WSGI core on top.

Run it as a daemon on a socket, or let a web server spawn it with the
listening socket on fd 0::

    gateways fastcgi myapp:app --bind unix:/run/myapp.sock --socket-group www-data
    gateways fastcgi myapp:app            # spawned: lighttpd bin-path, mod_fcgid

or from Python (``gateways.fastcgi.serve(app, bind=...)``), or with the flup
interface the seed document used: change ``from flup.server.fcgi import
WSGIServer`` to ``from gateways.fastcgi import WSGIServer``.

One worker thread serves one connection at a time, start to end
(:class:`ConnectionHandler`): it reads records, collects the body (memory,
then a temp file: :mod:`gateways.server.body`), runs the application through
:func:`gateways.response.run` and writes the records back.  The request path
has no queue, no lock and no logging call.

* ``wsgi.errors`` is the request's FCGI_STDERR stream, which the web server
  writes to its error log (§6.1); application tracebacks go there.
* An FCGI_ABORT_REQUEST noticed while a response streams stops the
  iteration (``close()`` is called) and is answered with FCGI_END_REQUEST.
* ``FCGI_WEB_SERVER_ADDRS`` (§3.2), when set, lists the web servers allowed
  to connect over TCP; other TCP peers are disconnected.  Unix sockets are
  guarded by their file permissions instead.
"""

import os
import socket

from gateways.protocol import ProtocolError
from gateways.protocol.fastcgi import Abort, Connection, Request, Stdin, StdinEnd
from gateways.response import ClientDisconnected
from gateways.server.body import rejection
from gateways.server.handler import RECV_SIZE, BaseHandler

_INET = (socket.AF_INET, socket.AF_INET6)


class RequestAborted(ClientDisconnected):
    """The web server sent FCGI_ABORT_REQUEST for the running request (§5.4)."""


class ErrorStream:
    """``wsgi.errors``: text for the request's FCGI_STDERR stream.

    Writes are buffered and sent on ``flush()`` and at the end of the
    response.  Outside a request (say, from a ``close()`` that runs after the
    response ended) the text goes to the server's own log.
    """

    __slots__ = ("transport", "pending", "fallback")

    def __init__(self, transport, fallback):
        self.transport = transport
        self.pending = []
        self.fallback = fallback

    def write(self, text):
        if self.transport.active:
            self.pending.append(text)
        else:
            self.fallback.write(text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if not self.transport.active:
            self.fallback.flush()
        elif any(self.pending):
            self.transport.send_stderr()

    def take(self):
        """The buffered text as bytes, and an empty buffer."""
        data = "".join(self.pending).encode("utf-8", "backslashreplace")
        self.pending = []
        return data


class Transport:
    """The response side of one connection (see :mod:`gateways.response`)."""

    __slots__ = ("channel", "conn", "errors", "active", "broken", "aborted", "handler")

    def __init__(self, channel, conn, handler):
        self.channel = channel
        self.conn = conn
        self.handler = handler
        self.errors = None
        self.active = False
        self.broken = False
        self.aborted = False

    def reset(self, channel, conn):
        """Serve a new connection (or none)."""
        self.channel = channel
        self.conn = conn
        self.active = self.broken = self.aborted = False
        self.errors.pending = []

    def _sendall(self, data):
        try:
            self.channel.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc

    def send(self, data):
        out = self.conn.stdout(data)
        if self.errors.pending:
            out = self.conn.stderr(self.errors.take()) + out
        self._sendall(out)
        self._check_abort()

    def send_stderr(self):
        self._sendall(self.conn.stderr(self.errors.take()))

    def finish(self, data, status=0):
        # Pending stderr goes first: end_request() ends that stream too.
        out = self.conn.stderr(self.errors.take()) if self.errors.pending else b""
        out += self.conn.end_request(data, status)
        self.active = False
        self._sendall(out)

    def abort(self):
        """The application failed after its headers: no FCGI_END_REQUEST, close."""
        self.broken = True
        self.active = False
        if self.errors.pending:
            try:
                self.channel.sendall(self.conn.stderr(self.errors.take()))
            except OSError:
                pass

    def _check_abort(self):
        """Between streamed chunks: has the web server sent FCGI_ABORT_REQUEST?"""
        try:
            data = self.channel.recv_ready(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc
        if not data:
            self.broken = True
            raise ClientDisconnected("the web server closed the connection")
        try:
            events = self.conn.feed(data)
        except ProtocolError as exc:
            self.broken = True
            self.handler.protocol_error(exc)
            raise ClientDisconnected(str(exc)) from None
        if self.conn.outgoing:
            self._sendall(self.conn.take_outgoing())
        for event in events:
            if type(event) is Abort:
                self.aborted = True
                raise RequestAborted("FCGI_ABORT_REQUEST")
        if self.conn.error is not None:
            self.broken = True
            self.handler.protocol_error(self.conn.error)
            raise ClientDisconnected("protocol error")


class ConnectionHandler(BaseHandler):
    """Serves FastCGI connections for one worker thread, one at a time."""

    gateway = "FastCGI"

    def setup(self, config):
        self.keepalive_timeout = config.keepalive_timeout
        self.max_conns = config.processes * config.threads
        self.allowed = allowed_addresses(os.environ.get("FCGI_WEB_SERVER_ADDRS"))
        # One transport per thread, reset for each connection it serves.
        self.transport = Transport(None, None, self)
        self.transport.errors = ErrorStream(self.transport, self.errors)

    def serve(self, channel, address):
        if self.allowed is not None and channel.family in _INET and address[0] not in self.allowed:
            self.log.warning("FastCGI: refused a connection from %s: not in "
                             "FCGI_WEB_SERVER_ADDRS", address[0])
            return
        conn = Connection(self.max_header_size, self.max_params, self.max_conns, self.max_conns)
        transport = self.transport
        transport.reset(channel, conn)
        try:
            self._serve(channel, conn, transport)
        finally:
            transport.reset(None, None)

    def _serve(self, channel, conn, transport):
        state = self.state
        recv = channel.recv
        served = False
        params = body = reject = None
        while True:
            data = self.receive(recv, conn.request_id or conn.mid_record,
                                self.keepalive_timeout if served else self.read_timeout)
            if not data:
                reason = data is not None and conn.eof_reason()
                if reason:
                    self.log.debug("FastCGI: %s", reason)
                return
            try:
                events = conn.feed(data)
            except ProtocolError as exc:
                self.protocol_error(exc)
                return
            for event in events:
                kind = type(event)
                if kind is Stdin:
                    reject = self.collect(body, event.data, reject)
                elif kind is Request:
                    params = event.params
                    body, reject = self.begin(params)
                elif kind is StdinEnd:
                    served = True
                    if reject is None:
                        ok = self._respond(conn, transport, params, body)
                    else:
                        ok = self._reject(conn, transport, reject)
                    params = body = reject = None
                    state.end()
                    if not ok:
                        return
                elif kind is Abort:
                    if event.request_id != conn.request_id:
                        continue  # it came with the end of a request already answered
                    if body is not None:
                        body.close()
                    params = body = reject = None
                    state.end()
                    try:
                        transport._sendall(conn.end_request(b"", 1))
                    except ClientDisconnected:
                        return
            if conn.outgoing:
                try:
                    channel.sendall(conn.take_outgoing())
                except OSError:
                    return
            if conn.error is not None:
                self.protocol_error(conn.error)
                return
            if conn.should_close and not conn.request_id:
                return

    def _respond(self, conn, transport, params, body):
        """Run the application; False when the connection cannot go on."""
        transport.active = True
        transport.aborted = False
        self.run_request(params, body, transport.errors, transport)
        transport.active = False
        if transport.aborted:
            transport.aborted = False
            try:
                transport._sendall(conn.end_request(b"", 1))
            except ClientDisconnected:
                return False
            return True
        return not transport.broken

    def _reject(self, conn, transport, reject):
        try:
            transport._sendall(conn.end_request(rejection(reject)))
        except ClientDisconnected:
            return False
        return True


def allowed_addresses(value):
    """The set of FCGI_WEB_SERVER_ADDRS (§3.2), or None when unset."""
    if value is None or not value.strip():
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


# -- public API ------------------------------------------------------------------


def serve(app, **options):
    """Serve ``app`` (a WSGI callable or an APP string) over FastCGI until stopped.

    Options are the settings of ``gateways fastcgi`` by their Python names
    (``bind="unix:/run/app.sock"``, ``processes=2``, ``threads=8``,
    ``socket_group="www-data"``...).  Without ``bind`` the socket comes from
    systemd or from the web server that spawned us (fd 0).  Returns the
    exit status.  Raises :class:`gateways.settings.ConfigError` for a bad
    option or a socket that cannot be opened.
    """
    from gateways.server.main import serve_protocol

    return serve_protocol("fastcgi", app, options)


class WSGIServer:
    """flup-compatible front door: ``WSGIServer(app, bindAddress=...).run()``.

    ``bindAddress`` is a unix socket path, a ``(host, port)`` tuple, or None
    for the socket a web server passes on fd 0 (flup's default).  ``umask``
    is honoured as flup honours it: the unix socket is created with mode
    ``0o777 & ~umask`` (``umask=0`` makes it writable by every local user, as
    under flup; a warning says so).  Without ``umask`` the socket is 0660:
    give ``socket_group="www-data"`` so that the web server can connect.
    ``multiplexed`` is accepted for compatibility: no web server multiplexes,
    and neither do we (FCGI_MPXS_CONNS is 0).  ``debug`` defaults to False:
    no tracebacks for visitors.  flup's thread pool keywords: ``maxThreads``
    becomes ``threads``; ``minSpare`` and ``maxSpare`` have nothing to tune.
    Any option of :func:`serve` may be given too (``socket_group``,
    ``processes``...); other keywords raise TypeError.
    """

    FLUP_POOL = ("minSpare", "maxSpare")

    def __init__(self, application, environ=None, multithreaded=True, multiprocess=False,
                 bindAddress=None, umask=None, multiplexed=False, debug=False, roles=None,
                 forceCGI=False, **options):
        from gateways.settings import UmaskMode, for_command

        self.application = application
        self.options = {"debug": debug}
        if isinstance(bindAddress, str):
            self.options["bind"] = "unix:" + bindAddress
        elif bindAddress is not None:
            host, port = bindAddress
            self.options["bind"] = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        if umask is not None:
            self.options["socket_mode"] = UmaskMode(0o777 & ~umask)
        max_threads = options.pop("maxThreads", None)
        if max_threads:
            self.options["threads"] = max_threads
        for name in self.FLUP_POOL:
            options.pop(name, None)
        known = {s.name for s in for_command("fastcgi")}
        for name in options:
            if name not in known:
                raise TypeError(
                    "WSGIServer() got an unexpected keyword argument %r (it takes flup's "
                    "keywords and the options of gateways.fastcgi.serve: %s)"
                    % (name, ", ".join(sorted(known))))
        self.options.setdefault("processes", 1)
        self.options.update(options)
        self.extra_environ = dict(environ or {})

    def _app(self):
        if not self.extra_environ:
            return self.application
        application, extra = self.application, self.extra_environ

        def with_environ(environ, start_response):
            for key, value in extra.items():
                environ.setdefault(key, value)
            return application(environ, start_response)

        return with_environ

    def run(self):
        """Serve until stopped; returns False (flup returns True after SIGHUP)."""
        serve(self._app(), **self.options)
        return False
