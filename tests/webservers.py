# Start real web servers (Apache httpd, lighttpd, nginx, HAProxy, Caddy, H2O) for
# integration tests.
#
# Every server gets its own world-traversable directory under /tmp holding its
# configuration, document root, logs, pid file, sockets and temp dirs, listens
# on a free 127.0.0.1 port, and runs in its own session so that stop() can
# clean up everything it spawned (CGI daemons, FastCGI children) by process
# group.  Nothing under /etc is written and nothing is ever killed by name.
"""Reusable helpers that start real web servers from generated config files.

Typical use from a module-scoped fixture::

    @pytest.fixture(scope="module")
    def apache():
        root = public_dir("gw-apache-")
        write_file(root / "cgi-bin" / "app.cgi", SCRIPT, mode=0o755)
        server = start_apache(APACHE_BODY, modules=("cgid",), root=root)
        yield server
        server.stop()
        shutil.rmtree(root)

Without ``root=`` the start functions make the directory themselves and
``Server.close()`` (or leaving a ``with start_nginx(...) as server:`` block)
stops the server and removes it.  A failed start raises ServerStartError
(message: output, error log tail, numbered config) and keeps the directory
for inspection (``exc.root``).

Where a body goes: Apache, at the end of httpd.conf (server level); lighttpd,
at the end of lighttpd.conf (top level); nginx, inside the one ``server {}``
block, with ``http_extra`` at ``http {}`` level before it.

Config bodies are plain text in the server's own syntax.  Three placeholders
are substituted with ``str.replace`` (not ``str.format``, so the braces of
nginx blocks, lighttpd conditionals and regex quantifiers need no escaping):

``{root}``
    the server's directory (absolute, no trailing slash);
``{docroot}``
    its document root, ``{root}/htdocs``;
``{port}``
    the TCP port it listens on (127.0.0.1 only).

Directory layout of a server root: ``htdocs/`` (document root), ``logs/``
(``error.log`` and ``stderr.log``), ``run/`` (pid file, sockets; owned by the
worker user so that workers can create sockets there), ``tmp/`` (temp files,
owned by the worker user), and the configuration file itself.

When the tests run as root the servers' workers run as ``www-data``; every
file a server must read therefore has to live in a directory made by
:func:`public_dir`, never in pytest's ``tmp_path`` (mode 0700).

Server quirks this module handles:

* Debian's apache2 has unixd, log_config, logio, version, watchdog compiled
  in; a LoadModule line for them is an error, so ``apache2 -l`` is asked.
* mod_cgid appends the parent's pid to ScriptSock (``run/cgid.sock.PID``);
  mod_fcgid defaults its IPC dir and process table to /var/lib/apache2/fcgid,
  so both are moved into the server root.
* lighttpd 1.4.69 opens ``server.errorlog`` after dropping privileges, hence
  ``logs/`` belongs to the worker user.
* nginx opens its compiled-in /var/log/nginx/error.log before reading the
  config unless given ``-e``; it retries a busy port 5 times, 0.5 s apart.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Union

import pytest

from gateways.tools.confgen import split_nginx, split_snippet

WORKER_USER = "www-data"
APACHE_BIN = "/usr/sbin/apache2"
APACHE_MODULE_DIR = Path("/usr/lib/apache2/modules")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = ("sudo apt-get install apache2 libapache2-mod-fcgid lighttpd nginx-light haproxy "
                "caddy h2o")

# Modules every generated httpd.conf loads, in load order.
APACHE_BASE_MODULES = (
    "mpm_event", "authz_core", "authz_host", "unixd", "mime", "dir", "alias",
    "log_config", "env", "setenvif", "headers", "rewrite",
)

# The environment the servers (and so their CGI/FastCGI children) start with:
# nothing leaks from the test process (PYTHONPATH, VIRTUAL_ENV, ...).
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

_live_servers: set[Server] = set()


# -- files and directories -----------------------------------------------------


def www_data_ids() -> Optional[tuple[int, int]]:
    """Return (uid, gid) of the worker user when running as root, else None.

    Non-root runs start the servers as the current user (no ``User`` lines).
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(WORKER_USER)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def _traversable(path: Path) -> bool:
    """True when every directory from ``path`` up to / is searchable by others."""
    path = path.resolve()
    for directory in (path, *path.parents):
        if not os.stat(directory).st_mode & 0o001:
            return False
    return True


