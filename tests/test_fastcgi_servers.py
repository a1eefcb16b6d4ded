"""FastCGI through real Apache httpd (mod_proxy_fcgi, mod_fcgid), lighttpd (mod_fastcgi) and nginx.

The servers are configured with the snippets ``gateways conf SERVER GATEWAY``
prints, with their optional lines switched on where a test says so; each web
server starts once for the module:

* Apache mod_proxy_fcgi: the root and /app with the snippet's
  ``enablereuse=on`` line (one daemon), and a second Apache with the
  default line (no reuse) at /app (another daemon: two unix sockets in one
  Apache share a proxy worker, see test_apache_two_unix_sockets_reach_two_daemons);
* Apache mod_fcgid: /app and the root, the scripts ``gateways cgi-script``
  writes, started by mod_fcgid;
* lighttpd: /app and the root over a unix socket, /tcp over TCP (one lighttpd
  holds all three: the snippets' repeated ``server.*`` lines are dropped,
  lighttpd refuses a variable set twice); and a second lighttpd that starts
  gateways itself (``bin-path``) at /app;
* nginx: /app and the root without keep-alive, and a second nginx with the
  snippet's ``keepalive``/``fastcgi_keep_conn`` lines at /app.

The daemons (1 process x 4 threads, ``--log-level debug``) are stopped with
SIGTERM at the end and must exit 0.

What the fronts send (probe: tests/apps/probe.py, request /app/echo/h%C3%A9llo):
lighttpd, nginx and mod_fcgid send SCRIPT_NAME and a decoded PATH_INFO;
mod_proxy_fcgi sends the SCRIPT_NAME the snippet sets and no PATH_INFO, which
the daemon takes from REQUEST_URI.
"""

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from gateways.settings import ConfigError
from gateways.tools.cgiscript import write_script
from gateways.tools.confgen import render, split_nginx, values_for

import webservers
from behaviour import TIMEOUT, Front, every_front, front_maker, get_json
from daemons import (
    Log,
    alive,
    behind_a_web_server,
    children,
    daemon_set,
    parent,
    wait_until,
)
from fcgi_client import FastCGIClient, http_params

pytestmark = pytest.mark.servers

APP = "probe:application"


def unix_connections(path):
    """Inodes of the connected (accepted) sockets named ``path`` in /proc/net/unix.

    An accepted unix socket carries its listener's name; the listener itself is
    in state 01 (unconnected), its connections in state 03.
    """
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == path and fields[5] == "03":
            inodes.add(int(fields[6]))
    return inodes


@pytest.fixture(scope="module")
def daemons(gateways_bin, app_dir):
    """unix (lighttpd, nginx), tcp (lighttpd /tcp), reuse and plain (Apache with
    and without enablereuse), keep (nginx with fastcgi_keep_conn); tcp and idle
    close kept-alive connections after 1 s (test_daemon_closes_an_idle_kept_connection)."""
    with daemon_set("gw-fastcgi-") as (directory, started):
        for name, tcp, extra in [("unix", False, ()), ("tcp", True, ("--keepalive-timeout", "1")),
                                 ("reuse", False, ()), ("plain", False, ()),
                                 ("keep", False, ()),
                                 ("idle", False, ("--keepalive-timeout", "1"))]:
            started[name] = behind_a_web_server("fastcgi", gateways_bin, app_dir, directory,
                                                name, tcp, extra)
        for daemon in started.values():
            daemon.wait_ready()
        yield started


def snippet(server, gateway, prefix, bind, app_dir, python=None, **values):
    return render(server, gateway, app=APP, app_dir=str(app_dir), prefix=prefix, bind=bind,
                  python=python, processes=1, threads=4, **values)


def comment(text, line):
    """``text`` with the line ``line`` commented out (it must be there once)."""
    return _replace_line(text, line, lambda indent: indent + "# " + line)


def uncomment(text, line):
    """``text`` with the commented line ``# line`` made active (it must be there once)."""
    return _replace_line(text, "# " + line, lambda indent: indent + line)


