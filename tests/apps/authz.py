"""The FastCGI Authorizer the integration tests put in front of files and of the probe.

``X-Token: good`` lets a request through and names the user ``alice``; the
variable ``AUTHZ_SEEN`` tells what the authorizer was given, so that the
application behind (the probe's ``/env``) can show it.  ``X-Token: bad`` is
denied 403 with this application's page; no ``X-Token`` at all is answered
401 with a ``WWW-Authenticate`` header.  ``X-Token: open`` lets a request
through with no variables.
"""

import json

import gateways


def check(environ):
    token = environ.get("HTTP_X_TOKEN")
    if token == "open":
        return True
    if token != "good":
        return False
    seen = {name: environ.get(name) for name in (
        "FCGI_ROLE", "FCGI_APACHE_ROLE", "SCRIPT_NAME", "PATH_INFO", "REQUEST_URI",
        "QUERY_STRING", "CONTENT_LENGTH", "REQUEST_METHOD")}
    seen["body"] = len(environ["wsgi.input"].read())
    return {"REMOTE_USER": "alice", "AUTHZ_SEEN": json.dumps(seen, sort_keys=True)}


DENIED = b"denied by the test authorizer\n"

allow = gateways.authorizer(check, deny_body=DENIED)
ask = gateways.authorizer(lambda environ: False, deny_status="401 Unauthorized",
                          deny_headers=[("WWW-Authenticate", 'Bearer realm="gateways-test"')],
                          deny_body=b"log in first\n")


def application(environ, start_response):
    if "HTTP_X_TOKEN" not in environ:
        return ask(environ, start_response)
    return allow(environ, start_response)
