"""The ``gateways`` command (also ``python -m gateways``).

Sub-commands::

    gateways serve [APP]        standalone development server (werkzeug)
    gateways cgi APP            answer one CGI request
    gateways run APP            CGI, FastCGI or standalone, as the environment says
    gateways fastcgi APP        FastCGI daemon or web-server-spawned responder
    gateways scgi APP           SCGI daemon
    gateways uwsgi APP          uwsgi daemon (what nginx uwsgi_pass speaks)
    gateways conf SERVER GATEWAY     print a web-server config snippet (--list: the pairs)
    gateways cgi-script APP -o FILE  write a cgi-bin script
    gateways check FILE              diagnose a cgi-bin script
    gateways request PROTOCOL ADDRESS [PATH]   one request straight to a daemon
    gateways status ADDRESS          what a daemon is doing (its --stats address)
    gateways from-uwsgi FILE         the command line a uWSGI ini file amounts to

The options come from :mod:`gateways.settings`.  ``gateways cgi`` is parsed
without argparse: a CGI process pays for every import on every request.
Operator mistakes end in one line on stderr and a non-zero exit status.
"""

import sys

from gateways.errors import PROG, OperatorError, report


def _fast_cgi_args(argv):
    """Parse ``cgi APP [options]`` from the settings table, or ``None`` to fall back."""
    from gateways.settings import for_command

    table = {s.flag: s for s in for_command("cgi")}
    given = {}
    app = None
    args = iter(argv)
    for arg in args:
        flag, eq, value = arg.partition("=")
        setting = table.get(flag)
        if setting is not None:
            if setting.flag_only:
                if eq:
                    return None
                given[setting.name] = True
            else:
                if not eq:
                    value = next(args, None)
                    if value is None:
                        return None
                given[setting.name] = value
        elif arg.startswith("-") or app is not None:
            return None  # --help, an unknown option: let argparse explain
        else:
            app = arg
    if app is None:
        return None
    given["app"] = app
    return given


def _cmd_cgi(given):
    from gateways.cgi import main as cgi_main
    from gateways.settings import resolve

    config = resolve("cgi", given)
    return cgi_main(config.app, app_dir=config.app_dir, debug=config.debug,
                    script_name=config.script_name, iis=config.iis)