def _replace_line(text, old, new):
    lines = text.splitlines()
    found = [n for n, line in enumerate(lines) if line.strip() == old]
    assert len(found) == 1, (old, text)
    line = lines[found[0]]
    lines[found[0]] = new(line[:len(line) - len(line.lstrip())])
    return "\n".join(lines) + "\n"


def with_reuse(text, backend):
    """The Apache snippet with its enablereuse=on ProxyPass line instead of the default."""
    line = 'ProxyPass "%s" flushpackets=on' % backend
    return uncomment(comment(text, line), line + " enablereuse=on ttl=4")


def start_apache_proxy_fcgi(app_dir, *mounts, name="apache"):
    """Apache with the mod_proxy_fcgi snippet for each ``(prefix, daemon, reuse)``."""
    body = []
    for prefix, daemon, reuse in mounts:
        text = snippet("apache", "fastcgi", prefix, daemon.bind, app_dir)
        if reuse:
            text = with_reuse(text, values_for("apache", "fastcgi",
                                               bind=daemon.bind)[0]["apache_backend"])
        body.append(text)
    # An application error after the headers leaves mod_proxy_fcgi's client
    # waiting for the rest of the chunked body until KeepAliveTimeout (5 s by
    # default) closes the connection: shortened here to keep the module fast.
    body.append("KeepAliveTimeout 1")
    return webservers.start_apache("\n".join(body), modules=("proxy", "proxy_fcgi"), name=name)


@pytest.fixture(scope="module")
def apache(daemons, app_dir):
    # The root first: <Location> sections apply in order, the last match wins.
    server = start_apache_proxy_fcgi(app_dir, ("/", daemons["reuse"], True),
                                     ("/app", daemons["reuse"], True))
    yield server
    server.close()


@pytest.fixture(scope="module")
def apache_plain(daemons, app_dir):
    # Its own Apache, without enablereuse.
    server = start_apache_proxy_fcgi(app_dir, ("/app", daemons["plain"], False),
                                     name="apache-plain")
    yield server
    server.close()


@pytest.fixture(scope="module")
def fcgid_dir(server_python, app_dir):
    directory = webservers.public_dir("gw-fcgid-")
    for name in ("app.fcgi", "root.fcgi"):
        write_script(str(directory / name), APP, server_python, str(app_dir))
    yield directory
    webservers.shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def apache_fcgid(fcgid_dir, app_dir, server_python):
    # /app first: the root's Alias would otherwise take /app too.
    body = "\n".join(snippet("apache", "fcgid", prefix, None, app_dir, server_python,
                             script=str(fcgid_dir / name))
                     for prefix, name in (("/app", "app.fcgi"), ("/", "root.fcgi")))
    server = webservers.start_apache(body, modules=("fcgid",), name="apache-fcgid")
    yield server
    server.close()


@pytest.fixture(scope="module")
def lighttpd(daemons, app_dir):
    unix, tcp = daemons["unix"].bind, daemons["tcp"].bind
    body = webservers.merge_lighttpd(snippet("lighttpd", "fastcgi", "/app", unix, app_dir),
                          snippet("lighttpd", "fastcgi", "/tcp", tcp, app_dir),
                          snippet("lighttpd", "fastcgi", "/", unix, app_dir))
    server = webservers.start_lighttpd(body)
    yield server
    server.close()


def start_lighttpd_spawn(app_dir, server_python, name, *, with_root=False):
    """A lighttpd that starts gateways itself (bin-path), mounted at /app, and
    with ``with_root`` a second one at the root on its own socket."""
    root = webservers.public_dir("gw-%s-" % name)
    sockets = webservers.worker_dir(root / "sockets")  # lighttpd (www-data) creates it
    mounts = (("/app", "app"), ("/", "root")) if with_root else (("/app", "app"),)
    body = webservers.merge_lighttpd(*(
        snippet("lighttpd", "fastcgi-spawn", prefix, "unix:%s/%s.sock" % (sockets, stem),
                app_dir, server_python)
        for prefix, stem in mounts))
    try:
        return webservers.start_lighttpd(body, root=root, name=name)
    except Exception:
        webservers.shutil.rmtree(root, ignore_errors=True)
        raise


