"""Is file descriptor 0 a listening socket?  (FastCGI 1.0 §2.2)

A web server that spawns a FastCGI application (lighttpd ``bin-path``,
Apache mod_fcgid, spawn-fcgi) leaves one file descriptor open,
``FCGI_LISTENSOCK_FILENO`` = 0, a listening socket of any address family.
This probe tells it from a terminal, a pipe, a file or a CGI request body.
It costs one ``fstat``; the socket module is imported only when fd 0 is a
socket, so a CGI request pays nothing for it.  A leaf: imports nothing of
gateways.
"""

import os

_S_IFMT, _S_IFSOCK = 0o170000, 0o140000


def listening_socket(fd: int = 0) -> bool:
    """True when ``fd`` is a listening stream socket (any address family)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if mode & _S_IFMT != _S_IFSOCK:
        return False
    import socket

    sock = socket.socket(fileno=os.dup(fd))
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
            and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        )
    except OSError:
        return False
    finally:
        sock.close()
