"""Where a FastCGI daemon listens: --bind, unix socket files, inherited sockets.

Each test starts ``python -m gateways fastcgi probe`` as a subprocess (the
helpers come from ``test_engine.py``) and checks what an operator sees: the
socket file's mode and group, a one-line error and its exit status, or a
server that answers a raw FastCGI request.  The ``tmp`` and ``started``
fixtures are in ``conftest.py``.
"""

import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys

import pytest

import fcgi_client as fc
from daemons import APPS, fastcgi, ipv6_loopback, output_lines, raw_request
from daemons import EngineDaemon as Daemon

# -- helpers -----------------------------------------------------------------------------


def serve(started, tmp, *options, **kw):
    kw.setdefault("name", "server%d" % len(started))
    daemon = fastcgi(tmp, "--processes", "1", "--threads", "2", *options, **kw)
    started.append(daemon)
    return daemon


def one_line_failure(started, tmp, *options, status=2, needle="", **kw):
    """Start a daemon that must refuse to start: its one line of output."""
    daemon = serve(started, tmp, *options, **kw)
    code = daemon.wait_exit()
    lines = output_lines(daemon.log.text())
    assert code == status, (code, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gateways: error: ") and needle in lines[0], lines
    return lines[0]


def answers(daemon, family=socket.AF_UNIX, address=None):
    """The pid a request to /pid got from ``daemon``; asserts a 200."""
    response = raw_request(family, address or daemon.address, "/pid")
    assert response.status_code == 200, response
    return int(response.body)


def listening(family=socket.AF_UNIX, address=None):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(16)
    return sock


def existing_group():
    for name in ("www-data", "nogroup", "nobody"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            continue
    pytest.skip("neither www-data, nogroup nor nobody is a group here")
    return None


# -- unix socket files -------------------------------------------------------------------


def test_unix_socket_mode_0660_by_default_whatever_the_umask(started, tmp):
    daemon = serve(started, tmp, umask=0)
    daemon.wait_ready()
    mode = os.stat(daemon.address).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert answers(daemon) in daemon.worker_pids()


def test_socket_mode_0640_honoured(started, tmp):
    daemon = serve(started, tmp, "--socket-mode", "0640").wait_ready()
    assert stat.S_IMODE(os.stat(daemon.address).st_mode) == 0o640
    assert answers(daemon)


@pytest.mark.parametrize("mode", ["0666", "0662", "777"])
def test_world_writable_socket_mode_refused(started, tmp, mode):
    line = one_line_failure(started, tmp, "--socket-mode", mode, needle="--socket-mode")
    assert "every local user" in line
    assert not os.path.exists(tmp / "server0.sock")


def test_socket_group_and_owner(started, tmp):
    group = existing_group()
    try:
        owner = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user named nobody")
    if os.geteuid() != 0:
        pytest.skip("changing a socket's owner needs root")
    daemon = serve(started, tmp, "--socket-group", group.gr_name,
                   "--socket-owner", owner.pw_name).wait_ready()
    info = os.stat(daemon.address)
    assert (info.st_uid, info.st_gid) == (owner.pw_uid, group.gr_gid)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert answers(daemon)


def test_unknown_socket_group_one_line(started, tmp):
    one_line_failure(started, tmp, "--socket-group", "no-such-group-gw",
                     needle="--socket-group: no group named 'no-such-group-gw'")
    assert not os.path.exists(tmp / "server0.sock")


def test_unknown_socket_owner_one_line(started, tmp):
    one_line_failure(started, tmp, "--socket-owner", "no-such-user-gw",
                     needle="--socket-owner: no user named 'no-such-user-gw'")


STALE = """
import os, socket, sys, time
os.umask(0o022)  # the file is born 0755: not what gateways would make
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(1)
print("listening", flush=True)
time.sleep(60)
"""


def test_stale_socket_file_is_removed_and_the_server_starts(started, tmp):
    path = tmp / "server0.sock"
    holder = subprocess.Popen([sys.executable, "-c", STALE, str(path)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"listening\n"
    finally:
        holder.kill()  # SIGKILL: nobody removes the file
        holder.wait(5)
        holder.stdout.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o755
    daemon = serve(started, tmp).wait_ready()
    assert answers(daemon)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660  # a new file in its place
    assert not [line for line in output_lines(daemon.log.text()) if "ERROR" in line]


def test_live_socket_file_exit_1_another_server(started, tmp):
    path = tmp / "server0.sock"
    with listening(socket.AF_UNIX, str(path)) as other:
        one_line_failure(started, tmp, status=1,
                         needle="another server is listening on %s" % path)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)  # left alone
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # the other server still gets its connections
        other.settimeout(1)
        other.accept()[0].close()


def test_non_socket_file_at_the_path_one_line(started, tmp):
    path = tmp / "server0.sock"
    path.write_text("precious\n")
    one_line_failure(started, tmp, needle="exists and is not a socket")
    assert path.read_text() == "precious\n"


def test_missing_directory_one_line(started, tmp):
    missing = tmp / "no" / "such"
    one_line_failure(started, tmp, bind="unix:%s/s.sock" % missing,
                     needle="directory %s does not exist" % missing)


def test_unix_socket_file_removed_on_stop(started, tmp):
    daemon = serve(started, tmp).wait_ready()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert not os.path.exists(daemon.address)


# -- TCP -----------------------------------------------------------------------------------


def test_tcp_port_in_use_exit_1_one_line(started, tmp):
    with listening(socket.AF_INET, ("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        one_line_failure(started, tmp, bind="127.0.0.1:%d" % port, status=1,
                         needle="--bind 127.0.0.1:%d: the address is already in use" % port)


def _port_from_ready_line(daemon, prefix):
    [line] = [line for line in output_lines(daemon.log.text()) if "ready:" in line]
    tail = line.rsplit(" on ", 1)[1]
    assert tail.startswith(prefix), line
    return int(tail[len(prefix):].split()[0])


def test_tcp_ipv4(started, tmp):
    daemon = serve(started, tmp, bind="127.0.0.1:0").wait_ready()
    port = _port_from_ready_line(daemon, "127.0.0.1:")
    assert answers(daemon, socket.AF_INET, ("127.0.0.1", port))


def test_tcp_ipv6(started, tmp):
    if not ipv6_loopback():
        pytest.skip("this machine cannot listen on ::1 (no IPv6)")
    daemon = serve(started, tmp, bind="[::1]:0").wait_ready()
    port = _port_from_ready_line(daemon, "[::1]:")
    assert answers(daemon, socket.AF_INET6, ("::1", port))


# -- inherited sockets: --bind fd:N ----------------------------------------------------------


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET, socket.AF_INET6],
                         ids=["unix", "ipv4", "ipv6"])
def test_bind_fd_inherited_socket_any_family(started, tmp, family):
    if family == socket.AF_INET6 and not ipv6_loopback():
        pytest.skip("this machine cannot listen on ::1 (no IPv6)")
    address = {socket.AF_UNIX: str(tmp / "inherited.sock"), socket.AF_INET: ("127.0.0.1", 0),
               socket.AF_INET6: ("::1", 0)}[family]
    with listening(family, address) as sock:
        fd = sock.fileno()
        daemon = serve(started, tmp, bind="fd:%d" % fd, pass_fds=(fd,)).wait_ready()
        name = sock.getsockname()
        if family == socket.AF_UNIX:
            expected = "unix:%s" % name
        elif family == socket.AF_INET:
            expected = "127.0.0.1:%d" % name[1]
        else:
            expected = "[::1]:%d" % name[1]
        ready = [line for line in output_lines(daemon.log.text()) if "ready:" in line]
        assert ready and ready[0].endswith("on %s (--bind fd:%d)" % (expected, fd)), ready
        assert answers(daemon, family, name if family != socket.AF_UNIX else address)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        if family == socket.AF_UNIX:  # not ours to remove: whoever bound it owns it
            assert stat.S_ISSOCK(os.lstat(address).st_mode)


def _not_a_listening_socket(kind, tmp):
    if kind == "pipe":
        read, write = os.pipe()
        return [read, write], "is not a socket"
    if kind == "file":
        fd = os.open(str(tmp / "plain"), os.O_RDWR | os.O_CREAT)
        return [fd], "is not a socket"
    if kind == "bound":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        return [sock.detach()], "is not a listening stream socket"
    if kind == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        return [sock.detach()], "is not a listening stream socket"
    return [], "is not open"


@pytest.mark.parametrize("kind", ["pipe", "file", "bound", "udp", "closed"])
def test_bind_fd_not_a_listening_socket_one_line(started, tmp, kind):
    fds, needle = _not_a_listening_socket(kind, tmp)
    try:
        fd = fds[0] if fds else 63
        one_line_failure(started, tmp, bind="fd:%d" % fd, pass_fds=tuple(fds),
                         needle="--bind fd:%d: fd %d %s" % (fd, fd, needle))
    finally:
        for each in fds:
            os.close(each)


# -- systemd socket activation ------------------------------------------------------------

# Sets what systemd sets, then execs the server: the pid stays the same, so
# LISTEN_PID=self names the server's own pid (known only after the fork).
SYSTEMD = """
import os, sys
fd, listen_pid = int(sys.argv[1]), sys.argv[2]
os.dup2(fd, 3)  # sd_listen_fds(3): the sockets start at fd 3
if fd != 3:
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
os.execv(sys.executable, [sys.executable, "-m", "gateways"] + sys.argv[3:])
"""


def _systemd(started, tmp, listen_pid, sock, stdin=subprocess.DEVNULL):
    fd = sock.fileno()
    argv = [sys.executable, "-c", SYSTEMD, str(fd), listen_pid,
            "fastcgi", "probe", "--app-dir", str(APPS), "--processes", "1", "--threads", "2"]
    daemon = Daemon(argv, tmp, "systemd%d" % len(started), address=sock.getsockname(),
                    pass_fds=(fd,), stdin=stdin)
    started.append(daemon)
    return daemon


def test_systemd_socket_activation(started, tmp):
    with listening(socket.AF_UNIX, str(tmp / "activated.sock")) as sock:
        daemon = _systemd(started, tmp, "self", sock).wait_ready()
        assert "(from systemd)" in daemon.log.text()
        assert answers(daemon) in daemon.worker_pids()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit() == 0
        assert os.path.exists(daemon.address)  # systemd's socket: not removed


def test_systemd_sockets_for_another_pid_not_adopted(started, tmp):
    with listening(socket.AF_UNIX, str(tmp / "activated.sock")) as sock:
        daemon = _systemd(started, tmp, str(os.getpid()), sock)
        code = daemon.wait_exit()
        lines = output_lines(daemon.log.text())
        assert code == 2, lines
        assert len(lines) == 1 and "no --bind given" in lines[0], lines


def test_systemd_sockets_for_another_pid_fall_back_to_fd_0(started, tmp):
    with listening(socket.AF_UNIX, str(tmp / "activated.sock")) as sock, \
            listening(socket.AF_UNIX, str(tmp / "spawned.sock")) as spawned:
        daemon = _systemd(started, tmp, str(os.getpid()), sock, stdin=spawned.fileno())
        daemon.wait_ready()
        assert "(from the web server on fd 0)" in daemon.log.text()
        assert answers(daemon, address=spawned.getsockname())
        with socket.socket(socket.AF_UNIX) as client:  # fd 3 was not adopted: nobody
            client.connect(sock.getsockname())          # accepts there, the backlog holds it
            client.settimeout(0.3)
            client.sendall(fc.build_request(fc.http_params("/pid")))
            with pytest.raises(socket.timeout):
                client.recv(1)


# -- no --bind: the socket on fd 0 ----------------------------------------------------------


@pytest.mark.parametrize("stdin", ["tty", "devnull"])
def test_no_bind_and_no_socket_on_fd_0_one_line(started, tmp, stdin):
    if stdin == "tty":
        primary, secondary = os.openpty()
    else:
        primary = secondary = None
    try:
        line = one_line_failure(started, tmp, bind=None,
                                stdin=subprocess.DEVNULL if secondary is None else secondary,
                                needle="no --bind given")
        assert "--bind unix:PATH" in line and "--bind HOST:PORT" in line
    finally:
        for fd in (primary, secondary):
            if fd is not None:
                os.close(fd)


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET], ids=["unix", "ipv4"])
def test_listening_socket_on_fd_0_served(started, tmp, family):
    address = str(tmp / "spawned.sock") if family == socket.AF_UNIX else ("127.0.0.1", 0)
    with listening(family, address) as sock:  # what spawn-fcgi and lighttpd bin-path pass
        daemon = serve(started, tmp, bind=None, stdin=sock.fileno()).wait_ready()
        assert "(from the web server on fd 0)" in daemon.log.text()
        assert answers(daemon, family, sock.getsockname())