@pytest.fixture(scope="module")
def lighttpd_spawn(app_dir, server_python):
    server = start_lighttpd_spawn(app_dir, server_python, "lighttpd-spawn", with_root=True)
    yield server
    server.stop()
    webservers.shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def nginx(daemons, app_dir):
    unix = daemons["unix"].bind
    parts = [split_nginx(snippet("nginx", "fastcgi", prefix, unix, app_dir))
             for prefix in ("/app", "/")]
    # Both snippets define the same upstream (same socket): it is taken once.
    server = webservers.start_nginx("\n".join(body for _, body in parts),
                                    http_extra=parts[0][0])
    yield server
    server.close()


@pytest.fixture(scope="module")
def nginx_keep(daemons, app_dir):
    text = snippet("nginx", "fastcgi", "/app", daemons["keep"].bind, app_dir)
    for line in ("keepalive 8;", "keepalive_timeout 4s;", "fastcgi_keep_conn on;"):
        text = uncomment(text, line)
    http_part, server_part = split_nginx(text)
    server = webservers.start_nginx(server_part, http_extra=http_part, name="nginx-keep")
    yield server
    server.close()


# name: (web server fixture, mount, daemon or None when the server starts gateways,
#        Front options)
FRONTS = {
    "apache": ("apache", "/app", "reuse", {"streams": True}),
    "apache-root": ("apache", "", "reuse", {"streams": True}),
    "apache-plain": ("apache_plain", "/app", "plain", {"streams": True}),
    "apache-fcgid": ("apache_fcgid", "/app", None, {"streams": True}),
    "apache-fcgid-root": ("apache_fcgid", "", None, {"streams": True}),
    "lighttpd": ("lighttpd", "/app", "unix", {"streams": True}),
    "lighttpd-root": ("lighttpd", "", "unix", {"streams": True}),
    "lighttpd-tcp": ("lighttpd", "/tcp", "tcp", {"streams": True}),
    "lighttpd-spawn": ("lighttpd_spawn", "/app", None, {"streams": True}),
    "lighttpd-spawn-root": ("lighttpd_spawn", "", None, {"streams": True}),
    "nginx": ("nginx", "/app", "unix", {"streams": True}),
    "nginx-root": ("nginx", "", "unix", {"streams": True}),
    "nginx-keep": ("nginx_keep", "/app", "keep", {"streams": True}),
}


make_front = front_maker(FRONTS)


TestEveryFront = every_front(FRONTS)


# -- what the FastCGI fronts show beyond the shared cases ------------------------------


def ancestors(pid):
    """The parent, grandparent... of ``pid``."""
    found = []
    while pid > 1:
        pid = parent(pid)
        found.append(pid)
    return found


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_each_mount_is_served_over_fastcgi_by_the_right_process(name, request, daemons):
    front = make_front(request, name)
    data = get_json(front, "/echo")
    assert data["gateway"] == "FastCGI"
    assert data["run_once"] is False
    daemon = FRONTS[name][2]
    if daemon is not None:
        assert data["pid"] in daemons[daemon].worker_pids()
        assert data["multithread"] is True  # --threads 4
    else:
        # Spawned by the web server: a gateways master (the web server's child or
        # grandchild) and its worker, which answered.
        assert front.server.pid in ancestors(data["pid"])
        assert data["multiprocess"] is True  # a web server may start more of them
        # mod_fcgid: GATEWAYS_THREADS=1 from the snippet; lighttpd: --threads 4.
        assert data["multithread"] is name.startswith("lighttpd-spawn")


def test_fcgid_starts_one_worker_with_one_thread(request):
    front = make_front(request, "apache-fcgid")
    pid = get_json(front, "/echo")["pid"]
    master = ancestors(pid)[0]
    assert Path("/proc/%d/cmdline" % master).read_bytes().split(b"\0")[1].endswith(b"app.fcgi")
    assert children(master) == {pid}
    environ = Path("/proc/%d/environ" % master).read_bytes().split(b"\0")
    assert b"GATEWAYS_PROCESSES=1" in environ and b"GATEWAYS_THREADS=1" in environ
    # mod_fcgid 2.3.9 starts the script with PATH and FcgidInitialEnv only: no CGI
    # variables that could mislead the detection (which looks at fd 0 first anyway).
    assert not [v for v in environ if v.startswith(b"GATEWAY_INTERFACE=")]


