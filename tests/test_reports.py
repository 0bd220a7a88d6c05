"""What train and evaluate tell a person: the split and its size, the epoch kept, one unit (px at
frame scale) named in every key, and the model against doing nothing, flagged when it loses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import densemotion.training as training
from densemotion.checkpoint import RESUME_KEYS, load_checkpoint
from densemotion.dataset import Split, report_split, split_warnings
from densemotion.evaluation import headline
from densemotion.heads import PointHead
from densemotion.params import ModelParams, TrainParams
from densemotion.report import HEADLINE_KEYS
from densemotion.training import train
from densemotion.trainlog import best_epoch, final_report

from test_dataset import write_motion_store

TINY = dict(hg=8, wg=12, nw=4, t=3)


def _videos(root, n=3, noise: bool = False) -> list[str]:
    """``n`` stores; with ``noise`` their motion is random (nothing a model can predict from a frame)."""
    names = [f"vid{i}" for i in range(n)]
    for i, name in enumerate(names):
        store = write_motion_store(root, name, seed=i, **TINY)
        if noise:
            disp = np.load(store / "disp.npy", mmap_mode="r+")
            disp[:, 1:] = np.random.default_rng(100 + i).normal(0, 2, disp[:, 1:].shape)  # step 0: no motion
            disp.flush()
    return names


def _run(tmp_path, videos, tp=None, **kwargs) -> dict:
    return train(
        trajectories=tmp_path / "traj",
        videos=videos,
        model_params=ModelParams(input_scale=1),
        train_params=tp or TrainParams(device="cpu", epochs=2, batch_size=2),
        out=tmp_path / "m.pt",
        **kwargs,
    )


def _params(tmp_path, videos, train: str = "") -> str:
    path = tmp_path / "params.yaml"
    path.write_text(
        "data:\n  videos:\n"
        + "".join(f"    {v}: raw/{v}.mp4\n" for v in videos)
        + f"model:\n  input_scale: 1\ntrain:\n  device: cpu\n  epochs: 1\n  batch_size: 2\n{train}"
        + "evaluate:\n  device: cpu\n  pictures: 0\n"
    )
    return str(path)


def _fake_validation(monkeypatch, epes: list[float], zero: float = 5.0) -> None:
    """validate() returns ``epes[k]`` as the EPE of epoch k + 1 (the real one runs, for its cost only)."""
    real, calls = training.validate, iter(epes)

    def fake(*args):
        real(*args)
        epe = next(calls)
        return {"loss_px": epe, "epe_px": epe, "zero_epe_px": zero}

    monkeypatch.setattr(training, "validate", fake)


# --- the split -------------------------------------------------------------------------------------


def test_the_split_is_printed_warned_about_and_recorded(tmp_path, capsys):
    videos = _videos(tmp_path / "traj")
    state = _run(tmp_path, videos, live_dir=tmp_path / "live")
    err = capsys.readouterr().err
    split = state["split"]
    assert "video split (train.split_seed 0):" in err
    for part, names in split.items():
        assert f"  {part:5}   1: {names[0]}" in err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert [w.split(" video(s)")[0] for w in warnings[:3]] == [
        "WARNING: only 1 train",
        "WARNING: only 1 val",
        "WARNING: only 1 test",
    ]
    recorded = json.loads((tmp_path / "live" / "split.json").read_text())
    assert recorded == {**split, "counts": {"train": 1, "val": 1, "test": 1}}
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert "split" not in json.dumps(metrics) and "vid" not in json.dumps(metrics)  # names stay out of metrics


def test_split_warnings_name_each_small_part_and_none_for_a_fair_split():
    names = lambda n, p: tuple(f"{p}{i}" for i in range(n))
    assert split_warnings(Split(names(5, "a"), names(3, "b"), names(3, "c"))) == []
    found = split_warnings(Split(names(4, "a"), names(0, "b"), names(2, "c")))
    assert len(found) == 3
    assert found[0].startswith("no validation video") and "the last epoch's" in found[0]
    assert found[1].startswith("only 4 train video(s), fewer than 5")
    assert found[2].startswith("only 2 test video(s), fewer than 3")
    assert split_warnings(Split(names(5, "a"), names(3, "b"), ()))[0].startswith("no test video")


def test_many_names_are_shortened_on_screen_but_not_in_split_json(tmp_path, capsys):
    report_split(Split(tuple(f"v{i:02d}" for i in range(12)), ("w",), ("x",)), seed=3)
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("  train"))
    assert line == "  train  12: v00, v01, v02, v03, v04, v05, v06, v07, v08, v09, ... (2 more)"


# --- the epoch kept ----------------------------------------------------------------------------------


def test_the_best_validation_epoch_is_the_output_and_the_last_is_resumable(tmp_path, monkeypatch, capsys):
    videos = _videos(tmp_path / "traj")
    _fake_validation(monkeypatch, [3.0, 1.0, 2.0])
    saved: list[dict] = []
    real_save = training.save_checkpoint

    def keep(path, state):
        saved.append({"path": path, **{k: state.get(k) for k in ("epoch", "best_epoch", "model", "last_model")}})
        real_save(path, state)

    monkeypatch.setattr(training, "save_checkpoint", keep)
    tp = TrainParams(device="cpu", epochs=3, batch_size=2)
    state = _run(tmp_path, videos, tp=tp, work_dir=tmp_path / "work", live_dir=tmp_path / "live")

    assert state["best_epoch"] == 2 and state["epoch"] == 3
    work = [s for s in saved if s["path"].name == "checkpoint.pt"]
    assert [s["best_epoch"] for s in work] == [1, 2, 2]
    final = load_checkpoint(tmp_path / "m.pt")
    assert final["best_epoch"] == 2 and final["epoch"] == 3 and len(final["history"]) == 3
    assert not set(RESUME_KEYS) & set(final)  # no last-epoch weights, no optimiser
    for key, value in work[1]["last_model"].items():  # the weights after epoch 2, not after epoch 3
        assert torch.equal(final["model"][key], value), key
    assert any(not torch.equal(final["model"][k], v) for k, v in work[2]["last_model"].items())
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 2 and metrics["best_val_epe_px"] == 1.0 and metrics["step"] == 3
    assert metrics["val"]["epe_px"] == 2.0  # dvclive's latest: the last epoch's
    err = capsys.readouterr().err
    assert "kept epoch 2 of 3: the lowest validation EPE, 1 px at frame scale" in err
    assert "does not beat zero motion" not in err


def test_without_validation_the_last_epoch_is_kept_and_said(tmp_path, capsys):
    videos = _videos(tmp_path / "traj")
    state = _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=2, batch_size=2, val_videos=0))
    assert state["best_epoch"] == 2
    err = capsys.readouterr().err
    assert "WARNING: no validation video (train.val_videos 0)" in err
    assert "kept the last epoch (2): no validation video to choose the best by" in err


def test_best_epoch_rules():
    assert best_epoch([]) == 0
    assert best_epoch([{"epoch": 1, "train/epe_px": 2.0}, {"epoch": 2, "train/epe_px": 1.0}]) == 2  # no validation
    ties = [{"epoch": e, "val/epe_px": v} for e, v in ((1, 2.0), (2, 1.0), (3, 1.0))]
    assert best_epoch(ties) == 2  # the first of equals


def test_training_warns_when_validation_does_not_beat_zero_motion(tmp_path, monkeypatch, capsys):
    videos = _videos(tmp_path / "traj")
    _fake_validation(monkeypatch, [5.0], zero=5.0)  # a tie with zero motion is no win
    _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2))
    assert "WARNING: the model does not beat zero motion on the validation videos" in capsys.readouterr().err


# --- units -------------------------------------------------------------------------------------------


def test_logged_loss_is_the_optimised_loss_at_frame_scale():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 1, 2, 3, 4, generator=g), torch.randn(2, 1, 2, 3, 4, generator=g)
    mask = torch.rand(2, 1, 3, 4, generator=g) > 0.3
    for kind in ("epe", "l1"):
        tracking = float(PointHead().loss(pred, target, mask, kind))
        assert float(PointHead().loss(pred, target, mask, kind, torch.ones(2, 2))) == pytest.approx(tracking, rel=1e-5)
        assert float(PointHead().loss(pred, target, mask, kind, torch.full((2, 2), 3.0))) == pytest.approx(
            3 * tracking, 1e-5
        )
    only_x = torch.zeros_like(pred)
    only_x[:, :, 0] = 1.0  # 1 tracking px along x, frames 2x wider and 5x taller than tracking
    assert float(PointHead().loss(only_x, torch.zeros_like(pred), mask, "epe", torch.tensor([[2.0, 5.0]] * 2))) == (
        pytest.approx(2.0, rel=1e-4)
    )


def test_every_logged_number_names_its_unit(tmp_path):
    videos = _videos(tmp_path / "traj")
    state = _run(tmp_path, videos, live_dir=tmp_path / "live")
    keys = set(state["history"][-1]) - {"epoch", "lr"}
    assert keys == {"train/loss_px", "train/epe_px", "val/loss_px", "val/epe_px", "val/zero_epe_px"}
    tsvs = sorted(p.relative_to(tmp_path / "live" / "plots" / "metrics").as_posix()
                  for p in (tmp_path / "live" / "plots" / "metrics").rglob("*.tsv"))  # fmt: skip
    assert tsvs == ["lr.tsv", "train/epe_px.tsv", "train/loss_px.tsv", "val/epe_px.tsv",
                    "val/loss_px.tsv", "val/zero_epe_px.tsv"]  # fmt: skip
    rows = (tmp_path / "live" / "plots" / "metrics" / "val" / "epe_px.tsv").read_text().splitlines()
    assert rows[0] == "step\tepe_px" and [r.split("\t")[0] for r in rows[1:]] == ["1", "2"]  # step = epoch
    # metrics.json, the DVC metric (a `dvc exp show` column per number): the EPEs and the best epoch,
    # not the learning rate or the losses, which are curves only
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics == {
        "train": {"epe_px": metrics["train"]["epe_px"]},
        "val": {"epe_px": metrics["val"]["epe_px"], "zero_epe_px": metrics["val"]["zero_epe_px"]},
        "best_epoch": state["best_epoch"],
        "best_val_epe_px": metrics["best_val_epe_px"],
        "step": 2,
    }


# --- the model against doing nothing -----------------------------------------------------------------


def test_headline_beats_zero_motion_only_by_a_margin():
    def row(model: float, zero: float) -> dict:
        ratio = model / zero if zero else math.nan
        return {
            "model_epe_px": model,
            "zero_epe_px": zero,
            "mean_epe_px": 4.0,
            "model_to_zero": ratio,
            "model_to_mean": 0.5,
        }

    assert headline(row(1.0, 2.0))["beats_zero_motion"] is True
    assert headline(row(2.0, 2.0))["beats_zero_motion"] is False  # a tie
    assert headline(row(1.9999, 2.0))["beats_zero_motion"] is False  # within rounding: an untrained head
    assert headline(row(3.0, 2.0))["beats_zero_motion"] is False
    assert headline(row(0.0, 0.0))["beats_zero_motion"] is False  # nothing beats a perfect zero
    assert headline(row(math.nan, 2.0))["beats_zero_motion"] is False
    assert list(headline(row(1.0, 2.0))) == [
        "model_epe_px", "zero_epe_px", "mean_epe_px", "model_to_zero", "model_to_mean", "beats_zero_motion"
    ]  # fmt: skip


def test_a_model_trained_on_noise_is_flagged_as_not_beating_zero_motion(tmp_path, capsys):
    """Random motion: nothing in a frame predicts it, so no model beats predicting none (deterministic:
    seeded noise, CPU, one epoch at a tiny lr)."""
    from densemotion.cli.evaluate import main as evaluate_main
    from densemotion.cli.train import main as train_main

    videos = _videos(tmp_path / "traj", noise=True)
    params = _params(tmp_path, videos, train="  lr: 0.000001\n")
    out = str(tmp_path / "models" / "m.pt")
    assert train_main(["--trajectories", str(tmp_path / "traj"), "--out", out, "--params", params]) == 0
    capsys.readouterr()
    args = ["--model", out, "--trajectories", str(tmp_path / "traj"), "--out-dir", str(tmp_path / "eval")]
    assert evaluate_main([*args, "--params", params]) == 0
    printed = capsys.readouterr()
    warning = [line for line in printed.err.splitlines() if line.startswith("WARNING: the model does not beat zero")]
    assert len(warning) == 1 and "on the held-out videos" in warning[0], printed.err
    shown = json.loads(printed.out)
    assert list(shown)[0] == "headline" and shown["headline"]["beats_zero_motion"] is False
    written = (tmp_path / "eval" / "summary.json").read_text()
    assert written.startswith('{\n  "headline": {\n    "model_epe_px": ')
    summary = json.loads(written)
    assert summary == shown and summary["headline"]["beats_zero_motion"] is False
    assert summary["headline"]["model_to_zero"] >= 1 - 1e-3


def test_summary_json_is_small_and_the_details_are_beside_it(tmp_path):
    from densemotion.cli.evaluate import main as evaluate_main

    videos = _videos(tmp_path / "traj")
    params = _params(tmp_path, videos)
    _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2))
    args = ["--model", str(tmp_path / "m.pt"), "--trajectories", str(tmp_path / "traj")]
    assert evaluate_main([*args, "--out-dir", str(tmp_path / "eval"), "--params", params]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert list(summary) == ["headline"]  # no truth here; with it, vs_truth: 4 means (test_e2e_dvc)
    assert list(summary["headline"]) == [k for k, _ in HEADLINE_KEYS]  # the report's rows, in order
    details = json.loads((tmp_path / "eval" / "details.json").read_text())
    assert set(details) == {
        "vs_tracker",
        "test_videos",
        "videos",
        "windows",
        "model",
        "target",
        "epochs",
        "weights_epoch",
    }
    assert details["model"] == "lraspp_mobilenet_v3_large" and details["epochs"] == details["weights_epoch"] == 1
    assert details["vs_tracker"]["model_epe_px"] == summary["headline"]["model_epe_px"]
    assert "model_epe_px_median" in details["vs_tracker"]
    per_video = json.loads((tmp_path / "eval" / "per_video.json").read_text())
    assert list(per_video) == details["test_videos"]
    assert all(k.endswith(("_px", "_px_median", "_to_zero", "_to_mean", "points", "windows"))
               for row in per_video.values() for k in row)  # fmt: skip


# --- the tracker against the sample's ground truth ---------------------------------------------------


def test_tracker_metric_is_a_few_pooled_numbers_and_the_rest_is_beside_it(tmp_path):
    """metrics/tracker.json is the DVC metric: one `dvc exp show` column per number, none per video;
    the per-video and per-subset scores go to details.json and per_video.csv (a DVC plot's data)."""
    import csv

    from densemotion.trajectories.accuracy import HEADLINE_KEYS as TRACKER_KEYS

    from test_trajectories_run import _accuracy, _pipeline

    _pipeline(tmp_path)
    details = _accuracy(tmp_path)  # runs the CLI; returns details.json
    metric = json.loads((tmp_path / "m.json").read_text())
    assert list(metric) == ["tracker"] and list(metric["tracker"]) == list(TRACKER_KEYS)
    overall = details["overall"]
    assert metric["tracker"]["epe_mean"] == overall["epe_mean"]
    assert metric["tracker"]["moving_epe_median"] == overall["moving"]["epe_median"]
    assert details["tracker"] == "dis" and set(details["videos"]) == {"clipa"} and details["unscored"] == []
    rows = list(csv.DictReader((tmp_path / "details" / "per_video.csv").open()))
    assert [r["video"] for r in rows] == ["clipa"]
    assert float(rows[0]["moving_epe_median"]) == pytest.approx(
        details["videos"]["clipa"]["moving"]["epe_median"], rel=1e-5
    )
    assert int(rows[0]["last_frame_points"]) == details["videos"]["clipa"]["last_frame"]["points"]

    # no video with ground truth (real footage): the metric's numbers are null, the CSV has no row
    (tmp_path / "truth" / "clipa.npz").unlink()
    details = _accuracy(tmp_path)
    assert details["unscored"] == ["clipa"] and details["overall"] == {}
    assert json.loads((tmp_path / "m.json").read_text()) == {"tracker": dict.fromkeys(TRACKER_KEYS)}
    assert (tmp_path / "details" / "per_video.csv").read_text() == "video\n"


def test_a_distribution_head_keeps_the_epoch_of_its_lowest_validation_loss():
    """Its point estimate (a mean of futures) may not beat zero by design: its own loss chooses."""
    history = [
        {"epoch": 1, "val/epe_px": 1.0, "val/loss_px": 3.0, "val/zero_epe_px": 1.0},
        {"epoch": 2, "val/epe_px": 1.1, "val/loss_px": 0.5, "val/zero_epe_px": 1.0},
    ]
    assert best_epoch(history) == 1 and best_epoch(history, "val/loss_px") == 2
    lines = final_report({"history": history, "best_epoch": 2, "epoch": 2}, "val/loss_px")
    assert lines[0].startswith("kept epoch 2 of 2: the lowest validation loss, 0.5")
