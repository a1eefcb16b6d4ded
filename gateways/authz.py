"""A FastCGI Authorizer (FastCGI 1.0 §6.3) from one function: ``gateways.authorizer``.

An Authorizer is asked by the web server, before it serves a request, whether
that request may go on.  It answers 200 to let it through, with
``Variable-NAME: value`` headers the web server passes on as the variables
``NAME`` to whatever serves the request (a CGI or FastCGI application, the
access log); any other answer goes to the client instead of what was asked
for.  A typical authorizer::

    import gateways

    def check(environ):
        return environ.get("HTTP_X_API_KEY") == "s3cret"

    application = gateways.authorizer(check)

served with ``gateways fastcgi app:application --roles authorizer`` behind
Apache mod_authnz_fcgi or lighttpd ``"mode" => "authorizer"`` (``gateways conf
apache authorizer``, ``gateways conf lighttpd authorizer``).

This module imports nothing: an application imports it with its own code.
"""

TYPE_CHECKING = False  # mypy reads the block below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    Check = Callable[[WSGIEnvironment], "bool | Mapping[str, str] | None"]

NOT_AN_AUTHORIZER = (
    b"This application is a FastCGI authorizer: the web server must send it "
    b"Authorizer requests (Apache mod_authnz_fcgi, lighttpd \"mode\" => \"authorizer\").\n")


def authorizer(check: "Check", deny_status: str = "403 Forbidden",
               deny_headers: "Iterable[tuple[str, str]]" = (),
               deny_body: "bytes | None" = None) -> "WSGIApplication":
    """The WSGI application of a FastCGI Authorizer that asks ``check(environ)``.

    ``check`` returns:

    * ``True``: the request goes on (200, and nothing else: Apache passes any
      other header of a 200 on to the client);
    * a dict ``{NAME: value}`` of str: the request goes on, and the web server
      sets each ``NAME`` for what serves the request (``Variable-NAME: value``).
      ``REMOTE_USER`` names the user: lighttpd takes it as the user, Apache's
      snippet makes it the user with ``UserExpr``;
    * ``False`` or ``None``: the client gets ``deny_status`` with
      ``deny_headers`` and ``deny_body`` (default: the status as plain text).
      A 401 wants ``deny_headers=[("WWW-Authenticate", 'Basic realm="..."')]``.

    Anything else is an error (500): a refusal never depends on truthiness.
    The request is in ``environ`` as the web server describes it:
    ``REQUEST_URI`` is the path asked for (``SCRIPT_NAME`` and ``PATH_INFO``
    are empty, §6.3), the request headers are ``HTTP_*`` (Apache passes no
    ``Authorization``; with ``RequireBasicAuth On`` it sends the checked-for
    ``REMOTE_USER`` and ``REMOTE_PASSWD``), and there is no body.  A request
    that is not an Authorizer request (``FCGI_ROLE`` other than
    ``AUTHORIZER``: the web server sends this application ordinary requests)
    is answered 500, and the reason goes to ``wsgi.errors``.
    """
    deny_headers = list(deny_headers)
    if deny_body is None:
        deny_body = deny_status.encode("latin-1") + b"\n"
    if not any(name.lower() == "content-type" for name, _ in deny_headers):
        deny_headers.append(("Content-Type", "text/plain; charset=utf-8"))
    if not any(name.lower() == "content-length" for name, _ in deny_headers):
        deny_headers.append(("Content-Length", str(len(deny_body))))
    denial = [deny_body]

    def application(environ: "WSGIEnvironment",
                    start_response: "StartResponse") -> "list[bytes]":
        if environ.get("FCGI_ROLE") != "AUTHORIZER":
            environ["wsgi.errors"].write(
                "gateways.authorizer: a %s request for %s: %s" % (
                    environ.get("FCGI_ROLE") or "non-FastCGI", environ.get("REQUEST_URI", "?"),
                    NOT_AN_AUTHORIZER.decode()))
            start_response("500 Internal Server Error", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(NOT_AN_AUTHORIZER)))])
            return [NOT_AN_AUTHORIZER]
        verdict = check(environ)
        if verdict is True:
            start_response("200 OK", [])
        elif verdict is False or verdict is None:
            start_response(deny_status, list(deny_headers))
            return denial
        elif isinstance(verdict, dict):
            start_response("200 OK", [("Variable-" + name, value)
                                      for name, value in verdict.items()])
        else:
            raise TypeError("the check of gateways.authorizer returned %r: return True, a dict "
                            "of variables, or False" % (verdict,))
        return [b""]

    return application