@pytest.mark.parametrize("name", ["apache", "apache-fcgid", "lighttpd", "nginx"])
def test_prefix_mount_is_a_path_segment(name, request):
    # lighttpd's fastcgi.server "/app" alone would take /appx too (SCRIPT_NAME "/appx"),
    # and so would nginx's "location /app".
    prefix, root = make_front(request, name), make_front(request, name + "-root")
    response = requests.get(root.url("/appx/echo"), timeout=TIMEOUT)
    # the root mount's application got all of it as PATH_INFO (it has no such route)
    assert (response.status_code, response.text) == (404, "no route '/appx/echo'")
    data = get_json(prefix, "?x=1")
    assert (data["script_name"], data["path_info"], data["query_string"]) == ("/app", "", "x=1")


@pytest.mark.parametrize("name", ["apache", "apache-fcgid", "lighttpd", "lighttpd-spawn",
                                  "nginx"])
def test_traceback_goes_to_the_web_servers_error_log_not_the_response(name, request):
    front = make_front(request, name)
    error_log = Log(front.server.error_log)
    error_log.mark()  # the shared cases made /error fail before
    response = requests.get(front.url("/error"), timeout=TIMEOUT)
    assert response.status_code == 500
    assert "SECRET-MARKER" not in response.text and "Traceback" not in response.text
    # wsgi.errors is the request's FCGI_STDERR stream: the web server logs it.
    log = error_log.wait_for("SECRET-MARKER raised before the headers")
    assert "Traceback (most recent call last)" in log
    error_log.mark()
    assert requests.get(front.url("/stderr"), timeout=TIMEOUT).text == "logged"
    error_log.wait_for("probe: a line for the error log")


@pytest.mark.parametrize("name", ["apache", "apache-fcgid", "lighttpd", "nginx"])
def test_repeated_request_header(name, request):
    front = make_front(request, name)
    connection = http.client.HTTPConnection("127.0.0.1", front.server.port, timeout=TIMEOUT)
    try:
        connection.putrequest("GET", front.mount + "/echo")
        connection.putheader("X-Dup", "a")
        connection.putheader("X-Dup", "b")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, (response.status, body[:300])
    assert json.loads(body)["http"]["HTTP_X_DUP"] == "a, b"


@pytest.mark.parametrize(("name", "kept"), [("apache", True), ("apache-plain", False),
                                            ("nginx-keep", True), ("nginx", False)])
def test_connection_reuse_is_what_the_snippet_chose(name, kept, request, daemons):
    """Apache enablereuse=on and nginx fastcgi_keep_conn keep one connection to
    the daemon for successive requests; the snippets' defaults connect per request.
    Seen from the kernel: the daemon's accepted sockets in /proc/net/unix."""
    front, daemon = make_front(request, name), daemons[FRONTS[name][2]]
    workers = daemon.worker_pids()

    def echo():
        assert get_json(front, "/echo")["pid"] in workers  # this daemon, no other

    def connections():
        return unix_connections(daemon.address)

    echo()
    if kept:
        before = connections()
        assert before, "no connection to the daemon stayed open"
        for _ in range(5):
            echo()
            assert connections() == before  # no new connection, none closed
    else:
        for _ in range(3):
            assert wait_until(lambda: not connections(), 2.0, 0.01), connections()
            echo()


def test_apache_two_unix_sockets_reach_two_daemons(daemons, app_dir):
    """Two applications on two unix sockets behind one Apache, each with the snippet."""
    one, two = daemons["unix"], daemons["plain"]
    server = start_apache_proxy_fcgi(app_dir, ("/one", one, False), ("/two", two, False),
                                     name="apache-two")
    try:
        served = {mount: get_json(Front(server.url(), mount, server), "/echo")["pid"]
                  for mount in ("/one", "/two")}
    finally:
        server.close()
    assert served["/one"] in one.worker_pids()
    assert served["/two"] in two.worker_pids()


