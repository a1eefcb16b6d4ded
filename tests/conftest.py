"""Session fixtures shared by the integration tests.

The web servers' worker user (www-data when the tests run as root) must run
this interpreter and read the application code: the interpreter is checked
once, and the test applications are copied into a world-readable directory.
"""

import shutil
import sys
from pathlib import Path

import pytest

import webservers

APPS = Path(__file__).parent / "apps"


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
