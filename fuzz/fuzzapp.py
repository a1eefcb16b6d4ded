"""The application the socket fuzzer's daemon serves: it answers what it received.

``METHOD PATH_INFO QUERY_STRING LENGTH SHA256`` of the request, one line, so
the fuzzer can check every valid request got its own answer.
"""

import hashlib


def answer(method, path, query, body):
    """The body the application answers for a request (the fuzzer's expectation)."""
    return ("%s %s %s %d %s\n" % (method, path, query, len(body),
                                  hashlib.sha256(body).hexdigest())).encode("latin-1")


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    out = answer(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                 environ.get("QUERY_STRING", ""), body)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(out)))])
    return [out]
