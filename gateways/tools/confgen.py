"""Web-server config snippets: ``gateways conf SERVER GATEWAY``.

Every snippet is a template under ``gateways/tools/conf_templates/SERVER/``, filled
from a handful of values (the application, the mount point, the socket, the
interpreter...).  The daemon command lines inside the snippets are built
from the settings table (:mod:`gateways.settings`), so a snippet never names
an option the CLI does not have.  The files under ``conf/`` in the source
tree are this module's output for the sample values in :data:`SAMPLE`
(``scripts/update-conf`` writes them; a test keeps them in sync), and the
test suite runs every snippet in the real server.

Template syntax, deliberately tiny:

``{{name}}``
    a value (an unknown name is an error, never left in the output);
    ``{{sh_name}}`` the same value quoted for a shell command line, as in the
    commands a snippet's comments show (they carry the operator's values,
    never sample ones);
``#?flag text``
    the line ``text`` is kept only when ``flag`` holds: ``root`` (mounted
    at ``/``), ``prefix`` (mounted below it), ``unix`` or ``tcp`` (the kind
    of ``--bind``).  ``#?!flag`` keeps a line when the flag does not hold.
``#@backend text``
    (balancer snippets) the line ``text`` once per ``--backends`` address,
    with ``{{backend}}``, ``{{backend_host}}``, ``{{backend_port}}`` and
    ``{{backend_name}}`` (``app1``, ``app2``...).
"""

import os
import re
import shlex
import sys

from gateways.errors import ConfigError
from gateways.settings import BY_NAME, resolve

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf_templates")

# (server, gateway) -> what the snippet is for (the help text and the conf/ index).
SNIPPETS = {
    ("apache", "cgi"): "CGI with mod_cgid: ScriptAlias maps the mount point to the script",
    ("apache", "cgi-htaccess"): "CGI from a directory (shared hosting .htaccess): "
                                "Options +ExecCGI, AddHandler and a rewrite to the script",
    ("apache", "fastcgi"): "FastCGI through mod_proxy_fcgi to a gateways daemon",
    ("apache", "fcgid"): "FastCGI through mod_fcgid, which spawns gateways itself",
    ("apache", "scgi"): "SCGI through mod_proxy_scgi to a gateways daemon",
    ("apache", "proxy"): "HTTP reverse proxy to the standalone server",
    ("apache", "uwsgi"): "uwsgi through mod_proxy_uwsgi to a gateways daemon",
    ("apache", "balancer"): "scale-out: mod_proxy_balancer over FastCGI daemons on TCP",
    ("apache", "balancer-uwsgi"): "scale-out: mod_proxy_balancer over uwsgi daemons on TCP",
    ("apache", "authorizer"): "a FastCGI Authorizer: mod_authnz_fcgi asks a gateways daemon "
                              "(TCP) whether each request for the location may go on",
    ("lighttpd", "cgi"): "CGI with mod_cgi",
    ("lighttpd", "fastcgi"): "FastCGI through mod_fastcgi to a gateways daemon",
    ("lighttpd", "fastcgi-spawn"): "FastCGI through mod_fastcgi, which spawns gateways "
                                   "(bin-path)",
    ("lighttpd", "scgi"): "SCGI through mod_scgi to a gateways daemon",
    ("lighttpd", "proxy"): "HTTP reverse proxy (mod_proxy) to the standalone server",
    ("lighttpd", "uwsgi"): "uwsgi through mod_scgi (scgi.protocol \"uwsgi\") to a gateways "
                           "daemon",
    ("lighttpd", "balancer"): "scale-out: mod_fastcgi over several FastCGI daemons on TCP",
    ("lighttpd", "balancer-uwsgi"): "scale-out: mod_scgi over several uwsgi daemons on TCP",
    ("haproxy", "fastcgi"): "FastCGI through HAProxy (fcgi-app, proto fcgi) to a gateways "
                            "daemon",
    ("haproxy", "balancer"): "scale-out: an HAProxy backend over several FastCGI daemons on "
                             "TCP, with health checks",
    ("caddy", "fastcgi"): "FastCGI through Caddy's reverse_proxy (transport fastcgi) to a "
                          "gateways daemon",
    ("caddy", "balancer"): "scale-out: Caddy's reverse_proxy over several FastCGI daemons on "
                           "TCP",
    ("h2o", "fastcgi"): "FastCGI through H2O (fastcgi.connect) to a gateways daemon",
    ("lighttpd", "authorizer"): "a FastCGI Authorizer: mod_fastcgi (\"mode\" => "
                                "\"authorizer\") asks a gateways daemon whether each request "
                                "for the location may go on",
    ("nginx", "fastcgi"): "FastCGI through fastcgi_pass to a gateways daemon",
    ("nginx", "scgi"): "SCGI through scgi_pass to a gateways daemon",
    ("nginx", "proxy"): "HTTP reverse proxy to the standalone server",
    ("nginx", "uwsgi"): "uwsgi through uwsgi_pass to a gateways daemon",
    ("nginx", "balancer"): "scale-out: an upstream of several FastCGI daemons on TCP",
    ("nginx", "balancer-uwsgi"): "scale-out: an upstream of several uwsgi daemons on TCP",
    ("systemd", "socket"): "systemd socket unit: systemd listens, gateways is activated",
    ("systemd", "service"): "systemd service unit for a gateways FastCGI daemon",
}

