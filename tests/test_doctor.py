"""`gateways check`: each problem from the seed's "Common problems with CGI scripts"
(and the two it leaves out: imports, a real CGI response), diagnosed in a broken
script, and the printed fix command run for real until the check passes.

The scripts live in world-traversable directories made by public_dir(); the
checks run the scripts as www-data (when the tests run as root), like the web
servers do; the tests that run this interpreter that way are marked ``servers``
(www-data cannot reach every interpreter: see scripts/test).
"""

import os
import pwd
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from gateways.tools import doctor
from gateways.tools.cgiscript import write_script

import daemons
import webservers

ROOT = webservers.www_data_ids() is not None
USER = webservers.WORKER_USER if ROOT else pwd.getpwuid(os.geteuid()).pw_name
needs_root = pytest.mark.skipif(not ROOT, reason="needs root and the www-data user")

HELLO = '#!%s\nprint("Content-Type: text/plain")\nprint()\nprint("hello")\n'


def check(path, *args):
    """``gateways check PATH --user USER ARGS``: (exit status, stdout + stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "gateways", "check", str(path), "--user", USER, *args],
        cwd="/", capture_output=True, text=True, timeout=60, check=False)
    return result.returncode, result.stdout + result.stderr


def problems(output):
    return [line[len("problem: "):] for line in output.splitlines()
            if line.startswith("problem: ")]


def fixes(output):
    return [line[len("fix: "):] for line in output.splitlines() if line.startswith("fix: ")]


def apply_fixes(output, env=None):
    """Run every printed fix command, in order, with the shell."""
    commands = fixes(output)
    assert commands, output
    for command in commands:
        subprocess.run(command, shell=True, check=True, cwd="/", env=env, timeout=300)
    return commands


def assert_clean(path):
    status, output = check(path)
    assert status == 0, output
    assert "problem:" not in output
    assert output.splitlines()[-1] == (
        "%s: looks good: it runs as a CGI program for %s" % (path, USER))


@pytest.fixture
def public():
    directory = webservers.public_dir("gw-doctor-")
    yield directory
    for path in (directory, *directory.rglob("*")):  # a test may have locked some up
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def good(public, server_python, app_dir):
    """A script written by `gateways cgi-script` serving the probe application."""
    return write_script(str(public / "app.cgi"), "probe:application", server_python,
                        str(app_dir))


@pytest.mark.servers
def test_a_script_from_cgi_script_is_clean(good):
    assert_clean(good)


@pytest.mark.servers
def test_crlf_line_endings(good):
    data = open(good, "rb").read()
    webservers.write_file(good, data.replace(b"\n", b"\r\n"), mode=0o755)
    status, output = check(good)
    assert status == 1
    assert "Windows (CR LF) line endings" in problems(output)[0]
    assert "%r" % (sys.executable + "\r") in output  # the name the kernel looks for
    assert fixes(output) == ["sed -i 's/\\r$//' " + good]
    apply_fixes(output)
    assert b"\r" not in open(good, "rb").read()
    assert_clean(good)


@pytest.mark.servers
def test_fixes_edit_the_target_of_a_symlinked_script(public, good):
    link = public / "link.cgi"
    os.symlink(good, link)
    data = open(good, "rb").read()
    webservers.write_file(good, data.replace(b"\n", b"\r\n"), mode=0o755)
    status, output = check(link)
    assert status == 1
    assert fixes(output) == ["sed -i 's/\\r$//' " + good]  # not the link: sed -i replaces it
    apply_fixes(output)
    assert link.is_symlink()
    assert_clean(str(link))


@pytest.mark.servers
def test_byte_order_mark(good):
    data = open(good, "rb").read()
    webservers.write_file(good, b"\xef\xbb\xbf" + data, mode=0o755)
    status, output = check(good)
    assert status == 1
    assert problems(output) == [
        "a UTF-8 byte order mark (EF BB BF) comes before '#!': the kernel does not see a "
        "shebang and the server cannot run the script"]
    apply_fixes(output)
    assert open(good, "rb").read() == data
    assert_clean(good)


@pytest.mark.servers
def test_not_executable(good):
    os.chmod(good, 0o644)
    status, output = check(good)
    assert status == 1
    assert problems(output)[0].startswith("the script is not executable by %s (mode 0644" % USER)
    assert fixes(output) == ["chmod 755 " + good]
    apply_fixes(output)
    assert_clean(good)


@pytest.mark.servers
def test_missing_interpreter(good):
    text = open(good).read().replace(sys.executable, "/nonexistent/python3", 1)
    webservers.write_file(good, text, mode=0o755)
    status, output = check(good)
    assert status == 1
    assert problems(output) == ["the interpreter /nonexistent/python3 does not exist"]
    assert fixes(output) == ["sed -i '1s|^#!.*|#!%s|' %s" % (sys.executable, good)]
    apply_fixes(output)
    assert open(good).readline() == "#!%s\n" % sys.executable
    assert_clean(good)


@pytest.mark.servers
def test_no_shebang(public):
    script = webservers.write_file(public / "hello.cgi", (HELLO % "x").split("\n", 1)[1],
                                   mode=0o755)
    status, output = check(script)
    assert status == 1
    assert problems(output)[0].startswith("no '#!' line")
    apply_fixes(output)
    assert_clean(str(script))


def test_env_python3_with_crlf(public):
    script = webservers.write_file(public / "hello.py",
                                   (HELLO % "/usr/bin/env python3").replace("\n", "\r\n"),
                                   mode=0o755)
    status, output = check(script)
    assert status == 1
    assert len(problems(output)) == 1
    assert "'python3\\r'" in problems(output)[0]
    apply_fixes(output)
    assert_clean(str(script))


@pytest.mark.servers
def test_env_name_not_in_the_web_servers_path(public):
    script = webservers.write_file(public / "hello.cgi", HELLO % "/usr/bin/env no-such-python3",
                                   mode=0o755)
    status, output = check(script)
    assert status == 1
    assert problems(output)[0].startswith(
        "'#!/usr/bin/env no-such-python3' looks for no-such-python3 in the web server's PATH "
        "(/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) and finds nothing")
    apply_fixes(output)
    assert_clean(str(script))


@pytest.mark.servers
@pytest.mark.parametrize("mode, state", [
    (0o644, "is not an executable file"),
    (0o755, "is not a program (no ELF header, no '#!')"),  # runuser would run it with sh
])
def test_interpreter_not_a_program(public, good, mode, state):
    fake = webservers.write_file(public / "python3", "not a program\n", mode=mode)
    text = open(good).read().replace(sys.executable, str(fake), 1)
    webservers.write_file(good, text, mode=0o755)
    status, output = check(good)
    assert status == 1
    assert problems(output) == ["the interpreter %s %s" % (fake, state)]
    apply_fixes(output)
    assert_clean(good)


@pytest.mark.servers
@needs_root
def test_directory_not_searchable(public, server_python, app_dir):
    private = public / "private"
    private.mkdir(mode=0o700)
    script = write_script(str(private / "app.cgi"), "probe:application", server_python,
                          str(app_dir))
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "www-data cannot search directory %s (mode 0700, owner root:root), on the way to the "
        "script %s" % (private, script)]
    assert fixes(output) == ["chmod o+x %s" % private]
    apply_fixes(output)
    assert_clean(script)


@pytest.mark.servers
@needs_root
def test_root_is_not_blocked_by_modes(public, server_python, app_dir):
    private = public / "private"
    private.mkdir(mode=0o700)
    script = write_script(str(private / "app.cgi"), "probe:application", server_python,
                          str(app_dir))
    status, output = check(script, "--user", "root")  # the last --user wins
    assert status == 0, output


@needs_root
def test_symlinks_are_followed_like_the_kernel_does(public):
    hidden = public / "hidden"
    webservers.write_file(hidden / "python3", b"", mode=0o755)
    hidden.chmod(0o700)
    (public / "bin").mkdir(mode=0o755)
    os.symlink("../hidden/python3", public / "bin" / "python3")
    www = doctor.lookup_user("www-data")
    assert [(path, perm) for path, _, perm in doctor.blockers(public / "bin" / "python3", www,
                                                              "x")] == [(str(hidden), "x")]


@needs_root
def test_interpreter_out_of_reach(public):
    """Like a virtualenv under /root: the interpreter is there, www-data cannot reach it."""
    private = public / "private"
    private.mkdir(mode=0o700)
    os.symlink("/usr/bin/python3", private / "python3")
    script = webservers.write_file(public / "hello.cgi", HELLO % (private / "python3"),
                                   mode=0o755)
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "www-data cannot search directory %s (mode 0700, owner root:root), on the way to the "
        "interpreter %s/python3" % (private, private)]
    assert apply_fixes(output) == ["chmod o+x %s" % private]
    assert_clean(str(script))


@pytest.mark.servers
@needs_root
def test_group_membership_counts(public, good):
    os.chown(public, 0, pwd.getpwnam("www-data").pw_gid)
    os.chmod(public, 0o710)  # searchable through the group only
    assert_clean(good)


@pytest.mark.servers
@needs_root
def test_unreadable_script(good):
    os.chmod(good, 0o711)  # executable, but the interpreter cannot read it
    status, output = check(good)
    assert status == 1
    assert problems(output) == [
        "www-data cannot read the script %s (mode 0711, owner root:root)" % good]
    assert fixes(output) == ["chmod a+r " + good]
    apply_fixes(output)
    assert_clean(good)


@pytest.mark.servers
@needs_root
def test_application_directory_locked(public, server_python, app_dir):
    code = public / "code"
    webservers.write_file(code / "probe.py", (app_dir / "probe.py").read_bytes())
    code.chmod(0o700)
    script = write_script(str(public / "app.cgi"), "probe:application", server_python,
                          str(code))
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "www-data cannot list the application directory %s (mode 0700, owner root:root)" % code,
        "www-data cannot search the application directory %s (mode 0700, owner root:root)"
        % code]
    assert apply_fixes(output) == ["chmod o+r %s" % code, "chmod o+x %s" % code]
    assert_clean(script)


@pytest.mark.servers
def test_application_not_importable(public, server_python, app_dir):
    script = write_script(str(public / "app.cgi"), "no_such_module:app", server_python,
                          str(app_dir))
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "%s as %s: cannot load application 'no_such_module:app': no module named "
        "'no_such_module' on the Python path (is --app-dir right?)" % (server_python, USER)]
    assert fixes(output) == [
        "install the application or correct APP and --app-dir, then: gateways cgi-script "
        "no_such_module:app --app-dir DIR --python %s -o %s --force" % (server_python, script)]
    assert "note: not run as a CGI request: fix the problems above first" in output


SYSTEM_PYTHON = "/usr/bin/python3"


def _without_gateways(python):
    """Skip unless ``python`` exists and cannot import gateways."""
    probe = subprocess.run([python, "-c", "import gateways"], cwd="/", capture_output=True,
                           check=False) if os.path.exists(python) else None
    if probe is None or probe.returncode == 0:
        pytest.skip("needs a %s without gateways" % python)


def _externally_managed(python):
    """PEP 668, asked of ``python`` itself: the marker in its stdlib directory, outside
    a virtualenv."""
    code = ("import os, sys, sysconfig; print(sys.prefix == sys.base_prefix and os.path.isfile("
            "os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))")
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip() == "True"


def _private_app(public, python):
    """The probe application in a directory of its own, and a script for it run by
    ``python``: (script, application directory)."""
    code = public / "code"
    webservers.write_file(code / "probe.py", (daemons.APPS / "probe.py").read_bytes())
    code.chmod(0o755)
    return write_script(str(public / "app.cgi"), "probe:application", python, str(code)), code


@pytest.mark.servers
def test_gateways_not_importable(public, pip_env):
    """Debian 12's /usr/bin/python3 refuses pip install (PEP 668): the fix makes a
    virtualenv that has gateways and points the shebang at it, and it works."""
    system = SYSTEM_PYTHON
    _without_gateways(system)
    script, code = _private_app(public, system)
    status, output = check(script)
    assert status == 1
    first = "%s cannot import gateways as %s (ModuleNotFoundError: No module named " \
            "'gateways'); %s has it" % (system, USER, sys.executable)
    if not _externally_managed(system):
        assert problems(output) == [first]
        assert fixes(output) == ["%s -m pip install gateways" % system]
        return  # pip would install into the system's Python: not here
    venv = code / "venv"
    assert problems(output) == [
        first + "; %s is externally managed (PEP 668): pip refuses to install into it, so "
        "gateways goes into a virtualenv, %s, that sees the system's packages" % (system, venv)]
    assert fixes(output) == [
        "%s -m venv --system-site-packages %s && %s/bin/pip install gateways && "
        "sed -i '1s|^#!.*|#!%s/bin/python3|' %s" % (system, venv, venv, venv, script)]
    apply_fixes(output, pip_env)
    assert open(script).readline() == "#!%s/bin/python3\n" % venv
    assert_clean(script)


def test_gateways_not_importable_in_a_virtualenv(public, pip_env):
    """A virtualenv sees the stdlib, EXTERNALLY-MANAGED marker and all, of the Python
    it was made from, but pip installs into it: the fix is pip."""
    _without_gateways(SYSTEM_PYTHON)
    venv = public / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python3")
    script, _ = _private_app(public, python)
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "%s cannot import gateways as %s (ModuleNotFoundError: No module named 'gateways'); "
        "%s has it" % (python, USER, sys.executable)]
    assert apply_fixes(output, pip_env) == ["%s -m pip install gateways" % python]
    assert_clean(script)


@pytest.mark.servers
def test_application_raises_at_import(public, server_python):
    """Not "install the application": the application is there and its code fails, so
    the fix is its traceback, from the import run by hand as the web server would."""
    webservers.write_file(public / "raising.py", "import os\n\n"
                          "raise ValueError('no DATABASE_URL in the environment')\n")
    script = write_script(str(public / "app.cgi"), "raising:application", server_python,
                          str(public))
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "%s as %s: cannot load application 'raising:application': importing 'raising' "
        "raised ValueError: no DATABASE_URL in the environment" % (server_python, USER)]
    [fix] = fixes(output)
    assert fix.startswith("run the import by hand and read the traceback: cd %s && " % public)
    assert "install" not in fix
    rerun = subprocess.run(fix.split(": ", 1)[1], shell=True, capture_output=True, text=True,
                           timeout=60, check=False)
    assert rerun.returncode == 1
    assert 'File "%s", line 3, in <module>' % (public / "raising.py") in rerun.stderr
    assert "ValueError: no DATABASE_URL in the environment" in rerun.stderr


@pytest.mark.servers
def test_output_without_headers(public):
    script = webservers.write_file(public / "hello.cgi", '#!%s\nprint("hello world")\n'
                                   % sys.executable, mode=0o755)
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "it does not answer with a CGI response, exit status 0: the output does not start "
        "with CGI header lines: 'hello world' is not 'Name: value'"]
    assert "    | hello world" in output
    fix = fixes(output)[0]
    assert fix.startswith("debug it by hand: cd %s && runuser -u %s -- env -i " % (public, USER)
                          if ROOT else "debug it by hand: cd %s && env -i " % public)
    rerun = subprocess.run(fix.split(": ", 1)[1], shell=True, capture_output=True, text=True,
                           check=False)
    assert rerun.stdout == "hello world\n"


@pytest.mark.servers
def test_traceback_before_headers(public):
    script = webservers.write_file(public / "broken.cgi", "#!%s\nimport no_such_module_x\n"
                                   % sys.executable, mode=0o755)
    status, output = check(script)
    assert status == 1
    assert problems(output) == [
        "it does not answer with a CGI response, exit status 1: no output at all "
        "(\"End of script output before headers\")"]
    assert "    | ModuleNotFoundError: No module named 'no_such_module_x'" in output


@pytest.mark.servers
def test_application_answers_500(public, server_python):
    webservers.write_file(public / "failing.py",
                          "def application(environ, start_response):\n"
                          "    raise RuntimeError('BOOM-MARKER')\n")
    script = write_script(str(public / "app.cgi"), "failing:application", server_python,
                          str(public))
    status, output = check(script)
    assert status == 1
    assert problems(output) == ["it runs, but the application answered 500"]
    assert "BOOM-MARKER" in output  # the end of the traceback on stderr


@pytest.mark.servers
def test_hanging_script_is_killed(public):
    script = webservers.write_file(
        public / "hang.cgi", "#!%s\nimport os, sys, time\nprint(os.getpid(), file=sys.stderr, "
        "flush=True)\ntime.sleep(60)\n" % sys.executable, mode=0o755)
    started = time.monotonic()
    status, output = check(script, "--timeout", "1")
    assert time.monotonic() - started < 10
    assert status == 1
    assert problems(output) == ["it did not finish within 1 s; the web server would time out"]
    pid = int(output.split("    | ", 1)[1].split()[0])
    assert not os.path.exists("/proc/%d" % pid) or " Z " in open("/proc/%d/stat" % pid).read()


def test_hanging_in_process_with_a_short_module_timeout(public, monkeypatch):
    monkeypatch.setattr(doctor, "TIMEOUT", 0.5)
    script = webservers.write_file(public / "hang.cgi", "#!/bin/sh\nsleep 30\n", mode=0o755)
    started = time.monotonic()
    findings = doctor.diagnose(str(script), USER)
    assert time.monotonic() - started < 5
    assert [f.message for f in findings if f.kind == "problem"] == [
        "it did not finish within 0.5 s; the web server would time out"]


@pytest.mark.servers
@needs_root
def test_every_problem_is_reported_and_every_fix_applies(public, server_python, app_dir):
    private = public / "private"
    private.mkdir(mode=0o700)
    script = write_script(str(private / "app.cgi"), "probe:application", server_python,
                          str(app_dir))
    data = open(script, "rb").read()
    webservers.write_file(script, b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"), mode=0o600)
    status, output = check(script)
    assert status == 1
    found = problems(output)
    assert len(found) == 5, output  # BOM, CRLF, not executable, directory, unreadable
    assert output.splitlines()[-1] == "%s: 5 problem(s)" % script
    apply_fixes(output)
    assert_clean(script)


@pytest.mark.servers
@needs_root
def test_run_by_a_user_who_is_not_root(good):
    """Not root: the checks run as ourselves, and say so when --user is someone else."""
    def check_as_www_data(*args):
        return subprocess.run(["runuser", "-u", "www-data", "--", sys.executable, "-m",
                               "gateways", "check", good, *args], cwd="/", capture_output=True,
                              text=True, timeout=60, check=False)

    result = check_as_www_data()
    assert (result.returncode, result.stderr) == (0, ""), result.stdout
    assert "note:" not in result.stdout
    result = check_as_www_data("--user", "root")
    assert result.returncode == 0, result.stdout
    assert "note: not root: the programs ran as www-data, not root\n" in result.stdout


@pytest.mark.servers
def test_name_without_cgi_extension_is_only_a_note(public, server_python, app_dir):
    script = write_script(str(public / "app"), "probe:application", server_python,
                          str(app_dir))
    status, output = check(script)
    assert status == 0, output
    assert "note: the name has no .cgi or .py extension" in output


@pytest.mark.parametrize("case", ["missing", "directory", "user"])
def test_usage_errors_exit_2(public, case):
    path, args = str(public / "nothing.cgi"), []
    if case == "directory":
        path = str(public)
    elif case == "user":
        path = str(webservers.write_file(public / "x.cgi", HELLO % sys.executable, mode=0o755))
        args = ["--user", "no-such-user-x"]
    status, output = check(path, *args)
    assert status == 2
    assert len(output.splitlines()) == 1
    assert output.startswith("gateways: error: ")


# -- the pieces, without processes -------------------------------------------------------


def fake_stat(mode, uid=0, gid=0):
    return SimpleNamespace(st_mode=mode, st_uid=uid, st_gid=gid)


def test_permission_bits_as_the_kernel_reads_them():
    www = doctor.User("www-data", 33, frozenset({33}))
    root = doctor.User("root", 0, frozenset({0}))
    assert not doctor.permits(fake_stat(0o100600), www, "r")  # root owns it: no access
    assert doctor.permits(fake_stat(0o100640, gid=33), www, "r")  # through the group
    assert not doctor.permits(fake_stat(0o100044, uid=33), www, "r")  # owner bits only
    assert doctor.permits(fake_stat(0o040711), www, "x")
    assert doctor.permits(fake_stat(0o100000), root, "r")  # root reads anything
    assert not doctor.permits(fake_stat(0o100644), root, "x")  # but runs only with some x
    assert doctor.permits(fake_stat(0o100744), root, "x")
    assert doctor.permits(fake_stat(0o040000), root, "x")


@pytest.mark.parametrize("data, status", [
    (b"Content-Type: text/plain\n\nhi", 200),
    (b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n", 404),
    (b"Location: /elsewhere\n\n", 302),
    (b"Status: 500 Internal Server Error\nX-A: b\n\n", 500),
])
def test_parse_response(data, status):
    assert doctor.parse_response(data)[0] == status


@pytest.mark.parametrize("data, message", [
    (b"", "no output at all"),
    (b"Content-Type: text/plain\n", "no empty line"),
    (b"hello\n\n", "'hello' is not 'Name: value'"),
    (b"X-Only: 1\n\n", "none of Content-Type, Location, Status"),
    (b"Status: OK\n\n", "bad Status header"),
    (b"HTTP/1.1 200 OK\nContent-Type: text/plain\n\n", "'HTTP/1.1 200 OK' is not"),
])
def test_parse_response_errors(data, message):
    with pytest.raises(ValueError, match=message):
        doctor.parse_response(data)


def test_nph_scripts_may_start_with_a_status_line():
    assert doctor.parse_response(b"HTTP/1.1 201 Created\nContent-Type: a/b\n\n", nph=True)[0] \
        == 201


def test_doctor_does_not_import_cgi_or_cgitb():
    code = ("import sys, gateways.tools.doctor, gateways.cli; "
            "sys.exit(bool({'cgi', 'cgitb'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], cwd="/", check=False).returncode == 0
