"""A uWSGI ini file as options: ``gateways uwsgi --ini FILE``, ``gateways from-uwsgi FILE``.

uWSGI users move with the ini file they have.  Its ``[uwsgi]`` section (or
``FILE:SECTION``) is read line by line (``key = value``; ``#`` and ``;``
start comments; a key may repeat, as ``env`` does), uWSGI's ``%d`` (the
file's directory, with a trailing slash), ``%n`` (its name without the
extension) and ``%(key)`` (another key of the section) are filled in, and
every key is one of:

* mapped to a gateways option (:data:`MAPPED`): ``socket`` becomes
  ``--bind``, ``processes`` ``--processes``, ``harakiri`` ``--timeout``...;
* not needed (:data:`NOT_NEEDED`): what uWSGI must be told and gateways
  always does (``master``, ``vacuum``, ``die-on-term``, ``need-app``...);
* not supported (:data:`NOT_SUPPORTED`), with why;
* unknown.

Anything but the first two ends the command with one line per key and exit
status 2: a configuration is never half run.  The README's "Moving from
uWSGI" table is this module's tables.
"""

import os
import re
import shlex

from gateways.errors import ConfigError
from gateways.settings import BY_NAME

NOT_NEEDED = {
    "master": "gateways always runs a master process",
    "vacuum": "gateways removes its socket file on exit, and a stale one at start",
    "die-on-term": "SIGTERM stops gateways gracefully",
    "need-app": "gateways exits with status 2 when the application does not load",
    "enable-threads": "threads are always enabled",
    "single-interpreter": "gateways runs one interpreter per process",
    "thunder-lock": "one thread per worker accepts at a time already",
    "lazy-apps": "each worker loads the application itself (a reload loads it afresh)",
    "no-orphans": "workers exit when their master is gone",
    "strict": "every key is checked anyway",
    "py-autoreload": "use gateways serve --reload while developing",
    "plugin": "the Python plugin is built in",
    "plugins": "the Python plugin is built in",
    "memory-report": "see the RSS of the workers in ps",
    "buffer-size": "--max-header-size (64K) bounds the request variables already",
    "post-buffering": "the whole body is read (memory, then disk) before the app runs",
    "disable-logging": "gateways logs no request lines",
    "log-x-forwarded-for": "gateways logs no request lines",
}

NOT_SUPPORTED = {
    "http": "gateways speaks no HTTP in production: put nginx, Apache or lighttpd in front "
            "(gateways serve is for development)",
    "http-socket": "gateways speaks no HTTP in production: put a web server in front",
    "https": "gateways speaks no HTTP in production: put a web server in front",
    "fastcgi-socket": "run 'gateways fastcgi' for FastCGI",
    "scgi-socket": "run 'gateways scgi' for SCGI",
    "emperor": "run one gateways daemon per application (systemd units: gateways conf "
               "systemd service)",
    "cheaper": "gateways runs --processes workers, always",
    "offload-threads": "no offloading: gateways' threads serve the response",
    "async": "gateways serves with threads",
    "gevent": "gateways serves with threads",
    "uid": "start gateways as the user (systemd User=, or sudo -u)",
    "gid": "start gateways as the user (systemd Group=, or sudo -u)",
    "daemonize": "gateways stays in the foreground: run it under systemd",
    "mount": "one application per daemon; mount it with the web server (--prefix)",
    "manage-script-name": "gateways always splits SCRIPT_NAME and PATH_INFO "
                          "(--script-name sets the mount)",
    "stats": "not yet: gateways has no stats server",
    "touch-reload": "send SIGHUP to reload",
    "cron": "not a task scheduler: use cron or systemd timers",
    "attach-daemon": "not a process supervisor: use systemd",
    "route": "routing is the web server's job",
}

# uWSGI key -> (gateways option name, converter of the value or None)
MAPPED = ("socket", "uwsgi-socket", "chmod-socket", "chown-socket", "processes", "workers",
          "threads", "harakiri", "max-requests", "reload-on-rss", "module", "wsgi-file",
          "callable", "chdir", "pythonpath", "env", "logto", "pidfile", "listen",
          "home", "virtualenv", "venv", "wsgi", "max-requests-delta")


def read_ini(path, section="uwsgi"):
    """The ``(key, value)`` lines of ``section`` in the ini file at ``path``, in order."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError("--ini %s: %s" % (path, exc.strerror or exc)) from None
    current, found, items = None, False, []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            found = found or current == section
            continue
        if current != section:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, value = line, "true"  # a bare flag: "master" alone means true
        items.append((key.strip().replace("_", "-"), value.strip(), number))
    if not found:
        raise ConfigError("--ini %s: no [%s] section" % (path, section))
    return _expand(path, items)


_MAGIC = re.compile(r"%(\([^)]*\)|.)")


def _expand(path, items):
    directory = os.path.dirname(os.path.abspath(path)) + "/"
    name = os.path.splitext(os.path.basename(path))[0]
    known = {}
    expanded = []
    for key, value, number in items:

        def fill(match, key=key, number=number):
            magic = match.group(1)
            if magic in ("d", "n", "%"):
                return {"d": directory, "n": name, "%": "%"}[magic]
            if magic.startswith("(") and magic[1:-1] in known:
                return known[magic[1:-1]]
            raise ConfigError("%s line %d: %s uses %%%s, which gateways does not fill in"
                              % (path, number, key, magic))

        value = _MAGIC.sub(fill, value)
        known[key] = value
        expanded.append((key, value, number))
    return expanded


def _bind(value):
    """uWSGI's socket value as --bind: a path, HOST:PORT or :PORT (all interfaces)."""
    if "/" in value or value.startswith("@"):
        if value.startswith("@"):
            raise ConfigError("socket %s: abstract unix sockets are not supported" % value)
        return "unix:" + value
    if value.startswith(":"):
        return "0.0.0.0" + value
    return value


