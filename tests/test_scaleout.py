"""Scale-out across hosts that survives a host going down.

Three backend hosts, each a network namespace on a bridge (tests/hosts.py) running a
gateways FastCGI daemon on its own address with ``FCGI_WEB_SERVER_ADDRS`` set to the
balancer's address; four balancers in the root namespace, HAProxy, nginx, Apache
(mod_proxy_balancer) and lighttpd, each configured with its balancer snippet
(``gateways conf haproxy|nginx|apache|lighttpd balancer``) as printed, spread a
steady client load over the three.  Each scenario sends at most
a few hundred requests through each balancer, for a bounded time, and measures:

* a connection from an address not in FCGI_WEB_SERVER_ADDRS is refused;
* kill -9 of one host's daemon: failed requests (at most those in flight on it),
  the balancer stops using it, traffic returns when it is started again;
* a rolling restart (SIGHUP, then SIGTERM and a new daemon) of every host, one by
  one: no failed request behind any of the four (a stopping daemon resets no
  connection: lighttpd, which sends no request twice, would answer one 500);
* a host whose link goes down (it vanishes without closing a connection): every
  request ends within the snippet's bound (README.rst, "Scale-out"), and the
  requests that fail are at most those in flight on it.

The figures go to the test's output (``-s``) and to README.rst.  The namespaces,
the daemons and the balancers are removed at the end, also when a test fails.
"""

import socket
import threading
import time

import pytest
import requests
from hosts import Network, require_netns

from gateways.tools.confgen import render

import webservers
from daemons import parent, wait_until
from fcgi_client import FastCGIClient, http_params

pytestmark = pytest.mark.servers

BALANCERS = ("haproxy", "nginx", "apache", "lighttpd")
CONCURRENCY = 3  # client threads per balancer
PAUSE = 0.05  # between two requests of a thread: about 50 requests/s per balancer
# What a client may wait at worst: the snippets' timeouts (README.rst, "Scale-out"):
# a request in flight on a host that vanished fails after timeout server /
# fastcgi_read_timeout / timeout / read-timeout (65 s), the others wait at most a
# connect timeout (2 s) more; lighttpd checks its connect-timeout (2 s) once a
# second, in whole seconds: 3 to 5 s.
READ_BOUND = 65.0
CONNECT_BOUND = {"haproxy": 2.0, "nginx": 2.0, "apache": 2.0, "lighttpd": 5.0}
MARGIN = 10.0  # generous: 2 shared cores
# What lighttpd logs for a request a backend reset after it was sent (it answers 500
# and never sends a request twice): a stopping daemon must reset none.
LIGHTTPD_RESET = "response not received, request sent"


@pytest.fixture(scope="module")
def network(gateways_bin, app_dir, tmp_path_factory):
    require_netns()
    directory = webservers.public_dir("gw-scaleout-")
    net = Network(3)
    try:
        for host in net.hosts:
            host.start(gateways_bin, app_dir, directory)
        net.directory = directory
        yield net
    finally:
        net.close()
        webservers.shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def balancers(network):
    backends = ",".join(host.bind for host in network.hosts)
    started = {}
    try:
        for name in BALANCERS:
            text = render(name, "balancer", app="probe:application", prefix="/app",
                          backends=backends, processes=1, threads=4)
            started[name] = webservers.start_balancer(name, text, name=name + "-scaleout")
        yield started
    finally:
        for server in started.values():
            server.close()


# -- the load ------------------------------------------------------------------------------


class Load:
    """CONCURRENCY threads sending GET /app/echo through one balancer until told to stop,
    at most ``count`` requests or ``limit`` seconds.  ``results``: one (start, end, host
    or None, error or None) per request, times from the load's start."""

    def __init__(self, network, server, count=400, limit=150.0, pause=PAUSE):
        self.network, self.url = network, server.url("/app/echo")
        self.count, self.limit, self.pause = count, limit, pause
        self.results = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(CONCURRENCY)]
        for thread in self.threads:
            thread.start()

    def now(self):
        return time.monotonic() - self.started

    def _host(self, pid):
        master = parent(pid)
        for host in self.network.hosts:
            if master in host.masters:
                return host.name
        return "?"

    def _run(self):
        session = requests.Session()
        while not self.stop.is_set() and self.now() < self.limit:
            with self.lock:
                if len(self.results) >= self.count:
                    return
            start = self.now()
            host = error = None
            try:
                response = session.get(self.url, timeout=READ_BOUND + 2 * MARGIN)
                if response.status_code == 200:
                    host = self._host(response.json()["pid"])
                else:
                    error = "status %d" % response.status_code
            except requests.RequestException as exc:
                error = "%s: %s" % (type(exc).__name__, str(exc)[-120:])
            with self.lock:
                self.results.append((start, self.now(), host, error))
            time.sleep(self.pause)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(READ_BOUND + 3 * MARGIN)
        return sorted(self.results)

    def wait_for(self, count):
        """Until ``count`` more requests have ended."""
        target = len(self.results) + count
        wait_until(lambda: len(self.results) >= target, 30.0,
                   what="the load stalled at %d requests" % len(self.results))


