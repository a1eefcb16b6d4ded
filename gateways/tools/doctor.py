"""``gateways check FILE``: why a cgi-bin script does not run, and the command that fixes it.

The checks follow the seed document's "Common problems with CGI scripts" (a BOM
before ``#!``, CR LF line endings, an interpreter or ``/usr/bin/env`` lookup that
fails in the web server's PATH, no ``+x``, a file or directory the server's user
cannot read, an extension the server does not map to CGI) and add two: the
interpreter must import gateways and the application as that user, and the
script must answer one real request with a CGI response (RFC 3875 §6: lines
``Name: value`` with at least one of Content-Type, Location or Status, then an
empty line; §7.2: lines end in LF, and servers accept CR LF too).

Every problem is reported as a ``problem:`` line and a ``fix:`` line holding one
shell command; ``note:`` lines do not count.  Exit status: 0 clean, 1 problems,
2 nothing could be checked.  The checks are independent where they can be (a
CRLF shebang does not stop the import check); only the real request waits
until all else passed, as it would fail for a reason already given.  A 5xx
answer is a problem: the script runs, but every visitor gets an error.

An interpreter without gateways gets ``pip install gateways``, unless it is a
system Python that is externally managed (PEP 668, Debian 12 and newer: pip
refuses): then a virtualenv that sees the system's packages gets gateways and
the shebang points there.  An application that cannot be found gets "install
it or correct APP"; one whose own code raises while loading gets the command
that shows its traceback.

Permissions come from the mode bits as the kernel reads them for ``--user``
(owner's bits, else the group's with all the user's groups, else the others';
root is special only for ``--user root``; ACLs are not read: the real request
catches them).  Programs run as that user (``runuser -u USER --`` when we are
root) from the script's directory (§7.2), with a web server's usual PATH, stdin
from /dev/null and a time limit.
"""

import ast
import grp
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections import namedtuple

from gateways.errors import OperatorError

WEB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 10.0  # seconds each program may run
LIMIT = 65536  # bytes kept of each output
BOM = b"\xef\xbb\xbf"
CGI_EXTENSIONS = (".cgi", ".py")

Finding = namedtuple("Finding", "kind message fix", defaults=(None,))
User = namedtuple("User", "name uid gids")


def problem(message, fix):
    return Finding("problem", message, fix)


class UsageError(OperatorError):
    """Nothing can be checked (no such file, no such user): exit status 2."""