# -- --log-file and --pid-file mistakes: one line, nothing left behind ------------------------


@pytest.mark.parametrize("option", ["--log-file", "--pid-file"])
def test_file_in_a_missing_directory_one_line_nothing_left(started, tmp, option):
    missing = "/nonexistent-gw-%d/x.%s" % (os.getpid(), option[2:5])
    line = one_line_failure(started, tmp, option, missing, needle="%s %s" % (option, missing))
    assert "Traceback" not in line
    assert "does not exist" in line or "No such file" in line, line
    assert not os.path.exists(started[-1].address)  # the socket file is not left behind


def _pid_file_daemon(started, tmp, pid_file, name):
    return serve(started, tmp, "--pid-file", str(pid_file), name=name)


def test_second_daemon_with_the_same_pid_file_is_refused(started, tmp):
    pid_file = tmp / "gw.pid"
    first = _pid_file_daemon(started, tmp, pid_file, "first").wait_ready()
    assert pid_file.read_text() == "%d\n" % first.pid
    second = _pid_file_daemon(started, tmp, pid_file, "second")
    code = second.wait_exit()
    lines = output_lines(second.log.text())
    assert code == 1, lines
    assert len(lines) == 1 and "running as pid %d" % first.pid in lines[0], lines
    assert pid_file.read_text() == "%d\n" % first.pid  # the live daemon's file is intact
    assert not os.path.exists(second.address)
    assert answers(first) in first.worker_pids()
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == 0
    assert not pid_file.exists()


def test_stale_pid_file_is_taken_over(started, tmp):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    pid_file = tmp / "gw.pid"
    pid_file.write_text("%d\n" % gone.pid)
    daemon = _pid_file_daemon(started, tmp, pid_file, "server").wait_ready()
    assert pid_file.read_text() == "%d\n" % daemon.pid


def test_pid_file_taken_over_by_another_is_not_removed(started, tmp):
    pid_file = tmp / "gw.pid"
    daemon = _pid_file_daemon(started, tmp, pid_file, "server").wait_ready()
    pid_file.write_text("%d\n" % os.getpid())  # an operator pointed it elsewhere
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit() == 0
    assert pid_file.read_text() == "%d\n" % os.getpid()


def test_start_up_error_also_goes_to_the_log_file(started, tmp):
    with listening(socket.AF_INET, ("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        log = tmp / "gw.log"
        line = one_line_failure(started, tmp, "--log-file", str(log), status=1,
                                bind="127.0.0.1:%d" % port, needle="already in use")
    logged = [entry for entry in log.read_text().splitlines() if entry.strip()]
    assert len(logged) == 1 and " ERROR: " in logged[0], logged
    assert logged[0].endswith(line[len("gateways: error: "):]), (logged, line)
