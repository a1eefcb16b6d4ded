"""The one PEP 3333 environ builder, shared by the CGI, FastCGI and SCGI gateways.

Every gateway hands this module the CGI meta-variables it received (RFC 3875
§4.1) and gets back the WSGI environ.  The rules live here and nowhere else:

* Keys and values are native ``str`` holding latin-1 code points (PEP 3333,
  "Unicode Issues"): bytes from the wire are decoded with latin-1, never UTF-8.
* ``HTTP_PROXY`` is dropped (httpoxy: a ``Proxy:`` request header must never
  look like the proxy setting of the process), and so are ``HTTP_CONTENT_LENGTH``
  and ``HTTP_CONTENT_TYPE``, which lighttpd, nginx and Caddy add beside the real
  ``CONTENT_LENGTH``/``CONTENT_TYPE``.  A ``CONTENT_LENGTH`` of ``-1`` (Caddy, for a
  chunked upload) means no length, like an empty one: it is dropped.
* ``SCRIPT_NAME`` never ends in ``/`` and ``SCRIPT_NAME + PATH_INFO`` rebuilds
  the decoded request path.  When the front end sends no ``PATH_INFO`` it is
  derived from ``REQUEST_URI`` (percent-decoded, so that it matches the decoded
  ``SCRIPT_NAME``).  An explicit mount point (``--script-name``) overrides what
  the front end says, for fronts that get it wrong (Apache mod_proxy_scgi and
  mod_proxy_fcgi send the whole path as SCRIPT_NAME).
* A FastCGI Authorizer request (``FCGI_ROLE`` ``AUTHORIZER``) has an empty
  ``SCRIPT_NAME`` and ``PATH_INFO`` (FastCGI 1.0 §6.3): see :meth:`EnvironBuilder.build`.
* ``wsgi.url_scheme`` comes from ``HTTPS`` (``on``/``1``/``yes``), or from
  ``UWSGI_SCHEME``, the variable uWSGI reads.

Nothing here imports beyond what the interpreter loads at start-up: the CGI
gateway runs this on every request in a fresh process.
"""

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from _typeshed.wsgi import ErrorStream, FileWrapper, InputStream, WSGIEnvironment

# Meta-variables a front end may send that must not reach the application.
DROPPED = ("HTTP_PROXY", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE")
# CONTENT_LENGTH values that say "no length": empty, or Caddy's -1 for a chunked
# upload.  The variable is dropped; the body runs to the end of its stream.
UNKNOWN_LENGTH = ("", "-1")

_HEX = frozenset("0123456789abcdefABCDEF")
_HTTPS_ON = frozenset(("on", "1", "yes", "ON", "On", "YES", "Yes"))


def unquote(path: str) -> str:
    """Percent-decode ``path`` (a latin-1 str) into a latin-1 str.

    Each ``%XX`` becomes the code point of that byte, so the result is the
    request path's bytes as PEP 3333 wants them.  Malformed escapes are kept
    as they are, the way web servers treat them.
    """
    if "%" not in path:
        return path
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) >= 2 and part[0] in _HEX and part[1] in _HEX:
            out.append(chr(int(part[:2], 16)))
            out.append(part[2:])
        else:
            out.append("%")
            out.append(part)
    return "".join(out)


def content_length(value: str) -> "int | None":
    """A CONTENT_LENGTH value (RFC 3875 §4.1.2: decimal digits) as an int, else None.

    More than 20 significant digits is not a length (and ``int()`` refuses
    strings of over 4300 digits): None, like any other invalid value.
    """
    if not (value.isdigit() and value.isascii()):
        return None
    if len(value) > 20:
        value = value.lstrip("0") or "0"
        if len(value) > 20:
            return None
    return int(value)


def normalize_mount(prefix: "str | None") -> "str | None":
    """Turn an operator's ``--script-name`` value into a SCRIPT_NAME.

    ``"/"`` and ``""`` mean the root; a trailing slash is dropped; a missing
    leading slash is added.  ``None`` (not set) stays ``None``.
    """
    if prefix is None:
        return None
    prefix = prefix.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix


def _request_path(env: "Mapping[str, str]") -> str:
    """The decoded request path: from REQUEST_URI when there is one, cleaned as the
    front cleaned the path it routed on (REQUEST_URI is the raw one)."""
    uri = env.get("REQUEST_URI")
    if uri:
        q = uri.find("?")
        if q >= 0:
            uri = uri[:q]
        if uri.startswith("/"):
            return clean_path(unquote(uri))
    return env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")


def clean_path(path: str) -> str:
    """``path`` without dot segments (RFC 3986 §5.2.4) and with repeated slashes
    merged, as nginx (merge_slashes) and Apache (MergeSlashes) treat the path they
    match locations against; a trailing slash stays.  ``/app/x/../y`` -> ``/app/y``."""
    if "/." not in path and "//" not in path:
        return path
    kept: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment not in (".", ""):
            kept.append(segment)
    trailing = kept and path.endswith(("/", "/.", "/.."))
    return "/" + "/".join(kept) + ("/" if trailing else "")


def fix_paths(env: dict[str, str], mount: "str | None" = None, iis: bool = False) -> None:
    """Make SCRIPT_NAME and PATH_INFO honest (PEP 3333, RFC 3875 §4.1.5, §4.1.13).

    ``mount`` is an explicit SCRIPT_NAME from :func:`normalize_mount`.  ``iis``
    undoes IIS's habit of repeating SCRIPT_NAME at the start of PATH_INFO.
    """
    script = env.get("SCRIPT_NAME", "")
    path_info = env.get("PATH_INFO", "")
    if mount is not None:
        path = _request_path(env)
        if path == mount or path.startswith(mount + "/") or not mount:
            script, path_info = mount, path[len(mount):]
    else:
        if iis and script and path_info.startswith(script):
            path_info = path_info[len(script):]
        if not path_info:
            uri = env.get("REQUEST_URI")
            if uri:
                path = _request_path(env)
                if path.startswith(script) and (
                    len(path) == len(script) or path[len(script)] == "/"
                ):
                    path_info = path[len(script):]
        if script.endswith("/"):
            # A root or directory mount reported as "/" or "/app/": move the
            # slash to PATH_INFO so that SCRIPT_NAME + PATH_INFO is unchanged.
            stripped = script.rstrip("/")
            path_info = script[len(stripped):] + path_info
            script = stripped
    env["SCRIPT_NAME"] = script
    env["PATH_INFO"] = path_info


def _host_name(host: str) -> str:
    """``example.org:8080`` -> ``example.org``; ``[::1]:80`` -> ``[::1]``."""
    if host.endswith("]") or ":" not in host:
        return host
    return host.rsplit(":", 1)[0]


def decode_environ(mapping: "Mapping[bytes, bytes] | Mapping[str, str]") -> dict[str, str]:
    """CGI meta-variables from ``mapping`` as latin-1 ``str`` pairs.

    Takes bytes (``os.environb``, wire data) or str keys and values.  A str
    value is assumed to be latin-1 already.
    """
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if key.__class__ is bytes:
            key = key.decode("latin-1")
        if value.__class__ is bytes:
            value = value.decode("latin-1")
        out[key] = value  # type: ignore[index, assignment]  # str now (bytes were decoded)
    return out