def start_loads(network, balancers, **kw):
    return {name: Load(network, server, **kw) for name, server in balancers.items()}


def failures(results):
    return [r for r in results if r[3] is not None]


def report(what, loads_results):
    for name, results in loads_results.items():
        failed = failures(results)
        longest = max(end - start for start, end, _, _ in results)
        print("\n%s via %s: %d requests, %d failed %s, longest %.2f s" % (
            what, name, len(results), len(failed), sorted({f[3] for f in failed}), longest))


def served_by(results, since=0.0):
    return {host for start, _, host, _ in results if start >= since and host}


# -- scenarios -----------------------------------------------------------------------------


def test_every_host_gets_traffic(network, balancers):
    loads = start_loads(network, balancers, count=60)
    for name, load in loads.items():
        wait_until(lambda load=load: len(load.results) >= 60, 30.0, what="%s stalled" % name)
        results = load.finish()
        assert not failures(results), (name, failures(results))
        assert served_by(results) == {"h1", "h2", "h3"}, (name, results[-5:])


def test_a_stranger_is_refused(network):
    host = network.hosts[0]
    host.daemon.log.mark()
    with FastCGIClient((host.address, 9000), timeout=10.0,
                       source=network.stranger) as client:
        assert client.is_closed(timeout=5.0)  # closed before any request: no answer
    host.daemon.log.wait_for("refused a connection from %s" % network.stranger)
    with FastCGIClient((host.address, 9000), timeout=10.0) as client:  # from the balancer
        assert client.request(http_params("/echo")).status_code == 200


def test_kill_9_of_one_host(network, balancers, gateways_bin, app_dir):
    victim = network.hosts[1]
    loads = start_loads(network, balancers, count=2000, limit=60.0)
    for load in loads.values():
        load.wait_for(30)
    killed_at = {name: load.now() for name, load in loads.items()}
    for name, load in loads.items():  # else the test would prove nothing
        assert victim.name in served_by(list(load.results)), (name, load.results)
    logged = {name: len(server.error_log_text()) for name, server in balancers.items()}
    killed = time.monotonic()
    victim.daemon.kill()
    # Detection: HAProxy's checks mark it DOWN; the others take it out at the first
    # connection it refuses (Apache also at a request it reset, which it resends).
    markers = {"haproxy": ("app%d is DOWN" % victim.number,),
               "nginx": ("upstream server temporarily disabled",),
               "apache": ("disabling worker for (%s)" % victim.bind, "AH01075"),
               "lighttpd": ("establishing connection failed: socket: tcp:%s" % victim.bind,)}
    detected = {}

    def notice():
        for name, server in balancers.items():
            text = server.error_log_text()[logged[name]:]
            if name not in detected and any(marker in text for marker in markers[name]):
                detected[name] = time.monotonic() - killed
        return len(detected) == len(balancers)

    wait_until(notice, 15.0, what=lambda: "not noticed the killed daemon: %s" % {
        name: server.error_log_text()[logged[name]:][-2000:]
        for name, server in balancers.items() if name not in detected})
    for name, seconds in detected.items():
        print("\n%s: the killed daemon is out of the rotation after %.2f s" % (name, seconds))
    for load in loads.values():
        load.wait_for(60)
    down_for = {name: load.now() for name, load in loads.items()}
    victim.start(gateways_bin, app_dir, network.directory)
    back_at = {name: load.now() for name, load in loads.items()}
    for name, load in loads.items():
        wait_until(lambda name=name, load=load: victim.name in served_by(
            list(load.results), back_at[name]), 30.0,
            what="%s never went back to the restarted host" % name)
    results = {name: load.finish() for name, load in loads.items()}
    report("kill -9", results)
    for name, res in results.items():
        failed = failures(res)
        # At most the requests in flight on the killed daemon: one per client thread.
        assert len(failed) <= CONCURRENCY, (name, failed)
        assert all(killed_at[name] - 1.0 <= f[0] for f in failed), (name, failed)
        # Between the kill plus detection and the restart, the victim served nothing.
        assert victim.name not in served_by(
            [r for r in res if r[1] <= down_for[name]], killed_at[name] + 5.0), name
        back = min(r[0] for r in res if r[2] == victim.name and r[0] >= back_at[name])
        print("%s: detection: last request served by the killed host started %.2f s after "
              "the kill; traffic back %.2f s after the restart (%.2f s after the kill)" % (
                  name, max([r[0] for r in res if r[2] == victim.name and
                             r[0] < back_at[name]] + [killed_at[name]]) - killed_at[name],
                  back - back_at[name], back - killed_at[name]))


