"""The help texts and the wording of `gateways`, as an operator sees them.

Each test runs the real command in a subprocess and reads what it prints:
`gateways conf --help` and `--list` name the valid SERVER GATEWAY pairs,
every sub-command explains itself, `gateways serve --help` offers only the
addresses serve can listen on, and the commands a snippet's comments show
carry the operator's own values.
"""

import re
import shlex
import subprocess

import pytest

from gateways.tools.confgen import SNIPPETS

from daemons import gateways_argv

PAIRS = ["%s %s" % pair for pair in sorted(SNIPPETS)]


def gateways(*args):
    return subprocess.run(gateways_argv(*args), capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_conf_help_lists_the_valid_pairs():
    proc = gateways("conf", "--help")
    assert (proc.returncode, proc.stderr) == (0, "")
    pairs_part = proc.stdout.split("\nSERVER GATEWAY pairs", 1)[1]  # the epilog
    listed = re.findall(r"^  (\S+ \S+) ", pairs_part, re.M)
    assert listed == PAIRS
    assert "nginx cgi" not in proc.stdout  # no such snippet


def test_conf_list_prints_the_pairs_one_per_line():
    proc = gateways("conf", "--list")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == PAIRS
    assert "apache fcgid" in PAIRS and "lighttpd fastcgi-spawn" in PAIRS


def test_conf_list_of_one_server():
    proc = gateways("conf", "--list", "nginx")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == ["nginx balancer", "nginx balancer-uwsgi",
                                        "nginx fastcgi", "nginx proxy", "nginx scgi",
                                        "nginx uwsgi"]


@pytest.mark.parametrize("args", [[], ["nginx"]], ids=["nothing", "server-only"])
def test_conf_without_server_and_gateway_is_one_line(args):
    proc = gateways("conf", *args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("gateways: error: conf needs SERVER and GATEWAY (gateways conf "
                           "--list prints the valid pairs)\n")


def test_conf_apache_authorizer_on_a_unix_socket_is_one_line():
    proc = gateways("conf", "apache", "authorizer", "--bind", "unix:/run/acl/authz.sock")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == ("gateways: error: --bind unix:/run/acl/authz.sock: Apache "
                           "mod_authnz_fcgi reaches its backend over TCP only: give HOST:PORT\n")


@pytest.mark.parametrize("server", ["apache", "lighttpd"])
def test_conf_authorizer_runs_its_daemon_with_the_role(server):
    proc = gateways("conf", server, "authorizer")
    assert (proc.returncode, proc.stderr) == (0, "")
    run = next(line for line in proc.stdout.splitlines() if line.startswith("# Run:"))
    assert " --roles authorizer " in run
    assert ("--bind 127.0.0.1:9100" if server == "apache" else
            "--bind unix:/run/myapp/authorizer.sock") in run


@pytest.mark.parametrize(("command", "words"), [
    ("check", "Diagnose a cgi-bin script the way the web server runs it"),
    ("cgi-script", "Write FILE, a cgi-bin script that serves APP"),
])
def test_subcommand_help_has_a_description(command, words):
    proc = gateways(command, "--help")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert words in " ".join(proc.stdout.split())


def test_serve_help_offers_only_tcp_addresses():
    serve = gateways("serve", "--help")
    assert serve.returncode == 0
    assert "HOST:PORT or [IPv6]:PORT" in " ".join(serve.stdout.split())
    assert "unix:" not in serve.stdout and "fd:" not in serve.stdout
    fastcgi = gateways("fastcgi", "--help")  # the daemons listen on all of them
    assert "unix:PATH" in fastcgi.stdout and "fd:N" in fastcgi.stdout


# The operator's values: none of them is a sample value of conf/.
OWN = {"--app": 'shop:create_app("prod")', "--app-dir": "/opt/shop",
       "--python": "/opt/shop/env/bin/python3", "--prefix": "/shop", "--processes": "3",
       "--threads": "5", "--socket-group": "webgrp", "--user": "webusr",
       "--script": "/var/www/cgi/shop.cgi", "--backends": "10.0.0.1:7001,10.0.0.2:7002"}
SAMPLES = ["myapp", "/srv/", "www-data", "/usr/lib/cgi-bin", "/app", "9001", "9002",
           "venv"]


@pytest.mark.parametrize("pair", PAIRS)
def test_snippet_comments_use_the_operators_values(pair):
    server, gateway = pair.split()
    own = dict(OWN)
    if gateway == "fastcgi-spawn":  # lighttpd's bin-path cannot quote: a plain APP
        own["--app"] = "shop:wsgi"
    options = [item for option in own.items() for item in option]
    if gateway == "proxy" or pair == "apache authorizer":  # TCP only
        options += ["--bind", "127.0.0.1:7000"]
    elif gateway not in ("cgi", "cgi-htaccess", "fcgid"):
        options += ["--bind", "unix:/var/run/shop/gw.sock"]
    proc = gateways("conf", server, gateway, *options)
    assert (proc.returncode, proc.stderr) == (0, "")
    for sample in SAMPLES:
        assert sample not in proc.stdout, (sample, proc.stdout)
    for line in proc.stdout.splitlines():
        # Every command shown is the operator's: their gateways, their APP quoted.
        for command in re.findall(
                r'([^\s="]*)gateways (?:serve|fastcgi|scgi|uwsgi|cgi-script|check) ', line):
            assert command == "/opt/shop/env/bin/", line
        if re.search(r"gateways (?:serve|fastcgi|scgi|uwsgi|cgi-script) ", line):
            assert shlex.quote(own["--app"]) in line, line
    if pair in ("apache cgi", "apache fcgid"):
        assert "check /var/www/cgi/shop.cgi --user webusr" in proc.stdout
