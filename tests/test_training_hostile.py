"""Train and evaluate against hostile inputs: resumed runs, degenerate stores, diverging weights,
unwritable folders and a full disk. Each must end in identical bytes or one clear line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import _killed_in_second_epoch

import densemotion.evaluation as evaluation
import densemotion.training as training
from densemotion.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from densemotion.dataset import DatasetError, split_videos
from densemotion.heads import PointHead
from densemotion.params import EvaluateParams, ModelParams, TrainParams
from densemotion.training import TrainingError, train

from test_dataset import write_motion_store

TINY = dict(hg=8, wg=12, nw=4, t=3)
ROOT = Path(__file__).resolve().parents[1]


def _videos(root: Path, n: int = 3) -> list[str]:
    names = [f"vid{i}" for i in range(n)]
    for i, name in enumerate(names):
        write_motion_store(root, name, seed=i, **TINY)
    return names


def _run(tmp_path: Path, videos: list[str], *, out: str = "m.pt", tp: TrainParams | None = None, **kwargs) -> dict:
    return train(
        trajectories=tmp_path / "traj",
        videos=videos,
        model_params=kwargs.pop("mp", ModelParams(input_scale=1)),
        train_params=tp or TrainParams(device="cpu", epochs=2, batch_size=2),
        out=tmp_path / out,
        **kwargs,
    )


def _blind(store: Path, *, nan: bool = False) -> None:
    """Make every point of ``store`` unusable: invisible, or (nan) visible with NaN displacements."""
    name = "disp.npy" if nan else "vis.npy"
    array = np.load(store / name, mmap_mode="r+")
    if nan:
        array[:, 1:] = np.nan  # step 0 is the zero displacement by definition
    else:
        array[:] = 0
    array.flush()


def _params(tmp_path: Path, videos: list[str], train: str = "", evaluate: str = "") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        "data:\n  videos:\n"
        + "".join(f"    {v}: raw/{v}.mp4\n" for v in videos)
        + "model:\n  input_scale: 1\n"
        + f"train:\n  device: cpu\n  epochs: 1\n  batch_size: 2\n{train}"
        + f"evaluate:\n  device: cpu\n  pictures: 1\n{evaluate}"
    )
    return path


def _one_error_line(err: str, *words: str) -> str:
    """The CLI's stderr ends in one line `densemotion <cmd>: error: ...` holding ``words``, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert "Traceback" not in err and len(errors) == 1 and lines[-1] == errors[0], err
    assert errors[0].startswith("densemotion "), err
    for word in words:
        assert word in errors[0], (word, err)
    return errors[0]


def _strict_json(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# --- 5: a resumed run writes the same bytes --------------------------------------------------------


def test_checkpoint_bytes_depend_on_contents_only(tmp_path):
    """The same contents, the same bytes: whether strings were one object or several (a resumed run
    mixes loaded history with fresh records), and whether tensors shared memory."""

    def state(history: list[dict]) -> dict:
        return {"history": history, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999)}]}}

    def record(epoch: int) -> dict:
        return {"epoch": epoch, "train/loss": 1.0 / epoch, "lr": 0.1}

    save_checkpoint(tmp_path / "whole" / "m.pt", state([record(1), record(2)]))
    save_checkpoint(tmp_path / "first" / "m.pt", state([record(1)]))
    loaded = torch.load(tmp_path / "first" / "m.pt", weights_only=True)
    save_checkpoint(tmp_path / "resumed" / "m.pt", state([*loaded["history"], record(2)]))
    assert (tmp_path / "whole" / "m.pt").read_bytes() == (tmp_path / "resumed" / "m.pt").read_bytes()

    base = torch.arange(12.0)
    shared = {"model": {"w": base[:6], "v": base[6:].view(2, 3)}}  # views of one storage
    alone = {"model": {"w": torch.arange(6.0), "v": torch.arange(6.0, 12.0).view(2, 3)}}
    save_checkpoint(tmp_path / "shared" / "m.pt", shared)
    save_checkpoint(tmp_path / "alone" / "m.pt", alone)
    assert (tmp_path / "shared" / "m.pt").read_bytes() == (tmp_path / "alone" / "m.pt").read_bytes()
    loaded = torch.load(tmp_path / "shared" / "m.pt", weights_only=True)["model"]
    assert torch.equal(loaded["v"], base[6:].view(2, 3)) and loaded["w"].untyped_storage().nbytes() == 6 * 4


