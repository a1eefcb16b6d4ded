"""Fixtures shared by the integration tests.

The web servers' worker user (www-data when the tests run as root) must run
this interpreter and read the application code: the interpreter is checked
once, and the test applications are copied into a world-readable directory.
The tests that start daemons themselves get a short directory for them and
a list of what they started, killed in teardown.  The tests that run a
printed ``pip install gateways`` get an environment that installs this checkout.
The shared cases of :class:`behaviour.FrontBehaviour` get their ``front`` from
the test class.
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


@pytest.hookimpl(tryfirst=True)  # before -m deselects anything
def pytest_collection_modifyitems(config, items):
    """A test that needs the web servers' user (``server_python``, which ``app_dir``
    and ``gateways_bin`` use) must be marked ``servers``: ``-m "not servers"`` is
    what runs on interpreters www-data cannot reach (scripts/test, pyenv's)."""
    unmarked = [item.nodeid for item in items
                if "server_python" in getattr(item, "fixturenames", ())
                and item.get_closest_marker("servers") is None]
    if unmarked:
        raise pytest.UsageError(
            "these tests need www-data (fixture server_python) but are not marked "
            "servers:\n  " + "\n  ".join(unmarked))


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
    # The fixes install into a virtualenv of Debian's /usr/bin/python3: when the tests
    # run on another interpreter, its binary dependencies (markupsafe) are another's.
    system = "/usr/bin/python3"
    if os.path.exists(system):
        version = subprocess.run([system, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        if version != "%d.%d" % sys.version_info[:2]:
            fetch = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                 "--python-version", version, "-d", str(directory), "werkzeug>=2.2"],
                capture_output=True, text=True, timeout=300, check=False)
            assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    yield dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(directory))
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def front(request):
    """Where the shared cases of :class:`behaviour.FrontBehaviour` run: the test class's
    ``make_front(request)`` (``request.param`` when the class is parametrized with
    ``indirect=["front"]``).  A :class:`behaviour.Front` is only an address: the
    servers behind it are the fixtures ``make_front`` reads, with their own scopes.
    The class names those fixtures with ``@pytest.mark.usefixtures`` so that pytest
    knows them before the tests run (parametrized ones must be known then, and
    ``servers`` is checked against them).

    A plain fixture here rather than a class-scoped fixture method in each class:
    ``@pytest.fixture`` on a ``@classmethod`` cannot be collected on Python 3.9,
    and pytest 9 deprecates class-scoped fixtures that are instance methods.
    """
    return request.cls.make_front(request)
