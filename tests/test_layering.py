"""Imports run one way: which densemotion modules may import which.

Since each DVC stage depends on its command's import closure (scripts/dvc_deps.py), an upward
import is not only a tangle: it makes a stage re-run for code it has no business with (params.py
importing the tracking package once re-ran the bit-exact sample and every video's frames when the
tracker protocol changed). The rules, each with the reason it exists:

- leaves import nothing of densemotion but the base error: the shared vocabulary (the base
  error itself, tracker names, the motion-head contract, atomic writes, metrics, resizing,
  state-dict checks, the device and rank helpers);
- ``params`` imports only the tracker names and the base error (never the tracking package);
- a library module never imports a CLI module, and a CLI module no other CLI module but
  ``cli.common``;
- acquisition needs no pictures, tracking, trajectories or training; tracking and frames need
  nothing of trajectories, training, evaluation or pictures; trajectories nothing of training,
  evaluation or the model.

Imports are read from the source (inside functions too; not under ``if TYPE_CHECKING:``) by the
same walker the deps script uses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
_spec = importlib.util.spec_from_file_location("dvc_deps", REPO / "scripts" / "dvc_deps.py")
dvc_deps = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("dvc_deps", dvc_deps)
_spec.loader.exec_module(dvc_deps)

LEAVES = ["errors", "tracker_names", "heads", "atomic", "metrics", "imaging", "statedict", "runtime"]
# importer prefix -> module prefixes it must not import (each "densemotion." + prefix)
FORBIDDEN = {
    "params": ["tracking", "frames", "trajectories", "model", "training", "evaluation", "viz", "dataset"],
    "acquire": ["viz", "tracking", "trajectories", "training", "evaluation", "model", "dataset", "cli"],
    "tracking": ["trajectories", "training", "evaluation", "model", "dataset", "viz", "heads", "checkpoint", "cli"],
    "frames": ["tracking", "trajectories", "training", "evaluation", "model", "dataset", "viz", "cli"],
    "trajectories": ["training", "evaluation", "model", "dataset", "heads", "checkpoint", "cli"],
    "heads": [""],  # a leaf: nothing of densemotion
}


def modules(root: Path = SRC) -> dict[str, Path]:
    """Every densemotion module under ``root``: its dotted name -> file."""
    found = {}
    for path in sorted((root / "densemotion").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the densemotion modules it imports (those that exist)."""
    mods = modules(root)
    return {
        name: {m for m in dvc_deps.imported_modules(path, name) if m in mods and m != name}
        for name, path in mods.items()
    }


def _within(name: str, prefix: str) -> bool:
    full = f"densemotion.{prefix}" if prefix else "densemotion"
    return name == full or name.startswith(full + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """One line per import that breaks a rule of the module docstring."""
    found = []
    for importer, imported in sorted(graph.items()):
        for module in sorted(imported):
            if importer.removeprefix("densemotion.") in LEAVES and module not in ("densemotion", "densemotion.errors"):
                found.append(f"{importer} imports {module}: it is a leaf")
            cli = _within(module, "cli") and module not in ("densemotion.cli", "densemotion.cli.common")
            if cli and not _within(importer, "cli") and importer != "densemotion.__main__":
                found.append(f"{importer} imports {module}: a library module imports no CLI")
            elif cli and _within(importer, "cli"):
                found.append(
                    f"{importer} imports {module}: a CLI imports no other CLI (share it through a library module)"
                )
            for prefix, banned in FORBIDDEN.items():
                if _within(importer, prefix):
                    hit = [b for b in banned if _within(module, b) and (b or module != "densemotion")]
                    if hit and not (
                        prefix == "params" and module in ("densemotion.tracker_names", "densemotion.errors")
                    ):
                        found.append(f"{importer} imports {module}: {prefix} must not import {hit[0] or 'densemotion'}")
    return found


def test_imports_run_one_way():
    assert violations(imports()) == []


def test_params_imports_only_the_tracker_names_and_the_base_error():
    assert imports()["densemotion.params"] <= {"densemotion.tracker_names", "densemotion.errors"}


@pytest.mark.parametrize(
    ("importer", "module", "says"),
    [
        ("densemotion.params", "densemotion.tracking.registry", "params must not import tracking"),
        ("densemotion.acquire.clips", "densemotion.viz", "acquire must not import viz"),
        ("densemotion.cli.use_videos", "densemotion.cli.tidy", "a CLI imports no other CLI"),
        ("densemotion.heads", "densemotion.params", "it is a leaf"),
        ("densemotion.viz", "densemotion.cli.visualize", "a library module imports no CLI"),
    ],
)
def test_an_upward_import_fails(importer, module, says):
    """Each rule can fail: one added import of the kind that once existed (or could) is named."""
    graph = imports()
    graph[importer] = {*graph[importer], module}
    assert any(says in line and importer in line for line in violations(graph)), violations(graph)
