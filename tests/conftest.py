"""Fixtures shared by the integration tests.

The web servers' worker user (www-data when the tests run as root) must run
this interpreter and read the application code: the interpreter is checked
once, and the test applications are copied into a world-readable directory.
The tests that start daemons themselves get a short directory for them and
a list of what they started, killed in teardown.  The tests that run a
printed ``pip install gateways`` get an environment that installs this checkout.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import webservers
from daemons import APPS


@pytest.fixture(scope="session")
def server_python():
    """The interpreter the web servers run (this one), checked for www-data."""
    webservers.check_worker_can_run_python(sys.executable)
    return sys.executable


@pytest.fixture(scope="session")
def gateways_bin(server_python):
    """The ``gateways`` console script next to the interpreter."""
    path = Path(server_python).parent / "gateways"
    assert path.exists(), "gateways is not installed next to %s" % server_python
    return str(path)


@pytest.fixture(scope="session")
def app_dir(server_python):
    """A world-readable copy of tests/apps (the probe application)."""
    directory = webservers.public_dir("gw-apps-")
    for source in APPS.glob("*.py"):
        webservers.write_file(directory / source.name, source.read_bytes())
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tmp():
    """A short directory: unix socket paths must stay below 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gwt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def started():
    """The daemons a test started (append them): killed in teardown."""
    daemons = []
    yield daemons
    for daemon in daemons:
        daemon.kill()


@pytest.fixture(scope="session")
def pip_env():
    """An environment in which ``pip install gateways`` installs this checkout (and its
    dependencies) from wheels built once, without an index: the printed fixes that say
    ``pip install gateways`` run for real, offline."""
    directory = webservers.public_dir("gw-wheels-")
    root = Path(__file__).resolve().parent.parent
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(directory),
                            str(root)], capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    yield dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(directory))
    shutil.rmtree(directory, ignore_errors=True)
