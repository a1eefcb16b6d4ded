"""Listening sockets: where a FastCGI or SCGI server takes its connections.

``--bind`` takes ``unix:PATH``, ``HOST:PORT``, ``[IPv6]:PORT`` or ``fd:N``.
Without ``--bind`` the sockets come from whoever started us:

* systemd socket activation: ``LISTEN_FDS`` sockets from fd 3, only when
  ``LISTEN_PID`` is our pid (sd_listen_fds(3)); the variables are then
  removed so that children do not adopt the sockets again.
* a web server: fd 0 is a listening socket (FastCGI 1.0 §2.2,
  ``FCGI_LISTENSOCK_FILENO``; lighttpd ``bin-path``, Apache mod_fcgid,
  spawn-fcgi).  The address family is read from the socket, never assumed.

Unix sockets are created with ``--socket-mode`` (0660 by default; never
writable by all) already in place at bind time, then given
``--socket-group``/``--socket-owner``.  An existing socket file is removed
only after a connect() shows that nobody listens on it.

Every failure is a :class:`~gateways.errors.ConfigError` with one line.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct

from gateways.address import address_in_use, parse_bind
from gateways.errors import AddressInUse, ConfigError
from gateways.fd0 import listening_socket

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from gateways.address import BindAddress

SD_LISTEN_FDS_START = 3


class Listener:
    """A listening socket and what the server must know about it."""

    __slots__ = ("sock", "name", "unix_path", "inode", "inherited")

    def __init__(self, sock: socket.socket, name: str, unix_path: str | None = None,
                 inherited: bool = False) -> None:
        self.sock = sock
        self.name = name
        self.unix_path = unix_path  # a socket file we created and must remove
        self.inode = os.stat(unix_path).st_ino if unix_path else None
        self.inherited = inherited

    def close(self, remove: bool = True) -> None:
        """Close; remove the socket file if it is still the one we created."""
        self.sock.close()
        if remove and self.unix_path:
            try:
                if os.stat(self.unix_path).st_ino == self.inode:
                    os.unlink(self.unix_path)
            except OSError:
                pass

    def refuse_new(self) -> None:
        """The daemon stops: let no new connection into the listen queue (Linux).

        Closing a listening socket resets the connections in its queue; while
        the workers take what is there, more keep coming.  A unix socket's
        file is removed (a connect() fails at once); on a TCP socket of our
        own, a socket filter that drops every packet (classic BPF ``ret #0``,
        SO_ATTACH_FILTER) drops the SYNs: the client retries its SYN and then
        meets the closed port, a refused connection a web server fails over
        from, whatever the request.  A socket inherited from systemd outlives
        us and keeps queueing for the next process: left alone."""
        if self.inherited or self.unix_path or self.sock.family not in (
                socket.AF_INET, socket.AF_INET6):
            return
        try:
            import ctypes

            program = ctypes.create_string_buffer(_DROP_ALL)
            fprog = struct.pack("HL", 1, ctypes.addressof(program))  # struct sock_fprog
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        except (OSError, ImportError, AttributeError):
            pass  # not Linux: the queue is served as it is

    def __repr__(self) -> str:
        return "Listener(%s)" % self.name


_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, 0: drop the packet


# -- inherited sockets -------------------------------------------------------------


def adopt_fd(fd: int, what: str) -> Listener:
    """A listening stream socket of any family from an inherited fd, or ConfigError."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise ConfigError("%s: fd %d is not open" % (what, fd)) from None
    if not stat.S_ISSOCK(mode):
        kind = "a terminal" if os.isatty(fd) else "not a socket"
        raise ConfigError("%s: fd %d is %s" % (what, fd, kind))
    sock = socket.socket(fileno=fd)  # family and type read from the socket itself
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ConfigError("%s: fd %d is not a listening stream socket" % (what, fd))
    sock.setblocking(True)
    name = _describe(sock)
    return Listener(sock, "%s (%s)" % (name, what), inherited=True)


def _describe(sock: socket.socket) -> str:
    try:
        address = sock.getsockname()
    except OSError:
        return "fd %d" % sock.fileno()
    if sock.family == socket.AF_UNIX:
        if isinstance(address, bytes):
            address = address.decode("utf-8", "replace")
        return "unix:%s" % (address or "(unnamed)")
    if sock.family == socket.AF_INET6:
        return "[%s]:%d" % address[:2]
    return "%s:%d" % address[:2]


def systemd_fds(environ: MutableMapping[str, str] | None = None) -> list[int]:
    """The fds systemd passed us (sd_listen_fds), or [] when none are ours."""
    environ = os.environ if environ is None else environ
    count = environ.get("LISTEN_FDS", "")
    pid = environ.get("LISTEN_PID", "")
    if not count.isdigit() or not pid.isdigit() or int(pid) != os.getpid():
        return []
    for key in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        environ.pop(key, None)
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


# -- sockets we create ---------------------------------------------------------------


def _unix_listener(address: BindAddress, mode: int, owner: str | None, group: str | None,
                   backlog: int) -> Listener:
    # parse_bind() gives kind "unix" a path (mypy sees str | None):
    path: str = os.path.abspath(address.path)  # type: ignore[type-var, assignment]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ConfigError("--bind %s: directory %s does not exist" % (address.text, directory))
    _remove_stale_socket(address.text, path)
    uid, gid = _ids(owner, group)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)  # the file is born with `mode`: no window
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigError("--bind %s: %s" % (address.text, exc.strerror)) from None
    finally:
        os.umask(old_umask)
    try:
        os.chmod(path, mode)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        os.unlink(path)
        raise ConfigError("--bind %s: cannot set owner or mode: %s" % (address.text,
                                                                      exc.strerror)) from None
    return Listener(sock, "unix:%s" % path, unix_path=path)


def _remove_stale_socket(text: str, path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError("--bind %s: %s exists and is not a socket" % (text, path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: left behind by a server that is gone
        return
    except OSError as exc:
        raise ConfigError("--bind %s: cannot tell whether %s is in use: %s"
                          % (text, path, exc.strerror)) from None
    finally:
        probe.close()
    raise AddressInUse("--bind %s: another server is listening on %s" % (text, path))


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    uid = gid = -1
    if owner:
        import pwd

        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise ConfigError("--socket-owner: no user named %r" % owner) from None
    if group:
        import grp

        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError("--socket-group: no group named %r" % group) from None
    return uid, gid


def _tcp_listener(address: BindAddress, backlog: int) -> Listener:
    try:
        infos = socket.getaddrinfo(address.host, address.port, 0, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError("--bind %s: cannot resolve %r: %s"
                          % (address.text, address.host, exc.strerror)) from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise address_in_use(address.text) from None
        raise ConfigError("--bind %s: %s" % (address.text, exc.strerror)) from None
    return Listener(sock, _describe(sock))


def open_listeners(bind: str | None, *, mode: int = 0o660, owner: str | None = None,
                   group: str | None = None, backlog: int = 1024,
                   environ: MutableMapping[str, str] | None = None) -> list[Listener]:
    """The listeners for ``bind`` (a ``--bind`` string or None: inherited)."""
    if bind is None:
        fds = systemd_fds(environ)
        if fds:
            return [adopt_fd(fd, "from systemd") for fd in fds]
        if listening_socket(0):
            return [adopt_fd(0, "from the web server on fd 0")]
        raise ConfigError(
            "no --bind given, and no listening socket was passed to us (neither by systemd "
            "nor by a web server on fd 0); from a terminal, give --bind unix:PATH or "
            "--bind HOST:PORT"
        )
    address = parse_bind(bind)
    if address.kind == "unix":
        return [_unix_listener(address, mode, owner, group, backlog)]
    if address.kind == "fd":
        # parse_bind() gives kind "fd" an fd (mypy sees int | None):
        return [adopt_fd(address.fd, "--bind fd:%d" % address.fd)]  # type: ignore[arg-type, str-format]
    return [_tcp_listener(address, backlog)]
