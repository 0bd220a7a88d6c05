"""The charts `dvc plots show` draws, as rendered by the real DVC on a repository whose outputs exist
(the tiny pipeline test_e2e_dvc builds), and the `dvc exp show` line that keeps what matters.

Every top-level plot of dvc.yaml is checked: its title, x and y fields, axis labels and series;
and no other Vega chart is drawn (a data file declared as a stage plot is drawn against its row
index, which means nothing for these files).
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

import test_e2e_dvc as e2e

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

built_repo = e2e.built_repo  # the e2e fixtures, shared: the pipeline reproduced once
repo = e2e.repo

# plot id -> (x field, y field, series: the dash legend's names, or the bar labels' methods)
EXPECTED = {
    "epe_per_epoch": ("step", "epe_px", ["train/epe_px.tsv", "val/epe_px.tsv"]),
    "loss_per_epoch": ("step", "loss_px", ["train/loss_px.tsv", "val/loss_px.tsv"]),
    "epe_histogram": ("epe_px", "dvc_inferred_y_value", ["mean", "model", "zero"]),
    "epe_per_video": ("epe_px", "bar", ["model vs tracker", "zero vs tracker", "mean vs tracker"]),
    "tracker_epe_per_video": ("epe_mean", "video", []),  # one bar per sample clip (metrics/tracker/)
    "calibration": ("nominal", "dvc_inferred_y_value", ["fit", "ideal", "model"]),  # empty but ideal for a point head
}

# the columns that matter in `dvc exp show` (docs/pipeline.md): what was tried, and how it did
EXP_SHOW_KEEP = (  # as docs/pipeline.md and the notebook show it
    r"Experiment$|model\.name$|train\.(epochs|lr)$|best_val|headline\.(model_epe|zero_epe|model_to_zero|beats)"
)
EXP_SHOW = ["dvc", "exp", "show", "--drop", ".*", "--keep", EXP_SHOW_KEEP]


def _declared(repo) -> dict[str, dict]:
    plots = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    return {name: props for entry in plots for name, props in entry.items()}


def test_every_declared_chart_renders_with_its_title_axes_and_series(repo):
    declared = _declared(repo)
    assert set(declared) == set(EXPECTED)
    shown = json.loads(e2e.run(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    vega = {name: renders[0]["content"] for name, renders in shown.items() if renders[0]["type"] == "vega"}
    assert set(vega) == set(EXPECTED)  # nothing drawn against a row index
    details = json.loads((repo / "metrics" / "evaluate" / "details.json").read_text())
    epochs = json.loads((repo / "metrics" / "train" / "metrics.json").read_text())["step"]
    for name, (x, y, series) in EXPECTED.items():
        spec, props = vega[name], declared[name]
        enc = spec["encoding"]
        assert spec["title"]["text"] == props["title"], name
        assert (enc["x"]["field"], enc["x"]["title"]) == (x, props["x_label"]), name
        assert (enc["y"]["field"], enc["y"]["title"]) == (y, props["y_label"]), name
        unit = "px of the clip" if name.startswith("tracker_") else "px at frame scale"  # vs the clip's truth
        assert unit in props["x_label"] + props["y_label"] + props["title"], name
        rows = spec["data"]["values"]
        if name == "tracker_epe_per_video":  # every sample clip of the tiny pipeline, its tracker EPE
            tracker = json.loads((repo / "metrics" / "tracker" / "details.json").read_text())["videos"]
            assert sorted(r["video"] for r in rows) == sorted(tracker) == ["sample00", "sample01", "sample02"]
            assert all(float(r["epe_mean"]) == pytest.approx(tracker[r["video"]]["epe_mean"], rel=1e-5) for r in rows)
        elif name == "epe_per_video":  # one bar per (video, method): value against video, not row index
            bars = sorted(r["bar"] for r in rows)
            truth = [f"{m} vs truth" for m in ("model", "tracker", "zero", "mean")] if "vs_truth" in details else []
            assert bars == sorted(f"{v}: {m}" for v in details["test_videos"] for m in [*series, *truth])
            assert all(float(r["epe_px"]) >= 0 for r in rows)
        else:
            assert enc["strokeDash"]["scale"]["domain"] == series, name
            field = enc["strokeDash"]["field"]
            assert sorted({r[field] for r in rows}) == series, name
        if x == "step":  # dvclive's step is the epoch, from 1
            assert props["x_label"] == "epoch"
            assert sorted({int(r["step"]) for r in rows}) == list(range(1, epochs + 1)), name


def test_exp_show_keeps_the_columns_that_matter(repo):
    header = e2e.run(repo, *EXP_SHOW, "--csv").stdout.splitlines()[0].split(",")
    assert header[0] == "Experiment" and sorted(header[1:]) == sorted(
        [
            "best_val_epe_px",
            *(f"headline.{k}" for k in ("model_epe_px", "zero_epe_px", "model_to_zero", "beats_zero_motion")),
            "model.name",
            "train.epochs",
            "train.lr",
        ]
    ), header
    env = {**e2e._env(repo), "COLUMNS": "200"}  # the table itself, as a person runs it in 200 columns
    table = subprocess.run([*EXP_SHOW, "--no-pager"], cwd=repo, env=env, capture_output=True, text=True).stdout
    head = next(line for line in table.splitlines() if "Experiment" in line)
    assert head.split() == ["Experiment", *header[1:]], table  # every kept column shown, none folded into …
    assert max(map(len, table.splitlines())) <= 200 and "…" not in table, table
