"""spawn-fcgi starts gateways with the listening socket on fd 0, as README.rst shows."""

import os
import re
import signal
import subprocess
import time

import pytest

import fcgi_client
import webservers
from daemons import alive, wait_until

pytestmark = pytest.mark.servers


def test_spawn_fcgi_hands_gateways_its_socket(gateways_bin, app_dir):
    binary = webservers.require("/usr/bin/spawn-fcgi")
    directory = webservers.public_dir("gw-spawn-fcgi-")
    path = str(directory / "app.sock")
    user = ["-U", "www-data"] if webservers.www_data_ids() else []
    proc = subprocess.run([binary, "-s", path, *user, "--", gateways_bin, "fastcgi",
                           "probe:application", "--app-dir", str(app_dir), "--processes", "1",
                           "--threads", "2"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    pid = int(re.search(r"PID: (\d+)", proc.stdout + proc.stderr).group(1))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                response = fcgi_client.request(path, fcgi_client.http_params("/echo"))
                break
            except OSError:
                assert time.monotonic() < deadline, "gateways did not answer on %s" % path
                time.sleep(0.1)
        assert response.status_code == 200
        assert b'"gateway": "FastCGI"' in response.body
        if user:  # spawn-fcgi gives the socket to the web server's user (-U)
            assert os.stat(path).st_uid == webservers.www_data_ids()[0]
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not alive(pid), timeout=10, interval=0.05)
        webservers.shutil.rmtree(directory, ignore_errors=True)
    assert not os.path.exists("/proc/%d/status" % pid) or "zombie" in open(
        "/proc/%d/status" % pid).read()
