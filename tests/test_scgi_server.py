"""A real ``gateways scgi`` (and ``gateways fastcgi``) daemon, spoken to directly.

No web server: the tests play the front end with raw SCGI requests, so what
a hostile or broken peer sends can be sent exactly.  And the log file is
rotated the way logrotate does it without ``copytruncate`` (the real
logrotate: rename, then a new file), with requests before and after.
"""

import os
import shutil
import socket
import subprocess

import pytest

from gateways.protocol.scgi import make_request

import fcgi_client as fc
from daemons import APPS, Daemon, clean_environ, exchange, gateways_argv, wait_until

TIMEOUT = 5.0

LOGGING_APP = '''
class Closing:
    """A body whose close() writes to wsgi.errors after the response has ended."""

    def __init__(self, environ, marker):
        self.errors, self.marker = environ["wsgi.errors"], marker

    def __iter__(self):
        yield b"ok"

    def close(self):
        self.errors.write("closed %s\\n" % self.marker)
        self.errors.flush()


def app(environ, start_response):
    marker = environ.get("QUERY_STRING", "")
    environ["wsgi.errors"].write("during %s\\n" % marker)
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing(environ, marker)
'''


def scgi_request(address, path="/", query="", body=b"", raw=None):
    """One SCGI request on a unix socket: the whole answer (b"" if closed unanswered)."""
    params = {"REQUEST_METHOD": "POST" if body else "GET", "SCRIPT_NAME": "",
              "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "localhost",
              "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}
    return exchange(address, make_request(params, body) if raw is None else raw,
                    socket.AF_UNIX, TIMEOUT)


def status_of(answer):
    return answer.split(b"\r\n", 1)[0].decode("latin-1")


@pytest.fixture
def daemon(tmp, started):
    """``gateways GATEWAY APP``: 1 process x 2 threads on a unix socket, --log-file."""
    def start(gateway, app="probe", app_dir=APPS, *options):
        server = Daemon(gateways_argv(gateway, app, "--app-dir", str(app_dir)), tmp,
                        "%s%d" % (gateway, len(started)), bind="unix", log_file=True,
                        args=["--processes", "1", "--threads", "2", *options],
                        env=clean_environ())
        started.append(server)
        server.wait_ready()
        server.log.mark()
        return server

    return start


# -- malformed requests ----------------------------------------------------------------------


def test_content_length_of_thousands_of_digits_closes_that_connection(daemon):
    server = daemon("scgi")
    block = b"CONTENT_LENGTH\0" + b"9" * 5000 + b"\0SCGI\x001\0"
    answer = scgi_request(server.address, raw=b"%d:%s," % (len(block), block))
    assert answer == b""
    [line] = server.log.wait_for("closing a connection").splitlines()
    assert " WARNING: " in line and "CONTENT_LENGTH has 5000 digits" in line, line
    assert "from a unix socket peer (pid %d" % os.getpid() in line, line
    assert status_of(scgi_request(server.address, "/pid")) == "Status: 200 OK"
    assert "Traceback" not in server.log.text()


# -- log rotation -------------------------------------------------------------------------------


def logrotate(log_path, directory):
    """Rotate ``log_path`` as logrotate does without copytruncate: rename, then create."""
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.path.exists(binary):
        if os.environ.get("CI"):
            pytest.fail("logrotate is not installed (scripts/test installs it)")
        pytest.skip("logrotate is not installed")
    conf = directory / "logrotate.conf"
    conf.write_text("%s {\n    rotate 2\n    create 0640\n    missingok\n}\n" % log_path)
    os.chmod(conf, 0o644)
    subprocess.run([binary, "--force", "--state", str(directory / "logrotate.state"), str(conf)],
                   check=True, timeout=30, capture_output=True)
    assert os.path.exists("%s.1" % log_path)


@pytest.mark.parametrize("gateway", ["scgi", "fastcgi"])
def test_wsgi_errors_survive_log_rotation(tmp, daemon, gateway):
    (tmp / "logging_app.py").write_text(LOGGING_APP)
    server = daemon(gateway, "logging_app:app", tmp)

    def ask(marker):
        if gateway == "scgi":
            return status_of(scgi_request(server.address, "/", marker))
        response = fc.request(server.address, fc.http_params("/", marker), timeout=TIMEOUT)
        return "Status: %d" % response.status_code

    assert ask("before").startswith("Status: 200")
    wait_until(lambda: "closed before" in server.log.text(), what="close() logged")
    logrotate(server.log.path, tmp)
    assert ask("after").startswith("Status: 200")
    wait_until(lambda: "closed after" in server.log.text(), what="close() logged after rotation")
    rotated = (tmp / (server.log.path.name + ".1")).read_text()
    current = server.log.text()
    assert "closed before" in rotated and "after" not in rotated
    if gateway == "scgi":  # SCGI has no error channel: wsgi.errors is the log
        assert "during before" in rotated and "during after" in current
    assert "Traceback" not in current and " ERROR" not in current, current
    server.log.mark()
    assert scgi_request(server.address, raw=b"\xde\xad\xbe\xef" * 8) == b""
    server.log.wait_for("closing a connection")  # the server's own lines follow too
