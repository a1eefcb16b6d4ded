"""`gateways cgi-script`: the script it writes avoids the seed's list of CGI problems,
passes `gateways check`, serves through real Apache (mod_cgid) and lighttpd
(mod_cgi) with the snippets `gateways conf` prints, and starts the standalone
server when run from a terminal; an application that does not load with the
script's interpreter gets no script.
"""

import os
import signal
import stat
import subprocess
import sys

import pytest
import requests

from gateways.tools.confgen import render

import webservers
from daemons import APPS, Daemon, gateways_argv

APP = "probe:application"


def gateways(*args):
    """``gateways ARGS`` from / (the installed package): (status, stdout, stderr)."""
    result = subprocess.run(gateways_argv(*args), cwd="/", capture_output=True, text=True,
                            timeout=60, check=False)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def script(server_python, app_dir):
    """cgi-bin/app.cgi written by the command, in a directory www-data can reach."""
    directory = webservers.public_dir("gw-cgiscript-")
    path = directory / "cgi-bin" / "app.cgi"
    path.parent.mkdir()
    path.parent.chmod(0o755)
    status, out, err = gateways("cgi-script", APP, "-o", str(path), "--python", server_python,
                                "--app-dir", str(app_dir))
    assert status == 0, err
    assert out == "wrote %s\n" % path
    yield path
    webservers.shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.servers
def test_shebang_line_endings_bom_and_mode(script, server_python, app_dir):
    data = script.read_bytes()
    assert data.startswith(b"#!" + server_python.encode() + b"\n")
    assert os.path.isabs(server_python)
    assert b"\r" not in data
    assert not data.startswith(b"\xef\xbb\xbf")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert ("sys.path.insert(0, %r)" % str(app_dir)).encode() in data
    assert ("run(%r)" % APP).encode() in data


def test_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "app.cgi"
    target.write_text("keep me\n")
    status, out, err = gateways("cgi-script", APP, "-o", str(target))
    assert (status, out) == (2, "")
    assert err == "gateways: error: %s exists (use --force to overwrite it)\n" % target
    assert target.read_text() == "keep me\n"
    status, _, err = gateways("cgi-script", APP, "-o", str(target), "--force",
                              "--app-dir", str(APPS))  # an application that loads
    assert status == 0, err
    assert target.read_text().startswith("#!/")


def test_relative_python_is_a_one_line_error(tmp_path):
    target = tmp_path / "app.cgi"
    status, out, err = gateways("cgi-script", APP, "-o", str(target), "--python", "python3")
    assert (status, out) == (2, "")
    assert err == "gateways: error: --python python3: the shebang needs an absolute path\n"
    assert not target.exists()


@pytest.mark.servers
def test_passes_gateways_check(script):
    status, out, err = gateways("check", str(script), "--user", "www-data")
    assert (status, err) == (0, ""), out
    assert out.endswith("looks good: it runs as a CGI program for www-data\n")


def _assert_probe_echo(response):
    assert response.status_code == 200, response.text[:2000]
    data = response.json()
    assert (data["gateway"], data["script_name"], data["path_info"]) == ("CGI", "/app", "/echo")
    assert data["method"] == "GET"


@pytest.mark.servers
def test_serves_through_apache_mod_cgid(script, server_python, app_dir):
    body = render("apache", "cgi", prefix="/app", script=str(script), app=APP,
                  app_dir=str(app_dir), python=server_python)
    with webservers.start_apache(body, modules=("cgid",)) as server:
        _assert_probe_echo(requests.get(server.url("/app/echo"), timeout=30))


@pytest.mark.servers
def test_serves_through_lighttpd_mod_cgi(script, server_python, app_dir):
    body = render("lighttpd", "cgi", prefix="/app", script=str(script), app=APP,
                  app_dir=str(app_dir), python=server_python)
    with webservers.start_lighttpd(body) as server:
        _assert_probe_echo(requests.get(server.url("/app/echo"), timeout=30))


