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
    """Open the listeners and supervise workers serving ``app`` (callable or APP)."""
    log, errors = logs.setup(config.log_level, config.log_file)
    listeners = open_listeners(config.bind, mode=config.socket_mode, owner=config.socket_owner,
                               group=config.socket_group, backlog=config.backlog)
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
                    write_timeout=config.read_timeout, log=log, pid_file=config.pid_file,
                    name=NAMES[command])
    return master.run()


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
