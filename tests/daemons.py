"""Servers the tests start as subprocesses, their logs, and what /proc says about them.

The modules that start ``gateways fastcgi``, ``gateways scgi``, ``gateways
serve`` or ``gateways run`` (or a script that ends up in one of them) and
watch it from outside share these:

* :class:`Daemon`: the server, its stdout and stderr in ``DIRECTORY/NAME.out``;
  ``--bind`` on a unix socket ``DIRECTORY/NAME.sock`` or on 127.0.0.1 and a
  free port; optionally ``--log-file DIRECTORY/NAME.log``.
  :meth:`Daemon.wait_ready` waits for the "ready:" line (or for the address
  to accept connections).  As a :class:`Session` it runs in a process group
  of its own: :meth:`Session.stop` sends one SIGTERM by pid and kills the
  group only when the daemon does not exit in time; :func:`stop_all` stops
  several at once; :meth:`Session.kill` is for teardown.
  :func:`behind_a_web_server` starts one as the web server tests run it.
* :class:`Log`: a file a daemon writes, read in pieces (what came since
  :meth:`Log.mark`) and waited on.
* :func:`children`, :func:`parent`, :func:`alive`: processes as /proc shows
  them; a zombie counts as dead.
* :func:`wait_until`: poll a condition until a deadline.
* :func:`gateways_argv`, :func:`clean_environ`: the command line and the
  environment that start gateways.
* :func:`fastcgi` and :class:`EngineDaemon`: a ``gateways fastcgi`` daemon as
  the engine, listener and launcher tests start it (in its directory, with a
  clean environment; workers, signals, log lines, requests);
  :func:`raw_request`: one FastCGI request over a socket of any family.

Every wait polls (every 20 ms unless told otherwise) until a deadline; a
failed wait fails the test with what the daemon wrote.  Module-specific
helpers (the engine's load generators, FastCGI requests, /proc/net/unix)
stay in their modules.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import fcgi_client as fc
import webservers

APPS = Path(__file__).resolve().parent / "apps"  # the probe applications
WAIT = 5.0  # the default for any single wait


def gateways_argv(*args, gateways=None):
    """``gateways ARGS`` as a command line: the console script ``gateways`` (a path)
    when given, else ``python -m gateways`` with this interpreter."""
    return [gateways, *args] if gateways else [sys.executable, "-m", "gateways", *args]


def clean_environ(**extra):
    """os.environ without the variables that would change how a gateway behaves,
    plus ``extra``."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("GATEWAYS_", "LISTEN_", "FCGI_"))
               and k not in ("GATEWAY_INTERFACE", "REQUEST_METHOD")}
    environ.update(extra)
    return environ


def wait_until(predicate, timeout=WAIT, interval=0.02, what=None):
    """Call ``predicate`` every ``interval`` s until it returns a true value: that value.

    After ``timeout`` s: with ``what`` (a text, or a callable that makes one, to
    show the state at the end) the test fails saying it; without, the last
    (false) value is returned for the caller's own assert.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if not value and what is not None:
        pytest.fail("%s: not within %g s" % (what() if callable(what) else what, timeout))
    return value


# -- processes in /proc ---------------------------------------------------------------


def _stat(pid):
    """The fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...];
    None once ``pid`` is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()


def alive(pid):
    """True while ``pid`` runs (a zombie nobody has reaped yet counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent(pid):
    """The pid of the parent of ``pid``; None once ``pid`` is gone."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def children(pid):
    """The set of the live child processes of ``pid`` (empty when it is gone)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.add(int(entry))
    return found


def accepting(address):
    """True when something accepts connections on ``address`` right now: a unix
    socket path, or (host, port)."""
    if not isinstance(address, str):
        return webservers.port_open(address[1], address[0])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


# -- logs and daemons -----------------------------------------------------------------


class Log:
    """A file a daemon writes (its --log-file, or its output), read in pieces:
    :meth:`new_text` is what was written since :meth:`mark`."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = 0

    def text(self):
        """All of it so far ("" until the daemon creates it)."""
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self):
        self.offset = len(self.text())

    def new_text(self):
        return self.text()[self.offset:]

    def new_lines(self):
        return self.new_text().splitlines()

    def wait_for(self, needle, timeout=WAIT):
        """The new text once it holds ``needle``; the test fails after ``timeout`` s."""
        def holding():
            text = self.new_text()
            return text if needle in text else None

        return wait_until(holding, timeout, what=lambda: "%r not logged in %s; new text: %r"
                          % (needle, self.path.name, self.new_text()))


