"""``gateways cgi-script``: write a cgi-bin script that serves an application.

The script avoids every problem in the seed document's list of "Common
problems with CGI scripts": an absolute shebang to an interpreter that can
import gateways and the application (no ``/usr/bin/env`` lookup in the web
server's PATH), LF line endings, no byte order mark, mode 0755.  It imports
only what the CGI path needs (:mod:`gateways.cgi`), so it starts fast.  The
same script serves FastCGI when a web server spawns it with a listening
socket on fd 0, and runs the standalone server from a terminal
(:func:`gateways.run`).

Before writing, the application is loaded the way the script will load it:
with the script's interpreter (``--python``; in a subprocess when that is not
the one running this command), from the script's directory, with
``--app-dir`` first on the path.  An application that does not load is
refused with one line, and no file is written.
"""

import os
import sys

from gateways.errors import OperatorError

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


CHECK_TIMEOUT = 60.0  # seconds the application may take to load


def _load_here(app, app_dir, script_dir):
    """Load ``app`` in this process, as the script would: one line on failure."""
    import contextlib

    from gateways.loader import AppLoadError, load_app

    saved = list(sys.path)
    sys.path.insert(0, script_dir)  # where the interpreter starts a script
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is "wrote FILE"
            load_app(app, app_dir)
    except AppLoadError as exc:
        raise ValueError(str(exc)) from exc
    finally:
        sys.path[:] = saved


def _load_there(app, python, app_dir, path):
    """Load ``app`` with the interpreter ``python`` (a subprocess): one line on failure."""
    from gateways.tools import doctor

    script_dir = os.path.dirname(path)
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise ValueError("--python %s: %s" % (
            python, "not an executable file" if os.path.exists(python) else "no such file"))
    argv = [python, "-c", doctor.IMPORT_PROBE, app, script_dir, app_dir]
    try:
        status, _, err = doctor.run_limited(argv, {}, script_dir, CHECK_TIMEOUT)
    except OSError as exc:
        raise ValueError("--python %s: cannot run it: %s" % (python, exc)) from exc
    reason = (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
    if status is None:
        raise ValueError("%s did not load %s within %g s" % (python, app, CHECK_TIMEOUT))
    if status == doctor.NO_GATEWAYS:
        command, target, why = doctor.gateways_install(
            python, doctor.venv_dir(path, [app_dir]))
        raise ValueError("%s cannot import gateways (%s), so the script would not run%s: %s%s"
                         % (python, reason, "; " + why if why else "", command,
                            "" if target == python else ", then --python " + target))
    if status != 0:
        raise ValueError("%s: %s" % (python, reason))


def check_app(app, python, app_dir, path):
    """Raise ValueError (one line) unless ``python`` loads ``app`` as the script ``path``
    will."""
    if python == sys.executable:
        _load_here(app, app_dir, os.path.dirname(path))
    else:
        _load_there(app, python, app_dir, path)


def write_script(path, app, python=None, app_dir=None, force=False, check=False):
    """Write the script to ``path`` with mode 0755; returns the absolute path.

    With ``check``, refuse (ValueError) an application the script's interpreter
    cannot load, before anything is written."""
    path = os.path.abspath(path)
    python = python or sys.executable
    if not os.path.isabs(python):
        raise ValueError("--python %s: the shebang needs an absolute path" % python)
    if os.path.exists(path) and not force:
        raise FileExistsError("%s exists (use --force to overwrite it)" % path)
    app_dir = os.path.abspath(app_dir or os.getcwd())
    if check:
        if not os.path.isdir(os.path.dirname(path)):
            raise FileNotFoundError("%s: no such directory" % os.path.dirname(path))
        check_app(app, python, app_dir, path)
    text = script_text(app, python, app_dir, path)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.chmod(path, 0o755)  # noqa: S103 - a CGI script must be readable and executable
    return path


def write_script_cli(args):
    """``gateways cgi-script APP -o FILE``."""
    try:
        path = write_script(args.output, args.app, args.python, args.app_dir, args.force,
                            check=True)
    except (OSError, ValueError) as exc:
        raise OperatorError(str(exc)) from None
    sys.stdout.write("wrote %s\n" % path)
    return 0
