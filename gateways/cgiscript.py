"""``gateways cgi-script``: write a cgi-bin script that serves an application.

The script avoids every problem in the seed document's list of "Common
problems with CGI scripts": an absolute shebang to an interpreter that can
import gateways and the application (no ``/usr/bin/env`` lookup in the web
server's PATH), LF line endings, no byte order mark, mode 0755.  It imports
only what the CGI path needs (:mod:`gateways.cgi`), so it starts fast.  The
same script serves FastCGI when a web server spawns it with a listening
socket on fd 0, and runs the standalone server from a terminal
(:func:`gateways.run`).
"""

import os
import sys

TEMPLATE = '''#!{python}
# Serves {app}: as CGI in cgi-bin, as FastCGI when a web server spawns it
# (lighttpd bin-path, mod_fcgid), and on http://127.0.0.1:8000/ from a terminal.
# Written by `gateways cgi-script`; check it with `gateways check {path}`.
import sys

{path_line}from gateways import run

sys.exit(run({app!r}))
'''


def script_text(app, python, app_dir=None, path="this script"):
    """The text of a cgi-bin script serving ``app`` with ``python``."""
    path_line = "sys.path.insert(0, %r)\n" % os.path.abspath(app_dir) if app_dir else ""
    return TEMPLATE.format(python=python, app=app, path=path, path_line=path_line)


def write_script(path, app, python=None, app_dir=None, force=False):
    """Write the script to ``path`` with mode 0755; returns the absolute path."""
    path = os.path.abspath(path)
    python = python or sys.executable
    if not os.path.isabs(python):
        raise ValueError("--python %s: the shebang needs an absolute path" % python)
    if os.path.exists(path) and not force:
        raise FileExistsError("%s exists (use --force to overwrite it)" % path)
    text = script_text(app, python, app_dir or os.getcwd(), path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.chmod(path, 0o755)  # noqa: S103 - a CGI script must be readable and executable
    return path


def write_script_cli(args):
    """``gateways cgi-script APP -o FILE``."""
    try:
        path = write_script(args.output, args.app, args.python, args.app_dir, args.force)
    except (OSError, ValueError) as exc:
        sys.stderr.write("gateways: error: %s\n" % exc)
        return 2
    sys.stdout.write("wrote %s\n" % path)
    return 0
