"""Find the WSGI application an operator names on the command line.

Accepted forms of ``APP``:

``package.module:name``      an attribute (``name`` may be dotted: ``obj.attr``)
``package.module``           ``application``, else ``app``
``path/to/file.py[:name]``   the file is imported by its module name, with its
                             directory first on ``sys.path``
``path/to/file.wsgi``        a mod_wsgi script: its ``application``
``module:create_app()``      a factory, called with the literal arguments given

Every failure raises :class:`AppLoadError` with one line saying what was
asked and why it failed; the original exception is kept as ``__cause__`` for
``--debug``.  A directory named like the module and found first on the path
(``/srv/myapp/`` holding ``myapp.py``, run from ``/srv``) imports as an empty
namespace package (PEP 420): that is said as such, with the --app-dir or
file that fixes it.  This module is on the CGI path, so it imports nothing
heavy unless it needs it (``ast`` only for factory arguments,
``importlib.util`` only for ``.wsgi`` files).
"""

import os
import sys

from gateways.errors import AppLoadError

TYPE_CHECKING = False  # mypy reads the import below; the interpreter never does
if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

DEFAULT_NAMES = ("application", "app")


def split_spec(spec):
    """``"mod:name(args)"`` -> ``("mod", "name(args)")``; no name -> ``(spec, None)``."""
    head = spec.split("(", 1)[0]
    colon = head.rfind(":")
    if colon < 0:
        return spec, None
    return spec[:colon], spec[colon + 1:] or None


def _is_file_target(target):
    return target.endswith((".py", ".wsgi")) or os.sep in target or "/" in target


def _describe(exc):
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def _import_module(spec, name):
    try:
        __import__(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if name == missing or name.startswith(missing + "."):
            raise AppLoadError(
                spec,
                "no module named %r on the Python path (is --app-dir right?)" % missing,
            ) from exc
        raise AppLoadError(spec, "importing %r failed: %s" % (name, _describe(exc))) from exc
    except SyntaxError as exc:
        where = "%s line %s" % (exc.filename, exc.lineno)
        raise AppLoadError(spec, "syntax error in %s: %s" % (where, exc.msg), True) from exc
    except (Exception, SystemExit) as exc:
        raise AppLoadError(spec, "importing %r raised %s" % (name, _describe(exc)),
                           True) from exc
    return sys.modules[name]


def _load_file(spec, path):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise AppLoadError(spec, "no such file: %s" % path)
    directory, filename = os.path.split(path)
    stem, ext = os.path.splitext(filename)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if ext == ".py" and stem.isidentifier():
        return _import_module(spec, stem)
    # A mod_wsgi-style script: not importable by name, loaded from its path.
    import importlib.util

    modname = "_gateways_wsgi_" + "".join(c if c.isalnum() else "_" for c in path)
    loader_spec = importlib.util.spec_from_loader(
        modname, importlib.machinery.SourceFileLoader(modname, path)
    )
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[modname] = module
    try:
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[modname]
        raise AppLoadError(spec, "syntax error in %s line %s: %s"
                           % (path, exc.lineno, exc.msg), True) from exc
    except (Exception, SystemExit) as exc:
        del sys.modules[modname]
        raise AppLoadError(spec, "running %s raised %s" % (path, _describe(exc)), True) from exc
    return module


def _parse_call(spec, text):
    """``"create_app('x', debug=True)"`` -> ``("create_app", args, kwargs)``."""
    name, _, rest = text.partition("(")
    if not rest.endswith(")"):
        raise AppLoadError(spec, "factory call %r has no closing parenthesis" % text)
    inner = rest[:-1].strip()
    if not inner:
        return name.strip(), (), {}
    import ast

    try:
        call = ast.parse("f(%s)" % inner, mode="eval").body
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise AppLoadError(spec, "factory arguments must be Python literals: %s" % inner) from exc
    return name.strip(), args, kwargs


def _namespace_dirs(module):
    """The directories of ``module`` when it is a namespace package (directories
    without ``__init__.py``, PEP 420), else an empty list."""
    found = getattr(module, "__spec__", None)
    if found is None or found.origin not in (None, "namespace"):
        return []
    return list(dict.fromkeys(found.submodule_search_locations or ()))


def _namespace_error(spec, module, name):
    """APP named a directory, imported as an empty namespace package: say so and how to
    fix it, instead of "has no attribute"; None for any other module."""
    dirs = _namespace_dirs(module)
    if not dirs:
        return None
    stem = module.__name__.rpartition(".")[2]
    files = [f for f in (os.path.join(d, stem + ".py") for d in dirs) if os.path.isfile(f)]
    if files:
        fix = "give --app-dir %s (where %s.py is), or name the file: %s%s" % (
            os.path.dirname(files[0]), stem, files[0], ":" + name if name else "")
    else:
        fix = ("give --app-dir the directory that holds the application's module, or name "
               "its file: path/to/file.py%s" % (":" + name if name else ""))
    return AppLoadError(spec, "%r is the directory %s, imported as a namespace package (no "
                        "__init__.py), not the application's module: %s"
                        % (module.__name__, dirs[0], fix))


def _resolve(spec, module, dotted):
    obj = module
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _namespace_error(spec, module, dotted) or AppLoadError(
                spec, "module %r has no attribute %r" % (module.__name__, dotted)
            ) from None
    return obj


def load_app(spec: str, app_dir: "str | None" = None) -> "WSGIApplication":
    """Return the WSGI callable named by ``spec`` (see the module docstring)."""
    if not spec or not spec.strip():
        raise AppLoadError(spec, "APP is empty")
    if app_dir:
        app_dir = os.path.abspath(app_dir)
        if not os.path.isdir(app_dir):
            raise AppLoadError(spec, "--app-dir %s is not a directory" % app_dir)
        sys.path.insert(0, app_dir)
    elif os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    target, name = split_spec(spec.strip())
    if _is_file_target(target):
        module = _load_file(spec, target)
    else:
        module = _import_module(spec, target)

    if name is None:
        for candidate in DEFAULT_NAMES:
            app = getattr(module, candidate, None)
            if app is not None:
                break
        else:
            raise _namespace_error(spec, module, None) or AppLoadError(
                spec,
                "module %r defines neither 'application' nor 'app' (name one: %s:NAME)"
                % (module.__name__, target),
            )
    elif "(" in name:
        fname, args, kwargs = _parse_call(spec, name)
        factory = _resolve(spec, module, fname)
        try:
            app = factory(*args, **kwargs)
        except Exception as exc:
            raise AppLoadError(spec, "calling %s raised %s" % (name, _describe(exc)),
                               True) from exc
    else:
        app = _resolve(spec, module, name)
    if not callable(app):
        raise AppLoadError(spec, "%r is a %s, not a WSGI callable"
                           % (name or candidate, type(app).__name__))
    return app
