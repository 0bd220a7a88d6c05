"""The training loop: it learns, resumes exactly, stops on NaN, refuses foreign checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import densemotion.training as training
from densemotion.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from densemotion.dataset import DatasetError
from densemotion.heads import PointHead
from densemotion.metrics import endpoint_epe_sum
from densemotion.params import ModelParams, TrainParams
from densemotion.training import TrainingError, train

from test_dataset import write_motion_store


def _videos(root, n=3, **kwargs) -> list[str]:
    names = [f"vid{i}" for i in range(n)]
    for i, name in enumerate(names):
        write_motion_store(root, name, seed=i, **kwargs)
    return names


TINY = dict(hg=8, wg=12, nw=4, t=3)


def _run(tmp_path, videos, *, out="m.pt", mp=None, tp=None, **kwargs):
    return train(
        trajectories=tmp_path / "traj",
        videos=videos,
        model_params=mp or ModelParams(input_scale=1),
        train_params=tp or TrainParams(device="cpu", epochs=2, batch_size=2),
        out=tmp_path / out,
        **kwargs,
    )


@pytest.mark.slow
def test_trained_model_beats_zero_motion_on_held_out_video(tmp_path):
    from densemotion.evaluation import evaluate
    from densemotion.params import EvaluateParams

    videos = _videos(tmp_path / "traj", n=4, nw=16, hg=12, wg=16, t=4)
    tp = TrainParams(device="cpu", epochs=10, batch_size=8, lr=1e-2, hflip=False, val_videos=1, test_videos=1)
    state = _run(tmp_path, videos, mp=ModelParams(input_scale=4), tp=tp)
    assert state["history"][-1]["val/epe_px"] < 0.8 * state["history"][-1]["val/zero_epe_px"]
    model = model_from_checkpoint(state)
    summary = evaluate(
        model=model,
        checkpoint=state,
        trajectories=tmp_path / "traj",
        out_dir=tmp_path / "eval",
        params=EvaluateParams(pictures=0),
        device="cpu",
    )
    errors = summary["headline"]
    assert summary["details"]["test_videos"] == state["split"]["test"] and summary["videos"] == 1
    assert errors["model_epe_px"] < 0.7 * errors["zero_epe_px"], errors
    assert errors["model_epe_px"] < 0.7 * errors["mean_epe_px"], errors
    assert errors["beats_zero_motion"] is True


def _killed_in_second_epoch(monkeypatch):
    real = training.train_one_epoch

    def killed(run, loader, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # as if the Colab session died
        return real(run, loader, epoch)

    monkeypatch.setattr(training, "train_one_epoch", killed)
    return lambda: monkeypatch.setattr(training, "train_one_epoch", real)


@pytest.mark.parametrize("mode", ["work_dir", "resume"])
def test_resumed_run_reaches_the_same_weights(tmp_path, monkeypatch, mode):
    videos = _videos(tmp_path / "traj", **TINY)
    # deeplabv3 with its auxiliary head: dropout makes the RNG state matter; flips vary per epoch
    mp = ModelParams(name="deeplabv3_mobilenet_v3_large", aux_loss=True, input_scale=2)
    tp = TrainParams(device="cpu", epochs=3, batch_size=2, hflip=True)
    # work_dir: what dvc repro runs (DVC deletes --out first); resume: --out every epoch + --resume
    kwargs = {"work_dir": tmp_path / "work"} if mode == "work_dir" else {}
    whole = _run(tmp_path, videos, out="whole.pt", mp=mp, tp=tp, **({"work_dir": tmp_path / "w0"} if kwargs else {}))
    live = tmp_path / "live"

    restore = _killed_in_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, videos, out="parts.pt", mp=mp, tp=tp, live_dir=live, **kwargs)
    restore()
    saved = tmp_path / ("work/checkpoint.pt" if mode == "work_dir" else "parts.pt")
    assert load_checkpoint(saved)["epoch"] == 1
    if mode == "work_dir":
        assert not (tmp_path / "parts.pt").exists()  # no half-trained model looks finished
        shutil.rmtree(live)  # DVC deletes the stage's outputs, the dvclive folder among them
    resumed = _run(tmp_path, videos, out="parts.pt", mp=mp, tp=tp, live_dir=live, resume=mode == "resume", **kwargs)

    assert resumed["epoch"] == whole["epoch"] == 3
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["history"] == whole["history"]
    assert resumed["optimizer"]["state"][0]["exp_avg"].equal(whole["optimizer"]["state"][0]["exp_avg"])
    assert load_checkpoint(tmp_path / "parts.pt")["epoch"] == 3
    assert (tmp_path / "parts.pt").read_bytes() == (tmp_path / "whole.pt").read_bytes()  # DVC sees one output
    assert not (tmp_path / "work" / "checkpoint.pt").exists()  # finished: nothing left to resume
    rows = (live / "plots" / "metrics" / "train" / "loss_px.tsv").read_text().splitlines()
    assert rows[0] == "step\tloss_px" and [r.split("\t")[0] for r in rows[1:]] == ["1", "2", "3"]  # each epoch once
    assert [float(r.split("\t")[1]) for r in rows[1:]] == pytest.approx([h["train/loss_px"] for h in whole["history"]])


def test_work_dir_checkpoint_of_other_settings_or_data_is_set_aside(tmp_path, monkeypatch, capsys):
    videos = _videos(tmp_path / "traj", **TINY)
    tp = TrainParams(device="cpu", epochs=2, batch_size=2)
    work = tmp_path / "work"
    restore = _killed_in_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, videos, tp=tp, work_dir=work)
    restore()
    other = TrainParams(device="cpu", epochs=2, batch_size=2, lr=0.002)
    fresh = _run(tmp_path, videos, out="fresh.pt", tp=other)
    state = _run(tmp_path, videos, tp=other, work_dir=work)  # an experiment with another lr: start over
    assert "not resuming" in capsys.readouterr().err
    for key, value in fresh["model"].items():
        assert torch.equal(value, state["model"][key]), key

    restore = _killed_in_second_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, videos, tp=tp, work_dir=work)
    restore()
    changed = load_checkpoint(work / "checkpoint.pt")["split"]["train"][0]
    write_motion_store(tmp_path / "traj", changed, seed=9, **TINY)  # its trajectories were redone
    state = _run(tmp_path, videos, tp=tp, work_dir=work)
    err = capsys.readouterr().err
    assert "not resuming" in err and "trajectory stores changed" in err, err
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_explicit_resume_on_other_data_is_refused(tmp_path):
    videos = _videos(tmp_path / "traj", **TINY)
    tp = TrainParams(device="cpu", epochs=1, batch_size=2)
    state = _run(tmp_path, videos, tp=tp)
    assert set(state["data"]) == {*state["split"]["train"], *state["split"]["val"]}
    changed = state["split"]["train"][0]
    write_motion_store(tmp_path / "traj", changed, seed=9, **TINY)
    with pytest.raises(CheckpointError, match=f"trajectory stores changed since the checkpoint: {changed}"):
        _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=2, batch_size=2), resume=True)


def test_checkpoint_is_complete_and_loads_weights_only(tmp_path):
    videos = _videos(tmp_path / "traj", **TINY)
    state = _run(tmp_path, videos, live_dir=tmp_path / "live")
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "scaler",
        "epoch",
        "rng",
        "model_params",
        "train_params",
        "split",
        "stats",
        "window",
        "history",
    ):
        assert key in raw, key
    assert raw["epoch"] == 2 and raw["window"] == 3 and len(raw["history"]) == 2
    assert sorted(sum(raw["split"].values(), [])) == videos
    model = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt")).eval()
    image = torch.rand(1, 3, 8, 12)
    again = model_from_checkpoint(state).eval()
    assert torch.equal(model(image)["out"], again(image)["out"])
    assert float(model.disp_scale) == pytest.approx(state["stats"]["rms"])

    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert set(metrics["train"]) == {"epe_px"}  # the losses and lr: curves only (trainlog.CURVES_ONLY)
    assert set(metrics["val"]) == {"epe_px", "zero_epe_px"} and "lr" not in metrics
    assert metrics["step"] == 2 and metrics["best_epoch"] == state["best_epoch"]  # steps are epochs 1 and 2
    assert (tmp_path / "live" / "plots" / "metrics" / "train" / "loss_px.tsv").is_file()
    assert (tmp_path / "live" / "plots" / "metrics" / "val" / "epe_px.tsv").is_file()
    assert "lraspp_mobilenet_v3_large" in (tmp_path / "live" / "params.yaml").read_text()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    videos = _videos(tmp_path / "traj", **TINY)
    real = PointHead.loss
    calls = {"n": 0}

    def poisoned(self, prediction, target, mask, kind, scale=None):
        loss = real(self, prediction, target, mask, kind, scale)
        if scale is not None:  # the log's loss at frame scale, not the one optimised
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] > 4 else loss  # epoch 1: 4 train batches, no val

    monkeypatch.setattr(PointHead, "loss", poisoned)
    tp = TrainParams(device="cpu", epochs=3, batch_size=2, val_videos=0, test_videos=1)
    with pytest.raises(
        TrainingError, match=r"loss became nan at epoch 2, batch 1.*keeps the last good checkpoint \(epoch 1\)"
    ):
        _run(tmp_path, videos, tp=tp)
    assert load_checkpoint(tmp_path / "m.pt")["epoch"] == 1


def test_resuming_another_model_is_refused(tmp_path):
    videos = _videos(tmp_path / "traj", **TINY)
    tp = TrainParams(device="cpu", epochs=1, batch_size=2)
    _run(tmp_path, videos, tp=tp)
    other = ModelParams(name="deeplabv3_mobilenet_v3_large", input_scale=1)
    with pytest.raises(CheckpointError, match="model.name: checkpoint 'lraspp_mobilenet_v3_large', params 'deeplabv3"):
        _run(tmp_path, videos, mp=other, tp=tp, resume=True)
    with pytest.raises(CheckpointError, match="train.lr"):
        _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2, lr=0.5), resume=True)


def test_foreign_and_broken_checkpoints_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a densemotion motion-model checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is not a readable PyTorch motion-model checkpoint"):
        load_checkpoint(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")
    videos = _videos(tmp_path / "traj", **TINY)
    state = _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2))
    state["model_params"] = {**state["model_params"], "target": "trajectory"}  # weights of another head
    with pytest.raises(CheckpointError, match="do not fit its model"):
        model_from_checkpoint(state)


def test_too_few_videos_for_the_split(tmp_path):
    videos = _videos(tmp_path / "traj", n=2, **TINY)
    with pytest.raises(DatasetError, match="cannot be split"):
        _run(tmp_path, videos)


def test_train_cli(tmp_path, capsys):
    from densemotion.cli.train import main

    videos = _videos(tmp_path / "traj", **TINY)
    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  videos:\n"
        + "".join(f"    {v}: raw/{v}.mp4\n" for v in videos)
        + "model:\n  input_scale: 1\ntrain:\n  device: cpu\n  epochs: 1\n  batch_size: 2\n"
    )
    args = [
        "--trajectories",
        str(tmp_path / "traj"),
        "--out",
        str(tmp_path / "models" / "m.pt"),
        "--live-dir",
        str(tmp_path / "live"),
        "--params",
        str(params),
    ]
    assert main(args) == 0
    assert "after 1 epochs" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "models" / "m.pt")["epoch"] == 1
    assert main([*args, "--resume"]) == 0  # already finished: nothing more to do
    params.write_text(params.read_text().replace("epochs: 1", "epochs: 1\n  val_videos: 3"))
    assert main(args) == 1
    assert "densemotion train: error: 3 video(s) cannot be split" in capsys.readouterr().err


def test_masked_losses():
    pred = torch.zeros(1, 1, 2, 1, 2)
    target = torch.tensor([[[[[3.0, 1e6]], [[4.0, 1e6]]]]])  # point 0: (3, 4); point 1: garbage
    mask = torch.tensor([[[[True, False]]]])
    assert float(PointHead().loss(pred, target, mask, "epe")) == pytest.approx(5.0)
    assert float(PointHead().loss(pred, target, mask, "l1")) == pytest.approx(7.0)
    total, count = endpoint_epe_sum(pred, target, mask, torch.tensor([[2.0, 2.0]]))
    assert (total, count) == (pytest.approx(10.0), 1)  # frame scale


def test_frozen_backbone_epochs_train_only_the_heads(tmp_path):
    from densemotion.model import build_model

    videos = _videos(tmp_path / "traj", **TINY)
    mp = ModelParams(input_scale=1)
    torch.manual_seed(0)
    initial = build_model(mp, 3).state_dict()
    tp = TrainParams(device="cpu", epochs=1, batch_size=2, freeze_backbone_epochs=1)
    state = _run(tmp_path, videos, mp=mp, tp=tp)
    backbone = [k for k in initial if k.startswith("net.backbone.")]
    assert all(torch.equal(state["model"][k], initial[k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(
        state["model"]["net.classifier.high_classifier.weight"], initial["net.classifier.high_classifier.weight"]
    )
    state = _run(tmp_path, videos, mp=mp, tp=TrainParams(device="cpu", epochs=1, batch_size=2), out="free.pt")
    assert not all(torch.equal(state["model"][k], initial[k]) for k in backbone)


def test_training_autocast_follows_the_one_vocabulary(monkeypatch):
    """train.autocast: none is float32; bf16 autocasts on the CPU; fp16 on a CPU runs float32 with
    a warning; auto is bf16 only where the CPU multiplies it natively."""
    import warnings

    from densemotion import runtime

    x, w = torch.ones(4, 4), torch.ones(4, 4)
    with training.autocast("cpu", "none"):
        assert (x @ w).dtype == torch.float32
    with training.autocast("cpu", "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    with pytest.warns(UserWarning, match="train.autocast: fp16 is a GPU mode"), training.autocast("cpu", "fp16"):
        assert (x @ w).dtype == torch.float32
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with training.autocast("cpu", "auto"):
                assert (x @ w).dtype == dtype


def test_auto_autocast_on_a_gpu_is_bf16_where_it_has_it_else_fp16_with_scaling(monkeypatch):
    """The references' GPU recipe: bf16 on an A100/H100, fp16 (grad scaling) on a T4; the CPU as runtime's."""
    for has_bf16, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(training, "cuda_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        monkeypatch.setattr("densemotion.runtime.cuda_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        assert training.train_autocast_dtype("auto", "cuda") == dtype
        assert training.train_autocast_dtype("none", "cuda") is None
    monkeypatch.setattr("densemotion.runtime.cpu_has_native_bf16", lambda: False)
    assert training.train_autocast_dtype("auto", "cpu") is None  # never fp16 on a CPU


def test_images_go_channels_last_on_a_gpu_only():
    x = torch.rand(2, 3, 8, 12)
    assert training.as_memory_format(x, "cpu") is x  # the CPU keeps NCHW: earlier results unchanged
    nhwc = training.as_memory_format(x, "cuda:0")
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(nhwc, x)


def test_train_compile_runs_the_training_batches_through_torch_compile(tmp_path, monkeypatch):
    """train.compile wraps what the batches go through (not the model checkpoints hold)."""
    videos = _videos(tmp_path / "traj", **TINY)
    compiled = []

    def fake_compile(module):
        compiled.append(module)

        def forward(x):
            forward.calls += 1
            return module(x)

        forward.calls = 0
        compiled.append(forward)
        return forward

    monkeypatch.setattr(torch, "compile", fake_compile)
    state = _run(tmp_path, videos, tp=TrainParams(device="cpu", epochs=1, batch_size=2, compile=True))
    assert len(compiled) == 2 and isinstance(compiled[0], torch.nn.Module)
    assert compiled[1].calls >= 1  # every training batch went through it
    assert state["epoch"] == 1 and not any(k.startswith("_orig_mod") for k in state["model"])


def test_each_epoch_line_says_its_time_and_the_eta():
    from densemotion.trainlog import pace

    assert pace(30.0, 2, 28) == "15.0 s/epoch, ETA 7m 00s"
    assert pace(12.0, 1, 400) == "12.0 s/epoch, ETA 1h 20m"
    assert pace(5.0, 1, 0) == "5.0 s/epoch, done"
    assert pace(0.5, 1, 10) == "0.5 s/epoch, ETA 5s"


@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "fcn_resnet50"])
def test_param_groups_decay_only_weights_and_give_the_heads_their_multiplier(name):
    """As torchvision's references and nanoGPT: no weight decay on norm weights and biases; the
    zero-initialised heads at lr x train.head_lr_mult; every parameter in exactly one group."""
    from densemotion.model import build_model
    from densemotion.training import make_optimizer, param_groups

    model = build_model(ModelParams(name=name, aux_loss=name.startswith("fcn")), 8)
    tp = TrainParams(lr=0.01, weight_decay=0.1, head_lr_mult=10.0)
    groups = param_groups(model, tp)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # all, once
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone norms and biases", "heads", "heads norms and biases"}
    for g in groups:
        assert all(p.ndim > 1 for p in g["params"]) == ("norms" not in g["name"])
        assert g["weight_decay"] == (0.0 if "norms" in g["name"] else 0.1)
        assert g["lr"] == pytest.approx(0.1 if g["name"].startswith("heads") else 0.01)
    heads = {id(p) for n, p in model.net.named_parameters() if not n.startswith("backbone.")}
    assert heads == {id(p) for g in groups if g["name"].startswith("heads") for p in g["params"]}
    opt, sched = make_optimizer(model, tp, total_steps=10)
    peaks = [g["max_lr"] for g in opt.param_groups]  # OneCycle's peak per group
    assert peaks == pytest.approx([g["lr"] for g in groups])
