"""CGI (RFC 3875) through real Apache httpd (mod_cgid) and lighttpd (mod_cgi).

The servers are configured with the snippets `gateways conf` prints, and the
script is the one `gateways cgi-script` writes; each server starts once per
module, with the application mounted at /app and at the root.  A client that
leaves in the middle of a streamed response gets servers of its own.
"""

import socket

import pytest
import requests

from gateways.tools.cgiscript import write_script
from gateways.tools.confgen import render

import webservers
from behaviour import Front, every_front, get_json
from daemons import alive, wait_until

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def cgi_dir(server_python, app_dir):
    directory = webservers.public_dir("gw-cgi-")
    for name in ("app.cgi", "root.cgi"):
        write_script(str(directory / name), "probe:application", server_python, str(app_dir))
    yield directory
    webservers.shutil.rmtree(directory, ignore_errors=True)


def _apache_snippets(cgi_dir, app_dir, python):
    common = dict(app="probe:application", app_dir=str(app_dir), python=python)
    # /app first: the root mount would otherwise catch /app too.
    return "\n".join([render("apache", "cgi", prefix="/app", script=str(cgi_dir / "app.cgi"),
                             **common),
                      render("apache", "cgi", prefix="/", script=str(cgi_dir / "root.cgi"),
                             **common)])


@pytest.fixture(scope="module")
def apache(cgi_dir, app_dir, server_python):
    server = webservers.start_apache(_apache_snippets(cgi_dir, app_dir, server_python),
                                     modules=("cgid",))
    yield server
    server.close()


def _lighttpd(prefix, script, app_dir, python):
    # lighttpd takes one cgi.assign per config: one server per mount point.
    return webservers.start_lighttpd(render("lighttpd", "cgi", prefix=prefix, script=str(script),
                                            app="probe:application", app_dir=str(app_dir),
                                            python=python))


@pytest.fixture(scope="module")
def lighttpd(cgi_dir, app_dir, server_python):
    server = _lighttpd("/app", cgi_dir / "app.cgi", app_dir, server_python)
    yield server
    server.close()


@pytest.fixture(scope="module")
def lighttpd_root(cgi_dir, app_dir, server_python):
    server = _lighttpd("/", cgi_dir / "root.cgi", app_dir, server_python)
    yield server
    server.close()


# name: (web server fixture, mount, daemon (none for CGI), Front options)
FRONTS = {
    "apache": ("apache", "/app", None, {"streams": True}),
    "apache-root": ("apache", "", None, {"streams": True}),
    "lighttpd": ("lighttpd", "/app", None, {"streams": True}),
    "lighttpd-root": ("lighttpd_root", "", None, {"streams": True}),
    # The shared-hosting variant: the script and a .htaccess dropped into the directory
    # of the mount point (apache_htaccess, below).
    "htaccess": ("apache_htaccess", "/app", None, {"streams": True, "directory": True}),
    "htaccess-root": ("apache_htaccess", "", None, {"streams": True}),
}

TestEveryFront = every_front(FRONTS)


@pytest.mark.parametrize("server", ["apache", "lighttpd"])
def test_cgi_flags_and_gateway_name(server, request):
    front = request.getfixturevalue(server)
    data = get_json(Front(front.url(), "/app"), "/echo")
    assert data["gateway"] == "CGI"
    assert (data["multithread"], data["multiprocess"], data["run_once"]) == (False, True, True)


@pytest.mark.parametrize("server", ["apache", "lighttpd"])
def test_traceback_reaches_the_error_log(server, request):
    running = request.getfixturevalue(server)
    assert requests.get(running.url("/app/error"), timeout=30).status_code == 500
    # lighttpd sends CGI stderr to server.breakagelog, else to its own stderr.
    log = running.error_log_text() + running.output_text()
    assert "SECRET-MARKER" in log
    assert "Traceback" in log


# -- a client that leaves half-way ---------------------------------------------------


def _closing_server(server, directory, app_dir, python):
    """``server`` running tests/apps/closing.py at /app, markers in ``directory``/markers."""
    script = directory / "closing.cgi"
    write_script(str(script), "closing:application", python, str(app_dir))
    markers = webservers.worker_dir(directory / "markers")  # the CGI process (www-data) writes
    body = render(server, "cgi", prefix="/app", script=str(script), app="closing:application",
                  app_dir=str(app_dir), python=python)
    if server == "apache":
        body += '\nSetEnv CLOSING_MARKERS "%s"\n' % markers
        return webservers.start_apache(body, modules=("cgid",), name="apache-closing"), markers
    body = webservers.merge_lighttpd(
        body, 'server.modules += ( "mod_setenv" )',
        'setenv.add-environment = ( "CLOSING_MARKERS" => "%s" )' % markers)
    return webservers.start_lighttpd(body, name="lighttpd-closing"), markers


def _read_a_little_and_leave(server, path):
    """GET ``path``, read the headers and two chunks of the body, then close the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                     % path.encode())
        data = b""
        while b"chunk 2\n" not in data:
            more = sock.recv(4096)
            assert more, data
            data += more
    return data


@pytest.mark.parametrize("server", ["apache", "lighttpd"])
def test_client_leaving_mid_response_closes_the_iterable_quietly(server, server_python,
                                                                 app_dir):
    """Apache mod_cgid and lighttpd mod_cgi end the CGI process when the client goes:
    the application's iterable is closed all the same (PEP 3333), and nothing about
    it (no traceback, no BrokenPipeError) lands in the error log."""
    directory = webservers.public_dir("gw-closing-")
    try:
        running, markers = _closing_server(server, directory, app_dir, server_python)
        try:
            data = _read_a_little_and_leave(running, "/app/slow?left")
            assert data.startswith(b"HTTP/1.1 200 OK"), data
            marker = markers / "left"
            text = wait_until(lambda: marker.exists() and marker.read_text(), 20.0,
                              what="close() never wrote %s" % marker)
            assert text.startswith("closed after "), text
            assert int(text.split()[2]) < 600, text  # cut short, not run to the end
            pid = int(text.rsplit("pid=", 1)[1])
            wait_until(lambda: not alive(pid), 10.0, what="the CGI process %d lives on" % pid)
            log = running.error_log_text() + running.output_text()
        finally:
            running.close()  # stop, and remove the server's own directory
    finally:
        webservers.shutil.rmtree(directory, ignore_errors=True)
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert noise not in log, log


# -- the shared-hosting variant: a .htaccess next to the script ----------------------


@pytest.fixture(scope="module")
def apache_htaccess(server_python, app_dir):
    """Apache with AllowOverride in its document root, the script and .htaccess dropped in."""
    root = webservers.public_dir("gw-htaccess-")
    docroot = root / "htdocs"
    for directory, prefix in ((docroot / "app", "/app"), (docroot, "/")):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        write_script(str(directory / "app.cgi"), "probe:application", server_python,
                     str(app_dir))
        webservers.write_file(directory / ".htaccess", render(
            "apache", "cgi-htaccess", app="probe:application", prefix=prefix,
            script=str(directory / "app.cgi"), python=server_python, app_dir=str(app_dir)))
    body = '<Directory "{docroot}">\n    AllowOverride FileInfo Options\n</Directory>'
    server = webservers.start_apache(body, modules=("cgid", "rewrite"), root=root)
    yield server
    server.stop()
    webservers.shutil.rmtree(root, ignore_errors=True)
