"""The uwsgi handler: uwsgi framing on the engine's one loop.

Like SCGI, uwsgi carries one request per connection: the packet header and
its variables (:mod:`gateways.protocol.uwsgi`), the body, then the response
and a close.  The body is read to CONTENT_LENGTH before the application runs,
so a body the application did not want is drained too (uWSGI closes without
reading it: nginx then logs "Broken pipe" and answers 502).  What differs from
SCGI is the response's first line: a raw HTTP status line, ``HTTP/1.1 200
OK``, which is what nginx ``uwsgi_pass``, Apache mod_proxy_uwsgi (it refuses
anything else) and lighttpd read.  uwsgi has no error channel either:
``wsgi.errors`` is the server's log.
"""

from __future__ import annotations

from gateways.protocol.uwsgi import UWSGIRequestParser
from gateways.server.handler import BaseHandler
from gateways.server.scgi import Transport as SCGITransport


class Transport(SCGITransport):
    """The response side of a uwsgi connection: an HTTP status line, then as SCGI."""

    __slots__ = ()
    status_prefix = "HTTP/1.1 "


class UWSGIHandler(BaseHandler):
    """Serves uwsgi connections for one worker thread, one at a time."""

    gateway = "uwsgi"
    Transport = Transport

    def new_core(self) -> UWSGIRequestParser:
        return UWSGIRequestParser(self.max_header_size, self.max_params)
