"""dvc.yaml lists exactly the code each stage runs: its import closure, no more, no less.

The closure starts at the stage command's module (``python -m densemotion.cli.X``) and follows
every ``import`` it can reach (inside functions too; not under ``if TYPE_CHECKING:``), with each
package's ``__init__``. The tracker registry imports the package of the tracker in use only, so
the trajectories stage's closure is taken for each tracker, with ``${trajectories.tracker}``
in its deps standing for it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
PACKAGE = "densemotion"
TRACKERS = sorted(p.name for p in (SRC / PACKAGE / "tracking").iterdir() if (p / "__init__.py").is_file())


def module_file(name: str) -> Path | None:
    """The file of module ``name`` under src/, or None when it is not ours."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(path: Path, name: str) -> set[str]:
    """Module names ``path`` (module ``name``) imports at run time, ``from X import Y`` as X and X.Y."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: level 1 is the package itself
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def closure(start: str, tracker: str | None) -> set[Path]:
    """Files of every densemotion module ``start`` reaches, package __init__ files included."""
    todo, seen, files = [start], set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        file = module_file(name)
        if file is None:
            continue
        files.add(file)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(imported_modules(file, name))
        if name == f"{PACKAGE}.tracking.registry" and tracker is not None:
            todo.append(f"{PACKAGE}.tracking.{tracker}")  # registry.get imports the tracker in use
    return files


def listed_files(deps: list[str], tracker: str) -> set[Path]:
    """The .py files under src/ that a stage's deps name (a folder stands for all of its files)."""
    files: set[Path] = set()
    for dep in deps:
        path = REPO / dep.replace("${trajectories.tracker}", tracker)
        if SRC not in path.parents:
            continue
        if path.is_dir():
            files.update(p for p in path.rglob("*.py"))
        else:
            files.add(path)
    return files


def stages() -> dict[str, dict]:
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


def stage_module(cmd: str) -> str:
    match = re.search(r"python -m ([\w.]+)", cmd)
    assert match, f"stage command does not run a module: {cmd}"
    return match.group(1)


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_deps_are_its_import_closure(stage, tracker):
    """Nothing imported is missing; nothing listed is unused. A stage that depends on the tracker
    package in use (``${trajectories.tracker}``) lists the code shared by any tracker (e.g. torch
    device choice, which dis does not need): one dvc.yaml serves every tracker."""
    spec = stages()[stage]
    uses_tracker = "${trajectories.tracker}" in " ".join(spec.get("deps", []))
    if not uses_tracker and tracker != TRACKERS[0]:
        pytest.skip("the stage does not depend on the tracker choice")
    module = stage_module(spec["cmd"])
    assert module.startswith(f"{PACKAGE}.cli."), f"{stage}: run a stage CLI with python -m, not {module}"
    want = closure(module, tracker if uses_tracker else None)
    have = listed_files(spec.get("deps", []), tracker)
    used = want
    if uses_tracker:
        folders = [SRC / PACKAGE / "tracking" / t for t in TRACKERS]
        shared = set().union(*(closure(module, t) for t in TRACKERS))
        used = want | {f for f in shared if not any(d in f.parents for d in folders)}
    rel = lambda files: sorted(str(f.relative_to(REPO)) for f in files)
    assert not want - have, f"{stage} imports but does not list in dvc.yaml: {rel(want - have)}"
    assert not have - used, f"{stage} lists in dvc.yaml but does not import: {rel(have - used)}"


def test_closure_follows_function_level_imports_and_skips_type_checking(tmp_path):
    """The walker itself: what the deps test relies on."""
    run = closure(f"{PACKAGE}.trajectories.run", "pips")
    names = {str(f.relative_to(SRC)) for f in run}
    assert "densemotion/tracking/pips/engine.py" in names  # imported inside TRACKER.make
    assert "densemotion/tracking/dis/flow.py" not in names  # another tracker
    assert "densemotion/tracking/__init__.py" in names and "densemotion/__init__.py" in names
    lone = closure(f"{PACKAGE}.tracking.base", None)
    assert {str(f.relative_to(SRC)) for f in lone} == {
        "densemotion/__init__.py",
        "densemotion/tracking/__init__.py",
        "densemotion/tracking/base.py",
    }
