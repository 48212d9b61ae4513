"""Imports only go down: the package's import graph, read from the source.

Every `import` and `from ... import` of a `keras_stn` module counts, those
inside functions included (a lazy import is still a dependency; only the
frameworks themselves, TensorFlow, PyTorch and JAX, are imported lazily).
The rules, after keras-hub's import test:
- no cycle among `keras_stn` modules;
- `keras_stn.utils.argument_validation` imports nothing of the package, and
  `keras_stn.config` at most that module (the ground floor);
- nothing outside `keras_stn.experiments` imports it (the library does not
  lean on its application);
- `keras_stn.ops` imports nothing of the floors above it (layers, models,
  callbacks, viz, optimizers, initializers).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "keras_stn"


def _modules():
    """`{module name: path}` for every module of the package."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for file in files:
            if not file.endswith(".py"):
                continue
            path = os.path.join(folder, file)
            parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(path, module, modules):
    """The package modules that `module` (at `path`) imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    is_package = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            names = [
                f"{base}.{alias.name}"
                if f"{base}.{alias.name}" in modules
                else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            # `import a.b.c` of a name inside a module counts as its module.
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {
        module: _imports(path, module, modules)
        for module, path in modules.items()
    }


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_rules_see_the_package(graph):
    # A parse that found nothing would make every rule below pass.
    assert "keras_stn.ops.sampling" in graph
    assert "keras_stn.ops.backend" in graph["keras_stn.ops.sampling"]
    assert len(graph) > 40


def test_no_import_cycle(graph):
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_validation_and_config_are_the_ground_floor(graph):
    assert graph["keras_stn.utils.argument_validation"] == set()
    assert graph["keras_stn.config"] <= {
        "keras_stn.utils.argument_validation"
    }


def test_only_the_application_imports_the_application(graph):
    offenders = {
        module: sorted(
            target
            for target in targets
            if target.startswith("keras_stn.experiments")
        )
        for module, targets in graph.items()
        if not module.startswith("keras_stn.experiments")
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


@pytest.mark.parametrize(
    "upper",
    [
        "keras_stn.layers",
        "keras_stn.models",
        "keras_stn.callbacks",
        "keras_stn.viz",
        "keras_stn.optimizers",
        "keras_stn.initializers",
    ],
)
def test_ops_never_import_the_floors_above(graph, upper):
    offenders = {
        module: sorted(
            target
            for target in targets
            if target == upper or target.startswith(upper + ".")
        )
        for module, targets in graph.items()
        if module.startswith("keras_stn.ops")
    }
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_a_cycle_is_found():
    # The checker itself: a graph with a cycle is reported.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
