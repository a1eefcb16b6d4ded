"""The demo application: the environment table of the request it answers.

The seed document's FastCGI example, done right on Python 3: bytes out,
every value HTML-escaped, and the name of the gateway that served it at the
top.  ``gateways serve`` runs it when no APP is given; point any gateway at
``gateways.demo:app`` to see what the front end sends.
"""

from html import escape


def app(environ, start_response):
    """A WSGI application listing ``environ``."""
    gateway = environ.get("gateways.gateway", "an unknown gateway")
    body_size = 0
    stream = environ.get("wsgi.input")
    if stream is not None and environ.get("REQUEST_METHOD") in ("POST", "PUT", "PATCH"):
        while True:
            block = stream.read(65536)
            if not block:
                break
            body_size += len(block)
    rows = []
    for key, value in sorted(environ.items()):
        # PEP 3333 strings are latin-1 code points: show them as the UTF-8
        # text a browser sent, falling back to the raw code points.
        if isinstance(value, str):
            try:
                value = value.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                pass
        rows.append(
            "<tr><th>%s</th><td>%s</td></tr>" % (escape(str(key)), escape(str(value)))
        )
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        "<title>gateways demo</title>\n"
        "<style>body{font-family:sans-serif}th{text-align:left;padding-right:1em}"
        "td{font-family:monospace;word-break:break-all}</style></head>\n"
        "<body><h1>Served by gateways through %s</h1>\n"
        "<p>Request body: %d bytes.</p>\n"
        "<form method=\"post\"><input name=\"text\" value=\"h\u00e9llo\">"
        "<button>POST</button></form>\n"
        "<table>\n%s\n</table></body></html>\n"
    ) % (escape(gateway), body_size, "\n".join(rows))
    data = page.encode("utf-8")
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


application = app
