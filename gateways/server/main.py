"""Start a FastCGI or SCGI server: settings -> listeners -> master -> workers.

The protocol modules (:mod:`gateways.fastcgi`, :mod:`gateways.scgi`) each
provide a ``ConnectionHandler`` (:class:`gateways.server.handler.BaseHandler`); this
module wires one of them to the listeners and the worker engine.  It is the
only place that knows all three rooms.
"""

import sys

from gateways.loader import AppLoadError, load_app, traceback_text
from gateways.server import logs
from gateways.server.listen import open_listeners
from gateways.server.pidfile import PidFile
from gateways.server.workers import Master
from gateways.settings import ConfigError, resolve

NAMES = {"fastcgi": "FastCGI", "scgi": "SCGI"}


def _protocol(command):
    if command == "fastcgi":
        from gateways import fastcgi as module
    else:
        from gateways import scgi as module
    return module


def run_server(command, app, config):
    """Open the listeners and supervise workers serving ``app`` (callable or APP).

    What start-up creates comes in an order that leaves nothing behind when a
    later step fails: the log, the pid file, then the sockets.
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
    except ConfigError as exc:
        _log_failure(log, config, exc)
        if pid_file is not None:
            pid_file.release()
        raise
    if config.socket_mode & 0o002 and any(lst.unix_path for lst in listeners):
        log.warning("the unix socket is writable by every local user (mode %04o, from "
                    "WSGIServer's umask); socket_group= with the default mode 0660 is safer",
                    config.socket_mode)
    module = _protocol(command)
    multiprocess = config.processes > 1 or any(lst.inherited for lst in listeners)

    def boot():
        application = app
        if isinstance(app, str):
            try:
                application = load_app(app, config.app_dir)
            except AppLoadError as exc:
                if config.debug:  # the worker logs the message itself, once
                    log.error("traceback of the load failure:\n%s",
                              traceback_text(exc).rstrip("\n"))
                raise
        return module.ConnectionHandler.factory(application, config, log, errors, multiprocess)

    master = Master(listeners, boot, processes=config.processes, threads=config.threads,
                    timeout=config.timeout, graceful_timeout=config.graceful_timeout,
                    max_requests=config.max_requests,
                    max_requests_jitter=config.max_requests_jitter,
                    write_timeout=config.read_timeout, log=log, pid_file=pid_file,
                    name=NAMES[command])
    return master.run()


def _log_failure(log, config, exc):
    """A start-up error also goes to --log-file: stderr may be closed (a web server
    that spawned us) or not looked at."""
    if config.log_file:
        log.error("%s", exc)


def serve_protocol(command, app, options):
    """The Python API behind ``gateways.fastcgi.serve`` and ``gateways.scgi.serve``."""
    config = resolve(command, dict(options))
    return run_server(command, app, config)


def serve_cli(config):
    """``gateways fastcgi APP`` and ``gateways scgi APP``."""
    try:
        return run_server(config.command, config.app, config)
    except ConfigError as exc:
        if logs.stderr_open():
            sys.stderr.write("gateways: error: %s\n" % exc)
        return exc.status
    except KeyboardInterrupt:
        return 130