# Which gateway a snippet talks to (for the daemon command line it shows).
PROTOCOL = {"fastcgi": "fastcgi", "fastcgi-spawn": "fastcgi", "fcgid": "fastcgi",
            "balancer": "fastcgi", "scgi": "scgi", "uwsgi": "uwsgi", "balancer-uwsgi": "uwsgi",
            "socket": "fastcgi", "service": "fastcgi", "authorizer": "fastcgi"}

# The daemons of these snippets serve another FastCGI role than Responder (--roles).
ROLES = {"authorizer": "authorizer"}

# The snippets that spread requests over the daemons of --backends.
BALANCERS = ("balancer", "balancer-uwsgi")

# Apache's proxy scheme for each gateway it reaches through mod_proxy.
APACHE_SCHEME = {"scgi": "scgi", "uwsgi": "uwsgi", "balancer-uwsgi": "uwsgi"}

# Apache mod_proxy_scgi and mod_proxy_uwsgi get SCRIPT_NAME and PATH_INFO wrong, and
# H2O sends SCRIPT_NAME "" and the whole path as PATH_INFO; none can be told
# otherwise: their daemons are given the mount point.
SCRIPT_NAME_OPTION = {("apache", "scgi"), ("apache", "uwsgi"), ("apache", "balancer-uwsgi"),
                      ("h2o", "fastcgi")}

# The values the committed files under conf/ are rendered with: the defaults
# of the settings table for "conf" (``bind`` depends on the gateway:
# default_bind()).
VALUES = ("app", "app_dir", "prefix", "bind", "python", "processes", "threads",
          "socket_group", "user", "script", "backends")
SAMPLE = {name: BY_NAME[name].default_for("conf") for name in VALUES}

NGINX_SPLIT = "# --- inside your server { } block ---"
# The line after which a snippet goes inside a section of the operator's own
# (HAProxy: the frontend; Caddy: the site block; H2O: a host's "paths:").
SPLITS = (NGINX_SPLIT, "# --- inside your frontend section ---",
          "# --- inside your site block ---", "# --- under \"paths:\" in your host")


def default_bind(gateway, name="myapp", server=None):
    """The sample socket of each gateway (of ``server``'s snippet)."""
    if (server, gateway) == ("apache", "authorizer"):
        return "127.0.0.1:9100"  # mod_authnz_fcgi reaches its backend over TCP only
    if gateway == "authorizer":
        return "unix:/run/%s/authorizer.sock" % name
    if gateway in ("scgi", "uwsgi"):
        return "unix:/run/%s/%s.sock" % (name, gateway)
    if gateway == "proxy":
        return "127.0.0.1:8000"
    if gateway in ("fastcgi-spawn",):
        return "unix:/run/lighttpd/%s-fastcgi.sock" % name
    if gateway in ("fcgid", "cgi", "cgi-htaccess"):
        return None
    return "unix:/run/%s/fastcgi.sock" % name


