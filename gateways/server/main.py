"""Start a daemon: settings -> log -> pid file -> listeners -> master -> workers.

The only place that knows every room of the engine: the listeners
(:mod:`gateways.server.listen`), the master (:mod:`gateways.server.master`)
and, through the ``boot`` function each worker calls, the protocol handler
a gateway passes in (:class:`gateways.server.fastcgi.FastCGIHandler`,
:class:`gateways.server.scgi.SCGIHandler`).
"""

from __future__ import annotations

from gateways.errors import AppLoadError, ConfigError, traceback_text
from gateways.loader import load_app
from gateways.server import logs
from gateways.server.listen import open_listeners
from gateways.server.master import Master
from gateways.server.pidfile import PidFile

TYPE_CHECKING = False  # mypy reads the imports below; the interpreter never does
if TYPE_CHECKING:
    from logging import Logger

    from _typeshed.wsgi import WSGIApplication

    from gateways.server.handler import BaseHandler
    from gateways.server.worker import HandlerFactory
    from gateways.settings import Config


def run_server(handler: type[BaseHandler], app: str | WSGIApplication, config: Config) -> int:
    """Serve ``app`` (a callable or an APP string) with ``handler`` until stopped.

    ``handler`` is a :class:`gateways.server.handler.BaseHandler` subclass,
    ``config`` the resolved settings of its command.  What start-up creates
    comes in an order that leaves nothing behind when a later step fails:
    the log, the pid file, then the sockets.  Raises the
    :class:`gateways.errors.OperatorError` that stopped it; returns the exit
    status otherwise.
    """
    log, errors = logs.setup(config.log_level, config.log_file)
    try:
        pid_file = PidFile.claim(config.pid_file) if config.pid_file else None
    except ConfigError as exc:
        _log_failure(log, config, exc)
        raise
    try:
        listeners = open_listeners(config.bind, mode=config.socket_mode,
                                   owner=config.socket_owner, group=config.socket_group,
                                   backlog=config.backlog)
        stats = None
        if config.stats:
            try:
                stats = open_listeners(config.stats, mode=config.socket_mode,
                                       owner=config.socket_owner, group=config.socket_group,
                                       backlog=64)[0]
            except ConfigError as exc:
                for listener in listeners:
                    listener.close(remove=not listener.inherited)
                raise type(exc)("--stats: %s" % exc, exc.status) from None
    except ConfigError as exc:
        _log_failure(log, config, exc)
        if pid_file is not None:
            pid_file.release()
        raise
    if config.socket_mode & 0o002 and any(lst.unix_path for lst in listeners):
        log.warning("the unix socket is writable by every local user (mode %04o, from "
                    "WSGIServer's umask); socket_group= with the default mode 0660 is safer",
                    config.socket_mode)
    multiprocess = config.processes > 1 or any(lst.inherited for lst in listeners)

    def boot() -> HandlerFactory:
        if isinstance(app, str):
            try:
                application = load_app(app, config.app_dir)
            except AppLoadError as exc:
                if config.debug:  # the worker logs the message itself, once
                    log.error("traceback of the load failure:\n%s",
                              traceback_text(exc).rstrip("\n"))
                raise
        else:
            application = app
        return handler.factory(application, config, log, errors, multiprocess)

    master = Master(listeners, boot, processes=config.processes, threads=config.threads,
                    timeout=config.timeout, graceful_timeout=config.graceful_timeout,
                    max_requests=config.max_requests,
                    max_requests_jitter=config.max_requests_jitter,
                    log=log, pid_file=pid_file, name=handler.gateway, config=config,
                    stats=stats)
    return master.run()


def _log_failure(log: Logger, config: Config, exc: Exception) -> None:
    """A start-up error also goes to --log-file: stderr may be closed (a web server
    that spawned us) or not looked at."""
    if config.log_file:
        log.error("%s", exc)
