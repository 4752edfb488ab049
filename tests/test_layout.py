"""The package layout holds: every module's imports (top-level and inside functions) flow down the stage
order, no cycle, and the torch-free stages never import torch when their modules load."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kaggle_planet"

# What each part of the package may import (besides itself). The order, bottom up:
# core <- data <- ensemble <- recipe <- config <- train <- predict <- pipeline <- cli; study and kaggle read run
# folders and ensembles through core, data and ensemble (study shows kaggle's submission log).
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "ensemble": {"core", "data"},
    "kaggle": {"core", "data", "ensemble"},
    "study": {"core", "data", "ensemble", "kaggle"},
    "recipe": {"core", "data", "ensemble"},
    "config": {"core", "data", "ensemble", "recipe"},
    "train": {"core", "data", "ensemble", "recipe", "config"},
    "predict": {"core", "data", "ensemble", "recipe", "config"},
    "pipeline": {"core", "data", "ensemble", "recipe", "config", "train", "predict", "kaggle", "study"},
    "cli": {"core", "data", "ensemble", "recipe", "config", "train", "predict", "kaggle", "study", "pipeline", "__init__"},
    "__init__": {"core", "data", "ensemble", "recipe", "config", "train", "predict", "kaggle", "study", "pipeline"},
}
# parts whose modules may not import torch (or a torch-importing library) when they load
TORCH_FREE = {"core", "ensemble", "study", "kaggle", "config"}
TORCH_LIBS = {"torch", "torchvision", "timm", "ttach", "albumentations"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """kaggle_planet.data.folds -> data; kaggle_planet.cli -> cli; kaggle_planet -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports(path: Path, module: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import in the file (``module``: its dotted name,
    by default from where it lies), relative ones resolved; ``from pkg import name`` counts as ``pkg.name``
    (a module or a name of pkg's)."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # annotations only: nothing is imported at run time
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                found.extend((f"{target}.{alias.name}", child.lineno, top) for alias in child.names)
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not nested)

    visit(ast.parse(path.read_text()), True)
    return found


def package_edges() -> dict[str, list[tuple[str, int, bool]]]:
    """module -> the kaggle_planet modules it imports (a name of a package's __init__ counts as the package)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for module, path in modules.items():
        targets = []
        for target, line, top in imports(path):
            if not target.startswith("kaggle_planet"):
                continue
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target != module:
                targets.append((target, line, top))
        edges[module] = targets
    return edges


def layout_problems(edges: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    problems = []
    for module, targets in sorted(edges.items()):
        part = part_of(module)
        for target, line, _ in targets:
            other = part_of(target)
            if other != part and other not in ALLOWED[part]:
                problems.append(f"{module}:{line} imports {target}: {part} may import only {sorted(ALLOWED[part]) or 'nothing'}")
    return problems


def cycles(edges: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """Import cycles among modules (every import counts, those inside functions too)."""
    graph = {m: sorted({t for t, _, _ in ts if t in edges}) for m, ts in edges.items()}
    found, state, stack = [], {}, []

    def walk(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node)
    return found


def test_every_part_of_the_package_is_in_the_table():
    parts = {part_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts == set(ALLOWED), "add the new part to ALLOWED with what it may import"


def test_imports_flow_down_the_stage_order():
    problems = layout_problems(package_edges())
    assert not problems, "\n".join(problems)


def test_no_import_cycle():
    found = cycles(package_edges())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_torch_free_parts_load_no_torch():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if part_of(module) in TORCH_FREE:
            problems += [f"{module}:{line} imports {target} at module level"
                         for target, line, top in imports(path) if top and target.split(".")[0] in TORCH_LIBS]
    assert not problems, "\n".join(problems)


def test_the_rule_catches_an_upward_import_and_a_cycle(tmp_path):
    edges = package_edges()
    edges["kaggle_planet.core.metrics"] = [*edges["kaggle_planet.core.metrics"], ("kaggle_planet.train.trainer", 1, True)]
    assert any("kaggle_planet.core.metrics:1 imports kaggle_planet.train.trainer" in p for p in layout_problems(edges))
    assert any(c[0] == "kaggle_planet.core.metrics" or "kaggle_planet.core.metrics" in c for c in cycles(edges))
    # the same upward import as a source spells it: relative, inside a function
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from ..train import trainer\n")
    found = imports(source, "kaggle_planet.core.probe")
    assert found == [("kaggle_planet.train.trainer", 2, False)]
    assert layout_problems({"kaggle_planet.core.probe": found}) == [
        "kaggle_planet.core.probe:2 imports kaggle_planet.train.trainer: core may import only nothing"]


@pytest.mark.parametrize("code", [
    "import kaggle_planet.ensemble, kaggle_planet.ensemble.blend, kaggle_planet.ensemble.decision",
    "import kaggle_planet.study.compare, kaggle_planet.study.report, kaggle_planet.kaggle.submission, kaggle_planet.config.schema",
    "import kaggle_planet.cli as c; c.build_parser()",
    "import kaggle_planet as k; k.__all__",
])
def test_importing_torch_free_parts_loads_no_torch(code):
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", code


def test_public_face_resolves_every_name_lazily():
    code = ("import sys, kaggle_planet as kp; before = 'torch' in sys.modules; "
            "missing = [n for n in kp.PUBLIC if not callable(getattr(kp, n))]; print(before, missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False []"
    with pytest.raises(AttributeError, match="no attribute 'train_fold'"):
        import kaggle_planet

        kaggle_planet.train_fold  # noqa: B018 - internal names are not on the public face


def test_every_import_in_the_package_resolves_those_inside_functions_too():
    """A name moved to another module must not leave a lazy (function-level) import behind that fails only
    when that code path runs."""
    import importlib

    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for target, line, _ in imports(path):
            if not target.startswith("kaggle_planet"):
                continue
            owner, _, name = target.rpartition(".")
            try:
                module = importlib.import_module(owner)
            except ImportError:
                module = None
            if module is not None and hasattr(module, name):
                continue
            try:
                importlib.import_module(target)
            except ImportError:
                broken.append(f"{module_name(path)}:{line} imports {target}, which does not exist")
    assert not broken, "\n".join(broken)