def test_rolling_restart(network, balancers, gateways_bin, app_dir):
    logged = {name: len(server.error_log_text()) for name, server in balancers.items()}
    loads = start_loads(network, balancers, count=6000, limit=150.0)
    for load in loads.values():
        load.wait_for(20)
    for host in network.hosts:
        old_workers = host.daemon.worker_pids()
        host.daemon.process.send_signal(1)  # SIGHUP: new workers, the old ones finish
        wait_until(lambda host=host, old=old_workers: host.daemon.worker_pids()
                   and not host.daemon.worker_pids() & old, 30.0,
                   what="%s: the workers were not replaced" % host.name)
        for load in loads.values():
            load.wait_for(15)
        assert host.daemon.stop(timeout=30.0) == 0  # SIGTERM: graceful
        host.start(gateways_bin, app_dir, network.directory)
        # The next host only once this one is back in every balancer's rotation (nginx,
        # lighttpd, Apache: after fail_timeout, disable-time, retry, 10 s; HAProxy: after
        # 2 good checks).
        since = {name: load.now() for name, load in loads.items()}
        for name, load in loads.items():
            wait_until(lambda load=load, host=host, start=since[name]: host.name in served_by(
                list(load.results), start), 30.0,
                what="%s: %s not back in rotation" % (name, host.name))
    results = {name: load.finish() for name, load in loads.items()}
    report("rolling restart", results)
    for name, res in results.items():
        failed = failures(res)
        assert served_by(res, res[-1][0] - 5.0), name
        resets = balancers[name].error_log_text()[logged[name]:].count(LIGHTTPD_RESET)
        print("%s: %d failed, %d requests reset by a stopping daemon" % (
            name, len(failed), resets))
        assert failed == [], (name, failed, balancers[name].error_log_text(40))
        assert resets == 0, (name, balancers[name].error_log_text(40))


def test_a_host_vanishes(network, balancers):
    """The link of one host goes down: nothing closes its connections.  Every request
    ends within the snippets' bound; those that fail are at most the ones in flight on
    it; then the balancers serve from the two others."""
    victim = network.hosts[2]
    loads = start_loads(network, balancers, count=2000, limit=READ_BOUND + 4 * MARGIN,
                        pause=0.2)
    for load in loads.values():
        load.wait_for(30)
    down_at = {name: load.now() for name, load in loads.items()}
    for name, load in loads.items():  # else the test would prove nothing
        assert victim.name in served_by(list(load.results)), (name, load.results)
    victim.link_down()
    try:
        time.sleep(READ_BOUND + MARGIN)  # what a request in flight on it may take
    finally:
        results = {name: load.finish() for name, load in loads.items()}
        victim.link_up()
    report("link down", results)
    for name, res in results.items():
        after = [end - start for start, end, _, _ in res if start > down_at[name]]
        print("%s: requests that started after the link went down: longest %.2f s, "
              "%d of %d waited more than 1 s" % (
                  name, max(after), len([t for t in after if t > 1.0]), len(after)))
    for name, res in results.items():
        failed = failures(res)
        assert len(failed) <= CONCURRENCY, (name, failed)
        longest = max(end - start for start, end, _, _ in res)
        assert longest <= READ_BOUND + MARGIN, (name, longest)
        # Requests that were not in flight when the link went down: the connect bound.
        later = [end - start for start, end, _, _ in res if start > down_at[name] + 0.5]
        slow = [t for t in later if t > CONNECT_BOUND[name] + MARGIN]
        assert not slow, (name, slow)
        assert served_by(res, down_at[name] + READ_BOUND) <= {"h1", "h2"}, name
    # Back: the host answers again once its link is up.
    assert wait_until(lambda: _answers(victim), 20.0)


def _answers(host):
    try:
        with FastCGIClient((host.address, 9000), timeout=2.0) as client:
            return client.request(http_params("/echo")).status_code == 200
    except (OSError, socket.timeout, Exception):
        return False