@pytest.mark.parametrize("mode", ["work_dir", "resume"])
def test_resumed_run_writes_the_same_bytes(tmp_path, monkeypatch, mode):
    videos = _videos(tmp_path / "traj")
    # a frozen first epoch: the optimiser gains the backbone's state only after the interruption
    tp = TrainParams(device="cpu", epochs=3, batch_size=2, freeze_backbone_epochs=1)
    _run(tmp_path, videos, out="whole/m.pt", tp=tp, **({"work_dir": tmp_path / "work0"} if mode == "work_dir" else {}))
    kwargs = {"work_dir": tmp_path / "work"} if mode == "work_dir" else {}
    revive = _killed_in_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, videos, out="parts/m.pt", tp=tp, **kwargs)
    revive()
    _run(tmp_path, videos, out="parts/m.pt", tp=tp, resume=mode == "resume", **kwargs)
    assert (tmp_path / "whole/m.pt").read_bytes() == (tmp_path / "parts/m.pt").read_bytes()


# --- 7: degenerate data is refused -----------------------------------------------------------------


@pytest.mark.parametrize("nan", [False, True], ids=["invisible", "nan"])
def test_training_videos_without_a_visible_point_are_refused(tmp_path, nan):
    videos = _videos(tmp_path / "traj")
    for v in videos:
        _blind(tmp_path / "traj" / v, nan=nan)
    with pytest.raises(DatasetError, match=r"the training videos \['vid\d'\] have no visible point"):
        _run(tmp_path, videos)
    assert not (tmp_path / "m.pt").exists()


def test_validation_videos_without_a_visible_point_are_refused(tmp_path):
    videos = _videos(tmp_path / "traj")
    val = split_videos(videos, val=1, test=1, seed=TrainParams().split_seed).val
    _blind(tmp_path / "traj" / val[0])
    with pytest.raises(DatasetError, match=rf"the validation videos \['{val[0]}'\] have no visible point"):
        _run(tmp_path, videos)


def test_a_blind_video_among_others_is_named_but_trained_on(tmp_path, capsys):
    videos = _videos(tmp_path / "traj", n=4)
    split = split_videos(videos, val=1, test=1, seed=TrainParams().split_seed)
    _blind(tmp_path / "traj" / split.train[0])
    state = _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2))
    assert state["epoch"] == 1
    assert f"no visible point: {split.train[0]}" in capsys.readouterr().err


def _trained(tmp_path: Path) -> list[str]:
    videos = _videos(tmp_path / "traj")
    _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2))
    return videos


def test_evaluate_refuses_test_videos_without_a_visible_point(tmp_path, capsys):
    from densemotion.cli.evaluate import main

    videos = _trained(tmp_path)
    test = load_checkpoint(tmp_path / "m.pt")["split"]["test"]
    for v in test:
        _blind(tmp_path / "traj" / v, nan=True)
    args = ["--model", str(tmp_path / "m.pt"), "--trajectories", str(tmp_path / "traj")]
    args += ["--out-dir", str(tmp_path / "metrics"), "--params", str(_params(tmp_path, videos))]
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, f"test videos {test}", "no visible point")
    assert not (tmp_path / "metrics" / "summary.json").exists()


def test_metrics_of_a_partly_blind_test_set_are_strict_json(tmp_path, capsys):
    from densemotion.cli.evaluate import main
    from densemotion.model import build_model

    write_motion_store(tmp_path / "traj", "a", seed=0)
    write_motion_store(tmp_path / "traj", "b", seed=1)
    _blind(tmp_path / "traj" / "b")
    summary = evaluation.evaluate(
        model=build_model(ModelParams(input_scale=1), 4).eval(),  # zero-init head: predicts no motion
        checkpoint={
            "split": {"train": ["x"], "val": [], "test": ["a", "b"]},
            "model_params": ModelParams(input_scale=1).model_dump(),
            "window": 4,
            "epoch": 0,
            "stats": {"mean": [[0.5, -0.25]], "rms": 1.0},
        },
        trajectories=tmp_path / "traj",
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=0),
        device="cpu",
    )
    assert "no visible point: b" in capsys.readouterr().err
    assert summary["points"] > 0
    per_video = _strict_json((tmp_path / "out" / "per_video.json").read_text())
    assert per_video["b"]["model_epe_px"] is None and per_video["b"]["points"] == 0
    assert per_video["a"]["model_epe_px"] > 0
    _strict_json((tmp_path / "out" / "summary.json").read_text())
    rows = (tmp_path / "out" / "per_video.csv").read_text()
    assert "nan" not in rows.lower()

    # motionless stores: zero motion scores 0, so model_to_zero is undefined (null, not NaN)
    videos = _trained(tmp_path / "cli")
    root = tmp_path / "cli"
    for v in videos:
        disp = np.load(root / "traj" / v / "disp.npy", mmap_mode="r+")
        disp[:] = 0
        disp.flush()
    args = ["--model", str(root / "m.pt"), "--trajectories", str(root / "traj")]
    args += ["--out-dir", str(root / "metrics"), "--params", str(_params(root, videos))]
    assert main(args) == 0
    printed = _strict_json(capsys.readouterr().out)
    assert printed["headline"]["zero_epe_px"] == 0.0 and printed["headline"]["model_to_zero"] is None
    assert printed["headline"]["beats_zero_motion"] is False  # nothing beats a perfect zero
    assert _strict_json((root / "metrics" / "summary.json").read_text())["headline"]["model_to_zero"] is None
    assert _strict_json((root / "metrics" / "details.json").read_text())["vs_tracker"]["model_to_zero"] is None