class EnvironBuilder:
    """Builds the environs of one gateway: what never changes is computed once.

    ``gateway`` names the gateway in ``gateways.gateway`` (the demo
    application shows it); ``mount`` is an explicit SCRIPT_NAME from
    :func:`normalize_mount`; ``iis`` undoes IIS's PATH_INFO quirk.
    """

    __slots__ = ("constants", "mount", "iis")

    def __init__(self, *, multithread: bool, multiprocess: bool, run_once: bool, gateway: str,
                 mount: "str | None" = None, iis: bool = False,
                 file_wrapper: "FileWrapper | None" = None) -> None:
        self.constants: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": run_once,
            "gateways.gateway": gateway,
        }
        if file_wrapper is not None:
            self.constants["wsgi.file_wrapper"] = file_wrapper
        self.mount = mount
        self.iis = iis

    def build(self, env: "WSGIEnvironment", wsgi_input: "InputStream", errors: "ErrorStream",
              input_terminated: bool = True) -> "WSGIEnvironment":
        """Complete ``env`` (a dict of latin-1 str meta-variables) into a WSGI environ.

        ``env`` is changed in place and returned: the gateways hand over a dict
        they built for this request alone.
        """
        for key in DROPPED:
            if key in env:
                del env[key]
        env.setdefault("REQUEST_METHOD", "GET")
        env.setdefault("QUERY_STRING", "")
        if "SERVER_NAME" not in env:
            env["SERVER_NAME"] = _host_name(env.get("HTTP_HOST") or "localhost")
        env.setdefault("SERVER_PORT", "80")
        env.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
        if env.get("CONTENT_LENGTH") in UNKNOWN_LENGTH:
            del env["CONTENT_LENGTH"]
        if env.get("FCGI_ROLE") != "AUTHORIZER":
            fix_paths(env, self.mount, self.iis)
        else:
            # FastCGI §6.3: the web server sends an Authorizer no SCRIPT_NAME and no
            # PATH_INFO; it is mounted nowhere, and the path it rules on is REQUEST_URI.
            # PEP 3333 requires both keys: empty, never derived from REQUEST_URI or
            # --script-name as for a Responder.
            env["SCRIPT_NAME"] = env["PATH_INFO"] = ""
        env.update(self.constants)
        env["wsgi.url_scheme"] = ("https" if ("HTTPS" in env or "UWSGI_SCHEME" in env) and (
            env.get("HTTPS") in _HTTPS_ON or env.get("UWSGI_SCHEME") == "https") else "http")
        env["wsgi.input"] = wsgi_input
        env["wsgi.errors"] = errors
        env["wsgi.input_terminated"] = input_terminated
        return env


def build_environ(env: "WSGIEnvironment", wsgi_input: "InputStream", errors: "ErrorStream", *,
                  input_terminated: bool = True, **options: "Any") -> "WSGIEnvironment":
    """One environ (the CGI gateway builds just one): see :class:`EnvironBuilder`."""
    return EnvironBuilder(**options).build(env, wsgi_input, errors, input_terminated)


class LimitedInput:
    """``wsgi.input`` over a stream, never past ``CONTENT_LENGTH`` (PEP 3333, RFC 3875 §4.2).

    ``length`` is the byte count, or ``None`` to read to the end of the stream
    (a body without ``CONTENT_LENGTH``).
    """

    __slots__ = ("stream", "remaining")

    def __init__(self, stream: "InputStream", length: "int | None") -> None:
        self.stream = stream
        self.remaining = length

    def _limit(self, size: "int | None") -> int:
        if self.remaining is None:
            return size if size is not None and size >= 0 else -1
        if size is None or size < 0 or size > self.remaining:
            return self.remaining
        return size

    def read(self, size: "int | None" = -1) -> bytes:
        size = self._limit(size)
        if size == 0:
            return b""
        data = self.stream.read(size)
        if self.remaining is not None:
            # A blocking read returns short only at the end of the stream.
            self.remaining = self.remaining - len(data) if len(data) == size else 0
        return data

    def readline(self, size: "int | None" = -1) -> bytes:
        size = self._limit(size)
        if size == 0:
            return b""
        data = self.stream.readline(size)
        if self.remaining is not None:
            if len(data) < size and not data.endswith(b"\n"):
                self.remaining = 0  # the stream ended early
            else:
                self.remaining -= len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> "Iterator[bytes]":
        return iter(self.readline, b"")

    def drain(self) -> None:
        """Read and discard what the application left unread."""
        while self.read(65536):
            pass
