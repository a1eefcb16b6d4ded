"""Backend hosts on one machine: network namespaces joined by a bridge, for the
scale-out tests (tests/test_scaleout.py).  Needs root and iproute2 (``ip netns``).

:class:`Network` makes, in the root namespace, a bridge with the balancer's address
``10.203.N.1/24`` (and a second address, ``10.203.N.2``, that no daemon trusts),
and one namespace per host, each joined to the bridge by a veth pair whose inner
end has ``10.203.N.1H/24``.  ``N`` comes from this process's pid, so that two test
runs on one machine do not share a subnet; the names carry it too.  Everything is
private to the test: no route leaves the bridge.

A :class:`Host` runs its gateways FastCGI daemon with ``ip netns exec`` (which execs:
the pid is the daemon's master), on its own address, with ``FCGI_WEB_SERVER_ADDRS``
set to the balancer's address.  :meth:`Host.link_down` takes the root-side end of
its veth down: the host vanishes without closing a connection.

:meth:`Network.close` kills every daemon (process group) and removes the namespaces,
the veth pairs and the bridge; it runs from a ``finally`` and at exit, also after a
failure, and never touches a namespace or link it did not make.
"""

import atexit
import contextlib
import os
import shutil
import subprocess

import pytest

from daemons import Daemon, clean_environ, gateways_argv

PORT = 9000  # every host's daemon listens on its own address, this port


def ip(*args, namespace=None, check=True):
    """Run ``ip ARGS`` (inside ``namespace``): its CompletedProcess."""
    argv = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace,
                                                     "ip", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), result.stderr.strip()))
    return result


def require_netns():
    """Skip (outside CI) or fail (CI) unless root with iproute2 can make namespaces."""
    why = None
    if os.geteuid() != 0:
        why = "the multi-host tests make network namespaces: they need root"
    elif shutil.which("ip") is None:
        why = "ip (iproute2) is not installed"
    if why is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


class Host:
    """One backend host: a namespace, its address, its daemon (when started)."""

    def __init__(self, network, number):
        self.network = network
        self.number = number
        self.name = "h%d" % number
        self.namespace = "%s-%s" % (network.tag, self.name)
        self.link = "%sv%d" % (network.tag, number)  # root-side end of the veth pair
        self.address = "%s.%d" % (network.prefix, 10 + number)
        self.bind = "%s:%d" % (self.address, PORT)
        self.daemon = None
        self.masters = []  # every master pid this host ran, oldest first

    def start(self, gateways_bin, app_dir, directory, *extra):
        """Start the daemon (1 process x 4 threads) and wait until it is ready."""
        argv = ["ip", "netns", "exec", self.namespace, *gateways_argv(
            "fastcgi", "probe:application", "--app-dir", str(app_dir), gateways=gateways_bin)]
        self.daemon = Daemon(argv, directory, "%s-%d" % (self.name, len(self.masters)),
                             bind=self.bind, address=(self.address, PORT), log_file=True,
                             args=["--processes", "1", "--threads", "4", *extra],
                             env=clean_environ(FCGI_WEB_SERVER_ADDRS=self.network.balancer))
        self.masters.append(self.daemon.pid)
        self.daemon.wait_ready()
        return self.daemon

    def link_down(self):
        ip("link", "set", self.link, "down")

    def link_up(self):
        ip("link", "set", self.link, "up")


class Network:
    """The bridge and the hosts (see the module docstring)."""

    def __init__(self, count=3):
        number = os.getpid() % 200 + 20
        self.tag = "gws%d" % number
        self.prefix = "10.203.%d" % number
        self.balancer = self.prefix + ".1"  # the address the balancers connect from
        self.stranger = self.prefix + ".2"  # an address on the bridge no daemon trusts
        self.bridge = self.tag + "br"
        self.hosts = [Host(self, n) for n in range(1, count + 1)]
        self.made = []  # ("netns" | "link", name), to remove
        atexit.register(self.close)
        try:
            self._make()
        except Exception:
            self.close()
            raise

    def _make(self):
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(("link", self.bridge))
        ip("addr", "add", self.balancer + "/24", "dev", self.bridge)
        ip("addr", "add", self.stranger + "/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in self.hosts:
            ip("netns", "add", host.namespace)
            self.made.append(("netns", host.namespace))
            ip("link", "add", host.link, "type", "veth", "peer", "name", host.link + "p")
            self.made.append(("link", host.link))
            ip("link", "set", host.link + "p", "netns", host.namespace)
            ip("link", "set", host.link, "master", self.bridge)
            ip("link", "set", host.link, "up")
            ip("link", "set", "lo", "up", namespace=host.namespace)
            ip("link", "set", host.link + "p", "name", "eth0", namespace=host.namespace)
            ip("addr", "add", host.address + "/24", "dev", "eth0", namespace=host.namespace)
            ip("link", "set", "eth0", "up", namespace=host.namespace)

    def close(self):
        """Kill every daemon, remove what was made (idempotent)."""
        for host in self.hosts:
            if host.daemon is not None:
                with contextlib.suppress(Exception):
                    host.daemon.kill()
        for kind, name in reversed(self.made):
            if kind == "netns":
                ip("netns", "del", name, check=False)
            else:
                ip("link", "del", name, check=False)
        self.made = []
