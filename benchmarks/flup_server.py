"""Run flup's threaded WSGIServer on a unix socket for the benchmarks.

Usage (the benchmark runs it, as www-data, with the right virtualenv)::

    venv/bin/python flup_server.py fastcgi SOCKET PROCESSES THREADS   # flup6
    venv-flup103/bin/python flup_server.py scgi SOCKET PROCESSES THREADS   # flup 1.0.3

The application is ``app:application`` from this file's directory.

flup's thread pool keeps ``maxSpare`` idle threads and starts more on
demand: ``maxThreads`` is left at flup's default (no limit), because at the
limit flup closes new connections instead of queueing them, which a front
end reports as 502s.  THREADS is therefore the pool's ``maxSpare`` (its
resting size), not a hard cap.

flup has no processes-times-threads mode.  For PROCESSES > 1 this script
binds the socket itself and forks PROCESSES copies of the threaded server
that accept on it (each one given the socket in place of the one it would
open), the same shape as ``uwsgi --processes 2 --threads 4``.  With one
process flup opens the socket itself (``bindAddress=SOCKET``), as a user
would run it.  flup 1.0.3's SCGI server logs every request at INFO: it runs
with ``loggingLevel=logging.WARNING``.
"""

import logging
import os
import socket
import sys


def _server_class(protocol):
    if protocol == "fastcgi":
        from flup.server.fcgi import WSGIServer

        return WSGIServer, {"debug": False}
    from flup.server.scgi import WSGIServer

    return WSGIServer, {"debug": False, "loggingLevel": logging.WARNING}


def _bind(path):
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1024)
    return sock


def main(argv):
    protocol, path, processes, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app import application

    server_class, options = _server_class(protocol)
    options.update(minSpare=1, maxSpare=threads)
    if processes == 1:
        server_class(application, bindAddress=path, **options).run()
        return 0
    sock = _bind(path)
    for _ in range(processes - 1):
        if os.fork() == 0:
            break
    # Fork before the server exists: its thread pool starts threads at once.
    server = server_class(application, bindAddress=path, **options)
    server._setupSocket = lambda: sock
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