# --- 8: non-finite weights are never saved nor used ---------------------------------------------------


class _NanGradient(torch.autograd.Function):
    """Identity forward (a finite loss), NaN backward: the optimiser step makes the weights NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def _diverge_at(monkeypatch, call: int) -> None:
    real = PointHead.loss
    calls = {"n": 0}

    def poisoned(self, prediction, target, mask, kind, scale=None):
        loss = real(self, prediction, target, mask, kind, scale)
        if scale is not None:  # the log's loss at frame scale, not the one optimised
            return loss
        calls["n"] += 1
        return _NanGradient.apply(loss) if calls["n"] == call else loss

    monkeypatch.setattr(PointHead, "loss", poisoned)


def test_weights_made_non_finite_by_a_step_are_not_saved(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "traj")
    tp = TrainParams(device="cpu", epochs=3, batch_size=2, val_videos=0, test_videos=1)  # 4 batches an epoch
    _diverge_at(monkeypatch, call=8)  # the last batch of epoch 2: its loss finite, the weights after it not
    with pytest.raises(
        TrainingError, match=r"weights became non-finite .*in epoch 2.*m\.pt keeps the last good checkpoint \(epoch 1\)"
    ):
        _run(tmp_path, videos, tp=tp)
    saved = load_checkpoint(tmp_path / "m.pt")
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())

    _diverge_at(monkeypatch, call=4)
    with pytest.raises(TrainingError, match=r"in epoch 1.*no checkpoint was written"):
        _run(tmp_path, videos, out="first.pt", tp=tp)
    assert not (tmp_path / "first.pt").exists()


def test_a_non_finite_validation_loss_is_not_saved(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "traj")
    real = training.validate
    monkeypatch.setattr(training, "validate", lambda *a: {**real(*a), "loss": float("nan")})
    with pytest.raises(TrainingError, match=r"val/loss became nan in epoch 1.*no checkpoint was written"):
        _run(tmp_path, videos)
    assert not (tmp_path / "m.pt").exists()


def _poison(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key][0] = float("nan")
    torch.save(state, path)


def test_non_finite_checkpoints_are_refused_by_evaluate_and_resume(tmp_path, capsys):
    from densemotion.cli.evaluate import main

    videos = _trained(tmp_path)
    _poison(tmp_path / "m.pt")
    args = ["--model", str(tmp_path / "m.pt"), "--trajectories", str(tmp_path / "traj")]
    args += ["--out-dir", str(tmp_path / "metrics"), "--params", str(_params(tmp_path, videos))]
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, str(tmp_path / "m.pt"), "not finite")

    two = TrainParams(device="cpu", epochs=2, batch_size=2)
    with pytest.raises(CheckpointError, match=r"m\.pt: .*not finite"):
        _run(tmp_path, videos, tp=two, resume=True)

    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "m.pt").rename(work / "checkpoint.pt")
    state = _run(tmp_path, videos, tp=two, work_dir=work)  # a rerun sets the broken checkpoint aside
    assert state["epoch"] == 2
    err = capsys.readouterr().err
    assert "not resuming" in err and "not finite" in err, err


# --- 9: unwritable folders and a full disk: one line, found before an epoch ---------------------------


def _no_epoch(monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("an epoch ran before the unwritable output was found")

    monkeypatch.setattr(training, "train_one_epoch", forbidden)


@pytest.mark.parametrize("flag", ["--out", "--work-dir", "--live-dir"])
def test_train_output_under_a_file_fails_up_front_in_one_line(tmp_path, monkeypatch, capsys, flag):
    from densemotion.cli.train import main

    videos = _videos(tmp_path / "traj")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    paths = {"--out": str(tmp_path / "m.pt"), "--work-dir": str(tmp_path / "work"), "--live-dir": str(tmp_path / "l")}
    paths[flag] = str(blocker / ("m.pt" if flag == "--out" else "sub"))
    args = ["--trajectories", str(tmp_path / "traj"), "--params", str(_params(tmp_path, videos))]
    args += [a for k, v in paths.items() for a in (k, v)]
    _no_epoch(monkeypatch)
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, str(blocker))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_fails_up_front_in_one_line(tmp_path, monkeypatch, capsys):
    from densemotion.cli.train import main

    videos = _videos(tmp_path / "traj")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        args = ["--trajectories", str(tmp_path / "traj"), "--params", str(_params(tmp_path, videos))]
        _no_epoch(monkeypatch)
        assert main([*args, "--out", str(locked / "m.pt")]) == 1
        _one_error_line(capsys.readouterr().err, str(locked), "ermission denied")
    finally:
        locked.chmod(0o700)


def test_evaluate_out_dir_under_a_file_fails_up_front_in_one_line(tmp_path, monkeypatch, capsys):
    from densemotion.cli.evaluate import main

    videos = _trained(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")

    def forbidden(*args, **kwargs):
        raise AssertionError("videos were scored before the unwritable output was found")

    monkeypatch.setattr(evaluation, "video_errors", forbidden)
    args = ["--model", str(tmp_path / "m.pt"), "--trajectories", str(tmp_path / "traj")]
    args += ["--out-dir", str(blocker / "metrics"), "--params", str(_params(tmp_path, videos))]
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, str(blocker))


def test_disk_full_while_saving_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    from densemotion.cli.train import main

    videos = _videos(tmp_path / "traj")

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "m.pt"
    args = ["--trajectories", str(tmp_path / "traj"), "--out", str(out), "--params", str(_params(tmp_path, videos))]
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, str(out), "disk full")
    assert not out.exists() and not list(tmp_path.glob(".m.pt*"))


def test_disk_full_while_evaluating_is_one_line(tmp_path, monkeypatch, capsys):
    from densemotion.atomic import DiskFullError
    from densemotion.cli.evaluate import main

    videos = _trained(tmp_path)

    def full(dest, obj):
        raise DiskFullError(errno.ENOSPC, f"disk full while writing {dest}; nothing was kept")

    monkeypatch.setattr(evaluation, "write_json", full)
    args = ["--model", str(tmp_path / "m.pt"), "--trajectories", str(tmp_path / "traj")]
    args += ["--out-dir", str(tmp_path / "metrics"), "--params", str(_params(tmp_path, videos))]
    assert main(args) == 1
    _one_error_line(capsys.readouterr().err, "disk full while writing", "details.json")
    assert not (tmp_path / "metrics" / "summary.json").exists()  # written last, so never beside missing details


def test_file_size_limit_while_saving_is_one_line(tmp_path):
    """The real torch.save against a real write failure (RLIMIT_FSIZE: EFBIG, like a full disk)."""
    videos = _videos(tmp_path / "traj")
    out = tmp_path / "m.pt"
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from densemotion.cli.train import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        sys.exit(main(["--trajectories", {str(tmp_path / "traj")!r}, "--out", {str(out)!r},
                       "--params", {str(_params(tmp_path, videos))!r}]))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr, str(out))
    assert "file size limit" in line or "File too large" in line, line
    assert not out.exists()


def test_a_single_training_window_is_refused_before_torch_fails(tmp_path):
    from densemotion.params import ModelParams, TrainParams
    from densemotion.training import train

    from test_dataset import write_motion_store

    for i in range(3):
        write_motion_store(tmp_path / "traj", f"v{i}", seed=i, nw=1)
    with pytest.raises(DatasetError, match=r"batches of at least 2 windows .* have 1 window"):
        train(trajectories=tmp_path / "traj", videos=["v0", "v1", "v2"], model_params=ModelParams(input_scale=1),
              train_params=TrainParams(device="cpu", epochs=1, batch_size=2), out=tmp_path / "m.pt")  # fmt: skip


def test_the_finished_model_leaves_the_resume_state_in_the_work_folder(tmp_path):
    import torch

    from densemotion.checkpoint import RESUME_KEYS
    from densemotion.params import ModelParams, TrainParams
    from densemotion.training import train

    from test_dataset import write_motion_store

    for i in range(3):
        write_motion_store(tmp_path / "traj", f"v{i}", seed=i)
    train(trajectories=tmp_path / "traj", videos=["v0", "v1", "v2"], model_params=ModelParams(input_scale=1),
          train_params=TrainParams(device="cpu", epochs=1, batch_size=2), out=tmp_path / "m.pt",
          work_dir=tmp_path / "work")  # fmt: skip
    final = torch.load(tmp_path / "m.pt", weights_only=True)
    assert not set(RESUME_KEYS) & set(final)
    assert {"model", "model_params", "split", "stats", "epoch", "history"} <= set(final)
