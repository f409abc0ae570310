"""The package's layers import only downwards (docs/design.md, "Architecture"), and no module
needs a ``TYPE_CHECKING`` import of a module that imports it (an import cycle in disguise)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cl_runner"

#: lowest first; a module may import its own layer and the layers below
LAYERS: list[set[str]] = [
    {"errors", "registry", "checks", "console", "options", "schema_help"},
    {"results", "data", "models"},
    {"training"},
    {"strategies"},
    {"config", "hardware_config", "dispatch", "resume", "runner_hooks", "loggers", "experiment", "sweep", "job",
     "objective", "summarize", "analysis", "analyze", "plotting", "slurm", "submitit_launchers"},
    {"cli", "api", "__main__", "__init__"},
]


def layer_of(module: str) -> int:
    """Layer index of ``cl_runner.<top>...`` by its first component."""
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: no layer declared for cl_runner.{top} in tests/test_layers.py")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """``(runtime, type_checking_only)`` cl_runner modules imported by the file (function-level
    imports count as runtime: they run when called)."""
    tree = ast.parse(path.read_text())
    runtime, typing_only = set(), set()
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                guarded.add(id(inner))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "cl_runner" or name.startswith("cl_runner."):
                (typing_only if id(node) in guarded else runtime).add(name)
    return runtime, typing_only


def resolve(name: str, known: set[str]) -> str | None:
    """The module a dotted import name refers to (``from a.b import c``: ``a.b.c`` when it is a
    module, else ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, tuple[set[str], set[str]]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    out = {}
    for mod, path in files.items():
        runtime, typing_only = imports(path)
        out[mod] = ({m for n in runtime if (m := resolve(n, known)) and m != mod},
                    {m for n in typing_only if (m := resolve(n, known)) and m != mod})
    return out


def test_layers_import_only_downwards():
    wrong = []
    for mod, (runtime, _) in graph().items():
        if mod in ("cl_runner", "cl_runner.__main__"):
            continue
        for dep in runtime:
            if dep != "cl_runner" and layer_of(dep) > layer_of(mod):
                wrong.append(f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_type_checking_import_of_a_module_that_imports_it():
    deps = graph()

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            mod = todo.pop()
            if mod == target:
                return True
            if mod not in seen:
                seen.add(mod)
                todo.extend(deps.get(mod, (set(), set()))[0])
        return False

    cycles = [f"{mod} -> {dep}" for mod, (_, typing_only) in deps.items() for dep in typing_only
              if reaches(dep, mod)]
    assert not cycles, cycles


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checker itself: an upward import in a lower layer is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from cl_runner.strategies.base import Strategy\nif TYPE_CHECKING:\n"
                   "    from cl_runner.experiment import run_experiment\n")
    runtime, typing_only = imports(bad)
    assert "cl_runner.strategies.base" in runtime
    assert "cl_runner.experiment" in typing_only and "cl_runner.experiment" not in runtime
