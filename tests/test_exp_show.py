"""`dvc exp show` as a person reads it after the pipeline: the real DVC on the tiny pipeline that
test_e2e_dvc reproduces, no --drop, no --keep.

DVC puts in one row, in this order: Experiment, Created, every number of every metrics file
(dvc.yaml's top-level ``metrics:``, in its order), every key of params.yaml (all of it, whatever
the stages list) and the hash of every file a stage depends on (the code deps are one per module,
tests/test_dvc_deps.py). The metrics are ours to keep few: a few pooled numbers each, none per
video, the held-out headline first, so that in a 200-column terminal (DVC pages the table through
``less -S``, which shows the first 200 columns) the headline is on screen.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
import yaml

import test_e2e_dvc as e2e
from test_e2e_dvc import run

built_repo = e2e.built_repo  # the e2e fixtures, shared: the pipeline reproduced once
repo = e2e.repo

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

FIXED = ["Experiment", "rev", "typ", "Created", "parent"]  # --csv's own columns (the table merges rev..parent)
MAX_METRICS_AND_FIXED = 30
HEADLINE = [f"headline.{k}" for k in ("model_epe_px", "zero_epe_px", "mean_epe_px", "model_to_zero")]
HEADLINE += ["headline.model_to_mean", "headline.beats_zero_motion"]
TRACKER = ["vs_truth.tracker_epe_px", "tracker.epe_mean", "tracker.epe_median"]  # the tracker on the sample
TERMINAL = 200
KEY_PARAMS = ["model.name", "model.pretrained", "train.epochs", "train.lr", "train.batch_size"]


def _count(d: dict) -> int:
    return sum(_count(v) if isinstance(v, dict) else 1 for v in d.values())


def _params_columns(root) -> list[str]:
    """Every key of params.yaml, flattened as DVC does (a list is one column)."""

    def flat(d: dict, prefix: str = "") -> list[str]:
        out: list[str] = []
        for k, v in d.items():
            out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
        return out

    return flat(yaml.safe_load((root / "params.yaml").read_text()))


def test_exp_show_has_few_metric_columns_headline_first(repo):
    header = next(csv.reader(io.StringIO(run(repo, "dvc", "exp", "show", "--csv").stdout)))
    workspace = json.loads(run(repo, "dvc", "exp", "show", "--json").stdout)[0]["data"]
    params, deps = _params_columns(repo), sorted(workspace["deps"])
    metrics = [c for c in header if c not in {*FIXED, *params, *deps}]
    # every column accounted for: ours (the metrics), params.yaml's keys, the stages' file deps
    assert header == [*FIXED, *metrics, *params, *deps], header
    assert [p.split(".")[0] for p in params[:2]] == ["model", "model"] and "train.lr" in params[:30], params
    assert len(FIXED) + len(metrics) <= MAX_METRICS_AND_FIXED, metrics
    assert metrics[: len(HEADLINE)] == HEADLINE  # dvc.yaml's top-level metrics: summary.json first
    assert set(TRACKER) <= set(metrics), metrics
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["metrics"]
    assert {f: _count(r["data"]) for f, r in workspace["metrics"].items()} == {
        "metrics/evaluate/summary.json": 10,  # headline (6), vs_truth (4)
        "metrics/tracker.json": 5,
        "metrics/train/metrics.json": 6,
    } and list(workspace["metrics"]) == declared
    videos = yaml.safe_load((repo / "params.yaml").read_text())["data"]["videos"]
    assert not [c for c in metrics if any(v in c for v in videos)]  # nothing per video among the metrics
    # what is left is DVC's: params.yaml whole (79 keys here) and one column per file dependency
    print(f"dvc exp show --csv: {len(header)} columns = {len(FIXED)} + {len(metrics)} metrics + "
          f"{len(params)} params + {len(deps)} deps")  # fmt: skip


def test_exp_show_in_a_200_column_terminal_shows_the_headline(repo):
    """Plain `dvc exp show`, as in a terminal of 200 columns: DVC renders the table up to 1024
    columns wide for its pager, ``less -S``, which shows the first 200 of every line."""
    run(repo, "dvc", "exp", "run", "-n", "fewer-hist-bins", "-S", "evaluate.hist_bins=20")  # evaluate only
    env = {**e2e._env(repo), "COLUMNS": str(TERMINAL), "LINES": "50"}
    shown = subprocess.run(["dvc", "exp", "show"], cwd=repo, env=env, capture_output=True, text=True, check=True)
    screen = [line[:TERMINAL] for line in shown.stdout.splitlines()]
    (head,) = [line for line in screen if "Experiment" in line]
    (wide,) = [line for line in shown.stdout.splitlines() if "Experiment" in line]  # scrolled right
    # params.yaml leads with what experiments change (model, train), so these come next, not folded
    assert all(f" {key} " in wide for key in KEY_PARAMS), wide
    assert [h for h in HEADLINE if h in head] == HEADLINE, head  # every headline column, unclipped
    names = head.split()
    assert names[:2] == ["Experiment", "Created"] and names[2 : 2 + len(HEADLINE)] == HEADLINE, head
    summary = json.loads((repo / "metrics" / "evaluate" / "summary.json").read_text())["headline"]
    row = next(line for line in screen if "[fewer-hist-bins]" in line)
    for name in HEADLINE:  # metrics are right-aligned under their names
        start = head.index(name)
        cell = row[start : start + len(name)].strip()
        value = summary[name.removeprefix("headline.")]
        if isinstance(value, bool):
            assert cell == str(value), name
        else:
            assert float(cell) == pytest.approx(value, rel=1e-3), name
    # `dvc metrics show`: one row per metrics file, a column per number of all of them
    widest = max(map(len, run(repo, "dvc", "metrics", "show").stdout.splitlines()))
    assert widest <= 600, widest