@pytest.mark.parametrize("daemon_name", ["tcp", "idle"])
def test_daemon_closes_an_idle_kept_connection(daemon_name, daemons):
    """Both daemons run with --keepalive-timeout 1: a kept-alive connection idle for
    a second is closed, freeing its thread.  (Behind nginx keepalive or Apache
    enablereuse the web server holds such connections; when they outnumber the
    daemon's threads, new requests wait for one to be closed.)"""
    daemon = daemons[daemon_name]
    with FastCGIClient(daemon.address, timeout=TIMEOUT) as client:
        response = client.request(http_params("/echo"), keep_conn=True)
        assert response.status_code == 200
        started = time.monotonic()
        assert client.is_closed(timeout=3.0)
        assert time.monotonic() - started > 0.5


def test_lighttpd_stops_the_gateways_it_spawned(app_dir, server_python):
    server = start_lighttpd_spawn(app_dir, server_python, "lighttpd-spawn-stop")
    try:
        data = get_json(Front(server.url(), "/app", server), "/echo")
        assert data["gateway"] == "FastCGI"
        master = ancestors(data["pid"])[0]
        spawned = {master} | children(master)
        assert data["pid"] in spawned and server.pid in ancestors(master)
        # SIGTERM to lighttpd alone, not to its process group: lighttpd must stop
        # what it started, and gateways must go when told.
        os.kill(server.pid, signal.SIGTERM)
        assert wait_until(lambda: not alive(server.pid), 10.0, 0.01)
        assert wait_until(lambda: not any(alive(pid) for pid in spawned), 5.0, 0.01), [
            pid for pid in spawned if alive(pid)]
    finally:
        server.stop()
        webservers.shutil.rmtree(server.root, ignore_errors=True)


def test_lighttpd_bin_path_takes_a_factory_call(app_dir, server_python):
    # lighttpd splits bin-path at spaces and passes everything else on as it is:
    # parentheses must not be shell-quoted.
    root = webservers.public_dir("gw-lighttpd-factory-")
    sockets = webservers.worker_dir(root / "sockets")
    body = render("lighttpd", "fastcgi-spawn", app="probe:create_app()", app_dir=str(app_dir),
                  prefix="/app", bind="unix:%s/app.sock" % sockets, python=server_python,
                  processes=1, threads=2)
    server = webservers.start_lighttpd(body, root=root, name="lighttpd-factory")
    try:
        data = get_json(Front(server.url(), "/app", server), "/echo")
    finally:
        server.stop()
        webservers.shutil.rmtree(root, ignore_errors=True)
    assert data["gateway"] == "FastCGI"


def test_lighttpd_bin_path_refuses_what_it_cannot_pass(app_dir):
    with pytest.raises(ConfigError, match="cgi-script"):
        render("lighttpd", "fastcgi-spawn", app=APP, app_dir="/srv/my apps", prefix="/app",
               bind="unix:/run/x.sock")


@pytest.mark.parametrize(("name", "where"), [("apache-fcgid", "error_log_text"),
                                             ("lighttpd-spawn", "output_text")])
def test_spawned_gateways_logs_where_the_snippet_says(name, where, request):
    """mod_fcgid gives the process Apache's error log as stderr; lighttpd its own
    stderr, not server.errorlog (only FastCGI stderr records go there)."""
    front = make_front(request, name)
    assert get_json(front, "/echo")["gateway"] == "FastCGI"
    assert wait_until(lambda: "FastCGI ready" in getattr(front.server, where)(), 5.0), (
        front.server.error_log_text(), front.server.output_text())
    if where == "output_text":
        assert "FastCGI ready" not in front.server.error_log_text()


# -- where a start-up error under bin-path is told ----------------------------------------

BROKEN_APP = "no_such_module:app"
BROKEN_REASON = ("ERROR: cannot load application 'no_such_module:app': no module named "
                 "'no_such_module' on the Python path (is --app-dir right?)\n")
LOG_LINE = '# "bin-environment" => ( "GATEWAYS_LOG_FILE" => "/var/log/lighttpd/' \
           'no_such_module-fastcgi.log" ),'


