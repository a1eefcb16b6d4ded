"""The application the socket fuzzer's daemon serves: it answers what it received.

``METHOD PATH_INFO QUERY_STRING LENGTH SHA256`` of the request, one line, so
the fuzzer can check every valid request got its own answer.  ``/stream``
streams 20 lines, 10 ms apart, for the connections interrupted mid-response.
"""

import hashlib
import time


def answer(method, path, query, body):
    """The body the application answers for a request (the fuzzer's expectation)."""
    return ("%s %s %s %d %s\n" % (method, path, query, len(body),
                                  hashlib.sha256(body).hexdigest())).encode("latin-1")


def _stream():
    for n in range(20):
        yield b"line %d\n" % n
        time.sleep(0.01)


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    body = environ["wsgi.input"].read()
    out = answer(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                 environ.get("QUERY_STRING", ""), body)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(out)))])
    return [out]