def to_options(items, path="uwsgi.ini"):
    """``(options, environment)``: settings by name, and the ``env`` variables.

    Raises ConfigError listing every key that is not supported or unknown, one
    line each, so that the operator sees them all at once.
    """
    options, environment, problems = {}, {}, []
    module = wsgi_file = callable_name = None
    for key, value, number in items:
        where = "%s line %d: %s" % (path, number, key)
        if key in NOT_NEEDED:
            if key.startswith("plugin") and not all(
                    p.strip() in ("python", "python3", "python311", "0:python3")
                    for p in value.split(",")):
                problems.append("%s = %s: only the Python plugin exists here" % (where, value))
            continue
        if key in NOT_SUPPORTED:
            problems.append("%s: not supported: %s" % (where, NOT_SUPPORTED[key]))
            continue
        if key not in MAPPED:
            problems.append("%s: unknown to gateways (see README, 'Moving from uWSGI')" % where)
            continue
        if key in ("socket", "uwsgi-socket"):
            if "bind" in options:
                problems.append("%s: a second socket: gateways listens on one" % where)
            else:
                options["bind"] = _bind(value)
        elif key == "chmod-socket":
            options["socket_mode"] = value if value not in ("true", "") else "666"
        elif key == "chown-socket":
            owner, _, group = value.partition(":")
            options["socket_owner"] = owner or None
            if group:
                options["socket_group"] = group
        elif key in ("processes", "workers"):
            options["processes"] = value
        elif key == "threads":
            options["threads"] = value
        elif key == "harakiri":
            options["timeout"] = value
        elif key == "max-requests":
            options["max_requests"] = value
        elif key == "max-requests-delta":
            options["max_requests_jitter"] = value
        elif key == "reload-on-rss":
            if "max_rss" in BY_NAME:
                options["max_rss"] = value + "M"  # uWSGI counts megabytes
            else:
                problems.append("%s: not supported yet" % where)
        elif key == "listen":
            options["backlog"] = value
        elif key in ("module", "wsgi"):
            module = value
        elif key == "wsgi-file":
            wsgi_file = value
        elif key == "callable":
            callable_name = value
        elif key in ("chdir", "pythonpath"):
            if options.get("app_dir") not in (None, value):
                problems.append("%s: gateways puts one directory on sys.path (--app-dir %s "
                                "already)" % (where, options["app_dir"]))
            else:
                options["app_dir"] = value
        elif key == "env":
            name, sep, env_value = value.partition("=")
            if not sep or not name:
                problems.append("%s = %s: not NAME=VALUE" % (where, value))
            else:
                environment[name] = env_value
        elif key == "logto":
            options["log_file"] = value
        elif key == "pidfile":
            options["pid_file"] = value
        elif key in ("home", "virtualenv", "venv"):
            gateways = os.path.join(value, "bin", "gateways")
            problems.append("%s: run the gateways of that virtualenv instead (%s)"
                            % (where, gateways))
    app = _app(module, wsgi_file, callable_name)
    if app is None:
        problems.append("%s: no module or wsgi-file names the application" % path)
    else:
        options["app"] = app
    if problems:
        raise ConfigError("%s cannot run as it is:\n  %s" % (path, "\n  ".join(problems)))
    return options, environment


def _app(module, wsgi_file, callable_name):
    """APP for gateways: ``module:callable`` or ``file:callable``."""
    if module:
        if ":" in module:
            return module
        return "%s:%s" % (module, callable_name) if callable_name else module
    if wsgi_file:
        return "%s:%s" % (wsgi_file, callable_name) if callable_name else wsgi_file
    return None


def command_line(options, environment, command="uwsgi"):
    """The ``gateways uwsgi ...`` command line the ini file amounts to."""
    parts = ["%s=%s" % (k, shlex.quote(v)) for k, v in environment.items()]
    parts += ["gateways", command, shlex.quote(options["app"])]
    for name, value in options.items():
        if name != "app" and value is not None:
            parts += [BY_NAME[name].flag, shlex.quote(str(value))]
    return " ".join(parts)


def load(spec):
    """``FILE`` or ``FILE:SECTION`` -> ``(options, environment)``."""
    path, section = spec, "uwsgi"
    if ":" in spec and not os.path.exists(spec):
        path, _, section = spec.rpartition(":")
    return to_options(read_ini(path, section), path)
