"""dvc.yaml lists exactly the code each stage runs: its import closure, no more, no less.

scripts/dvc_deps.py is the one home of the rule (``--check`` reports, ``--write`` rewrites the
``src/densemotion/...py`` deps and nothing else). The closure starts at the stage command's module
(``python -m densemotion.cli.X``) and follows every ``import`` it can reach (inside functions
too; not under ``if TYPE_CHECKING:``), with each package's ``__init__``. The tracker registry
imports the package of the tracker in use only, so the trajectories stage's closure is taken for
each tracker, with ``${trajectories.tracker}`` in its deps standing for it.

The model, models/motion.pt, is declared in dvc.yaml's ``artifacts:`` for DVC's model registry.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "dvc_deps.py"
_spec = importlib.util.spec_from_file_location("dvc_deps", SCRIPT)
dvc_deps = importlib.util.module_from_spec(_spec)
sys.modules["dvc_deps"] = dvc_deps  # dataclasses look their module up while the script loads
_spec.loader.exec_module(dvc_deps)

SRC = REPO / "src"
PACKAGE = dvc_deps.PACKAGE
TRACKERS = dvc_deps.trackers(REPO)
DVC_YAML = (REPO / "dvc.yaml").read_text()
MATCH = "dvc.yaml code deps match the imports\n"


def closure(start: str, tracker: str | None) -> set[Path]:
    return dvc_deps.closure(start, tracker, REPO)


def stages() -> dict[str, dict]:
    return dvc_deps.stages((REPO / "dvc.yaml").read_text())


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


def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_deps_are_its_import_closure(stage, tracker):
    """Nothing imported is missing; nothing listed is unused. A stage that depends on the tracker
    package in use (``${trajectories.tracker}``) lists the code shared by any tracker (e.g. torch
    device choice, which dis does not need): one dvc.yaml serves every tracker. (The rule as the
    deps are read, tracker by tracker: a second view of what the script writes.)"""
    spec = stages()[stage]
    uses_tracker = "${trajectories.tracker}" in " ".join(spec.get("deps", []))
    if not uses_tracker and tracker != TRACKERS[0]:
        pytest.skip("the stage does not depend on the tracker choice")
    modules = dvc_deps.stage_modules(spec["cmd"])
    assert modules, f"stage command does not run a module: {spec['cmd']}"
    for module in modules:
        assert module.startswith(f"{PACKAGE}.cli."), f"{stage}: run a stage CLI with python -m, not {module}"
    reach = lambda t: set().union(*(closure(module, t) for module in modules))
    want = reach(tracker if uses_tracker else None)
    have = listed_files(spec.get("deps", []), tracker)
    used = want
    if uses_tracker:
        folders = [SRC / PACKAGE / "tracking" / t for t in TRACKERS]
        shared = set().union(*(reach(t) for t in TRACKERS))
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
        "densemotion/errors.py",  # the base of TrackerError
        "densemotion/tracking/__init__.py",
        "densemotion/tracking/base.py",
    }


def test_check_passes_on_the_repository():
    """`python scripts/dvc_deps.py --check` as a developer runs it: dvc.yaml is up to date."""
    done = run_script("--check")
    assert (done.returncode, done.stdout) == (0, MATCH), done.stdout + done.stderr


def test_write_leaves_the_repository_dvc_yaml_byte_identical():
    assert dvc_deps.write(DVC_YAML, REPO) == DVC_YAML


def test_check_names_a_removed_and_a_bogus_dep_and_write_restores_the_text(tmp_path):
    """A copy of dvc.yaml with one code dep taken out (train's own CLI) and a bogus one added
    (to evaluate): --check names both, in one line per stage, and exits 1; --write brings back
    the text --write makes of the repository's dvc.yaml (the same text, as the test above says)."""
    original = dvc_deps.write(DVC_YAML, REPO)  # what the code says today, should src/ be mid-change
    removed, bogus = "src/densemotion/cli/train.py", "src/densemotion/bogus.py"
    lines = original.splitlines(keepends=True)
    train = lines.index("  train:\n")
    gone = lines.index(f"      - {removed}\n", train)
    evaluate = lines.index("  evaluate:\n")
    kept = next(i for i in range(evaluate, len(lines)) if lines[i].startswith("      - src/densemotion/"))
    broken = lines[:gone] + lines[gone + 1 : kept] + [f"      - {bogus}\n"] + lines[kept:]
    copy = tmp_path / "dvc.yaml"
    copy.write_text("".join(broken))

    done = run_script("--check", "--file", copy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"train: missing {removed}", f"evaluate: extra {bogus}"]

    done = run_script("--write", "--file", copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert copy.read_text() == original
    assert run_script("--check", "--file", copy).stdout == MATCH


FAKE_SRC = {
    "__init__.py": "",
    "a.py": "from densemotion import b\n",
    "b.py": "import os\n",
    "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from densemotion import d\n",
    "d.py": "",
    "torchy.py": "",
    "cli/__init__.py": "",
    "cli/one.py": "from densemotion import a\n\n\ndef main():\n    from .. import c\n",
    "cli/two.py": "from densemotion.tracking import registry\n",
    "tracking/__init__.py": "",
    "tracking/registry.py": "import importlib\n",
    "tracking/t1/__init__.py": "from densemotion import torchy\n",
    "tracking/t2/__init__.py": "from . import flow\n",
    "tracking/t2/flow.py": "",
}

FAKE_YAML = """\
# a header
stages:
  one:
    foreach: [x, y]
    do:
      cmd: python -m densemotion.cli.one --name ${item}
      deps:
        - ${item}
        - src/densemotion/b.py  # a comment kept with its entry
        - src/densemotion/__init__.py
        - src/densemotion/gone.py

        # a comment in the list
      params:
        - p.q
  two:
    cmd: >-
      python -m densemotion.cli.two
      --flag
    deps:
      - data/in
      - src/densemotion/tracking/${trajectories.tracker}
    outs:
      - out:
          cache: false
metrics:
  - out  # the end"""

FAKE_WRITTEN = """\
# a header
stages:
  one:
    foreach: [x, y]
    do:
      cmd: python -m densemotion.cli.one --name ${item}
      deps:
        - ${item}
        - src/densemotion/__init__.py
        - src/densemotion/a.py
        - src/densemotion/b.py  # a comment kept with its entry
        - src/densemotion/c.py
        - src/densemotion/cli/__init__.py
        - src/densemotion/cli/one.py

        # a comment in the list
      params:
        - p.q
  two:
    cmd: >-
      python -m densemotion.cli.two
      --flag
    deps:
      - data/in
      - src/densemotion/tracking/${trajectories.tracker}
      - src/densemotion/__init__.py
      - src/densemotion/cli/__init__.py
      - src/densemotion/cli/two.py
      - src/densemotion/torchy.py
      - src/densemotion/tracking/__init__.py
      - src/densemotion/tracking/registry.py
    outs:
      - out:
          cache: false
metrics:
  - out  # the end"""


@pytest.fixture
def fake_root(tmp_path):
    for name, text in FAKE_SRC.items():
        path = tmp_path / "src" / "densemotion" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_write_replaces_only_the_code_deps(fake_root):
    """On a small tree of its own: imports in functions and relative ones followed, TYPE_CHECKING
    skipped; a kept entry keeps its comment, a stage with none gets them after its last dep, the
    tracker folder stands for each tracker's package (t1's torchy.py, which t2 does not need, is
    listed); blank lines, comments and a file without a final newline are left as they are."""
    assert dvc_deps.check(FAKE_YAML, fake_root) == [
        "one: missing src/densemotion/a.py, src/densemotion/c.py, src/densemotion/cli/__init__.py,"
        " src/densemotion/cli/one.py; extra src/densemotion/gone.py",
        "two: missing src/densemotion/__init__.py, src/densemotion/cli/__init__.py, src/densemotion/cli/two.py,"
        " src/densemotion/torchy.py, src/densemotion/tracking/__init__.py, src/densemotion/tracking/registry.py",
    ]
    written = dvc_deps.write(FAKE_YAML, fake_root)
    assert written == FAKE_WRITTEN
    assert dvc_deps.check(written, fake_root) == []
    assert dvc_deps.write(written, fake_root) == written

    a, one = "        - src/densemotion/a.py\n", "        - src/densemotion/cli/one.py\n"
    shuffled = written.replace(a, "").replace(one, one + a)
    assert dvc_deps.check(shuffled, fake_root) == ["one: code deps out of order (--write sorts them)"]
    assert dvc_deps.write(shuffled, fake_root) == written


def test_check_reports_what_write_cannot_fix(fake_root):
    """Code in a folder dep that nothing imports, a folder dep naming nothing, a stage that runs
    no CLI module: reported (and left alone by --write)."""
    (fake_root / "src" / "densemotion" / "tracking" / "t2" / "unused.py").write_text("")
    text = FAKE_WRITTEN.replace("      - data/in\n", "      - data/in\n      - src/densemotion/nothing\n")
    text = text.replace("python -m densemotion.cli.one", "python scripts/one.py")
    folder = "src/densemotion/tracking/${trajectories.tracker}"
    assert dvc_deps.check(text, fake_root) == [
        "one: its cmd runs no module with python -m (a stage runs python -m densemotion.cli.X)",
        "two: src/densemotion/nothing names no file or folder;"
        f" folder dep {folder} (tracker t2) holds code it does not import: src/densemotion/tracking/t2/unused.py",
    ]
    assert dvc_deps.write(text, fake_root) == text
    with pytest.raises(ValueError, match="block list"):
        dvc_deps.write("stages:\n  s:\n    cmd: python -m densemotion.cli.one\n    deps: [a]\n", fake_root)


def test_dvc_reads_the_model_artifact(tmp_path):
    """DVC's own parser loads dvc.yaml's artifacts: the model, of type model, at the train stage's
    output, its meta naming the train stage's params. (In a git repository of its own: a fork's
    copy of the project, tests/test_fork.py, may not be one.)"""
    import shutil
    import subprocess

    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    with Repo(str(tmp_path)) as repo:
        artifacts = repo.artifacts.read()
        path = repo.artifacts.get_path("motion-model")
    model = artifacts["dvc.yaml"]["motion-model"]
    assert (model.path, model.type, path) == ("models/motion.pt", "model", "models/motion.pt")
    assert model.desc and "\n" not in model.desc
    assert {"motion", "segmentation", "dense-motion"} <= set(model.labels)
    train = stages()["train"]
    assert model.path in train["outs"]
    assert model.meta == {"stage": "train", "params": train["params"]}
