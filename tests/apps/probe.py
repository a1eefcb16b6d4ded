"""The probe application every integration test serves through every gateway.

It answers by PATH_INFO (below its mount point) and reports, as JSON, what
the gateway gave it, so tests can assert on SCRIPT_NAME, PATH_INFO, bodies
and flags through real web servers.  It is wrapped in
``wsgiref.validate.validator`` with WSGI warnings turned into errors: any
PEP 3333 violation by a gateway becomes a 500 that the tests see.

Routes (below the mount point)::

    "" or /echo...     JSON of the request as the application saw it
    /upload            reads the body in blocks (?mode=read|readline|iter)
                       and returns its length and sha256
    /noread            answers without reading the body
    /bytes?n=N         N bytes of a fixed pattern (?chunk=K, ?cl=0 drops
                       Content-Length)
    /cookies           two Set-Cookie headers
    /status/NNN        an empty response with that status
    /error             raises before start_response (message SECRET-MARKER)
    /error-late        raises after the first body chunk
    /exc-info          catches an error before the headers went out and calls
                       start_response again with exc_info: a 503 of its own
    /exc-info-late     the same after the first body chunk: start_response
                       re-raises (PEP 3333), the response is cut short
    /stream?n=N&delay=S  N chunks, S seconds apart
    /write             uses the write() callable
    /file?n=N          N bytes through wsgi.file_wrapper
    /stderr            writes to wsgi.errors (?n=N: N bytes more, first)
    /redirect?status=S a redirect (Location) with status S (301)
    /sleep?t=S         sleeps S seconds, then answers with its pid
    /pid               answers with the worker's pid
    /env               JSON of the environ's str values (what a FastCGI
                       authorizer in front passed on, for one)
"""

import hashlib
import json
import os
import sys
import time
import warnings
from io import BytesIO
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n):
    """The first ``n`` bytes of the repeating pattern /bytes serves."""
    full, rest = divmod(n, len(PATTERN))
    return PATTERN * full + PATTERN[:rest]


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data, sort_keys=True).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _text(start_response, text, status="200 OK"):
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
    return [body]


def echo(environ):
    path_info = environ.get("PATH_INFO", "")
    return {
        "script_name": environ.get("SCRIPT_NAME"),
        "path_info": path_info,
        "path_info_utf8": path_info.encode("latin-1").decode("utf-8", "replace"),
        "query_string": environ.get("QUERY_STRING"),
        "method": environ.get("REQUEST_METHOD"),
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "multithread": environ.get("wsgi.multithread"),
        "multiprocess": environ.get("wsgi.multiprocess"),
        "run_once": environ.get("wsgi.run_once"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "gateway": environ.get("gateways.gateway"),
        "fcgi_role": environ.get("FCGI_ROLE"),
        "server_name": environ.get("SERVER_NAME"),
        "server_port": environ.get("SERVER_PORT"),
        "server_protocol": environ.get("SERVER_PROTOCOL"),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "remote_port": environ.get("REMOTE_PORT"),
        "http": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
        "all_str": all(isinstance(k, str) for k in environ)
        and all(isinstance(v, str) for k, v in environ.items() if "." not in k),
        "pid": os.getpid(),
    }


def _read_body(stream, mode):
    digest = hashlib.sha256()
    length = 0
    if mode in ("readline", "iter"):
        lines = iter(stream.readline, b"") if mode == "readline" else stream
        for line in lines:
            digest.update(line)
            length += len(line)
    else:
        while True:
            block = stream.read(65536)
            if not block:
                break
            digest.update(block)
            length += len(block)
    return length, digest.hexdigest()


def _stream(n, delay):
    for i in range(n):
        if i:
            time.sleep(delay)
        yield ("chunk %d\n" % i).encode()


def _late_error():
    yield b"first chunk\n"
    raise RuntimeError("SECRET-MARKER raised after the headers")


def _exc_info_early(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise RuntimeError("SECRET-MARKER caught before the headers")
    except RuntimeError:
        # PEP 3333: nothing was sent yet, so this replaces the first status and headers.
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")],
                       sys.exc_info())
    return [b"replaced by exc_info"]


def _exc_info_late(start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"first chunk\n"
    try:
        raise RuntimeError("SECRET-MARKER caught after the headers")
    except RuntimeError:
        # PEP 3333: the headers are out, so start_response re-raises the error.
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                       sys.exc_info())
    yield b"never sent\n"


def probe(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path in ("", "/") or path.startswith("/echo"):
        return _json(start_response, echo(environ))
    if path == "/upload":
        length, digest = _read_body(environ["wsgi.input"], query.get("mode", "read"))
        return _json(start_response, {"length": length, "sha256": digest})
    if path == "/noread":
        return _text(start_response, "ignored")
    if path == "/bytes":
        n = int(query.get("n", "0"))
        chunk = int(query.get("chunk", "65536"))
        headers = [("Content-Type", "application/octet-stream")]
        if query.get("cl") != "0":
            headers.append(("Content-Length", str(n)))
        start_response("200 OK", headers)
        data = pattern(n)
        return [data[i:i + chunk] for i in range(0, n, chunk)]
    if path == "/cookies":
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Set-Cookie", "a=1; Path=/"),
                                  ("Set-Cookie", "b=2; Path=/")])
        return [b"two cookies"]
    if path.startswith("/status/"):
        status = int(path[len("/status/"):])
        reasons = {204: "No Content", 304: "Not Modified", 404: "Not Found", 418: "I'm a teapot"}
        start_response("%d %s" % (status, reasons.get(status, "Status")),
                       [] if status in (204, 304) else [("Content-Type", "text/plain")])
        return []
    if path == "/error":
        raise RuntimeError("SECRET-MARKER raised before the headers")
    if path == "/error-late":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _late_error()
    if path == "/exc-info":
        return _exc_info_early(start_response)
    if path == "/exc-info-late":
        return _exc_info_late(start_response)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Accel-Buffering", "no")])
        return _stream(int(query.get("n", "3")), float(query.get("delay", "0.5")))
    if path == "/redirect":
        status = int(query.get("status", "301"))
        start_response("%d Redirect" % status, [("Location", "http://example.org/moved"),
                                                ("Content-Type", "text/plain")])
        return [b"moved"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](BytesIO(pattern(int(query.get("n", "100000")))), 8192)
    if path == "/stderr":
        if "n" in query:  # n bytes of text in lines of 100, before the line below
            line = "probe: %s\n" % ("e" * 92)
            environ["wsgi.errors"].write(line * (int(query["n"]) // len(line)))
        environ["wsgi.errors"].write("probe: a line for the error log\n")
        environ["wsgi.errors"].flush()
        return _text(start_response, "logged")
    if path == "/sleep":
        time.sleep(float(query.get("t", "1")))
        return _text(start_response, str(os.getpid()))
    if path == "/spin":  # computes (holds the GIL) for t seconds
        until = time.monotonic() + float(query.get("t", "1"))
        while time.monotonic() < until:
            pass
        return _text(start_response, str(os.getpid()))
    if path == "/pid":
        return _text(start_response, str(os.getpid()))
    if path == "/env":
        return _json(start_response, {k: v for k, v in environ.items() if isinstance(v, str)})
    return _text(start_response, "no route %r" % path, "404 Not Found")


application = validator(probe)


def create_app():
    """A factory, for APP strings like ``probe:create_app()``."""
    return application


if __name__ == "__main__":  # a cgi-bin script when run directly
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gateways.cgi import run

    run(application)
