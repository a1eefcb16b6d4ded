"""The systemd units from `gateways conf systemd socket|service`, run as systemd would.

There is no systemd in the test machines, so the test does its part by hand,
following sd_listen_fds(3) and the units' own text: it creates the socket the
.socket unit describes (path, mode, group), passes it as fd 3 with LISTEN_FDS=1
and LISTEN_PID set to the service's pid, runs the .service unit's ExecStart,
sends ExecReload's signal, and stops it with the SIGTERM systemd sends.
"""

import configparser
import grp
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from gateways.tools.confgen import render

import fcgi_client


def unit(text):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text)
    return parser


@pytest.fixture
def units(tmp_path, app_dir):
    sock = tmp_path / "myapp.sock"
    common = dict(app="probe:application", app_dir=str(app_dir), python=sys.executable,
                  bind="unix:%s" % sock, processes=1, threads=2, socket_group="www-data")
    return unit(render("systemd", "socket", **common)), unit(render("systemd", "service",
                                                                    **common))


def _listen(socket_unit):
    section = socket_unit["Socket"]
    path = section["ListenStream"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, int(section["SocketMode"], 8))
    try:
        os.chown(path, -1, grp.getgrnam(section["SocketGroup"]).gr_gid)
    except (KeyError, PermissionError):
        pass  # not root, or no such group here: systemd would fail the same way
    listener.listen(128)
    return path, listener


def _activate(service_unit, listener):
    """ExecStart with the listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID=its pid."""
    argv = shlex.split(service_unit["Service"]["ExecStart"])

    def as_fd3():
        os.dup2(listener.fileno(), 3)

    return subprocess.Popen(
        ["/bin/sh", "-c", 'LISTEN_FDS=1 LISTEN_PID=$$ exec "$@"', "sh", *argv],
        preexec_fn=as_fd3, pass_fds=(3,),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _get(path, route):
    with fcgi_client.FastCGIClient(path, timeout=10) as client:
        return client.request(fcgi_client.http_params(route))


@pytest.mark.servers
def test_socket_unit_and_service_unit_as_systemd_runs_them(units):
    socket_unit, service_unit = units
    assert service_unit["Unit"]["Requires"] == "probe-fastcgi.socket"
    assert "--bind" not in service_unit["Service"]["ExecStart"]  # the socket comes from systemd
    path, listener = _listen(socket_unit)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    process = _activate(service_unit, listener)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = _get(path, "/echo")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
        first_pid = int(_get(path, "/pid").body)

        # ExecReload: kill -HUP $MAINPID starts new workers.
        os.kill(process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while int(_get(path, "/pid").body) == first_pid:
            assert time.monotonic() < deadline, "SIGHUP did not replace the worker"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)  # systemctl stop
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err.decode()
    assert os.path.exists(path), "the socket belongs to systemd: gateways must not remove it"
    listener.close()


@pytest.mark.servers
def test_listen_pid_of_another_process_is_not_adopted(units, tmp_path):
    socket_unit, service_unit = units
    _, listener = _listen(socket_unit)
    argv = shlex.split(service_unit["Service"]["ExecStart"])
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1")
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, pass_fds=(3,),
                          preexec_fn=lambda: os.dup2(listener.fileno(), 3))
    listener.close()
    assert proc.returncode == 2
    assert "no --bind given" in proc.stderr
    assert proc.stderr.count("\n") == 1