def public_dir(prefix: str = "gateways-") -> Path:
    """Make a fresh mode-0755 directory under /tmp (or /var/tmp) that the
    web servers' worker user can reach.  The caller removes it when done."""
    for base in ("/tmp", "/var/tmp"):
        if os.path.isdir(base) and _traversable(Path(base)):
            path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
            path.chmod(0o755)
            return path
    raise RuntimeError("neither /tmp nor /var/tmp is traversable by other users")


def _mkdirs(path: Path, mode: int = 0o755) -> None:
    """Create ``path`` and missing parents with ``mode`` regardless of umask."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        directory.chmod(mode)


def write_file(path: Union[str, Path], content: Union[str, bytes], mode: int = 0o644) -> Path:
    """Write ``content`` (str is UTF-8 encoded) to ``path`` with ``mode``.

    Missing parent directories are created with mode 0755.  Use mode 0o755
    for CGI scripts.  The umask does not matter.
    """
    path = Path(path)
    _mkdirs(path.parent)
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    path.chmod(mode)
    return path


def worker_dir(path: Union[str, Path], mode: int = 0o755) -> Path:
    """Create ``path`` (and parents, 0755) and give it to the worker user when
    root, so that server workers or backends can create files and sockets in it."""
    path = Path(path)
    _mkdirs(path)
    path.chmod(mode)
    ids = www_data_ids()
    if ids is not None:
        os.chown(path, *ids)
    return path


# -- ports, paths, waiting -----------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _check_alive(process: Optional[subprocess.Popen], what: str) -> None:
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"process {process.pid} exited with {process.returncode} "
                           f"while waiting for {what}")


def wait_for_port(port: int, timeout: float = START_TIMEOUT, host: str = "127.0.0.1",
                  process: Optional[subprocess.Popen] = None) -> None:
    """Wait until ``host:port`` accepts connections; raise TimeoutError after
    ``timeout`` seconds, or RuntimeError as soon as ``process`` (if given) exits."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host):
        _check_alive(process, f"{host}:{port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")
        time.sleep(0.02)


def wait_for_path(path: Union[str, Path], timeout: float = START_TIMEOUT,
                  process: Optional[subprocess.Popen] = None) -> Path:
    """Wait until ``path`` exists (e.g. a unix socket a backend creates); raise
    TimeoutError after ``timeout`` seconds, or RuntimeError if ``process`` exits."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    while not path.exists():
        _check_alive(process, str(path))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
    return path


# -- prerequisites ---------------------------------------------------------------


def _missing(what: str) -> None:
    """Skip (or fail in CI) because ``what`` is not installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed: scripts/test installs it with apt-get "
                    "when run as root", pytrace=False)
    pytest.skip(f"{what} not installed; install with: {INSTALL_HINT}")


def _find_binary(name: str) -> Optional[str]:
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def require(binary_or_module: str) -> str:
    """Return the path of a server binary or Apache module, or skip/fail.

    ``"apache2"``, ``"lighttpd"``, ``"nginx"`` (or any absolute path or
    command name) name programs; anything else is an Apache module name,
    with or without the ``mod_`` prefix and ``.so`` suffix (``"cgid"``,
    ``"mod_fcgid"``).  A missing one skips the test, or fails it when the
    environment variable CI is ``true``.
    """
    name = binary_or_module
    if name in ("apache", "apache2"):
        name = APACHE_BIN
    if name.startswith("/"):
        if not os.access(name, os.X_OK):
            _missing(name)
        return name
    if name in ("lighttpd", "nginx", "runuser", "setpriv", "haproxy", "caddy", "h2o"):
        found = _find_binary(name)
        if found is None:
            _missing(name)
        return found
    module = APACHE_MODULE_DIR / f"mod_{_module_name(name)}.so"
    if not module.is_file():
        _missing(f"Apache module {module}")
    return str(module)