def _mount(prefix):
    prefix = (prefix or "").strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    if any(c in prefix for c in " \t\"'{}$;#\\"):
        raise ConfigError("--prefix %r: use a plain URL path such as /app" % prefix)
    return prefix


def _bind_values(bind):
    values = {"socket_path": "", "host": "", "port": "", "bind": bind or ""}
    flags = set()
    if not bind:
        return values, flags
    from gateways.address import parse_bind

    address = parse_bind(bind)
    if address.kind == "unix":
        flags.add("unix")
        values["socket_path"] = address.path
        values["nginx_backend"] = "unix:" + address.path
        # Apache names its connection pools by the URL after "|": one name per
        # socket, or a second application would share the first one's socket.
        values["apache_backend"] = "unix:%s|{scheme}://%s/" % (address.path,
                                                             _pool_name(address.path))
        values["lighttpd_backend"] = '"socket" => "%s"' % address.path
        values["haproxy_backend"] = "unix@" + address.path
        values["caddy_backend"] = "unix/" + address.path
    elif address.kind == "tcp":
        flags.add("tcp")
        host = "[%s]" % address.host if ":" in address.host else address.host
        values["host"], values["port"] = address.host, str(address.port)
        values["nginx_backend"] = "%s:%d" % (host, address.port)
        values["apache_backend"] = "{scheme}://%s:%d/" % (host, address.port)
        values["lighttpd_backend"] = '"host" => "%s", "port" => %d' % (address.host,
                                                                        address.port)
        values["haproxy_backend"] = ("ipv6@" if ":" in address.host else "") + "%s:%d" % (
            address.host, address.port)
        values["caddy_backend"] = "%s:%d" % (host, address.port)
    else:
        raise ConfigError("--bind %s: a snippet needs unix:PATH or HOST:PORT" % bind)
    return values, flags


def _pool_name(path):
    """A host name for Apache's ``unix:PATH|fcgi://NAME/``, unique per socket path."""
    name = re.sub(r"[^a-z0-9.-]+", "-", path.lower()).strip("-.") or "socket"
    if len(name) > 60:
        import hashlib

        name = "gateways-" + hashlib.sha1(path.encode()).hexdigest()[:16]  # noqa: S324
    return name


def _bin_path(gateways, values):
    """The command lighttpd's ``bin-path`` runs: split at spaces, no quotes understood."""
    parts = [gateways, "fastcgi", values["app"]]
    if values.get("app_dir"):
        parts += [BY_NAME["app_dir"].flag, values["app_dir"]]
    parts += [BY_NAME["processes"].flag, str(values["processes"]),
              BY_NAME["threads"].flag, str(values["threads"])]
    for part in parts:
        if not part or any(c.isspace() or c in "'\"" for c in part):
            raise ConfigError(
                "lighttpd's bin-path splits its command at spaces and knows no quotes: %r "
                "cannot be passed; write a script with 'gateways cgi-script' and give its "
                "path to bin-path instead" % part)
    return " ".join(parts)


def _flag(name, value):
    return "%s %s" % (BY_NAME[name].flag, shlex.quote(str(value)))


def daemon_command(gateways, protocol, values, bind=True, mount=True):
    """The ``gateways fastcgi|scgi|uwsgi APP ...`` line a snippet shows or runs."""
    parts = [gateways, protocol, shlex.quote(values["app"])]
    if values.get("app_dir"):
        parts.append(_flag("app_dir", values["app_dir"]))
    if bind and values.get("bind"):
        parts.append(_flag("bind", values["bind"]))
        if values.get("socket_path") and values.get("socket_group"):
            parts.append(_flag("socket_group", values["socket_group"]))
    if mount and values.get("script_name_option"):
        parts.append(_flag("script_name", values["prefix"] or "/"))
    if values.get("roles"):
        parts.append(_flag("roles", values["roles"]))
    parts.append(_flag("processes", values["processes"]))
    parts.append(_flag("threads", values["threads"]))
    return " ".join(parts)