def build_parser():
    import argparse

    from gateways._version import __version__
    from gateways.settings import COMMANDS, for_command

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deploy one WSGI application through CGI, FastCGI, SCGI or a "
        "standalone HTTP server.",
        epilog="Every option --some-name can also be set in the environment as "
        "GATEWAYS_SOME_NAME; the command line wins.",
    )
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    helps = {
        "serve": "run the standalone development server (werkzeug)",
        "cgi": "answer one CGI request (RFC 3875) from the environment and stdin",
        "run": "CGI when GATEWAY_INTERFACE is set, FastCGI when fd 0 is a listening "
        "socket, standalone otherwise",
        "fastcgi": "serve FastCGI: a daemon on --bind, or spawned by a web server",
        "scgi": "serve SCGI on --bind",
        "uwsgi": "serve the uwsgi protocol on --bind (nginx uwsgi_pass, Apache "
        "mod_proxy_uwsgi, lighttpd)",
        "conf": "print a web-server config snippet for a gateway",
    }
    from gateways.tools.confgen import add_arguments as conf_arguments
    from gateways.tools.confgen import pairs_help

    for command in COMMANDS:
        if command == "conf":
            p = sub.add_parser(command, help=helps[command],
                               description="Print a config snippet for SERVER that sets up "
                               "GATEWAY,\nfilled with the values given.", epilog=pairs_help(),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
            conf_arguments(p)
        else:
            p = sub.add_parser(command, help=helps[command], description=helps[command])
        if command == "serve":
            p.add_argument("app", nargs="?", default="gateways.demo:app", metavar="APP",
                           help="the WSGI application (default: the demo application)")
        elif command == "uwsgi":
            p.add_argument("app", nargs="?", metavar="APP",
                           help="the WSGI application: module:name, module, file.py[:name], "
                           "file.wsgi or module:factory() (default: the one --ini names)")
        elif command != "conf":
            p.add_argument("app", metavar="APP",
                           help="the WSGI application: module:name, module, file.py[:name], "
                           "file.wsgi or module:factory()")
        groups = {}
        for setting in for_command(command):
            group = groups.get(setting.section)
            if group is None:
                group = groups[setting.section] = p.add_argument_group(setting.section)
            help_text = setting.help_for(command)
            default = setting.default_for(command)
            if default not in (None, False):
                shown = "%04o" % default if setting.name == "socket_mode" else default
                help_text += " (default: %s)" % (shown,)
            help_text = help_text.replace("%", "%%")
            if setting.flag_only:
                group.add_argument(setting.flag, dest=setting.name, action="store_true",
                                   default=None, help=help_text)
            else:
                group.add_argument(setting.flag, dest=setting.name, metavar=setting.metavar,
                                   default=None, help=help_text)

    p = sub.add_parser("request", help="send one request straight to a FastCGI, SCGI or "
                       "uwsgi daemon and print the answer", description="Send one request "
                       "straight to a daemon, the way a web server would, and print the "
                       "answer's body (-i: with its status and headers). Exit status: 0 for "
                       "2xx and 3xx, 1 for 4xx and 5xx, 2 when the daemon cannot be reached "
                       "or its answer is not a response. For health checks (Docker "
                       "HEALTHCHECK, systemd ExecStartPost, monit) and for debugging a 502.")
    from gateways.tools.request import add_arguments as request_arguments

    request_arguments(p)

    p = sub.add_parser("status", help="show what a daemon is doing (its --stats address)",
                       description="Show what a FastCGI, SCGI or uwsgi daemon started with "
                       "--stats ADDRESS is doing: the master, the totals (requests, 4xx, 5xx, "
                       "application exceptions, protocol errors, workers respawned and "
                       "recycled) and one line per worker (state, requests, requests per "
                       "second, busy threads, parked connections, RSS). Exit status 2 when "
                       "ADDRESS does not answer.")
    from gateways.tools.status import add_arguments as status_arguments

    status_arguments(p)

    p = sub.add_parser("from-uwsgi", help="print the gateways command a uWSGI ini file "
                       "amounts to", description="Print the 'gateways uwsgi' command line "
                       "that FILE (a uWSGI ini file, its [uwsgi] section or SECTION) amounts "
                       "to, or one line per key gateways cannot honour (exit status 2).")
    p.add_argument("ini", metavar="FILE[:SECTION]", help="the uWSGI ini file")

    p = sub.add_parser("cgi-script", help="write a cgi-bin script that serves APP",
                       description="Write FILE, a cgi-bin script that serves APP: an absolute "
                       "shebang to the interpreter (--python), LF line endings, mode 0755. "
                       "The same script serves FastCGI when a web server spawns it with a "
                       "listening socket on fd 0 (mod_fcgid, lighttpd bin-path) and the "
                       "standalone server from a terminal. Check it with 'gateways check "
                       "FILE'.")
    p.add_argument("app", metavar="APP", help="the WSGI application, as for 'gateways cgi'")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the script to write, e.g. cgi-bin/app.cgi")
    p.add_argument("--python", metavar="PATH",
                   help="interpreter for the shebang (default: this one)")
    p.add_argument("--app-dir", metavar="DIR",
                   help="directory put first on sys.path (default: the current directory)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    p = sub.add_parser("check", help="diagnose a cgi-bin script: every problem and its fix",
                       description="Diagnose a cgi-bin script the way the web server runs it, "
                       "as its user (--user): byte order mark, line endings, shebang and "
                       "interpreter, permissions of the file and its directories, the file "
                       "name's extension, the imports of gateways and the application, and one "
                       "real request. Prints each problem with the shell command that fixes "
                       "it. Exit status: 0 no problem, 1 problems found, 2 nothing could be "
                       "checked.")
    from gateways.tools.doctor import add_arguments as check_arguments

    check_arguments(p)

    return parser


def _run_command(args):
    """Run the parsed command; raises the OperatorError that stops it."""
    from gateways.settings import resolve

    given = dict(vars(args))
    command = given.pop("command")
    if command == "conf":
        from gateways.tools.confgen import run_cli

        return run_cli(args)
    if command == "cgi-script":
        from gateways.tools.cgiscript import write_script_cli

        return write_script_cli(args)
    if command == "check":
        from gateways.tools.doctor import check_cli

        return check_cli(args)
    if command == "cgi":
        return _cmd_cgi(given)
    if command == "request":
        from gateways.tools.request import run_cli as request_cli

        return request_cli(args)
    if command == "status":
        from gateways.tools.status import run_cli as status_cli

        return status_cli(args)
    if command == "from-uwsgi":
        from gateways.tools import uwsgi_ini

        sys.stdout.write(uwsgi_ini.command_line(*uwsgi_ini.load(args.ini)) + "\n")
        return 0
    if command == "uwsgi":
        _from_ini(given)
    config = resolve(command, given)
    if command == "run":
        from gateways.launcher import run_cli

        return run_cli(config)
    if command == "serve":
        from gateways.standalone import serve_config

        return serve_config(config)
    if command == "fastcgi":
        from gateways.server.fastcgi import FastCGIHandler as handler
    elif command == "scgi":
        from gateways.server.scgi import SCGIHandler as handler
    else:
        from gateways.server.uwsgi import UWSGIHandler as handler
    from gateways.server.main import run_server

    return run_server(handler, config.app, config)


def _from_ini(given):
    """``gateways uwsgi --ini FILE``: what the command line does not give comes from
    the ini file; its ``env`` lines go into the environment."""
    import os

    ini = given.get("ini") or os.environ.get("GATEWAYS_INI")
    if ini:
        from gateways.tools import uwsgi_ini

        options, environment = uwsgi_ini.load(ini)
        for name, value in options.items():
            if given.get(name) is None:
                given[name] = value
        os.environ.update(environment)
    if not given.get("app"):
        from gateways.errors import ConfigError

        raise ConfigError("uwsgi needs APP, or --ini FILE naming the application")


def _wants_debug(argv):
    """--debug on the command line or GATEWAYS_DEBUG on: show tracebacks of start-up errors."""
    import os

    from gateways.errors import ConfigError
    from gateways.settings import env_flag

    if "--debug" in argv:
        return True
    try:
        return env_flag("debug", os.environ.get("GATEWAYS_DEBUG") or "0")
    except ConfigError:
        return False


def main(argv=None):
    """Entry point of the ``gateways`` console script; returns the exit status.

    The one exit: an operator's mistake found anywhere below ends here, in one
    line on stderr (:func:`gateways.errors.report`) and its exit status.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["cgi"]:
            given = _fast_cgi_args(argv[1:])
            if given is not None:
                return _cmd_cgi(given)
        args = build_parser().parse_args(argv)
        return _run_command(args)
    except OperatorError as exc:
        return report(exc, _wants_debug(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
