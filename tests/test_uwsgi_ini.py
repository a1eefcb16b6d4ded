"""Moving from uWSGI: README's ini file runs unchanged, under gateways and under uWSGI.

The ini file in README.rst's "Moving from uWSGI" section is read from the
README itself, its paths moved into a temporary directory, and started with
``gateways uwsgi --ini`` and with Debian's uWSGI (``uwsgi --ini``).  The same
raw uwsgi request goes to both: the application must see the same request,
including the ``env`` line.  ``gateways from-uwsgi`` prints a command line
that, run by a shell, serves the same way; keys gateways cannot honour end
the command with one line each.
"""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from gateways.protocol.uwsgi import make_request

from daemons import Daemon, Session, clean_environ, exchange, gateways_argv, wait_until

README = (Path(__file__).resolve().parent.parent / "README.rst").read_text(encoding="utf-8")

APP = '''
import json
import os


def application(environ, start_response):
    seen = {key: environ.get(key) for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING",
                                             "SCRIPT_NAME", "CONTENT_LENGTH")}
    seen["MYAPP_SETTINGS"] = os.environ.get("MYAPP_SETTINGS")
    seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    body = json.dumps(seen, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def readme_ini():
    """The literal block that follows "for an ini file such as this one" in README.rst."""
    start = README.index("for an ini file such as this one")
    block = README[README.index("::\n\n", start) + 4:]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def ask(path, query="", body=b""):
    params = {"REQUEST_METHOD": "POST" if body else "GET", "PATH_INFO": "/hello",
              "QUERY_STRING": query, "SCRIPT_NAME": "", "SERVER_NAME": "localhost",
              "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"}
    return exchange(path, make_request(params, body), socket.AF_UNIX, 10)


@pytest.fixture
def site(tmp):
    """tmp/myapp.py and tmp/uwsgi.ini: README's ini with its paths under tmp."""
    (tmp / "myapp.py").write_text(APP)
    text = readme_ini().replace("/run/myapp/", "%s/" % tmp).replace("/var/log/myapp/",
                                                                    "%s/" % tmp)
    (tmp / "uwsgi.ini").write_text(text)
    return tmp


def test_readme_ini_is_what_the_test_runs():
    text = readme_ini()
    assert text.startswith("[uwsgi]\n") and "module = myapp:application" in text
    assert "env = MYAPP_SETTINGS=production" in text


def _uwsgi_binary():
    binary = shutil.which("uwsgi")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("uWSGI is missing (scripts/test installs uwsgi-core and "
                        "uwsgi-plugin-python3)")
        pytest.skip("uWSGI is not installed")
    return binary


@pytest.mark.servers  # uWSGI from Debian's packages
def test_readme_ini_runs_unchanged_under_gateways_and_uwsgi(site, started):
    answers = {}
    gateways = Daemon(gateways_argv("uwsgi", "--ini", str(site / "uwsgi.ini")), site, "gw",
                      address=str(site / "uwsgi.sock"), env=clean_environ())
    started.append(gateways)
    gateways.wait_ready(needle=None)
    answers["gateways"] = ask(str(site / "uwsgi.sock"), "a=1", b"posted")
    log = wait_until(lambda: "ready:" in (site / "uwsgi.log").read_text()
                     and (site / "uwsgi.log").read_text(), what="the ready line in logto")
    assert "uwsgi ready: 2 worker process(es) x 8 thread(s)" in log
    assert (site / "uwsgi.pid").read_text() == "%d\n" % gateways.pid
    assert oct(os.stat(site / "uwsgi.sock").st_mode & 0o777) == oct(0o660)
    status = gateways.stop()
    assert status == 0, (status, (site / "uwsgi.log").read_text(), gateways.log.text())
    assert not (site / "uwsgi.sock").exists() and not (site / "uwsgi.pid").exists()

    uwsgi = Session([_uwsgi_binary(), "--ini", str(site / "uwsgi.ini")], site / "uwsgi.out",
                    env=clean_environ())
    started.append(uwsgi)
    wait_until((site / "uwsgi.sock").exists, 15, what="uWSGI listening")
    answers["uwsgi"] = wait_until(lambda: _try(ask, str(site / "uwsgi.sock"), "a=1",
                                               b"posted"), 15, what="uWSGI answering")
    uwsgi.stop()
    heads, bodies = {}, {}
    for name, answer in answers.items():
        heads[name], _, bodies[name] = answer.partition(b"\r\n\r\n")
    assert heads["gateways"].split(b"\r\n")[0] == heads["uwsgi"].split(b"\r\n")[0] == (
        b"HTTP/1.1 200 OK")
    assert bodies["gateways"] == bodies["uwsgi"]
    assert b'"MYAPP_SETTINGS": "production"' in bodies["gateways"]
    assert b'"body": "posted"' in bodies["gateways"] and b'"QUERY_STRING": "a=1"' in (
        bodies["gateways"])


def _try(function, *args):
    try:
        return function(*args)
    except OSError:
        return None


def test_from_uwsgi_prints_a_command_line_that_serves(site, started):
    printed = subprocess.run(gateways_argv("from-uwsgi", str(site / "uwsgi.ini")),
                             capture_output=True, text=True, timeout=30, env=clean_environ())
    assert printed.returncode == 0 and printed.stderr == ""
    line = printed.stdout.strip()
    assert line.startswith("MYAPP_SETTINGS=production gateways uwsgi myapp:application ")
    for option in ("--bind unix:%s/uwsgi.sock" % site, "--socket-mode 660", "--processes 2",
                   "--threads 8", "--timeout 60", "--max-requests 5000"):
        assert option in line
    command = line.replace(" gateways uwsgi ", " %s uwsgi " % " ".join(
        gateways_argv()), 1).replace(" --processes 2", " --processes 1")
    daemon = Daemon(["sh", "-c", "exec env " + command], site, "printed",
                    address=str(site / "uwsgi.sock"), env=clean_environ())
    started.append(daemon)
    daemon.wait_ready(needle=None)
    assert b'"MYAPP_SETTINGS": "production"' in ask(str(site / "uwsgi.sock"))


def test_the_command_line_wins_over_the_file(site, started):
    daemon = Daemon(gateways_argv("uwsgi", "--ini", str(site / "uwsgi.ini"), "--processes",
                                  "1", "--threads", "2"), site, "gw",
                    address=str(site / "uwsgi.sock"), env=clean_environ())
    started.append(daemon)
    daemon.wait_ready(needle=None)
    wait_until(lambda: "ready:" in (site / "uwsgi.log").read_text(), what="ready line")
    assert "1 worker process(es) x 2 thread(s)" in (site / "uwsgi.log").read_text()


BAD_INI = """[uwsgi]
module = myapp:application
uwsgi-socket = %dbad.sock
http = :8080
emperor = /etc/uwsgi/vassals
no-such-option = 1
plugins = python3,router_cache
"""


@pytest.mark.parametrize("command", ["uwsgi", "from-uwsgi"])
def test_keys_gateways_cannot_honour_one_line_each(site, command):
    (site / "bad.ini").write_text(BAD_INI)
    argv = ["uwsgi", "--ini"] if command == "uwsgi" else ["from-uwsgi"]
    proc = subprocess.run(gateways_argv(*argv, str(site / "bad.ini")), capture_output=True,
                          text=True, timeout=30, env=clean_environ())
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "gateways: error: %s cannot run as it is:" % (site / "bad.ini")
    assert [re.sub(r":.*", "", line.split(": ", 1)[1]) for line in lines[1:]] == [
        "http", "emperor", "no-such-option", "plugins = python3,router_cache"]
    assert not (site / "bad.sock").exists()


def test_a_missing_ini_file_is_one_line(tmp):
    proc = subprocess.run(gateways_argv("uwsgi", "--ini", str(tmp / "nope.ini")),
                          capture_output=True, text=True, timeout=30, env=clean_environ())
    assert proc.returncode == 2
    assert proc.stderr == "gateways: error: --ini %s: No such file or directory\n" % (
        tmp / "nope.ini")


def test_no_app_and_no_ini_is_one_line():
    proc = subprocess.run(gateways_argv("uwsgi", "--bind", "unix:/tmp/x.sock"),
                          capture_output=True, text=True, timeout=30, env=clean_environ())
    assert proc.returncode == 2
    assert proc.stderr == "gateways: error: uwsgi needs APP, or --ini FILE naming the " \
                          "application\n"
