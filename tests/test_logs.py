"""The daemons' log: wsgi.errors for the gateways without an error channel of their own.

(The logrotate rename, the user's view of it, is tested through a real daemon and
the real logrotate in tests/test_scgi_server.py.)
"""

import logging

from gateways.server import logs


def _reset(log):
    for handler in list(log.handlers):
        handler.close()
        log.removeHandler(handler)


def test_errors_stream_follows_a_rename_and_outlives_a_closed_handler(tmp_path):
    path = tmp_path / "daemon.log"
    log, errors = logs.setup("info", str(path))
    try:
        errors.write("first line\n")
        errors.flush()
        path.rename(tmp_path / "daemon.log.1")  # logrotate without copytruncate
        errors.write("after the rename\n")
        errors.flush()
        assert (tmp_path / "daemon.log.1").read_text() == "first line\n"
        assert path.read_text() == "after the rename\n"
        [handler] = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
        handler.close()  # what logging.shutdown() does at exit, while a thread may write
        errors.write("after close\n")
        errors.flush()
        assert path.read_text() == "after the rename\nafter close\n"
    finally:
        _reset(log)
