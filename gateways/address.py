"""``--bind`` addresses, as text: ``unix:PATH``, ``HOST:PORT``, ``[IPv6]:PORT``, ``fd:N``.

Pure string code, no sockets: the settings table checks a ``--bind`` value
with it, the engine's listeners (:mod:`gateways.server.listen`), the
standalone server and the config snippets read it.  A mistake is an
:class:`~gateways.errors.ConfigError` with one line naming the value.  The
one sentence for an address another program has is here too
(:func:`address_in_use`), so that every command says it alike.
"""

from __future__ import annotations

from gateways.errors import AddressInUse, ConfigError

TYPE_CHECKING = False  # mypy reads the import below; the interpreter never does
if TYPE_CHECKING:
    from typing import Literal


class BindAddress:
    """A parsed ``--bind`` value: ``kind`` is ``unix``, ``tcp`` or ``fd``."""

    __slots__ = ("kind", "path", "host", "port", "fd", "text")

    def __init__(self, kind: Literal["unix", "tcp", "fd"], text: str, path: str | None = None,
                 host: str | None = None, port: int | None = None,
                 fd: int | None = None) -> None:
        self.kind = kind
        self.text = text
        self.path = path
        self.host = host
        self.port = port
        self.fd = fd

    def __repr__(self) -> str:
        return "BindAddress(%r)" % self.text


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ConfigError("%r: port %r is not a number from 0 to 65535" % (text, value))
    return int(value)


def parse_bind(text: str) -> BindAddress:
    """Parse a ``--bind`` value into a :class:`BindAddress` or raise ConfigError."""
    if not text:
        raise ConfigError("the address is empty")
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError("%r: unix: needs a path, e.g. unix:/run/app.sock" % text)
        return BindAddress("unix", text, path=path)
    if text.startswith("fd:"):
        value = text[3:]
        if not value.isdigit():
            raise ConfigError("%r: fd: needs a file descriptor number, e.g. fd:0" % text)
        return BindAddress("fd", text, fd=int(value))
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep or not host:
            raise ConfigError("%r: an IPv6 address is written [ADDRESS]:PORT" % text)
        return BindAddress("tcp", text, host=host, port=_port(text, port))
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(
            "%r is not an address: use unix:PATH, HOST:PORT, [IPv6]:PORT or fd:N" % text
        )
    if ":" in host:
        raise ConfigError("%r: write an IPv6 address in brackets, e.g. [::1]:9000" % text)
    return BindAddress("tcp", text, host=host, port=_port(text, port))


def address_in_use(text: str) -> AddressInUse:
    """The error for a HOST:PORT another program listens on (exit status 1)."""
    return AddressInUse("--bind %s: the address is already in use (another program listens "
                        "there); choose another with --bind HOST:PORT" % text)