def _start_daemonized_lighttpd(body, root):
    """lighttpd as /etc/init.d/lighttpd starts it: without -D it forks, the parent
    exits, the daemon's stderr is what lighttpd makes of it.  Its pid (pid file)."""
    for sub in ("htdocs", "logs", "run", "tmp"):
        webservers.worker_dir(root / sub)
    conf = webservers.write_file(root / "lighttpd.conf", webservers.fill(
        webservers.lighttpd_config(body), root, webservers.free_port()))
    with open(root / "logs" / "stderr.log", "wb") as output:
        subprocess.run([webservers.require("lighttpd"), "-f", str(conf)], cwd=root,
                       env=webservers.BASE_ENV, stdin=subprocess.DEVNULL, stdout=output,
                       stderr=subprocess.STDOUT, timeout=30, check=True)
    pid_file = root / "run" / "lighttpd.pid"
    return int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 10.0,
                          what="no %s" % pid_file))


def _stop_daemonized_lighttpd(pid):
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid), 10.0):
        os.kill(pid, signal.SIGKILL)
    for member in webservers.group_members(pid):  # the daemon leads its own session
        os.kill(member, signal.SIGKILL)


@pytest.mark.parametrize("where", ["stderr", "breakagelog", "bin-environment", "--log-file",
                                   "daemonized"])
def test_bin_path_start_up_error_is_where_the_snippet_says(where, app_dir, server_python):
    """The snippet's comment and README: server.errorlog has only "child exited: 2"; the
    line that says why the application does not load is in lighttpd's stderr (the
    journal under systemd, which runs lighttpd -D), in server.breakagelog when set, in
    the file GATEWAYS_LOG_FILE or --log-file names, and nowhere when lighttpd daemonizes."""
    body = render("lighttpd", "fastcgi-spawn", app=BROKEN_APP, app_dir=str(app_dir),
                  prefix="/app", bind="unix:/ROOT/sockets/app.sock", python=server_python,
                  processes=1, threads=2)
    assert LOG_LINE in body  # the snippet offers it, commented out
    root = webservers.public_dir("gw-lighttpd-broken-")
    try:
        told, promised = _run_broken(where, body.replace("/ROOT/", str(root) + "/"), root)
    finally:
        webservers.shutil.rmtree(root, ignore_errors=True)
    if promised is not None:
        assert told.pop(promised) >= 1, told
    assert not any(told.values()), told  # and nowhere else


def _run_broken(where, body, root):
    """Run lighttpd with ``body`` in ``root`` until the broken application has been
    started and has failed: ({log file name: how often the reason is in it}, the
    name of the file the snippet promises it in, or None)."""
    webservers.worker_dir(root / "sockets")  # lighttpd's user makes the socket
    log_file = webservers.worker_dir(root / "applog") / "gateways.log"  # and the log file
    if where == "breakagelog":
        body += '\nserver.breakagelog = "%s"\n' % log_file
    elif where == "bin-environment":
        body = uncomment(body, LOG_LINE[2:]).replace(
            "/var/log/lighttpd/no_such_module-fastcgi.log", str(log_file))
    elif where == "--log-file":
        body = body.replace(" --threads 2\"", " --threads 2 --log-file %s\"" % log_file)
        assert str(log_file) in body
    promised = {"stderr": root / "logs" / "stderr.log", "daemonized": None}.get(
        where, log_file)
    server = pid = None
    try:
        if where == "daemonized":
            pid = _start_daemonized_lighttpd(body, root)
        else:
            server = webservers.start_lighttpd(body, root=root, name="lighttpd-broken")
        Log(root / "logs" / "error.log").wait_for("child exited: 2", 15.0)
        if promised is not None:
            Log(promised).wait_for(BROKEN_REASON, 15.0)
    finally:
        if server is not None:
            server.stop()
        if pid is not None:
            _stop_daemonized_lighttpd(pid)
    told = {path.name: path.read_text(errors="replace").count(BROKEN_REASON)
            for path in (root / "logs" / "error.log", root / "logs" / "stderr.log", log_file)
            if path.exists()}
    return told, promised and promised.name