def check_worker_can_run_python(python: str = sys.executable) -> str:
    """Check that the worker user can run ``python`` and import gateways.

    As root the check runs ``runuser -u www-data`` from / with a minimal
    environment, as a web server would; otherwise it runs as the current
    user.  Returns the path of the ``gateways`` package that was imported;
    fails the calling test (or session fixture) with an explanation if not.
    """
    command = [python, "-c", "import gateways, sys; print(gateways.__file__)"]
    if www_data_ids() is not None:
        command = [require("runuser"), "-u", WORKER_USER, "--", *command]
    try:
        result = subprocess.run(command, cwd="/", env=dict(BASE_ENV), capture_output=True,
                                text=True, timeout=60, check=False)
        output = (result.stdout + result.stderr).strip()
        ok = result.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        output, ok = str(exc), False
    if not ok:
        pytest.fail(
            f"the web servers' worker user ({WORKER_USER}) cannot run {python} and import "
            f"gateways:\n{output}\nThe interpreter, its virtualenv and every directory above "
            "them must be readable and searchable by that user (a venv under /root or a "
            "pyenv Python under /root does not work).  scripts/test builds such a "
            "virtualenv from /usr/bin/python3; or set GATEWAYS_VENV to a reachable place.",
            pytrace=False)
    return result.stdout.strip().splitlines()[-1]


# -- process handling ------------------------------------------------------------


