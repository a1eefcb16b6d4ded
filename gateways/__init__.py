"""gateways: one WSGI application through CGI, FastCGI, SCGI and a standalone server.

This module stays tiny on purpose: a CGI script pays for every import on every
request, so nothing here imports more than the standard library already has
loaded at interpreter start-up.
"""

__all__ = ["__version__", "authorizer", "run"]


def __getattr__(name):
    # The version lives in gateways._version (setup.cfg reads it there), imported
    # only when asked for: a CGI request pays for every module.
    if name == "__version__":
        from gateways._version import __version__

        return __version__
    raise AttributeError("module 'gateways' has no attribute %r" % name)


def run(app, **options):
    """Serve ``app`` through whatever gateway the environment asks for.

    FastCGI when file descriptor 0 is a listening socket (a web server
    spawned us), CGI when ``GATEWAY_INTERFACE`` is set, otherwise the
    standalone development server: the same script runs in cgi-bin, under
    lighttpd ``bin-path`` or mod_fcgid, and from a terminal.  ``app`` is a
    WSGI callable or an APP string (``"package.module:app"``); ``options``
    are settings by their Python names (``script_name="/app"``...).  Nothing
    is guessed from ``SERVER_SOFTWARE``.  Returns the exit status.
    """
    from gateways.launcher import run as _run

    return _run(app, **options)


def authorizer(check, **options):
    """A FastCGI Authorizer (FastCGI 1.0 §6.3) as a WSGI application: ``check(environ)``
    returns True (let the request through), a dict of variables for the web server
    (let it through, ``Variable-NAME: value``) or False (deny: 403, or the
    ``deny_status``, ``deny_headers`` and ``deny_body`` given).  Serve it with
    ``gateways fastcgi APP --roles authorizer``; see :func:`gateways.authz.authorizer`.
    """
    from gateways.authz import authorizer as _authorizer

    return _authorizer(check, **options)
