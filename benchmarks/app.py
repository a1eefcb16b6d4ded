"""The WSGI application every benchmarked backend serves (standard library only).

Three routes, matched on the end of ``SCRIPT_NAME + PATH_INFO`` so that the
way a front end splits the path (nginx, lighttpd, Apache all differ) does
not matter:

``.../hello``
    ``Hello, world!`` (13 bytes, text/plain).
``.../10k``
    10,240 bytes (``0123456789abcdef`` repeated 640 times).
``.../post``
    reads the whole request body in 64 KiB reads and answers its length in
    decimal (``102400`` for the benchmark's POST).

Anything else is a 404.  Every response has a Content-Length.  The
benchmark scripts copy this file next to the backends (``app:application``)
and check each warm-up response body against the same constants.
"""

HELLO = b"Hello, world!"
TEN_K = b"0123456789abcdef" * 640
POST_SIZE = 102400
READ_SIZE = 65536


def _read_body(environ):
    """Read the request body to CONTENT_LENGTH; return the number of bytes read."""
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    stream = environ["wsgi.input"]
    total = 0
    while remaining > 0:
        chunk = stream.read(min(READ_SIZE, remaining))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    return total


def application(environ, start_response):
    """Serve /hello, /10k and /post (see the module docstring)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    status = "200 OK"
    if path.endswith("/hello"):
        body = HELLO
    elif path.endswith("/10k"):
        body = TEN_K
    elif path.endswith("/post"):
        body = str(_read_body(environ)).encode("ascii")
    else:
        status, body = "404 Not Found", b"not found: " + path.encode("utf-8", "replace")
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]