def _exited(pid: int) -> bool:
    """True when our child ``pid`` has exited, *without reaping it*.

    A zombie leader keeps its pid (and so its process group id) reserved,
    which makes killing the group afterwards safe from pid reuse.
    """
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _wait_exited(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _kill_group(pgid: int, timeout: float) -> None:
    """SIGTERM what is left of process group ``pgid``, SIGKILL after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not group_members(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + timeout
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(missing)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class ServerStartError(RuntimeError):
    """A web server did not come up; the message carries its logs and config."""

    def __init__(self, message: str, server: Server):
        super().__init__(message)
        self.server = server
        self.root = server.root
        self.conf = server.conf


class Server:
    """One running web server process started by this module."""

    def __init__(self, name: str, port: int, root: Path, *, conf: Path, pid_file: Path,
                 argv: list[str], env: Mapping[str, str], owns_root: bool):
        self.name = name
        self.port = port
        self.root = root
        self.conf = conf
        self.pid_file = pid_file
        self.docroot = root / "htdocs"
        self.error_log = root / "logs" / "error.log"
        self.output_log = root / "logs" / "stderr.log"
        self.argv = argv
        self.env = dict(env)
        self.owns_root = owns_root
        self.process: Optional[subprocess.Popen] = None

    def __repr__(self) -> str:
        return f"<Server {self.name} port={self.port} root={self.root}>"

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT`` followed by ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def pid(self) -> Optional[int]:
        """Pid of the main server process (None before start)."""
        return None if self.process is None else self.process.pid

    def error_log_text(self, tail: Optional[int] = None) -> str:
        """The server's error log (its last ``tail`` lines), "" if missing."""
        try:
            text = self.error_log.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else "\n".join(text.splitlines()[-tail:])

    def output_text(self) -> str:
        """What the server process wrote to stdout/stderr."""
        try:
            return self.output_log.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        """True while the main server process has not exited."""
        return self.process is not None and not _exited(self.process.pid)

    def processes(self) -> list[int]:
        """Pids of the server and everything it spawned that is still alive."""
        return [] if self.process is None else group_members(self.process.pid)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Spawn the server and wait until it listens and wrote its pid file;
        on failure stop it and raise ServerStartError with its logs."""
        for path in (self.pid_file, self.error_log, self.output_log):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with open(self.output_log, "wb") as output:
            self.process = subprocess.Popen(
                self.argv, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        _live_servers.add(self)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if _exited(self.process.pid):
                self.stop()
                self._fail(f"exited with status {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                self._fail(f"not ready after {timeout} s")
            time.sleep(0.02)

    def _ready(self) -> bool:
        try:
            written = self.pid_file.read_text().strip()
        except OSError:
            return False
        return written == str(self.process.pid) and port_open(self.port)

    def _fail(self, reason: str) -> None:
        numbered = "\n".join(f"{number:4} {line}" for number, line in
                             enumerate(self.conf.read_text().splitlines(), 1))
        raise ServerStartError(
            f"{self.name} ({' '.join(self.argv)}) {reason}\n"
            f"--- {self.output_log} ---\n{_tail(self.output_log)}\n"
            f"--- {self.error_log} ---\n{_tail(self.error_log)}\n"
            f"--- {self.conf} ---\n{numbered}", self)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: SIGTERM to its pid, SIGKILL after ``timeout`` s,
        then the same for anything left in its process group.  Idempotent."""
        process = self.process
        _live_servers.discard(self)
        if process is None or process.returncode is not None:
            return
        if not _exited(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            if not _wait_exited(process.pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                _wait_exited(process.pid, timeout)
        # The leader is a zombie now: its pgid cannot be reused yet.
        _kill_group(process.pid, min(timeout, 3.0))
        process.wait(timeout=timeout)

    def close(self) -> None:
        """stop(), then remove the server's directory if this module made it."""
        self.stop()
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@atexit.register
def _stop_leftovers() -> None:
    """Never leave servers behind, even when a fixture's teardown did not run."""
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop(timeout=3.0)


# -- generic start -----------------------------------------------------------------


def fill(text: str, root: Path, port: int) -> str:
    """Substitute the ``{root}``, ``{docroot}`` and ``{port}`` placeholders."""
    return (text.replace("{docroot}", str(root / "htdocs"))
                .replace("{root}", str(root))
                .replace("{port}", str(port)))


def _prepare_root(root: Optional[Path], prefix: str) -> tuple[Path, bool]:
    """Use (or make) a public server directory with the standard layout."""
    owns_root = root is None
    root = public_dir(prefix) if root is None else Path(root).resolve()
    root.chmod(0o755)
    _mkdirs(root / "htdocs")
    # lighttpd opens its error log after dropping privileges: logs/ and run/
    # (pid file, sockets) belong to the worker user, like tmp/.
    for sub in ("logs", "run", "tmp"):
        worker_dir(root / sub)
    return root, owns_root


def _start(name: str, template: str, *, conf_name: str, pid_name: str,
           argv: Iterable[str], root: Optional[Path], env: Optional[Mapping[str, str]]
           ) -> Server:
    """Write the config, start the server, and retry once on a port clash."""
    root, owns_root = _prepare_root(root, f"gw-{name}-")
    conf = root / conf_name
    full_env = {name: fill(value, root, 0) for name, value in {**BASE_ENV, **(env or {})}.items()}
    for attempt in (1, 2):
        port = free_port()
        write_file(conf, fill(template, root, port))
        server = Server(name, port, root, conf=conf, pid_file=root / "run" / pid_name,
                        argv=[fill(arg, root, port) for arg in argv], env=full_env,
                        owns_root=owns_root)
        try:
            server.start()
        except ServerStartError as exc:
            if attempt == 1 and os.strerror(errno.EADDRINUSE) in str(exc):
                continue
            raise
        return server
    raise AssertionError("unreachable")


# -- Apache httpd --------------------------------------------------------------------


def _module_name(name: str) -> str:
    """``"mod_cgid.so"`` / ``"mod_cgid"`` / ``"cgid"`` -> ``"cgid"``."""
    name = name[:-3] if name.endswith(".so") else name
    return name[4:] if name.startswith("mod_") else name


@functools.cache
def apache_builtin_modules() -> frozenset[str]:
    """Modules compiled into the apache2 binary (Debian: unixd, log_config, ...):
    they need no LoadModule line, and one would be an error."""
    listing = subprocess.run([require(APACHE_BIN), "-l"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    return frozenset(_module_name(line.strip()[:-2]) for line in listing.splitlines()
                     if line.strip().endswith(".c"))


def apache_config(body: str, modules: Iterable[str] = ()) -> str:
    """The httpd.conf template (placeholders not yet filled) for start_apache."""
    names = list(dict.fromkeys([*APACHE_BASE_MODULES, *map(_module_name, modules)]))
    builtin = apache_builtin_modules()
    lines = [
        "# Generated by tests/webservers.py (gateways test suite).",
        'ServerRoot "{root}"',
        "ServerName 127.0.0.1",
        "Listen 127.0.0.1:{port}",
        'PidFile "{root}/run/httpd.pid"',
        'DefaultRuntimeDir "{root}/run"',
        "Mutex file:{root}/run default",
        'ErrorLog "{root}/logs/error.log"',
        "LogLevel warn",
    ]
    lines += [f'LoadModule {name}_module "{require(name)}"'
              for name in names if name not in builtin]
    if www_data_ids() is not None:
        lines += [f"User {WORKER_USER}", f"Group {WORKER_USER}"]
    lines += [
        "TypesConfig /etc/mime.types",
        "StartServers 1",
        "ServerLimit 4",
        "ThreadsPerChild 16",
        "ThreadLimit 16",
        "MaxRequestWorkers 64",
        "MinSpareThreads 4",
        "MaxSpareThreads 32",
        'DocumentRoot "{docroot}"',
        "DirectoryIndex index.html",
        "<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>",
        '<Directory "{root}">\n    Require all granted\n</Directory>',
    ]
    if "cgid" in names:
        lines.append('ScriptSock "{root}/run/cgid.sock"')
    if "fcgid" in names:
        lines += ['FcgidIPCDir "{root}/tmp/fcgid"',
                  'FcgidProcessTableFile "{root}/run/fcgid_shm"']
    return "\n".join([*lines, "", "# --- body ---", body, ""])


def start_apache(body: str, *, modules: Iterable[str] = (), name: str = "apache",
                 root: Optional[Path] = None, env: Optional[Mapping[str, str]] = None
                 ) -> Server:
    """Start ``apache2 -f {root}/httpd.conf -DFOREGROUND`` (event MPM).

    The generated config loads APACHE_BASE_MODULES plus ``modules`` (names
    like ``"cgid"``, ``"proxy_fcgi"``, ``"fcgid"``), keeps every runtime
    file inside ``root``, and ends with ``body`` at server level.  ``root``
    may be a directory the caller prepared with public_dir(); ``env`` adds
    to the server's minimal environment.
    """
    binary = require(APACHE_BIN)
    template = apache_config(body, modules)
    argv = [binary, "-f", "{root}/httpd.conf", "-DFOREGROUND"]
    return _start(name, template, conf_name="httpd.conf", pid_name="httpd.pid", argv=argv,
                  root=root, env=env)


# -- lighttpd --------------------------------------------------------------------------


LIGHTTPD_MIMETYPES = (
    'mimetype.assign = (\n'
    '    ".html" => "text/html; charset=utf-8",\n'
    '    ".txt" => "text/plain; charset=utf-8",\n'
    '    ".css" => "text/css",\n'
    '    ".js" => "text/javascript",\n'
    '    ".json" => "application/json",\n'
    '    ".png" => "image/png",\n'
    '    "" => "application/octet-stream",\n'
    ')'
)


def lighttpd_config(body: str, modules: Iterable[str] = ()) -> str:
    """The lighttpd.conf template (placeholders not yet filled) for start_lighttpd."""
    names = list(dict.fromkeys("mod_" + _module_name(module) for module in modules))
    listed = "".join(f'\n    "{module}",' for module in names)
    lines = [
        "# Generated by tests/webservers.py (gateways test suite).",
        "server.port = {port}",
        'server.bind = "127.0.0.1"',
        'server.document-root = "{docroot}"',
        'server.pid-file = "{root}/run/lighttpd.pid"',
        'server.errorlog = "{root}/logs/error.log"',
        'server.upload-dirs = ( "{root}/tmp" )',
        f"server.modules = ({listed}\n)",
        'index-file.names = ( "index.html" )',
        LIGHTTPD_MIMETYPES,
    ]
    if www_data_ids() is not None:
        lines += [f'server.username = "{WORKER_USER}"', f'server.groupname = "{WORKER_USER}"']
    return "\n".join([*lines, "", "# --- body ---", body, ""])


def start_lighttpd(body: str, *, modules: Iterable[str] = (), name: str = "lighttpd",
                   root: Optional[Path] = None, env: Optional[Mapping[str, str]] = None
                   ) -> Server:
    """Start ``lighttpd -D -f {root}/lighttpd.conf``.

    ``modules`` (``"mod_cgi"``, ``"mod_fastcgi"``, ``"mod_scgi"``,
    ``"mod_alias"``... with or without ``mod_``) become ``server.modules`` in
    the given order; ``body`` is appended at top level.  lighttpd's own
    defaults (e.g. ``server.stream-response-body = 0``) are left alone.
    """
    binary = require("lighttpd")
    template = lighttpd_config(body, modules)
    argv = [binary, "-D", "-f", "{root}/lighttpd.conf"]
    return _start(name, template, conf_name="lighttpd.conf", pid_name="lighttpd.pid",
                  argv=argv, root=root, env=env)


# -- nginx -------------------------------------------------------------------------------


def nginx_config(body: str, http_extra: str = "") -> str:
    """The nginx.conf template (placeholders not yet filled) for start_nginx."""
    user = f"user {WORKER_USER} {WORKER_USER};\n" if www_data_ids() is not None else ""
    mime = ("include /etc/nginx/mime.types;" if os.path.isfile("/etc/nginx/mime.types")
            else "types { text/html html; text/plain txt; application/json json; }")
    temp_paths = "".join(f"    {kind}_temp_path {{root}}/tmp/{kind};\n" for kind in
                         ("client_body", "proxy", "fastcgi", "scgi", "uwsgi"))
    return (
        "# Generated by tests/webservers.py (gateways test suite).\n"
        f"{user}"
        "worker_processes 1;\n"
        "daemon off;\n"
        "pid {root}/run/nginx.pid;\n"
        "error_log {root}/logs/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    access_log off;\n"
        f"    {mime}\n"
        "    default_type application/octet-stream;\n"
        f"{temp_paths}"
        "    # --- http_extra ---\n"
        f"{http_extra}\n"
        "    server {\n"
        "        listen 127.0.0.1:{port};\n"
        "        server_name localhost;\n"
        "        root {docroot};\n"
        "        # --- body ---\n"
        f"{body}\n"
        "    }\n"
        "}\n"
    )


def merge_lighttpd(*snippets: str) -> str:
    """One lighttpd config from several snippets: a repeated ``server.*`` line
    (module list, stream-response-body) is kept once; lighttpd refuses a
    variable set twice."""
    seen, lines = set(), []
    for line in "\n".join(snippets).splitlines():
        if line.startswith("server.") and line in seen:
            continue
        seen.add(line)
        lines.append(line)
    return "\n".join(lines)


def start_nginx(body: str, *, http_extra: str = "", name: str = "nginx",
                root: Optional[Path] = None, env: Optional[Mapping[str, str]] = None
                ) -> Server:
    """Start ``nginx -p {root}/ -c {root}/nginx.conf -e {root}/logs/error.log``.

    ``body`` goes inside the single ``server { listen 127.0.0.1:{port}; }``
    block (locations etc.); ``http_extra`` goes at ``http {}`` level before
    it (upstream blocks, maps).  Stock parameter files can be included by
    absolute path, e.g. ``include /etc/nginx/fastcgi_params;``.
    """
    binary = require("nginx")
    template = nginx_config(body, http_extra)
    argv = [binary, "-p", "{root}/", "-c", "{root}/nginx.conf", "-e", "{root}/logs/error.log"]
    return _start(name, template, conf_name="nginx.conf", pid_name="nginx.pid", argv=argv,
                  root=root, env=env)


# -- HAProxy, Caddy, H2O -------------------------------------------------------------------


def _as_worker(argv: list[str]) -> list[str]:
    """``argv`` run as the worker user when root (setpriv: no fork, so the pid is the
    server's own), else as it is."""
    if www_data_ids() is None:
        return argv
    return [require("setpriv"), "--reuid", WORKER_USER, "--regid", WORKER_USER,
            "--init-groups", *argv]


def _logs_in_output(server: Server) -> Server:
    """A server that logs to its stdout/stderr: error_log_text() reads that."""
    server.error_log = server.output_log
    return server


def haproxy_config(body: str, frontend: str = "") -> str:
    """The haproxy.cfg template for start_haproxy: ``frontend`` inside the one frontend
    (use_backend lines), ``body`` after it (fcgi-app and backend sections)."""
    user = (f"    user {WORKER_USER}\n    group {WORKER_USER}\n"
            if www_data_ids() is not None else "")
    return (
        "# Generated by tests/webservers.py (gateways test suite).\n"
        "global\n"
        f"{user}"
        "    log stdout format raw local0\n"
        "defaults\n"
        "    mode http\n"
        "    log global\n"
        "    timeout connect 5s\n"
        "    timeout client 60s\n"
        "    timeout server 60s\n"
        "frontend web\n"
        "    bind 127.0.0.1:{port}\n"
        "    # --- frontend ---\n"
        f"{frontend}\n"
        "# --- body ---\n"
        f"{body}\n"
    )


def start_haproxy(body: str, *, frontend: str = "", name: str = "haproxy",
                  root: Optional[Path] = None) -> Server:
    """Start ``haproxy -W -db -f {root}/haproxy.cfg``: in the foreground, a master (the
    pid) and one worker, its child.

    Its log (the global ``log stdout``: FCGI_STDERR through ``log-stderr global``)
    is its output, which ``error_log_text()`` reads.
    """
    binary = require("haproxy")
    argv = [binary, "-W", "-db", "-f", "{root}/haproxy.cfg", "-p", "{root}/run/haproxy.pid"]
    return _logs_in_output(_start(name, haproxy_config(body, frontend), conf_name="haproxy.cfg",
                                  pid_name="haproxy.pid", argv=argv, root=root, env=None))


def caddy_config(body: str, global_extra: str = "") -> str:
    """The Caddyfile template for start_caddy: ``body`` inside the one site, bound to
    127.0.0.1:{port}; admin endpoint and automatic HTTPS off."""
    return (
        "# Generated by tests/webservers.py (gateways test suite).\n"
        "{\n"
        "    admin off\n"
        "    auto_https off\n"
        "    storage file_system {root}/tmp/caddy\n"
        f"{global_extra}"
        "}\n"
        ":{port} {\n"
        "    bind 127.0.0.1\n"
        f"{body}\n"
        "}\n"
    )


def start_caddy(body: str, *, name: str = "caddy", root: Optional[Path] = None) -> Server:
    """Start ``caddy run --config {root}/Caddyfile --adapter caddyfile`` (as the worker
    user when root); its log is its output."""
    binary = require("caddy")
    argv = _as_worker([binary, "run", "--config", "{root}/Caddyfile", "--adapter", "caddyfile",
                       "--pidfile", "{root}/run/caddy.pid"])
    env = {"HOME": "{root}/tmp", "XDG_DATA_HOME": "{root}/tmp", "XDG_CONFIG_HOME": "{root}/tmp"}
    server = _start(name, caddy_config(body), conf_name="Caddyfile", pid_name="caddy.pid",
                    argv=argv, root=root, env=env)
    return _logs_in_output(server)


def h2o_config(paths: str) -> str:
    """The h2o.conf template for start_h2o: ``paths`` (YAML entries) under the one
    host's ``paths:``."""
    user = f"user: {WORKER_USER}\n" if www_data_ids() is not None else ""
    indented = "\n".join("      " + line if line.strip() else line
                         for line in paths.splitlines())
    return (
        "# Generated by tests/webservers.py (gateways test suite).\n"
        f"{user}"
        "listen:\n"
        "  host: 127.0.0.1\n"
        "  port: {port}\n"
        "pid-file: {root}/run/h2o.pid\n"
        "error-log: {root}/logs/error.log\n"
        "hosts:\n"
        "  default:\n"
        "    paths:\n"
        f"{indented}\n"
    )


def start_h2o(paths: str, *, name: str = "h2o", root: Optional[Path] = None) -> Server:
    """Start ``h2o -c {root}/h2o.conf`` (it drops to the worker user itself)."""
    binary = require("h2o")
    return _start(name, h2o_config(paths), conf_name="h2o.conf", pid_name="h2o.pid",
                  argv=[binary, "-c", "{root}/h2o.conf"], root=root, env=None)


# -- a balancer snippet, as printed ------------------------------------------------------


def start_balancer(server: str, text: str, *, proxy_module: str = "proxy_fcgi",
                   name: Optional[str] = None) -> Server:
    """Start ``server`` (apache, lighttpd, nginx, haproxy, caddy) with the balancer
    snippet ``text`` (``gateways conf SERVER balancer``) as printed, each part where the
    snippet says it goes.  ``proxy_module``: Apache's scheme module (``proxy_fcgi``,
    ``proxy_uwsgi``); ``name``: the server's name (its directory's prefix)."""
    name = name or server
    if server == "apache":
        # The modules of the snippet's "Needs:" line.
        return start_apache(text, name=name, modules=(
            "proxy", proxy_module, "proxy_balancer", "lbmethod_byrequests", "slotmem_shm"))
    if server == "lighttpd":
        return start_lighttpd(text, name=name)
    if server == "haproxy":
        own, frontend = split_snippet(text)
        return start_haproxy(own, frontend=frontend, name=name)
    if server == "caddy":
        return start_caddy(split_snippet(text)[1], name=name)
    if server == "nginx":
        http_part, server_part = split_nginx(text)
        return start_nginx(server_part, http_extra=http_part, name=name)
    raise ValueError("no balancer snippet for %r" % server)
