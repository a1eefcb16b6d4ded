"""Loading APP: every accepted form, and one clear line for every failure."""

import subprocess
import sys
import textwrap

import pytest

from gateways.loader import AppLoadError, load_app, split_spec

APP_SOURCE = textwrap.dedent('''
    def application(environ, start_response):
        start_response("200 OK", [])
        return [b"application"]

    def other(environ, start_response):
        start_response("200 OK", [])
        return [b"other"]

    class Holder:
        app = staticmethod(other)

    def create_app(name="factory", upper=False):
        def made(environ, start_response):
            start_response("200 OK", [])
            return [(name.upper() if upper else name).encode()]
        return made

    def broken_factory():
        raise RuntimeError("factory failed")

    not_callable = 42
''')


@pytest.fixture
def appdir(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "web.py").write_text(APP_SOURCE)
    (tmp_path / "onlyapp.py").write_text(
        "def app(e, s):\n    s('200 OK', [])\n    return [b'app']\n")
    (tmp_path / "site.wsgi").write_text(APP_SOURCE)
    (tmp_path / "syntax.py").write_text("def broken(:\n")
    (tmp_path / "raises.py").write_text("raise ValueError('boom at import')\n")
    (tmp_path / "needs.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in list(sys.modules):
        if name.split(".")[0] in ("pkg", "onlyapp", "syntax", "raises", "needs", "empty"):
            monkeypatch.delitem(sys.modules, name)
    return tmp_path


def body(app):
    return b"".join(app({}, lambda status, headers: None))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pkg.web:application", b"application"),
        ("pkg.web", b"application"),
        ("pkg.web:other", b"other"),
        ("pkg.web:Holder.app", b"other"),
        ("pkg.web:create_app()", b"factory"),
        ("pkg.web:create_app('named', upper=True)", b"NAMED"),
        ("onlyapp", b"app"),
    ],
)
def test_module_forms(appdir, spec, expected):
    assert body(load_app(spec, str(appdir))) == expected


def test_file_forms(appdir):
    assert body(load_app(str(appdir / "onlyapp.py"))) == b"app"
    assert body(load_app(str(appdir / "pkg" / "web.py") + ":other")) == b"other"
    assert body(load_app(str(appdir / "site.wsgi"))) == b"application"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("nowhere_module_xyz:app", "no module named 'nowhere_module_xyz'"),
        ("pkg.nothere:app", "no module named 'pkg.nothere'"),
        ("needs", "importing 'needs' failed: ModuleNotFoundError"),
        ("syntax", "syntax error in"),
        ("raises", "ValueError: boom at import"),
        ("pkg.web:missing", "has no attribute 'missing'"),
        ("empty", "defines neither 'application' nor 'app'"),
        ("pkg.web:not_callable", "not a WSGI callable"),
        ("pkg.web:broken_factory()", "RuntimeError: factory failed"),
        ("pkg.web:create_app(open('x'))", "must be Python literals"),
        ("/no/such/file.py", "no such file"),
        ("", "APP is empty"),
    ],
)
def test_failures_say_why(appdir, spec, words):
    with pytest.raises(AppLoadError) as info:
        load_app(spec, str(appdir))
    message = str(info.value)
    assert words in message
    assert "\n" not in message
    assert repr(spec) in message


def test_app_dir_must_exist(appdir):
    with pytest.raises(AppLoadError, match="not a directory"):
        load_app("pkg.web", str(appdir / "nope"))


def test_split_spec():
    assert split_spec("a.b:c") == ("a.b", "c")
    assert split_spec("a.b") == ("a.b", None)
    assert split_spec("a:f('x:y')") == ("a", "f('x:y')")


@pytest.mark.parametrize("command", ["serve", "fastcgi", "scgi", "cgi", "run"])
def test_cli_reports_load_failure_in_one_line(command, appdir):
    extra = ["--bind", "unix:%s/app.sock" % appdir] if command in ("fastcgi", "scgi") else []
    proc = subprocess.run([sys.executable, "-m", "gateways", command, "raises",
                           "--app-dir", str(appdir), *extra], capture_output=True, text=True,
                          timeout=30,
                          env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "raises" in lines[0] and "boom at import" in lines[0]


@pytest.mark.parametrize("command", ["serve", "fastcgi", "scgi", "cgi", "run"])
def test_cli_debug_shows_the_message_once_after_the_traceback(command, appdir):
    extra = ["--bind", "unix:%s/app.sock" % appdir] if command in ("fastcgi", "scgi") else []
    proc = subprocess.run([sys.executable, "-m", "gateways", command, "raises", "--debug",
                           "--app-dir", str(appdir), *extra], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert 'raises.py", line 1' in proc.stderr  # the cause's frame
    assert proc.stderr.count("cannot load application") == 1, proc.stderr
    assert "cannot load application 'raises'" in proc.stderr.splitlines()[-1]


def test_cli_debug_adds_traceback(appdir):
    proc = subprocess.run([sys.executable, "-m", "gateways", "serve", "raises", "--debug",
                           "--app-dir", str(appdir)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize(("command", "spec"), [("serve", "myapp"), ("cgi", "myapp:application")])
def test_a_directory_named_like_the_module(command, spec, tmp_path):
    """The project directory /srv/x/myapp holds myapp.py, and gateways runs from /srv/x:
    ``import myapp`` finds the directory (a namespace package), not the module."""
    project = tmp_path / "myapp"
    project.mkdir()
    (project / "myapp.py").write_text(APP_SOURCE)
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "gateways", command, spec], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30, env=env,
                          stdin=subprocess.DEVNULL)
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    name = ":application" if ":" in spec else ""
    assert proc.stderr == (
        "gateways: error: cannot load application %r: 'myapp' is the directory %s, imported "
        "as a namespace package (no __init__.py), not the application's module: give "
        "--app-dir %s (where myapp.py is), or name the file: %s%s\n"
        % (spec, project, project, project / "myapp.py", name))
    # Both ways out work: a CGI request through each.
    cgi_env = dict(env, GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="GET", SERVER_NAME="t",
                   SERVER_PORT="80", SERVER_PROTOCOL="HTTP/1.1", QUERY_STRING="")
    for args in ([spec, "--app-dir", str(project)], ["%s%s" % (project / "myapp.py", name)]):
        proc = subprocess.run([sys.executable, "-m", "gateways", "cgi", *args], cwd=tmp_path,
                              capture_output=True, timeout=30, env=cgi_env,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(b"Status: 200 OK\r\n")
        assert proc.stdout.endswith(b"\r\n\r\napplication")
