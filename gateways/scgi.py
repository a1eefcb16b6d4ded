"""The SCGI gateway: the SCGI core on a socket, the WSGI core on top.

::

    gateways scgi myapp:app --bind unix:/run/myapp-scgi.sock --socket-group www-data
    gateways scgi myapp:app --bind 127.0.0.1:4000

or ``gateways.scgi.serve(app, bind=...)`` from Python.  It runs on the same
listeners and workers as FastCGI (:mod:`gateways.server`); this module adds
the framing and nothing else.

SCGI carries one request per connection (SCGI §2): the header netstring,
the body, then the CGI-format response and a close.  The body is read to
CONTENT_LENGTH before the application runs (memory, then a temporary
file); a body the application did not want is thereby drained too, which
Apache mod_proxy_scgi needs (it answers 503 when the backend closes on an
unread body).  SCGI has no error channel: ``wsgi.errors`` is the server's
log.  A health check that connects and closes, and a front end that goes
away mid-response, are logged at debug level at most.
"""

from gateways.protocol import ProtocolError
from gateways.protocol.scgi import Body as BodyEvent
from gateways.protocol.scgi import EndOfBody, Request, SCGIRequestParser
from gateways.response import ClientDisconnected
from gateways.server.body import rejection
from gateways.server.handler import BaseHandler


class Transport:
    """The response side of an SCGI connection: raw CGI-format bytes."""

    __slots__ = ("channel", "broken")

    def __init__(self, channel):
        self.channel = channel
        self.broken = False

    def send(self, data):
        try:
            self.channel.sendall(data)
        except OSError as exc:
            self.broken = True
            raise ClientDisconnected(str(exc)) from exc

    def finish(self, data, status=0):
        self.send(data)

    def abort(self):
        self.broken = True  # the close that follows tells the front end


class ConnectionHandler(BaseHandler):
    """Serves SCGI connections for one worker thread, one at a time."""

    gateway = "SCGI"

    def serve(self, channel, address):
        parser = SCGIRequestParser(self.max_header_size, self.max_params)
        self._serve(channel, parser, self.state)

    def _serve(self, channel, parser, state):
        recv = channel.recv
        received = False
        params = body = reject = None
        while True:
            data = self.receive(recv, received, self.read_timeout)
            if data is None:
                return
            try:
                events = parser.feed(data) if data else parser.eof()
            except ProtocolError as exc:
                if not received and not data:
                    self.log.debug("SCGI: a connection closed without a request")
                elif not data:
                    self.log.debug("SCGI: %s", exc)
                else:
                    self.protocol_error(exc)
                return
            received = True
            for event in events:
                kind = type(event)
                if kind is BodyEvent:
                    reject = self.collect(body, event.data, reject)
                elif kind is Request:
                    params = event.params
                    body, reject = self.begin(params)
                elif kind is EndOfBody:
                    transport = Transport(channel)
                    if reject is None:
                        self.run_request(params, body, self.errors, transport)
                    else:
                        try:
                            transport.send(rejection(reject))
                        except ClientDisconnected:
                            pass
                    state.end()
                    return
            if not data:
                return


def serve(app, **options):
    """Serve ``app`` (a WSGI callable or an APP string) over SCGI until stopped.

    Options are the settings of ``gateways scgi`` by their Python names
    (``bind="127.0.0.1:4000"``, ``processes=2``, ``script_name="/app"``...).
    Returns the exit status; raises :class:`gateways.settings.ConfigError`
    for a bad option or a socket that cannot be opened.
    """
    from gateways.server.main import serve_protocol

    return serve_protocol("scgi", app, options)