def values_for(server, gateway, **given):
    """All template values and flags for one snippet, from ``given`` and SAMPLE."""
    if (server, gateway) not in SNIPPETS:
        raise ConfigError("no snippet for %s %s (choose from: %s)" % (
            server, gateway, ", ".join("%s %s" % key for key in sorted(SNIPPETS))))
    config = resolve("conf", {k: v for k, v in given.items() if k in VALUES}, environ={})
    values = {name: getattr(config, name) for name in VALUES}
    if values["bind"] is None:
        values["bind"] = default_bind(gateway, server=server)
    if (server, gateway) == ("apache", "authorizer") and values["bind"].startswith("unix:"):
        raise ConfigError("--bind %s: Apache mod_authnz_fcgi reaches its backend over TCP "
                          "only: give HOST:PORT" % values["bind"])
    values["prefix"] = _mount(values["prefix"])
    prefix = values["prefix"]
    flags = {"prefix" if prefix else "root"}
    bind_values, bind_flags = _bind_values(values["bind"])
    values.update(bind_values)
    flags |= bind_flags
    scheme = APACHE_SCHEME.get(gateway, "fcgi")
    if "apache_backend" in values:
        values["apache_backend"] = values["apache_backend"].replace("{scheme}", scheme)
    values["unit"] = _unit_name(values["app"])
    values["location"] = prefix or "/"
    values["lighttpd_root_fix"] = "" if prefix else ', "fix-root-scriptname" => "enable"'
    values["prefix_slash"] = prefix + "/"
    values["prefix_regex"] = re.escape(prefix)
    values["python"] = values["python"] or sys.executable
    values["script_dir"], values["script_file"] = os.path.split(values["script"])
    values["gateways"] = os.path.join(os.path.dirname(values["python"]), "gateways")
    values["script_name_option"] = (server, gateway) in SCRIPT_NAME_OPTION
    values["max_conns"] = int(values["processes"]) * int(values["threads"])
    values["roles"] = ROLES.get(gateway)
    values["provider"] = values["unit"].replace("-fastcgi", "-authorizer")
    protocol = PROTOCOL.get(gateway)
    if protocol:
        values["command"] = daemon_command(values["gateways"], protocol, values)
        values["spawn_command"] = daemon_command(values["gateways"], protocol, values,
                                                 bind=False)
        if gateway == "fastcgi-spawn":
            values["bin_path"] = _bin_path(values["gateways"], values)
    if gateway in BALANCERS:
        backends = [b.strip() for b in str(values["backends"]).split(",") if b.strip()]
        values["backend_list"] = backends
        if PROTOCOL[gateway] == "fastcgi":
            values["web_server_addrs"] = "127.0.0.1"  # FastCGI's peer check
    return values, flags


def _unit_name(app):
    """``myapp:application`` -> ``myapp-fastcgi`` (systemd unit names)."""
    base = re.split(r"[:.(/]", app.strip())[0] or "app"
    return re.sub(r"[^A-Za-z0-9_-]", "-", base) + "-fastcgi"


_VAR = re.compile(r"\{\{(\w+)\}\}")


def fill(text, values, flags):
    """Apply the template syntax (module docstring) to ``text``."""
    out = []
    for line in text.splitlines():
        match = re.match(r"(\s*)#\?(!?)(\w+) ?(.*)$", line)
        if match:
            indent, negate, flag, rest = match.groups()
            if (flag in flags) == (negate == ""):
                out.append(indent + rest)
            continue
        out.append(line)
    text = "\n".join(out) + "\n"

    def value(match):
        name = match.group(1)
        if name.startswith("sh_") and name[3:] in values:
            return shlex.quote(str(values[name[3:]]))
        if name not in values:
            raise KeyError("template uses an unknown value {{%s}}" % name)
        return str(values[name])

    return _VAR.sub(value, text)


def render(server, gateway, **given):
    """The snippet for ``server`` and ``gateway`` (see ``gateways conf --help``)."""
    values, flags = values_for(server, gateway, **given)
    with open(os.path.join(TEMPLATES, server, gateway + ".conf")) as f:
        text = f.read()
    if gateway in BALANCERS:
        text = _expand_backends(text, values)
    return fill(text, values, flags)


