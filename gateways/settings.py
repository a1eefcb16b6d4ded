"""The one settings table: every option of every gateway, declared once.

Every option ``--some-name`` can also be given in the environment as
``GATEWAYS_SOME_NAME`` (flags: ``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``); the command line wins.  That is how a web
server that spawns gateways passes options (lighttpd ``bin-environment``,
Apache ``FcgidInitialEnv``, systemd ``Environment=``).

The table drives the command line (:mod:`gateways.cli`), the checks on each
value, the option lists in README.rst (``scripts/update-readme`` writes them,
a test keeps them in sync) and the values the config snippets are filled with
(``gateways conf``).  A setting names the commands it belongs to; its default
may differ per command.

Values are converted and checked by the setting's converter, which raises
:class:`ConfigError` with a sentence an operator can act on.
"""

from __future__ import annotations

import os

from gateways.address import parse_bind
from gateways.errors import ConfigError

# The CGI path imports this module when GATEWAYS_* variables are set: no typing at run time.
TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeGuard, TypeVar

    from _typeshed.wsgi import WSGIApplication

    _T = TypeVar("_T")

APP_COMMANDS = ("serve", "cgi", "run", "fastcgi", "scgi", "uwsgi")
COMMANDS = APP_COMMANDS + ("conf",)
DAEMONS = ("fastcgi", "scgi", "uwsgi")


class Setting:
    """One option: its flag, converter, default, help text and commands."""

    __slots__ = ("name", "flag", "commands", "convert", "default", "metavar", "help", "env",
                 "section", "flag_only")

    def __init__(self, name: str, flag: str, commands: tuple[str, ...],
                 convert: Callable[[Any], Any], default: Any, metavar: str | None,
                 help: str | dict[str, str], section: str = "Application") -> None:
        self.name = name
        self.flag = flag
        self.commands = commands
        self.convert = convert
        self.default = default  # a value, or a dict of command -> value
        self.metavar = metavar
        self.help = help  # a text, or a dict of command -> text with a "*" fallback
        self.env = "GATEWAYS_" + name.upper()  # read when the option is not given
        self.section = section
        self.flag_only = convert is flag_value

    def default_for(self, command: str) -> Any:
        if isinstance(self.default, dict):
            return self.default.get(command)
        return self.default

    def help_for(self, command: str) -> str:
        if isinstance(self.help, dict):
            return self.help.get(command, self.help["*"])
        return self.help

    def __repr__(self) -> str:
        return "<Setting %s>" % self.flag


# -- converters ---------------------------------------------------------------


def flag_value(text: object) -> bool:
    """Marker converter for on/off flags (they take no value)."""
    return bool(text)


def text_value(text: _T) -> _T:
    return text