def lookup_user(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UsageError("--user %s: no such user" % name) from None
    return User(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def default_user():
    """www-data when it exists (the web servers' user on Debian), else ourselves."""
    try:
        return pwd.getpwnam("www-data").pw_name
    except KeyError:
        return pwd.getpwuid(os.geteuid()).pw_name


# -- permissions -------------------------------------------------------------------------


def permission_class(st, user):
    """``"u"``, ``"g"`` or ``"o"``: whose bits of ``st`` apply to ``user``."""
    if st.st_uid == user.uid:
        return "u"
    return "g" if st.st_gid in user.gids else "o"


def permits(st, user, want):
    """True when ``user`` may ``want`` (``"r"`` or ``"x"``) the file ``st``."""
    if user.uid == 0:
        return want == "r" or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
    shift = {"u": 6, "g": 3, "o": 0}[permission_class(st, user)]
    return bool(st.st_mode >> shift & {"r": 4, "x": 1}[want])


def blockers(path, user, want, _depth=0):
    """``(path, stat, permission)`` for each component keeping ``user`` from ``want``
    (``"r"``, ``"x"``, ``"rx"``) on ``path``: directories searched on the way,
    symlinks followed as the kernel does, then the file itself."""
    found, current = [], "/"
    parts = [part for part in os.path.abspath(path).split("/") if part]
    try:
        for index, name in enumerate(parts):
            st = os.stat(current)
            if not permits(st, user, "x"):
                found.append((current, st, "x"))
            candidate = os.path.join(current, name)
            if os.path.islink(candidate) and _depth < 40:
                target = os.path.join(current, os.readlink(candidate), *parts[index + 1:])
                found += blockers(os.path.normpath(target), user, want, _depth + 1)
                break
            current = candidate
        else:
            st = os.stat(current)
            found += [(current, st, w) for w in want if not permits(st, user, w)]
    except OSError:
        pass  # a missing component: existence is checked elsewhere
    return list({(p, w): (p, s, w) for p, s, w in found}.values())


def _mode(st):
    try:
        owner = "%s:%s" % (pwd.getpwuid(st.st_uid)[0], grp.getgrgid(st.st_gid)[0])
    except KeyError:
        owner = "%d:%d" % (st.st_uid, st.st_gid)
    return "mode %04o, owner %s" % (stat.S_IMODE(st.st_mode), owner)


def access_findings(path, user, want, what):
    """A problem and its chmod for each component that blocks ``user``."""
    findings = []
    for component, st, perm in blockers(path, user, want):
        is_dir = stat.S_ISDIR(st.st_mode)
        verb = {"r": "list" if is_dir else "read", "x": "search" if is_dir else "execute"}[perm]
        if os.path.realpath(component) == os.path.realpath(path):
            where = "%s %s (%s)" % (what, component, _mode(st))
        else:
            where = "directory %s (%s), on the way to %s %s" % (component, _mode(st), what, path)
        who = permission_class(st, user) if is_dir else "a"
        findings.append(problem("%s cannot %s %s" % (user.name, verb, where),
                                "chmod %s+%s %s" % (who, perm, shlex.quote(component))))
    return findings


# -- the script and its interpreter ------------------------------------------------------


class Script:
    """What the checks read once: the bytes, the shebang, the interpreter."""

    def __init__(self, path, user):
        self.path, self.user = os.path.abspath(path), user
        if not os.path.exists(self.path):
            raise UsageError("%s: no such file" % self.path)
        if not os.path.isfile(self.path):
            raise UsageError("%s: not a regular file" % self.path)
        with open(self.path, "rb") as f:
            self.data = f.read(16 * LIMIT)
        text = self.data[len(BOM):] if self.data.startswith(BOM) else self.data
        first = text.split(b"\n", 1)[0]
        self.has_shebang = first.startswith(b"#!")
        self.crlf_shebang = first.endswith(b"\r")
        self.crlf = self.crlf_shebang or b"\r\n" in text
        words = os.fsdecode(first[2:].rstrip(b"\r")).strip(" \t").split(None, 1)
        self.interpreter = words[0] if self.has_shebang and words else None
        self.argument = words[1] if len(words) > 1 else ""
        self.python = None  # what the shebang runs in the end (``env NAME`` resolved)
        self.source = text.replace(b"\r\n", b"\n")
        self.dir = os.path.dirname(self.path)
        self.file = os.path.realpath(self.path)  # sed -i would replace a symlink by a copy
        same = os.geteuid() in (0, user.uid)  # else user_argv runs things as ourselves
        self.runner = user.name if same else pwd.getpwuid(os.geteuid()).pw_name


def shebang_fix(script, python=None):
    """Point the shebang at ``python``, by default the interpreter running this check:
    it imports gateways."""
    python = python or sys.executable
    python = python.replace("\\", "\\\\").replace("|", "\\|").replace("&", "\\&")
    edit = "1s|^#!.*|#!%s|" % python if script.has_shebang else "1i #!" + python
    return "sed -i %s %s" % (shlex.quote(edit), shlex.quote(script.file))


def _executable(path):
    return os.path.isfile(path) and os.stat(path).st_mode & 0o111 != 0


def _magic(path):
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return b"#!"  # unreadable to us: the kernel may still run it
    return head[:2] if head.startswith(b"#!") else head


def check_bom(script):
    if not script.data.startswith(BOM):
        return []
    return [problem("a UTF-8 byte order mark (EF BB BF) comes before '#!': the kernel does not "
                    "see a shebang and the server cannot run the script",
                    "sed -i '1s/^\\xEF\\xBB\\xBF//' " + shlex.quote(script.file))]


def check_crlf(script):
    if not script.crlf:
        return []
    word = ((script.argument or script.interpreter or "").split() or [""])[-1]
    why = ("the '#!' line ends in CR, so the program looked for is %r, which does not exist "
           "(\"/usr/bin/env: 'python3\\r'\")" % (word + "\r") if script.crlf_shebang
           else "CR at the ends of lines confuses everything but Python")
    return [problem("Windows (CR LF) line endings: %s; dos2unix also fixes it" % why,
                    "sed -i 's/\\r$//' " + shlex.quote(script.file))]


def check_shebang(script):
    if script.has_shebang:
        return []
    return [problem("no '#!' line: the web server does not know which interpreter runs it "
                    "(Exec format error)", shebang_fix(script))]


def check_interpreter(script):
    """The shebang's program exists and runs; ``/usr/bin/env NAME`` finds NAME
    in the web server's PATH.  Sets ``script.python``."""
    program = script.interpreter
    if not script.has_shebang:
        return []
    if not program or not os.path.isabs(program):
        return [problem("the interpreter %r is not an absolute path: the web server runs the "
                        "script from another directory" % (program or ""), shebang_fix(script))]
    state = None if _executable(program) else (
        "is not an executable file" if os.path.exists(program) else "does not exist")
    if state is None and _magic(program) not in (b"\x7fELF", b"#!"):
        state = "is not a program (no ELF header, no '#!')"
    if state:
        return [problem("the interpreter %s %s" % (program, state), shebang_fix(script))]
    script.python = program
    if os.path.basename(program) != "env":
        return []
    names = [w for w in script.argument.split() if not w.startswith("-") and "=" not in w]
    found = [os.path.join(d, names[0]) for d in WEB_PATH.split(":")
             if names and _executable(os.path.join(d, names[0]))]
    if not found:
        return [problem("'#!%s %s' looks for %s in the web server's PATH (%s) and finds "
                        "nothing: use an absolute interpreter path" % (
                            program, script.argument, names[0] if names else "a program",
                            WEB_PATH), shebang_fix(script))]
    script.python = found[0]
    return []


def check_executable(script):
    st = os.stat(script.path)
    if permits(st, script.user, "x"):
        return []
    return [problem("the script is not executable by %s (%s): the server refuses to run it "
                    "or offers it as a download" % (script.user.name, _mode(st)),
                    "chmod 755 " + shlex.quote(script.path))]


def check_access(script):
    findings = access_findings(script.path, script.user, "r", "the script")
    for program in dict.fromkeys([script.interpreter, script.python]) if script.python else ():
        findings += access_findings(program, script.user, "x", "the interpreter")
    return list(dict.fromkeys(findings))


# -- running programs as the web server's user -------------------------------------------


def user_argv(argv, user):
    """``argv`` run as ``user`` (``runuser`` when we are root), else as ourselves."""
    if os.geteuid() == 0 and user.uid != 0:
        return ["runuser", "-u", user.name, "--", *argv]
    return list(argv)


def run_limited(argv, env, cwd, timeout):
    """``(status, stdout, stderr)`` of ``argv`` run in its own process group, LIMIT
    bytes of each output kept; status None when killed (group) after ``timeout``."""
    import selectors

    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={"PATH": WEB_PATH, **env}, cwd=cwd,
                               start_new_session=True)
    fds = (process.stdout.fileno(), process.stderr.fileno())
    output = {fd: bytearray() for fd in fds}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(max(0.0, deadline - time.monotonic())):
                chunk = os.read(key.fd, LIMIT)
                if not chunk:
                    selector.unregister(key.fileobj)
                output[key.fd] += chunk[:LIMIT - len(output[key.fd])]
    try:
        status = process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        status = None
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    process.stdout.close()
    process.stderr.close()
    return status, bytes(output[fds[0]]), bytes(output[fds[1]])


def _excerpt(label, data, last=False, count=6):
    lines = data.decode("utf-8", "replace").splitlines()
    shown = lines[-count:] if last else lines[:count]
    return "\n    %s:\n%s" % (label, "\n".join("    | " + line for line in shown)) if lines else ""


# -- importing gateways and the application ----------------------------------------------

IMPORT_PROBE = r"""
import sys
sys.path[0:1] = reversed(sys.argv[2:])  # the script's directory, then its inserts
try:
    import gateways
    if sys.argv[1]:
        from gateways.loader import load_app
        load_app(sys.argv[1])
except BaseException as exc:
    loaded = "gateways" in sys.modules
    sys.stderr.write("%s\n" % (exc if loaded else "%s: %s" % (type(exc).__name__, exc)))
    sys.exit(3 if not loaded else 5 if getattr(exc, "raised", False) else 4)
"""

# Exit status of IMPORT_PROBE: gateways cannot be imported; the application cannot be
# found (APP, --app-dir, not installed); the application's own code raised.
NO_GATEWAYS, NO_APP, APP_RAISED = 3, 4, 5

# What pip may do with an interpreter: prints (in a virtualenv, EXTERNALLY-MANAGED
# in its stdlib directory (PEP 668), has ensurepip for ``-m venv``, "X.Y").
PIP_PROBE = r"""
import importlib.util, os, sys, sysconfig
print(sys.prefix != sys.base_prefix,
      os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")),
      importlib.util.find_spec("ensurepip") is not None, "%d.%d" % sys.version_info[:2])
"""


def script_calls(script):
    """``(imports gateways, APP, sys.path dirs)`` from the source: APP is the string
    given to ``run()`` in a script ``gateways cgi-script`` wrote, else None."""
    try:
        tree = ast.parse(script.source)
    except (SyntaxError, ValueError):
        return False, None, []
    uses, app, dirs = False, None, []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            uses |= any(name.split(".")[0] == "gateways" for name in names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[-1], ast.Constant):
            func, value = node.func, node.args[-1].value
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "run" and isinstance(value, str):
                app = value
            elif name == "insert" and isinstance(value, str) and len(node.args) == 2:
                dirs.append(value)
    return uses, app, dirs


def venv_dir(script_path, app_dirs):
    """Where a virtualenv for the script goes: ``venv`` in its application directory
    (``/srv/myapp/venv``), else ``/srv/NAME/venv``; never in the script's directory
    (cgi-bin runs what is in it)."""
    script_dir = os.path.dirname(os.path.abspath(script_path))
    dirs = [d for d in app_dirs if os.path.abspath(d) != script_dir]
    stem = os.path.splitext(os.path.basename(script_path))[0] or "app"
    return os.path.join(dirs[0] if dirs else os.path.join("/srv", stem), "venv")


def gateways_install(python, venv, timeout=TIMEOUT):
    """How ``python`` gets the gateways package: ``(command, interpreter that has it
    then, why)``.  pip, except into a system Python that is externally managed (PEP
    668, Debian 12 and newer: pip refuses), where the virtualenv ``venv`` gets it, with
    the system's packages visible (the application's dependencies among them)."""
    pip = ("%s -m pip install gateways" % shlex.quote(python), python, "")
    try:
        status, out, _ = run_limited([python, "-c", PIP_PROBE], {}, "/", timeout)
        in_venv, managed, ensurepip, version = out.decode().split()
    except (OSError, ValueError, UnicodeDecodeError):
        return pip
    if status != 0 or in_venv == "True" or managed != "True":
        return pip
    command = "%s -m venv --system-site-packages %s && %s install gateways" % (
        shlex.quote(python), shlex.quote(venv), shlex.quote(os.path.join(venv, "bin", "pip")))
    if ensurepip != "True":
        command = "apt-get install python%s-venv && %s" % (version, command)
    why = ("%s is externally managed (PEP 668): pip refuses to install into it, so gateways "
           "goes into a virtualenv, %s, that sees the system's packages" % (python, venv))
    return command, os.path.join(venv, "bin", "python3"), why


def install_fix(script, python, timeout):
    """``(command, why)`` that give the script's interpreter gateways (see above), the
    shebang pointed at the virtualenv when there is one."""
    venv = venv_dir(script.path, script_calls(script)[2])
    command, target, why = gateways_install(python, venv, timeout)
    if target != python:
        command += " && " + shebang_fix(script, target)
    return command, "; " + why if why else ""


def _pystr(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def by_hand_command(script, python, app, dirs):
    """The shell command that loads ``app`` as the script does, traceback and all."""
    code = "import sys; sys.path[0:0] = [%s]; from gateways.loader import load_app; " \
           "load_app(%s)" % (", ".join(map(_pystr, reversed(dirs))), _pystr(app))
    argv = user_argv(["env", "-i", "PATH=" + WEB_PATH, python, "-c", code], script.user)
    return "cd %s && %s" % (shlex.quote(script.dir), " ".join(shlex.quote(a) for a in argv))


def check_imports(script, timeout):
    uses, app, dirs = script_calls(script)
    python, user = script.python, script.user
    if not uses or not python or "python" not in os.path.basename(os.path.realpath(python)):
        return []  # not a gateways script, or no interpreter to ask
    if blockers(python, user, "x"):
        return []  # check_access said why it cannot start
    findings = []
    for directory in dirs:
        findings += access_findings(directory, user, "rx", "the application directory")
    argv = [python, "-c", IMPORT_PROBE, "" if findings else app or "", script.dir, *dirs]
    status, _, err = run_limited(user_argv(argv, user), {}, script.dir, timeout)
    reason = (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
    if status == NO_GATEWAYS:
        here = os.path.dirname(os.path.abspath(__file__))
        blocked = python == sys.executable and access_findings(here, user, "rx", "gateways")
        if blocked:
            return findings + blocked
        command, why = install_fix(script, python, timeout)
        findings.append(problem("%s cannot import gateways as %s (%s)%s%s" % (
            python, script.runner, reason, "" if python == sys.executable else
            "; %s has it" % sys.executable, why), command))
    elif status == NO_APP:
        findings.append(problem(
            "%s as %s: %s" % (python, script.runner, reason),
            "install the application or correct APP and --app-dir, then: gateways cgi-script "
            "%s --app-dir DIR --python %s -o %s --force" % (
                shlex.quote(app), shlex.quote(python), shlex.quote(script.path))))
    elif status == APP_RAISED:
        findings.append(problem(
            "%s as %s: %s" % (python, script.runner, reason),
            "run the import by hand and read the traceback: "
            + by_hand_command(script, python, app, dirs)))
    elif status != 0:
        findings.append(problem("%s did not import gateways as %s: %s" % (
            python, script.runner, "no answer within %g s" % timeout if status is None else reason),
            shebang_fix(script)))
    return findings


# -- one real request --------------------------------------------------------------------

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_response(data, nph=False):
    """``(status, headers)`` of a CGI response; ValueError says what is wrong."""
    if not data:
        raise ValueError("no output at all (\"End of script output before headers\")")
    headers, position = {}, 0
    while True:
        end = data.find(b"\n", position)
        if end < 0:
            raise ValueError("the headers never end: no empty line after them")
        line, position = data[position:end], end + 1
        line = line[:-1] if line.endswith(b"\r") else line
        if not line:
            break
        if nph and not headers and line.startswith(b"HTTP/"):
            headers[b"status"] = line.split(None, 1)[-1]
            continue
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            raise ValueError("the output does not start with CGI header lines: "
                             "%r is not 'Name: value'" % line[:80].decode("latin-1"))
        headers[name.lower()] = value.strip()
    if not {b"content-type", b"location", b"status"} & set(headers):
        raise ValueError("the headers have none of Content-Type, Location, Status "
                         "(RFC 3875 §6.2)")
    status = headers.get(b"status", b"302" if b"location" in headers else b"200")
    if not status[:3].isdigit() or status[3:4] not in (b"", b" "):
        raise ValueError("bad Status header %r" % status.decode("latin-1"))
    return int(status[:3]), headers


def cgi_environ(script):
    name = "/cgi-bin/" + os.path.basename(script.path)
    return {"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SCRIPT_NAME": name,
            "SCRIPT_FILENAME": script.path, "PATH_INFO": "/", "QUERY_STRING": "",
            "REQUEST_URI": name + "/", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": "gateways-check",
            "REMOTE_ADDR": "127.0.0.1"}


def reproduce_command(script):
    """The shell command that makes the same request by hand."""
    env = {"PATH": WEB_PATH, **cgi_environ(script)}
    return "debug it by hand: cd %s && %s %s %s < /dev/null" % (
        shlex.quote(script.dir), " ".join(user_argv(["env", "-i"], script.user)),
        " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in env.items()),
        shlex.quote(script.path))


def check_request(script, timeout):
    try:
        status, out, err = run_limited(user_argv([script.path], script.user),
                                       cgi_environ(script), script.dir, timeout)
    except OSError as exc:
        return [problem("the kernel refuses to run it: %s" % exc, reproduce_command(script))]
    shown = _excerpt("stdout", out) + _excerpt("stderr (last lines)", err, last=True)
    if status is None:
        return [problem("it did not finish within %g s; the web server would time out%s"
                        % (timeout, shown), reproduce_command(script))]
    try:
        code, _ = parse_response(out, os.path.basename(script.path).startswith("nph-"))
    except ValueError as exc:
        return [problem("it does not answer with a CGI response, exit status %s: %s%s"
                        % (status, exc, shown), reproduce_command(script))]
    if code >= 500:
        return [problem("it runs, but the application answered %d%s" % (code, shown),
                        reproduce_command(script))]
    return [Finding("note", "exit status %d after a valid response" % status)] if status else []


def check_name(script):
    if script.path.endswith(CGI_EXTENSIONS):
        return []
    return [Finding("note", "the name has no .cgi or .py extension: fine for ScriptAlias or "
                    "alias.url to the file, but AddHandler cgi-script and lighttpd's cgi.assign "
                    "go by extension")]


# -- the command -------------------------------------------------------------------------


def diagnose(path, user=None, timeout=None):
    """Every :class:`Finding` for the cgi-bin script ``path`` run as ``user``."""
    user = lookup_user(user or default_user())
    timeout = TIMEOUT if timeout is None else timeout
    script = Script(path, user)
    findings = []
    for check in (check_bom, check_crlf, check_shebang, check_interpreter, check_executable,
                  check_access):
        findings += check(script)
    findings += check_imports(script, timeout)
    if script.runner != user.name:
        findings.append(Finding("note", "not root: the programs ran as %s, not %s"
                                % (script.runner, user.name)))
    if any(f.kind == "problem" for f in findings):
        findings.append(Finding("note", "not run as a CGI request: fix the problems above first"))
    else:
        findings += check_request(script, timeout)
    return findings + check_name(script)


def add_arguments(parser):
    """The arguments of ``gateways check``."""
    parser.add_argument("path", metavar="FILE", help="the cgi-bin script")
    parser.add_argument("--user", help="the web server's user (default: www-data if it "
                        "exists, else you)")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, metavar="SECONDS",
                        help="how long the script may take (default: %g)" % TIMEOUT)


def check_cli(args):
    """``gateways check FILE``: print the findings; 0 clean, 1 problems, 2 usage error."""
    user = args.user or default_user()
    findings = diagnose(args.path, user, getattr(args, "timeout", None))
    lines = []
    for finding in findings:
        lines.append("%s: %s" % finding[:2])
        if finding.fix:
            lines.append("fix: %s" % finding.fix)
    problems = sum(f.kind == "problem" for f in findings)
    path = os.path.abspath(args.path)
    lines.append("%s: %d problem(s)" % (path, problems) if problems else
                 "%s: looks good: it runs as a CGI program for %s" % (path, user))
    sys.stdout.write("\n".join(lines) + "\n")
    return 1 if problems else 0