@pytest.mark.servers
def test_from_a_terminal_it_starts_the_standalone_server(script, tmp_path):
    port = webservers.free_port()
    env = {"PATH": webservers.BASE_ENV["PATH"], "GATEWAYS_BIND": "127.0.0.1:%d" % port}
    # No GATEWAY_INTERFACE and stdin is not a socket: what a shell gives it.
    daemon = Daemon([str(script)], tmp_path, "script", address=("127.0.0.1", port), env=env,
                    cwd="/")
    try:
        daemon.wait_ready(needle=None)
        response = requests.get("http://127.0.0.1:%d/echo" % port, timeout=30)
        assert response.status_code == 200
        data = response.json()
        assert data["gateway"] == "standalone HTTP (werkzeug)"
        assert (data["script_name"], data["path_info"]) == ("", "/echo")
    finally:
        status = daemon.stop(signum=signal.SIGINT, group=True)
    assert status in (0, -signal.SIGINT, 130), daemon.log.text()


# -- an application that does not load gets no script -----------------------------------


def _other_python():
    """This interpreter under another name (python3 for python): cgi-script then loads
    the application in a subprocess, as for any --python."""
    directory, name = os.path.split(sys.executable)
    for other in ("python3", "python", "python3.%d" % sys.version_info[1]):
        if other != name and os.path.exists(os.path.join(directory, other)):
            return os.path.join(directory, other)
    pytest.skip("no second name for %s" % sys.executable)


@pytest.mark.parametrize("python", ["this", "other"])
@pytest.mark.parametrize(("app", "reason"), [
    ("myap:application", "no module named 'myap' on the Python path (is --app-dir right?)"),
    ("raising", "importing 'raising' raised ValueError: no DATABASE_URL"),
    ("probe:aplication", "module 'probe' has no attribute 'aplication'"),
])
def test_refuses_an_application_that_does_not_load(python, app, reason, tmp_path):
    (tmp_path / "raising.py").write_text("raise ValueError('no DATABASE_URL')\n")
    (tmp_path / "probe.py").write_bytes((APPS / "probe.py").read_bytes())
    target = tmp_path / "cgi-bin" / "app.cgi"
    target.parent.mkdir()
    interpreter = sys.executable if python == "this" else _other_python()
    status, out, err = gateways("cgi-script", app, "-o", str(target), "--app-dir",
                                str(tmp_path), "--python", interpreter)
    assert (status, out) == (2, "")
    where = "" if python == "this" else interpreter + ": "
    assert err == "gateways: error: %scannot load application %r: %s\n" % (where, app, reason)
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_python_without_gateways_gets_no_script_and_a_fix_that_works(tmp_path, pip_env):
    """Debian 12: /usr/bin/python3 has no gateways and refuses pip install (PEP 668).
    The one line says how to get a Python that has it; done, the script is written
    and answers a CGI request."""
    system = "/usr/bin/python3"
    if not os.path.exists(system) or subprocess.run(
            [system, "-c", "import gateways"], cwd="/", capture_output=True,
            check=False).returncode == 0:
        pytest.skip("needs a %s without gateways" % system)
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.py").write_bytes((APPS / "probe.py").read_bytes())
    target = tmp_path / "app.cgi"
    status, out, err = gateways("cgi-script", APP, "-o", str(target), "--app-dir", str(code),
                                "--python", system)
    assert (status, out) == (2, ""), err
    assert len(err.splitlines()) == 1
    assert err.startswith("gateways: error: %s cannot import gateways (ModuleNotFoundError: "
                          "No module named 'gateways'), so the script would not run" % system)
    assert not target.exists()
    head, command = err.rstrip("\n").rsplit(": ", 1)
    if ", then --python " in command:  # externally managed: a virtualenv
        venv = code / "venv"
        assert "%s is externally managed (PEP 668)" % system in head
        assert command == ("%s -m venv --system-site-packages %s && %s/bin/pip install gateways"
                           ", then --python %s/bin/python3" % (system, venv, venv, venv))
        command, python = command.split(", then --python ")
        subprocess.run(command, shell=True, check=True, cwd="/", env=pip_env, timeout=300)
    else:
        pytest.skip("%s is not externally managed: the fix is pip install into it" % system)
    status, out, err = gateways("cgi-script", APP, "-o", str(target), "--app-dir", str(code),
                                "--python", python)
    assert (status, out, err) == (0, "wrote %s\n" % target, "")
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET",
           "SERVER_NAME": "t", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "SCRIPT_NAME": "/app", "PATH_INFO": "/echo", "QUERY_STRING": ""}
    answer = subprocess.run([str(target)], env=env, cwd=str(tmp_path), capture_output=True,
                            timeout=60, check=False)
    assert answer.stdout.startswith(b"Status: 200 OK\r\n"), answer.stderr
