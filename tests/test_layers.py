"""The house: imports run one way, down the layers README.rst's "Design" names.

Every module of the package is read as source (its AST, so imports inside
functions count as much as those at the top) and every import of a gateways
module becomes an edge.  The test fails on an edge that goes up a layer, on
any cycle (within a layer too), and on a module that belongs to no layer.
"""

import ast
from pathlib import Path

import pytest

import gateways

PACKAGE = Path(gateways.__file__).resolve().parent

# Bottom to top; a module may import its own layer and those below.
LAYERS = [
    ("leaves", ["gateways._version", "gateways.errors", "gateways.address", "gateways.fd0"]),
    ("cores", ["gateways.protocol", "gateways.protocol.*", "gateways.environ",
               "gateways.response", "gateways.settings", "gateways.loader"]),
    ("engine", ["gateways.server", "gateways.server.*"]),
    ("gateways", ["gateways.cgi", "gateways.fastcgi", "gateways.scgi", "gateways.uwsgi",
                  "gateways.standalone",
                  "gateways.demo", "gateways.authz"]),
    ("top", ["gateways", "gateways.__main__", "gateways.launcher", "gateways.cli",
             "gateways.tools", "gateways.tools.*"]),
]


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name):
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return index
    return None


def imports_of(name):
    """The gateways modules ``name`` imports, anywhere in its source."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                candidate = "%s.%s" % (base, alias.name)
                found.add(candidate if candidate in MODULES else base)
    return {target for target in found if target == "gateways" or
            target.startswith("gateways.")} - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_layer():
    assert [name for name in MODULES if layer_of(name) is None] == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down(name):
    upward = sorted(target for target in GRAPH[name] if layer_of(target) > layer_of(name))
    assert upward == [], "%s (%s) imports a higher layer: %s" % (
        name, LAYERS[layer_of(name)][0], upward)


def test_no_import_cycle():
    state, path, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    assert cycles == []


def test_the_protocol_cores_import_only_leaves_and_each_other():
    for name in MODULES:
        if name.startswith("gateways.protocol"):
            outside = {t for t in GRAPH[name] if not t.startswith("gateways.protocol")}
            assert {layer_of(t) for t in outside} <= {0}, (name, outside)


def test_the_test_sees_imports_inside_functions():
    # gateways.cli imports most of what it runs inside functions: they count.
    assert "gateways.launcher" in GRAPH["gateways.cli"]
    assert "gateways.server.main" in GRAPH["gateways.fastcgi"]