def bind_address(bind, path, address=None):
    """The --bind value and the address for ``bind``: "unix" (a socket at PATH.sock),
    "tcp" (127.0.0.1 and a free port), else ``bind`` itself (None: no --bind) and
    ``address`` (where it listens, when known)."""
    if bind == "unix":
        return "unix:%s.sock" % path, "%s.sock" % path
    if bind == "tcp":
        port = webservers.free_port()
        return "127.0.0.1:%d" % port, ("127.0.0.1", port)
    return bind, address


class Session:
    """A subprocess in a session (and process group) of its own, its stdout and
    stderr in the file ``output``: signalled by pid, killed as a group."""

    def __init__(self, argv, output, *, stdin=subprocess.DEVNULL, umask=None, **popen):
        self.terminated = False
        with open(output, "wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=None if umask is None else (lambda: os.umask(umask)), **popen)
        self.pid = self.process.pid

    def worker_pids(self):
        """Its live child processes: a gateways daemon's workers."""
        return children(self.pid)

    def terminate(self, signum=signal.SIGTERM, group=False):
        """Send ``signum`` by pid (or to the group), once: a second SIGTERM could land
        after Python put back the default action while exiting (status -15)."""
        if not self.terminated and self.process.poll() is None:
            (os.killpg if group else os.kill)(self.pid, signum)
            self.terminated = True

    def stop(self, timeout=10.0, signum=signal.SIGTERM, group=False):
        """:meth:`terminate`, then wait: the exit status, or None if it had to be killed."""
        self.terminate(signum, group)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        """SIGKILL its process group now (workers too, even orphaned ones)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT)


class Daemon(Session):
    """A server started as a :class:`Session`, its output in DIRECTORY/NAME.out.

    ``argv``: its command line without --bind and --log-file (see
    :func:`gateways_argv`); ``bind`` and ``address``: see :func:`bind_address`;
    ``args`` follow --bind.  With ``log_file``, ``--log-file DIRECTORY/NAME.log``
    is added.  :attr:`log` reads the file it logs to.  ``env``, ``cwd``,
    ``stdin``, ``pass_fds`` and ``umask`` go to the subprocess.
    """

    READY_TIMEOUT = 15.0

    def __init__(self, argv, directory, name="server", *, bind=None, address=None, args=(),
                 log_file=False, **popen):
        self.name, self.output = name, Path(directory) / (name + ".out")
        self.bind, self.address = bind_address(bind, Path(directory) / name, address)
        self.log = Log(self.output.with_suffix(".log") if log_file else self.output)
        super().__init__([*argv, *(["--bind", self.bind] if self.bind else []), *args,
                          *(["--log-file", str(self.log.path)] if log_file else [])],
                         self.output, **popen)

    def wait_ready(self, timeout=None, needle="ready:"):
        """Wait until the log holds ``needle`` (``needle=None``: until the address
        accepts connections); returns self.  If the daemon exits first or
        ``timeout`` s (READY_TIMEOUT) pass, it is killed and the test fails."""
        timeout = self.READY_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not (needle in self.log.text() if needle else accepting(self.address)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                message = "%s not ready within %g s (exit status %s)\n%s" % (
                    self.name, timeout, self.process.poll(), report(self))
                self.kill()
                pytest.fail(message)
            time.sleep(0.02)
        return self


def report(daemon):
    """A daemon's output and (when it has one) its log file, for a failure message."""
    text = "--- %s ---\n%s" % (daemon.output, Log(daemon.output).text())
    if daemon.log.path != daemon.output:
        text += "\n--- %s ---\n%s" % (daemon.log.path, daemon.log.text())
    return text


def behind_a_web_server(gateway, gateways_bin, app_dir, directory, name, tcp=False, extra=()):
    """``gateways GATEWAY probe:application`` as the web server tests run it: on a unix
    socket of group www-data (the web servers' user) or on 127.0.0.1:PORT, 1 process x
    4 threads, ``--log-level debug`` into DIRECTORY/NAME.log."""
    argv = gateways_argv(gateway, "probe:application", "--app-dir", str(app_dir),
                         gateways=gateways_bin)
    return Daemon(argv, directory, name, bind="tcp" if tcp else "unix", log_file=True,
                  args=["--socket-group", "www-data", "--processes", "1", "--threads", "4",
                        "--log-level", "debug", *extra])


@contextlib.contextmanager
def daemon_set(prefix, timeout=10.0, quiet=False):
    """A web-server-readable directory and a dict (name: Daemon) for a module's daemons:
    ``with daemon_set("gw-x-") as (directory, started):`` start them into
    ``started``.  At the end every one gets SIGTERM and must exit 0 (with ``quiet``:
    having logged no WARNING or ERROR); the failure message holds their logs; the
    directory is removed."""
    directory = webservers.public_dir(prefix)
    started = {}
    try:
        yield directory, started
    finally:
        statuses = stop_all(started, timeout)
        logs = {name: daemon.log.text() for name, daemon in started.items()}
        webservers.shutil.rmtree(directory, ignore_errors=True)
    tails = {name: text[-2000:] for name, text in logs.items()}
    assert statuses == dict.fromkeys(started, 0), (statuses, tails)
    if quiet:
        assert not [name for name, text in logs.items()
                    if "WARNING" in text or "ERROR" in text], logs


class RawListener:
    """A listening socket that stands in for a daemon: each connection goes to
    ``self._serve(conn)`` (defined by the subclass) on a thread of its own.
    ``address``: a unix socket path (made connectable by the web servers' user) or
    (host, port); ``bind``: the address as --bind spells it; ``connections``: how
    many were accepted.  A subclass sets its own attributes before calling
    ``super().__init__``: connections may come at once."""

    def __init__(self, address=("127.0.0.1", 0)):
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        if family == socket.AF_UNIX:
            os.chmod(address, 0o666)
            self.bind = "unix:" + address
        else:
            self.bind = "%s:%d" % self.sock.getsockname()[:2]
        self.sock.listen(16)
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(WAIT)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()


def stop_all(daemons, timeout=10.0):
    """SIGTERM every daemon of ``daemons`` (name: Daemon) at once, since each takes a
    moment to stop, then :meth:`Daemon.stop` each: {name: exit status}."""
    for daemon in daemons.values():
        daemon.terminate()
    return {name: daemon.stop(timeout) for name, daemon in daemons.items()}


# -- FastCGI daemons as the engine, listener and launcher tests start them -------------------


def output_lines(text):
    return [line for line in text.splitlines() if line.strip()]


def exchange(address, data, family=None, timeout=WAIT):
    """Connect to ``address`` (a unix path or (host, port)), send ``data`` and read
    until the peer closes: what it sent."""
    if family is None:
        family = socket.AF_UNIX if isinstance(address, (str, os.PathLike)) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(data)
        return read_until_closed(sock)


def read_until_closed(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def raw_request(family, address, path="/pid", query="", timeout=WAIT):
    """One FastCGI request over a socket of any family; the :class:`fc.Response`."""
    data = exchange(address, fc.build_request(fc.http_params(path, query)), family, timeout)
    return fc.Response(fc.parse_records(data))


def ipv6_loopback():
    """True when this machine can listen on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class EngineDaemon(Daemon):
    """A server as these tests start it: ``argv`` is the whole command line (plus
    --bind); it runs in DIRECTORY with :func:`clean_environ` unless ``env`` says
    otherwise; its log is its output.  :meth:`kill` (the ``spawn`` and
    ``started`` fixtures call it in teardown) kills its process group.
    """

    READY_TIMEOUT = 10.0

    def __init__(self, argv, directory, name="server", *, env=None, **options):
        super().__init__(argv, directory, name, env=clean_environ() if env is None else env,
                         cwd=directory, **options)

    # -- output -------------------------------------------------------------------------

    def new_lines(self):
        return output_lines(self.log.new_text())

    def wait_log(self, needle, timeout=WAIT):
        """The new lines once one holds ``needle``."""
        return output_lines(self.log.wait_for(needle, timeout))

    # -- processes ----------------------------------------------------------------------

    def wait_workers(self, count, exclude=(), timeout=WAIT):
        """Wait until exactly ``count`` workers run, none of them in ``exclude``: their
        sorted pids."""
        def found():
            pids = self.worker_pids()
            return sorted(pids) if len(pids) == count and not pids & set(exclude) else None

        return wait_until(found, timeout, what=lambda: "%d workers, none of %r (now %r)"
                          % (count, sorted(exclude), sorted(self.worker_pids())))

    def signal(self, signum):
        os.kill(self.pid, signum)

    def wait_exit(self, timeout=WAIT):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not exit within %g s:\n%s" % (timeout, self.log.text()))

    # -- requests -----------------------------------------------------------------------

    def request(self, path="/pid", query="", timeout=WAIT):
        return fc.request(self.address, fc.http_params(path, query), timeout=timeout)

    def pid_of_answer(self, path="/pid"):
        response = self.request(path)
        assert response.status_code == 200, response
        return int(response.body)


def fastcgi(directory, *options, app="probe", app_dir=APPS, bind="unix", name="server", **kw):
    """A ``gateways fastcgi`` daemon; ``bind="unix"``: on DIRECTORY/NAME.sock."""
    argv = gateways_argv("fastcgi", app, "--app-dir", str(app_dir))
    return EngineDaemon(argv, directory, name, bind=bind, args=options, **kw)