def _number(value: object) -> TypeGuard[int | float]:
    """True for an int or float given from Python (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count(minimum: int) -> Callable[[object], int]:
    def convert(text: object) -> int:
        if _number(text) and text == int(text):
            value = int(text)
        elif isinstance(text, str) and text.strip().lstrip("+-").isdigit():
            value = int(text)
        else:
            raise ConfigError("%r is not a whole number" % (text,))
        if value < minimum:
            raise ConfigError("%d is below the minimum of %d" % (value, minimum))
        return value

    convert.__doc__ = "a whole number >= %d" % minimum
    return convert


_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def size(text: object) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    if _number(text):
        if text != int(text) or text < 0:
            raise ConfigError("%r is not a size: a whole number of bytes, 0 or more" % (text,))
        return int(text)
    raw = str(text).strip().lower()
    number = raw.rstrip("kmgib")
    unit = raw[len(number):]
    if not number.isdigit() or unit not in _UNITS:
        raise ConfigError("%r is not a size (e.g. 65536, 64K, 10M, 1G)" % (text,))
    return int(number) * _UNITS[unit]


def seconds(text: Any) -> float:
    """Seconds, a number > 0 (fractions allowed)."""
    if _number(text):
        value = float(text)
    else:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise ConfigError("%r is not a number of seconds" % (text,)) from None
    if not 0 < value < float("inf"):
        raise ConfigError("%r seconds: must be a number more than 0" % (text,))
    return value


class UmaskMode(int):
    """A socket mode that flup's ``WSGIServer(umask=...)`` asked for: 0o777 & ~umask.

    The one way to a world-writable socket, because flup code that passes
    ``umask=0`` relies on it (``--socket-mode`` refuses such modes)."""


def file_mode(text: object) -> int:
    """An octal permission mode such as 0660; never writable by others."""
    if isinstance(text, UmaskMode):
        return text
    if isinstance(text, int):
        value = text
    else:
        try:
            value = int(str(text), 8)
        except ValueError:
            raise ConfigError("%r is not an octal mode such as 0660" % (text,)) from None
    if not 0 <= value <= 0o777:
        raise ConfigError("%r is not a permission mode (0 to 0777)" % (text,))
    if value & 0o002:
        raise ConfigError(
            "socket mode %04o lets every local user write to the socket; "
            "use 0660 with --socket-group instead" % value
        )
    return value


def bind_value(text: str) -> str:
    """unix:PATH, HOST:PORT, [IPv6]:PORT or fd:N (checked by the listener)."""
    parse_bind(text)  # raises ConfigError with the reason
    return text


FASTCGI_ROLES = ("responder", "authorizer")


def fastcgi_roles(text: object) -> tuple[str, ...]:
    """Comma-separated FastCGI roles: responder, authorizer (FastCGI 1.0 §6.2, §6.3)."""
    if isinstance(text, str):
        given = text.split(",")
    elif isinstance(text, (list, tuple, set, frozenset)):
        given = list(text)
    else:
        raise ConfigError("%r is not a list of FastCGI roles" % (text,))
    names = set()
    for item in given:
        name = str(item).strip().lower()
        if not name:
            continue  # "responder," and the like
        if name not in FASTCGI_ROLES:
            hint = " (the Filter role is not supported)" if name == "filter" else ""
            raise ConfigError("%r is not a FastCGI role gateways serves: give responder, "
                              "authorizer or both, comma-separated%s" % (str(item).strip(), hint))
        names.add(name)
    if not names:
        raise ConfigError("no FastCGI role given: responder, authorizer or both")
    return tuple(name for name in FASTCGI_ROLES if name in names)


def log_level(text: object) -> str:
    """debug, info, warning or error."""
    value = str(text).lower()
    if value not in ("debug", "info", "warning", "error"):
        raise ConfigError("log level %r is not one of debug, info, warning, error" % (text,))
    return value


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- the table ----------------------------------------------------------------

SETTINGS = (
    Setting("app", "--app", ("conf",), text_value, "myapp:application", "APP",
            "The WSGI application the snippet serves.", section="Snippet"),
    Setting("app_dir", "--app-dir", COMMANDS, text_value, {"conf": "/srv/myapp"}, "DIR",
            {"*": "Directory put first on sys.path before APP is imported "
                  "(default: the current directory).",
             "conf": "Directory of the application's code."}),
    Setting("prefix", "--prefix", ("conf",), text_value, "/app", "PREFIX",
            "Mount point of the application; '/' for the root.", section="Snippet"),
    Setting("python", "--python", ("conf",), text_value, "/srv/myapp/venv/bin/python3", "PATH",
            "Interpreter that can import gateways and the application; the gateways "
            "command next to it runs the daemons.", section="Snippet"),
    Setting("user", "--user", ("conf",), text_value, "www-data", "USER",
            "The user the application runs as: systemd's User=; for CGI and mod_fcgid the "
            "web server's, for 'gateways check --user'.", section="Snippet"),
    Setting("script", "--script", ("conf",), text_value, "/usr/lib/cgi-bin/myapp.cgi", "PATH",
            "CGI and mod_fcgid: the path of the script ('gateways cgi-script' writes it).",
            section="Snippet"),
    Setting("backends", "--backends", ("conf",), text_value, "127.0.0.1:9001,127.0.0.1:9002",
            "LIST", "Balancer snippets: comma-separated HOST:PORT of the daemons.",
            section="Snippet"),
    Setting("script_name", "--script-name", APP_COMMANDS, text_value, None, "PREFIX",
            "Mount point of the application: SCRIPT_NAME is PREFIX and PATH_INFO the rest "
            "of the request path (REQUEST_URI decoded, its dot segments and repeated "
            "slashes resolved as the front resolved them), whatever the front end says. "
            "'/' mounts at the root. "
            "Needed behind Apache mod_proxy_scgi and mod_proxy_fcgi, which send the whole "
            "path as SCRIPT_NAME."),
    Setting("debug", "--debug", APP_COMMANDS, flag_value, False, None,
            {"*": "Show tracebacks in error pages (never in production) and print the "
                  "traceback of start-up errors.",
             "serve": "Turn on werkzeug's interactive debugger (loopback addresses only: it "
                      "runs any code a visitor types) and print the traceback of start-up "
                      "errors."}),
    Setting("iis", "--iis", ("cgi", "run"), flag_value, False, None,
            "Undo IIS's CGI quirk of repeating SCRIPT_NAME at the start of PATH_INFO."),
    Setting("bind", "--bind", ("serve",) + DAEMONS + ("conf",), bind_value,
            {"serve": "127.0.0.1:8000"}, "ADDRESS",
            {"*": "Where to listen: unix:PATH, HOST:PORT, [IPv6]:PORT or fd:N. FastCGI and "
                  "SCGI default: the sockets systemd passes (LISTEN_FDS), else the listening "
                  "socket a web server passes as fd 0 (lighttpd bin-path, mod_fcgid, "
                  "spawn-fcgi).",
             "serve": "Where to listen: HOST:PORT or [IPv6]:PORT (TCP only).",
             "conf": "The daemon's socket: unix:PATH or HOST:PORT (default: a socket under "
                     "/run/ named after the application, or 127.0.0.1:8000 for the proxy "
                     "snippets)."},
            section="Listening"),
    Setting("socket_mode", "--socket-mode", DAEMONS, file_mode, 0o660, "MODE",
            "Permissions of a unix socket (octal). Never writable by all.",
            section="Listening"),
    Setting("socket_group", "--socket-group", DAEMONS + ("conf",), text_value,
            {"conf": "www-data"}, "GROUP",
            {"*": "Group of a unix socket, e.g. www-data so the web server can connect.",
             "conf": "Group of the daemon's unix socket: the web server's."},
            section="Listening"),
    Setting("socket_owner", "--socket-owner", DAEMONS, text_value, None, "USER",
            "Owner of a unix socket (needs root).", section="Listening"),
    Setting("backlog", "--backlog", DAEMONS, count(1), 1024, "N",
            "Length of the listen queue.", section="Listening"),
    Setting("processes", "--processes", ("serve",) + DAEMONS + ("conf",), count(1),
            {"serve": 1, "fastcgi": _cpus(), "scgi": _cpus(), "uwsgi": _cpus(), "conf": 2},
            "N",
            {"*": "Worker processes, supervised by a master process.",
             "serve": "Processes: werkzeug forks one per request, up to N (instead of "
                      "threads)."}, section="Workers"),
    Setting("threads", "--threads", ("serve",) + DAEMONS + ("conf",), count(1),
            {"serve": 8, "fastcgi": 8, "scgi": 8, "uwsgi": 8, "conf": 8}, "N",
            {"*": "Threads per worker process. One thread serves while the application "
                  "answers quickly; more take connections as requests block.",
             "serve": "Any N > 1 runs werkzeug threaded (a thread per request)."},
            section="Workers"),
    Setting("max_requests", "--max-requests", DAEMONS, count(0), 0, "N",
            "Recycle a worker process after about N requests (0: never): its replacement "
            "starts first, then it finishes its requests and exits.",
            section="Workers"),
    Setting("max_requests_jitter", "--max-requests-jitter", DAEMONS, count(0), 0, "N",
            "Add up to N to --max-requests per worker so they do not restart together.",
            section="Workers"),
    Setting("max_rss", "--max-rss", DAEMONS, size, 0, "SIZE",
            "Recycle a worker process, as --max-requests does, once its resident memory "
            "passes SIZE (checked every half second; 0: never).", section="Workers"),
    Setting("timeout", "--timeout", DAEMONS, seconds, 60.0, "SECONDS",
            "Replace a worker whose request has run this long: the replacement starts, "
            "the worker finishes its other requests and is killed (a thread cannot be "
            "stopped in Python).", section="Workers"),
    Setting("graceful_timeout", "--graceful-timeout", DAEMONS, seconds, 30.0, "SECONDS",
            "On SIGTERM, SIGINT or SIGHUP, wait this long for requests in flight before "
            "killing their worker.", section="Workers"),
    Setting("read_timeout", "--read-timeout", DAEMONS, seconds, 30.0, "SECONDS",
            "Close a connection whose peer stalls this long in the middle of a request.",
            section="Limits"),
    Setting("keepalive_timeout", "--keepalive-timeout", DAEMONS, seconds, 5.0, "SECONDS",
            "Close a connection idle this long: one that has sent nothing yet, or a "
            "kept-alive FastCGI connection (FCGI_KEEP_CONN) between requests. Idle "
            "connections wait without a thread.", section="Limits"),
    Setting("max_parked", "--max-parked", DAEMONS, count(1), 1024, "N",
            "Connections a worker keeps waiting for their peer without a thread (idle, or "
            "with a request not yet complete); one more is closed at once, with a log line.",
            section="Limits"),
    Setting("max_body", "--max-body", DAEMONS, size, "1G", "SIZE",
            "Largest request body; a larger one is answered 413 without calling the "
            "application.", section="Limits"),
    Setting("spool_threshold", "--spool-threshold", DAEMONS, size, "1M", "SIZE",
            "Request bodies up to SIZE are kept in memory; larger ones are spooled to a "
            "temporary file before the application runs.", section="Limits"),
    Setting("max_header_size", "--max-header-size", DAEMONS, size, "64K", "SIZE",
            "Largest block of request meta-variables (FastCGI PARAMS stream, SCGI "
            "netstring, uwsgi variables); beyond it the connection is closed.",
            section="Limits"),
    Setting("max_params", "--max-params", DAEMONS, count(1), 1000, "N",
            "Most meta-variables in one request; beyond it the connection is closed.",
            section="Limits"),
    Setting("roles", "--roles", ("fastcgi",), fastcgi_roles, "responder", "ROLES",
            "FastCGI roles served, comma-separated: responder (the application answers "
            "requests) and authorizer (FastCGI 1.0 §6.3: the web server asks it whether a "
            "request may go on: Apache mod_authnz_fcgi, lighttpd \"mode\" => \"authorizer\"); "
            "a request in another role is refused with FCGI_UNKNOWN_ROLE and a 500 page. "
            "The application reads the role in environ['FCGI_ROLE'].", section="FastCGI"),
    Setting("log_file", "--log-file", DAEMONS, text_value, None, "PATH",
            "Write the log here (default: stderr when it is open; a web server that "
            "spawns FastCGI may close it).", section="Logging"),
    Setting("log_level", "--log-level", DAEMONS, log_level, "info", "LEVEL",
            "debug, info, warning or error.", section="Logging"),
    Setting("pid_file", "--pid-file", DAEMONS, text_value, None, "PATH",
            "Write the master process's pid here.", section="Logging"),
    Setting("stats", "--stats", DAEMONS, bind_value, None, "ADDRESS",
            "Answer plain HTTP here with what the daemon is doing: GET / as JSON, "
            "GET /metrics for Prometheus (unix:PATH, mode and group as the socket's, or "
            "HOST:PORT; read it with 'gateways status ADDRESS').", section="Monitoring"),
    Setting("reload", "--reload", ("serve",), flag_value, False, None,
            "Restart when a Python file changes (werkzeug's reloader).",
            section="Standalone"),
    Setting("ini", "--ini", ("uwsgi",), text_value, None, "FILE[:SECTION]",
            "Take APP and the options from a uWSGI ini file (its [uwsgi] section, or "
            "SECTION); the command line wins. A key gateways cannot honour ends the "
            "command with one line per key (see 'Moving from uWSGI').",
            section="Moving from uWSGI"),
)

BY_NAME = {s.name: s for s in SETTINGS}


def for_command(command: str) -> list[Setting]:
    """The settings of ``command``, in table order."""
    return [s for s in SETTINGS if command in s.commands]


class Config:
    """The resolved settings of one command: attributes named after the settings."""

    # For mypy: the settings, as their converters leave them (None: not set).  Only
    # those of ``command`` are there (tests/test_settings.py keeps this list whole).
    app: str | WSGIApplication  # APP (an APP string or a WSGI callable from Python)
    app_dir: str | None
    prefix: str
    python: str
    user: str
    script: str
    backends: str
    script_name: str | None
    debug: bool
    iis: bool
    bind: str | None
    socket_mode: int
    socket_group: str | None
    socket_owner: str | None
    backlog: int
    processes: int
    threads: int
    max_requests: int
    max_requests_jitter: int
    timeout: float
    graceful_timeout: float
    read_timeout: float
    keepalive_timeout: float
    max_parked: int
    max_rss: int
    max_body: int
    spool_threshold: int
    max_header_size: int
    max_params: int
    roles: tuple[str, ...]
    log_file: str | None
    log_level: str
    pid_file: str | None
    stats: str | None
    reload: bool
    ini: str | None

    def __init__(self, command: str, values: Mapping[str, Any]) -> None:
        self.command = command
        self.__dict__.update(values)

    def __repr__(self) -> str:
        items = sorted((k, v) for k, v in self.__dict__.items() if k != "command")
        return "Config(%s, %s)" % (self.command, ", ".join("%s=%r" % kv for kv in items))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_flag(setting: Setting, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError("%s: %r is not one of %s (from %s)" % (
        setting.flag, raw, "/".join(_TRUE + _FALSE), setting.env))


def env_flag(name: str, raw: str) -> bool:
    """The on/off value of ``GATEWAYS_<NAME>`` set to ``raw``; ConfigError when it is
    neither (the CGI path reads its variables with this, as ``resolve`` does)."""
    return _env_flag(BY_NAME[name], raw)


def resolve(command: str, given: Mapping[str, Any],
            environ: Mapping[str, str] | None = None) -> Config:
    """Turn raw option values (``None`` = not given) into a checked :class:`Config`.

    A setting not given takes its environment variable ``GATEWAYS_<NAME>``
    when that is set (a web server that spawns gateways can pass options that
    way), then its default.  Raises :class:`ConfigError` naming the option.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in for_command(command):
        raw = given.get(setting.name)
        source = ""
        if raw is None or (setting.flag_only and raw is False):
            if environ.get(setting.env):
                raw = environ[setting.env]
                source = " (from %s)" % setting.env
                if setting.flag_only:
                    raw = _env_flag(setting, raw)
            else:
                raw = setting.default_for(command)
        if raw is None or setting.flag_only:
            values[setting.name] = bool(raw) if setting.flag_only else None
            continue
        try:
            values[setting.name] = setting.convert(raw)
        except ConfigError as exc:
            raise ConfigError("%s: %s%s" % (setting.flag, exc, source)) from None
    for key, value in given.items():  # APP and other arguments that are not settings
        if key not in values and (key == "app" or key not in BY_NAME):
            values[key] = value
    return Config(command, values)


def rst_options(command: str) -> str:
    """The option list of ``command`` as reStructuredText (for README.rst)."""
    lines = []
    for setting in for_command(command):
        head = setting.flag if setting.flag_only else "%s %s" % (setting.flag, setting.metavar)
        default = setting.default_for(command)
        if setting.name == "processes" and command in DAEMONS:
            default = "the number of CPUs"
        elif isinstance(default, int) and setting.convert is file_mode:
            default = "%04o" % default
        text = setting.help_for(command)
        if default not in (None, False):
            text += " Default: ``%s``." % (default,)
        lines.append("``%s``" % head)
        lines.append("    %s" % text)
    return "\n".join(lines) + "\n"
