"""``--pid-file``: the master's pid, claimed before anything else is set up.

A pid file names one running daemon.  So a second daemon started with the
same ``--pid-file`` is refused while the pid in the file still runs (as a
live socket is refused), and a daemon removes the file on exit only while it
still holds its own pid.  A file left by a daemon that is gone (killed with
SIGKILL, a reboot) is taken over.  The file is created with ``O_EXCL``, so
two daemons starting at the same moment cannot both win.
"""

from __future__ import annotations

import os

from gateways.errors import AlreadyRunning, ConfigError


def _running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class PidFile:
    """The pid file of this process: :meth:`claim` it, :meth:`release` it on exit."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.pid = os.getpid()

    @classmethod
    def claim(cls, path: str) -> PidFile:
        """Write our pid to ``path``; ConfigError (status 1) when a live daemon has it."""
        pid_file = cls(path)
        for _ in range(2):
            if pid_file._create():
                return pid_file
            other = _read_pid(pid_file.path)
            if other is not None and other != pid_file.pid and _running(other):
                raise AlreadyRunning(
                    "--pid-file %s: another daemon is running as pid %d (stop it first, or "
                    "remove the file if that process is not a gateways daemon)"
                    % (pid_file.path, other))
            try:
                os.unlink(pid_file.path)  # left behind by a daemon that is gone
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError("--pid-file %s: cannot replace the stale file: %s"
                                  % (pid_file.path, exc.strerror)) from None
        raise ConfigError("--pid-file %s: another daemon keeps creating it" % pid_file.path)

    def _create(self) -> bool:
        """True when the file was created with our pid; False when it exists."""
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise ConfigError("--pid-file %s: directory %s does not exist"
                              % (self.path, directory))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise ConfigError("--pid-file %s: cannot create it: %s"
                              % (self.path, exc.strerror)) from None
        with os.fdopen(fd, "w") as f:
            f.write("%d\n" % self.pid)
        return True

    def release(self) -> None:
        """Remove the file if it still holds our pid (nobody took it over)."""
        if _read_pid(self.path) == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass
