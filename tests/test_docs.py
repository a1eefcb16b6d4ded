"""README.rst and conf/ say what the code does: generated parts in sync, commands valid."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from gateways.cli import build_parser
from gateways.tools.confgen import SNIPPETS, render, sample_files

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text(encoding="utf-8")


def _script(name):
    spec = importlib.util.spec_from_loader(
        name, importlib.machinery.SourceFileLoader(name, str(ROOT / "scripts" / name)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_generated_parts_are_current():
    assert _script("update-readme").render(README) == README, "run scripts/update-readme"


def test_conf_directory_is_the_generator_output():
    expected = sample_files()
    on_disk = {str(p.relative_to(ROOT / "conf")): p.read_text(encoding="utf-8")
               for p in (ROOT / "conf").rglob("*") if p.is_file() and p.name != "README.rst"}
    assert sorted(on_disk) == sorted(expected), "run scripts/update-conf"
    for name, text in expected.items():
        assert on_disk[name] == text, "conf/%s is stale: run scripts/update-conf" % name


def _readme_commands():
    """Every `gateways ...` command line in README.rst's literal blocks."""
    text = README.replace("\\\n", " ")
    in_block = False
    for raw in text.splitlines():
        if raw.strip() and not raw[0].isspace():
            in_block = raw.rstrip().endswith("::")  # a literal block follows
            continue
        line = raw.strip()
        if not in_block:
            continue
        match = re.match(r"^(?:[A-Z_]+=\S+ )*gateways (.*?)(?:\s+#.*)?$", line)
        if match and not line.startswith("gateways conf SERVER"):
            yield match.group(1)


COMMANDS = list(_readme_commands())


def test_readme_shows_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command):
    argv = shlex.split(command)
    build_parser().parse_args(argv)  # exits with status 2 on anything argparse rejects


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("conf ")])
def test_readme_conf_commands_render(command):
    args = build_parser().parse_args(shlex.split(command))
    given = {k: getattr(args, k) for k in ("app", "app_dir", "prefix", "bind", "python",
                                           "processes", "threads", "socket_group", "user",
                                           "script", "backends")}
    assert render(args.server, args.gateway, **given).startswith("# gateways: ")


def test_every_subcommand_is_in_the_readme():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in subparsers.choices:
        assert "gateways %s" % name in README, name


def test_every_snippet_is_listed():
    for server, gateway in SNIPPETS:
        assert "gateways conf %s %s" % (server, gateway) in README