def _expand_backends(text, values):
    """Repeat the lines marked ``#@backend`` once per backend HOST:PORT."""
    out = []
    for line in text.splitlines():
        if "#@backend" not in line:
            out.append(line)
            continue
        line = line.replace("#@backend ", "", 1).rstrip()
        for number, backend in enumerate(values["backend_list"], 1):
            host, _, port = backend.rpartition(":")
            out.append(line.replace("{{backend}}", backend).replace("{{backend_host}}", host)
                       .replace("{{backend_port}}", port)
                       .replace("{{backend_name}}", "app%d" % number))
    return "\n".join(out) + "\n"


def split_nginx(text):
    """An nginx snippet's ``(http-level part, server-level part)``."""
    head, sep, tail = text.partition(NGINX_SPLIT)
    return (head, tail) if sep else ("", text)


def split_snippet(text):
    """A snippet's ``(part on its own, part inside the operator's section)``: see
    :data:`SPLITS` (the second part starts after the marker's line)."""
    for marker in SPLITS:
        head, sep, tail = text.partition(marker)
        if sep:
            return head, tail.partition("\n")[2]
    return text, ""


def sample_name(server, gateway):
    """The file under conf/ that holds the sample of a snippet."""
    special = {"socket": "myapp-fastcgi.socket", "service": "myapp-fastcgi.service",
               "cgi-htaccess": "cgi.htaccess"}
    return "%s/%s" % (server, special.get(gateway, gateway + ".conf"))


def rst_snippets():
    """The list of snippets for README.rst: command, file, purpose."""
    lines = []
    for server, gateway in sorted(SNIPPETS):
        lines.append("``gateways conf %s %s``" % (server, gateway))
        lines.append("    ``conf/%s``: %s." % (sample_name(server, gateway),
                                              SNIPPETS[(server, gateway)]))
    return "\n".join(lines) + "\n"


def sample_files():
    """``{relative path under conf/: text}`` for the committed samples."""
    return {sample_name(server, gateway): render(server, gateway)
            for server, gateway in sorted(SNIPPETS)}


# -- command line -------------------------------------------------------------------


def pairs_help(width=79):
    """The valid SERVER GATEWAY pairs and what each sets up (``gateways conf --help``)."""
    import textwrap

    lines = ["SERVER GATEWAY pairs (gateways conf --list prints them alone):"]
    for server, gateway in sorted(SNIPPETS):
        lines.append(textwrap.fill(SNIPPETS[(server, gateway)], width,
                                   initial_indent="  %-24s" % ("%s %s" % (server, gateway)),
                                   subsequent_indent=" " * 26))
    return "\n".join(lines)


def add_arguments(parser):
    """The arguments of ``gateways conf`` that are not settings (those come from the
    settings table, as for every command)."""
    servers = sorted({s for s, _ in SNIPPETS})
    gateways = sorted({g for _, g in SNIPPETS})
    parser.add_argument("server", metavar="SERVER", choices=servers, nargs="?",
                        help="the web server: %s" % ", ".join(servers))
    parser.add_argument("gateway", metavar="GATEWAY", nargs="?",
                        help="what the snippet sets up: %s (not every pair: see below)"
                        % ", ".join(gateways))
    parser.add_argument("--list", action="store_true",
                        help="print the valid SERVER GATEWAY pairs, one per line (those of "
                        "SERVER when it is given), and nothing else")


def run_cli(args):
    """``gateways conf``: print the snippet (``--list``: the pairs); a bad value raises
    :class:`gateways.errors.ConfigError`."""
    if args.list:
        sys.stdout.write("".join("%s %s\n" % pair for pair in sorted(SNIPPETS)
                                 if args.server in (None, pair[0])
                                 and args.gateway in (None, pair[1])))
        return 0
    if args.server is None or args.gateway is None:
        raise ConfigError("conf needs SERVER and GATEWAY (gateways conf --list prints the "
                          "valid pairs)")
    config = resolve("conf", {name: getattr(args, name) for name in VALUES})
    sys.stdout.write(render(args.server, args.gateway,
                            **{name: getattr(config, name) for name in VALUES}))
    return 0
