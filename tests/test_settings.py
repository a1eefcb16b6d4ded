"""The settings table: converters, defaults, the environment, the command line."""

import subprocess
import sys

import pytest

from gateways.settings import (
    SETTINGS,
    Config,
    ConfigError,
    count,
    file_mode,
    for_command,
    resolve,
    rst_options,
    seconds,
    size,
)


@pytest.mark.parametrize(("text", "value"), [("65536", 65536), ("64K", 65536), ("10m", 10485760),
                                             ("1G", 1073741824), ("2KiB", 2048), (512, 512)])
def test_size(text, value):
    assert size(text) == value


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "1.5M"])
def test_bad_size(text):
    with pytest.raises(ConfigError, match="not a size"):
        size(text)


def test_seconds():
    assert seconds("2.5") == 2.5
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigError):
            seconds(bad)


@pytest.mark.parametrize(("convert", "value"), [
    (seconds, 0), (seconds, -3), (seconds, 0.0), (seconds, float("nan")), (seconds, float("inf")),
    (size, -5), (size, 1.5), (count(1), 0), (count(1), 2.5), (count(0), True),
])
def test_values_from_python_are_checked_too(convert, value):
    with pytest.raises(ConfigError):
        convert(value)


def test_python_api_refuses_a_zero_timeout_before_listening(tmp_path):
    from gateways.fastcgi import serve

    sock = tmp_path / "never.sock"
    with pytest.raises(ConfigError, match="--timeout"):
        serve(lambda environ, start_response: [], bind="unix:%s" % sock, timeout=0)
    assert not sock.exists()


def test_conf_processes_0_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "gateways", "conf", "nginx", "fastcgi",
                           "--processes", "0"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "gateways: error: --processes: 0 is below the minimum of 1\n"


def test_socket_mode_never_world_writable():
    assert file_mode("0660") == 0o660
    assert file_mode("640") == 0o640
    with pytest.raises(ConfigError, match="every local user"):
        file_mode("0666")
    with pytest.raises(ConfigError, match="octal"):
        file_mode("rw-rw----")


def test_defaults_and_command_membership():
    config = resolve("fastcgi", {"app": "x"}, environ={})
    assert config.socket_mode == 0o660
    assert config.threads == 8
    assert config.processes >= 1
    assert config.bind is None
    assert config.max_body == 1024 ** 3
    assert not hasattr(config, "reload")  # a `serve` option only
    assert resolve("serve", {}, environ={}).bind == "127.0.0.1:8000"


def test_environment_fills_what_the_command_line_does_not_give():
    environ = {"GATEWAYS_THREADS": "3", "GATEWAYS_DEBUG": "yes", "GATEWAYS_PROCESSES": "2"}
    config = resolve("fastcgi", {"processes": "5"}, environ=environ)
    assert config.threads == 3
    assert config.debug is True
    assert config.processes == 5  # the command line wins


def test_bad_values_name_the_option():
    with pytest.raises(ConfigError, match=r"^--threads: "):
        resolve("fastcgi", {"threads": "0"}, environ={})
    with pytest.raises(ConfigError, match=r"^--bind: "):
        resolve("scgi", {"bind": "nowhere"}, environ={})
    with pytest.raises(ConfigError, match=r"^--max-body: "):
        resolve("scgi", {}, environ={"GATEWAYS_MAX_BODY": "lots"})


def test_bad_environment_values_name_the_variable():
    with pytest.raises(ConfigError, match=r"^--max-body: .*\(from GATEWAYS_MAX_BODY\)$"):
        resolve("scgi", {}, environ={"GATEWAYS_MAX_BODY": "lots"})
    with pytest.raises(ConfigError, match=r"^--debug: 'maybe' is not one of .*GATEWAYS_DEBUG"):
        resolve("fastcgi", {}, environ={"GATEWAYS_DEBUG": "maybe"})
    assert resolve("fastcgi", {}, environ={"GATEWAYS_DEBUG": "off"}).debug is False
    assert resolve("fastcgi", {}, environ={"GATEWAYS_DEBUG": " On"}).debug is True


def test_every_setting_has_help_and_a_known_command():
    for setting in SETTINGS:
        assert setting.flag.startswith("--")
        for command in setting.commands:
            assert command in ("serve", "cgi", "run", "fastcgi", "scgi", "uwsgi", "conf")
            assert setting.help_for(command).endswith(".")


def test_config_declares_every_setting_for_mypy():
    # Config's class annotations are what mypy knows of config.NAME: one per setting.
    assert sorted(Config.__annotations__) == sorted(s.name for s in SETTINGS)


def test_rst_options_lists_every_flag_of_the_command():
    text = rst_options("scgi")
    for setting in for_command("scgi"):
        assert "``%s" % setting.flag in text
    assert "--reload" not in text  # gateways serve's


@pytest.mark.parametrize("command", ["serve", "cgi", "run", "fastcgi", "scgi", "uwsgi", "conf"])
def test_cli_help_shows_every_option(command):
    out = subprocess.run([sys.executable, "-m", "gateways", command, "--help"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for setting in for_command(command):
        assert setting.flag in out


def test_cli_version():
    from gateways import __version__

    out = subprocess.run([sys.executable, "-m", "gateways", "--version"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip() == "gateways " + __version__


def test_cli_bad_option_value_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "gateways", "fastcgi", "x", "--threads", "none"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "gateways: error: --threads: 'none' is not a whole number"


@pytest.mark.parametrize(("given", "roles"), [
    ("responder", ("responder",)), ("authorizer", ("authorizer",)),
    ("authorizer,responder", ("responder", "authorizer")),
    (" Responder , AUTHORIZER ,", ("responder", "authorizer")),
    (["authorizer"], ("authorizer",)), (("responder", "authorizer"), ("responder", "authorizer")),
])
def test_fastcgi_roles(given, roles):
    assert resolve("fastcgi", {"roles": given}, environ={}).roles == roles


def test_fastcgi_roles_default_and_environment():
    assert resolve("fastcgi", {}, environ={}).roles == ("responder",)
    environ = {"GATEWAYS_ROLES": "authorizer"}
    assert resolve("fastcgi", {}, environ=environ).roles == ("authorizer",)
    assert resolve("fastcgi", {"roles": "responder"}, environ=environ).roles == ("responder",)
    assert not hasattr(resolve("scgi", {}, environ=environ), "roles")  # FastCGI only


@pytest.mark.parametrize(("given", "message"), [
    ("filter", r"^--roles: 'filter' is not a FastCGI role .*the Filter role is not supported"),
    ("responder,authoriser", r"^--roles: 'authoriser' is not a FastCGI role gateways serves"),
    (",", r"^--roles: no FastCGI role given"),
    ([], r"^--roles: no FastCGI role given"),
    (2, r"^--roles: 2 is not a list of FastCGI roles"),
])
def test_bad_fastcgi_roles(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve("fastcgi", {"roles": given}, environ={})


def test_bad_roles_on_the_command_line_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "gateways", "fastcgi", "probe",
                           "--roles", "responder,filter"], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "gateways: error: --roles: 'filter' is not a FastCGI role gateways serves: give "
        "responder, authorizer or both, comma-separated (the Filter role is not supported)\n")
