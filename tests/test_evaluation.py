"""The evaluate stage: errors at frame scale, baselines on the same points, truth, files, CLI."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from densemotion.evaluation import EvaluationError, evaluate, truth_lookup
from densemotion.heads import PointHead
from densemotion.model import build_model
from densemotion.params import EvaluateParams, ModelParams, SampleParams
from densemotion.sample import render_clip, save_truth
from densemotion.tracking.grid import grid_points
from densemotion.trajectories.store import TrajectoryStore, write_store

from test_dataset import synthetic_windows, write_motion_store


def _checkpoint(test: list[str], window: int, mean=(0.5, -0.25), target="endpoint", epoch=0) -> dict:
    steps = 1 if target == "endpoint" else window - 1
    return {
        "split": {"train": ["x"], "val": [], "test": test},
        "model_params": ModelParams(input_scale=1, target=target).model_dump(),
        "window": window,
        "epoch": epoch,
        "stats": {"mean": [list(mean)] * steps, "rms": 1.0},
    }


def _untrained(window: int, target="endpoint"):
    return build_model(ModelParams(input_scale=1, target=target), window).eval()  # zero-init: predicts 0


class KnownField(torch.nn.Module):
    """A stub motion net whose prediction is known: x = 0.25 j - 1, y = 0.75 - 0.5 i at grid cell
    (i, j), the same for every step and image; output (B, K, 2, Hg, Wg) as MotionNet's."""

    head = PointHead()  # the contract evaluation reads predictions through

    def __init__(self, steps: int = 1):
        super().__init__()
        self.steps = steps

    @staticmethod
    def field(hg: int, wg: int) -> np.ndarray:
        """(Hg, Wg, 2) the predicted x, y displacement in tracking px."""
        i, j = np.mgrid[0:hg, 0:wg].astype(np.float32)
        return np.stack([0.25 * j - 1.0, 0.75 - 0.5 * i], axis=-1)

    def forward(self, image):
        b, _, hg, wg = image.shape
        f = torch.from_numpy(self.field(hg, wg)).permute(2, 0, 1)  # (2, Hg, Wg)
        return {"out": f.expand(b, self.steps, 2, hg, wg).clone()}


class Oracle(torch.nn.Module):
    """A stub motion net that predicts the stored tracker motion of whichever window it is shown."""

    head = PointHead()

    def __init__(self, store: TrajectoryStore):
        super().__init__()
        self.frames = torch.from_numpy(np.array(store.frames0)).permute(0, 3, 1, 2).float() / 255  # (Nw, 3, Hg, Wg)
        self.disp = torch.from_numpy(np.array(store.disp[:, -1:], np.float32)).permute(0, 1, 4, 2, 3)  # (Nw, 1, 2, ..)

    def forward(self, image):
        match = [int(torch.nonzero((self.frames == im).flatten(1).all(1))[0]) for im in image]
        return {"out": self.disp[match]}


def test_errors_follow_the_predicted_layout_at_frame_scale(tmp_path):
    """A known prediction's errors, computed here independently of the evaluation code."""
    write_motion_store(tmp_path, "a", seed=0, frame_factor=2.0)
    summary = evaluate(
        model=KnownField(),
        checkpoint=_checkpoint(["a"], window=4),
        trajectories=tmp_path,
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=0, batch_size=4),
        device="cpu",
    )
    raw = synthetic_windows(6, 12, 16, 4, 0)
    true = raw["disp"][:, 3].astype(np.float32)  # (Nw, Hg, Wg, 2)
    seen = raw["vis"][:, 3] >= 128
    err = np.hypot(*((KnownField.field(12, 16)[None] - true) * 2.0)[seen].T)
    assert summary["headline"]["model_epe_px"] == pytest.approx(err.mean(), rel=1e-5)
    assert summary["details"]["vs_tracker"]["model_epe_px_median"] == pytest.approx(np.median(err), rel=1e-5)


def test_an_oracle_scores_zero_and_draws_the_tracker_motion(tmp_path):
    write_motion_store(tmp_path, "a", seed=0)
    oracle = Oracle(TrajectoryStore(tmp_path / "a"))
    summary = evaluate(
        model=oracle,
        checkpoint=_checkpoint(["a"], window=4),
        trajectories=tmp_path,
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=6, picture_side=64),
        device="cpu",
    )
    assert summary["headline"]["model_epe_px"] == 0.0 and summary["headline"]["zero_epe_px"] > 0.5
    assert summary["headline"]["beats_zero_motion"] is True
    pictures = sorted((tmp_path / "out" / "pictures").iterdir())
    assert len(pictures) == 6
    raw = synthetic_windows(6, 12, 16, 4, 0)
    for k, path in enumerate(pictures):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        top = image.shape[0] - 48  # titles over 48 x 64 panels: 12 x 16 grid cells of 4 px, sampled at their centres
        cells = image[top + 2 :: 4]
        tracker, predicted = cells[:, 64 + 4 + 2 : 128 + 4 : 4], cells[:, 128 + 8 + 2 : 192 + 8 : 4]
        seen = raw["vis"][k, 3] >= 128
        assert np.array_equal(tracker[seen], predicted[seen])  # the same motion, the same colours
        # points the tracker lost: its colour half-way to grey (the oracle predicts that motion, opaque)
        half_grey = (0.5 * predicted[~seen].astype(np.float32) + 64).astype(np.uint8)
        assert np.array_equal(tracker[~seen], half_grey) and not np.array_equal(predicted[~seen], half_grey)
        red = np.all(raw["disp"][k, 3].astype(np.float32) == (3.0, 1.0), axis=-1) & seen  # moving right (+x)
        assert red.any() and (predicted[red][:, 0].astype(int) - predicted[red][:, 2] > 100).all()


def test_errors_are_at_frame_scale_with_baselines_on_the_same_points(tmp_path):
    write_motion_store(tmp_path, "a", seed=0, frame_factor=2.0)
    write_motion_store(tmp_path, "b", seed=1, frame_factor=3.0)
    ckpt = _checkpoint(["a", "b"], window=4)
    summary = evaluate(
        model=_untrained(4),
        checkpoint=ckpt,
        trajectories=tmp_path,
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=0),
        device="cpu",
    )
    zero, mean = [], []
    for seed, factor in ((0, 2.0), (1, 3.0)):
        raw = synthetic_windows(6, 12, 16, 4, seed)
        disp = raw["disp"][:, 3].astype(np.float32)[raw["vis"][:, 3] >= 128]  # (n, 2) visible only
        zero.append(np.hypot(*disp.T) * factor)
        mean.append(np.hypot(*(disp - [0.5, -0.25]).T) * factor)
    errors = summary["details"]["vs_tracker"]
    assert errors["zero_epe_px"] == pytest.approx(np.concatenate(zero).mean(), rel=1e-5)
    assert errors["mean_epe_px"] == pytest.approx(np.concatenate(mean).mean(), rel=1e-5)
    assert errors["model_epe_px"] == errors["zero_epe_px"]  # an untrained net predicts no motion (zero-init head)
    assert errors["points"] == sum(z.size for z in zero) == summary["points"]
    assert summary["headline"]["beats_zero_motion"] is False  # a tie is no win
    per_video = json.loads((tmp_path / "out" / "per_video.json").read_text())
    assert per_video["b"]["zero_epe_px"] == pytest.approx(zero[1].mean(), rel=1e-5)
    assert "vs_truth" not in summary and "vs_truth" not in summary["details"]


def test_output_files(tmp_path):
    write_motion_store(tmp_path, "a", seed=0, nw=5, t=3)
    params = EvaluateParams(pictures=3, picture_side=64, hist_bins=10, hist_max_px=8.0)
    evaluate(
        model=_untrained(3, "trajectory"),
        checkpoint=_checkpoint(["a"], 3, target="trajectory"),
        trajectories=tmp_path,
        out_dir=tmp_path / "out",
        params=params,
        device="cpu",
    )
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    details = json.loads((out / "details.json").read_text())
    assert {"model_epe_px_all_steps", "zero_epe_px_all_steps", "mean_epe_px_all_steps"} <= set(details["vs_tracker"])
    assert details["target"] == "trajectory" and details["test_videos"] == ["a"]
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert [r["bar"] for r in rows] == ["a: model vs tracker", "a: zero vs tracker", "a: mean vs tracker"]
    assert float(rows[1]["epe_px"]) == pytest.approx(summary["headline"]["zero_epe_px"], rel=1e-5)
    hist = list(csv.DictReader((out / "epe_hist.csv").open()))
    assert len(hist) == 10 and float(hist[0]["epe_px"]) == pytest.approx(0.4)
    for method in ("model", "zero", "mean"):
        assert sum(float(r[method]) for r in hist) == pytest.approx(1.0, abs=1e-4)
    for png in ("epe_hist.png", "per_video.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    pictures = sorted((out / "pictures").iterdir())
    assert len(pictures) == 3
    image = cv2.imread(str(pictures[0]))
    # titles over frame | tracker | model | wheel, panels 48 x 64 (the 96 x 128 frame's longest side
    # fitted to 64); too low for text under it, the wheel is 48 px alone
    assert image.shape[0] > 48 and image.shape[1:] == (3 * 64 + 3 * 4 + 48, 3)


def _truth_store(tmp_path, clip_every: int = 1):
    """A store whose 'tracker' is the sample's ground truth, tracked at half the clip's size."""
    sample = SampleParams(height=48, width=64, num_frames=17, sprites=3, seed=2)
    frames, truth = render_clip(sample, 0)
    save_truth(tmp_path / "truth" / "clip.npz", truth)
    g, t, track = 2, 4, (24, 32)
    shape = (track[0] // g, track[1] // g)
    points = grid_points(shape, g, 0).astype(np.float64)  # tracking px
    query = (points + 0.5) * 2 - 0.5  # clip px
    archive_starts = [0, 4]  # archive frames; clip frame = archive frame * clip_every
    disp, vis, frames0 = [], [], []
    for s in archive_starts:
        clip_frames = [(s + k) * clip_every for k in range(t)]
        tracks, visible = truth.tracks(clip_frames[0], clip_frames[-1] - clip_frames[0] + 1, query)
        tracks, visible = (
            tracks[[f - clip_frames[0] for f in clip_frames]],
            visible[[f - clip_frames[0] for f in clip_frames]],
        )
        disp.append(((tracks - tracks[0]) / 2).reshape(t, *shape, 2))
        vis.append((visible * 255).astype(np.uint8).reshape(t, *shape))
        small = cv2.resize(frames[clip_frames[0]], track[::-1], interpolation=cv2.INTER_AREA)
        frames0.append(cv2.resize(small, shape[::-1], interpolation=cv2.INTER_AREA))
    meta = {
        "video": "clip",
        "tracker": "truth",
        "tracker_params": {},
        "window": t,
        "window_stride": t,
        "grid_stride": g,
        "margin": 0,
        "tracking_size": list(track),
        "frame_size": [48, 64],
        "grid_shape": list(shape),
        "frames_sha256": "0" * 64,
        "past_end": "skip",
    }
    write_store(
        tmp_path / "traj" / "clip",
        frames0=np.stack(frames0),
        disp=np.stack(disp).astype(np.float16),
        vis=np.stack(vis),
        starts=np.array(archive_starts, np.int64),
        meta=meta,
    )
    return truth


def test_ground_truth_scores_use_clip_pixels_and_frames(tmp_path):
    _truth_store(tmp_path)
    summary = evaluate(
        model=_untrained(4),
        checkpoint=_checkpoint(["clip"], 4),
        trajectories=tmp_path / "traj",
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=1),
        device="cpu",
        truth_dir=tmp_path / "truth",
    )
    truth = summary["details"]["vs_truth"]
    assert truth["videos"] == 1 and truth["points"] > 100
    assert truth["tracker_epe_px"] < 0.02  # the 'tracker' is the truth (float16 rounding only)
    assert truth["zero_epe_px"] > 1.0  # sprites do move
    assert truth["zero_epe_px"] == pytest.approx(summary["headline"]["zero_epe_px"], rel=0.02)
    assert summary["vs_truth"] == {f"{m}_epe_px": truth[f"{m}_epe_px"] for m in ("model", "tracker", "zero", "mean")}
    rows = list(csv.DictReader((tmp_path / "out" / "per_video.csv").open()))
    assert [r["method"] for r in rows] == [
        "model vs tracker",
        "zero vs tracker",
        "mean vs tracker",
        "model vs truth",
        "tracker vs truth",
        "zero vs truth",
        "mean vs truth",
    ]


def test_truth_follows_source_indices_of_subsampled_frames(tmp_path):
    truth = _truth_store(tmp_path, clip_every=2)  # the archive kept every 2nd clip frame
    store = TrajectoryStore(tmp_path / "traj" / "clip")
    lookup = truth_lookup(store, truth, source_indices=list(range(0, 17, 2)))
    for w in range(len(store)):
        disp, seen = lookup(w)
        stored = store.disp[w, 3].astype(np.float32).reshape(-1, 2)
        assert np.abs(disp - stored)[seen].max() < 0.02
    wrong = truth_lookup(store, truth, source_indices=None)(1)
    assert np.abs(wrong[0] - store.disp[1, 3].astype(np.float32).reshape(-1, 2)).max() > 1.0


def test_mismatched_window_and_empty_split_are_refused(tmp_path):
    write_motion_store(tmp_path, "a", t=4)
    with pytest.raises(EvaluationError, match="4-frame windows, but the model was trained on 8-frame"):
        evaluate(
            model=_untrained(8),
            checkpoint=_checkpoint(["a"], 8),
            trajectories=tmp_path,
            out_dir=tmp_path / "out",
            params=EvaluateParams(),
            device="cpu",
        )
    with pytest.raises(EvaluationError, match="test split is empty"):
        evaluate(
            model=_untrained(4),
            checkpoint=_checkpoint([], 4),
            trajectories=tmp_path,
            out_dir=tmp_path / "out",
            params=EvaluateParams(),
            device="cpu",
        )


def test_evaluate_cli(tmp_path, capsys):
    from densemotion.cli.evaluate import main
    from densemotion.params import TrainParams
    from densemotion.training import train

    videos = ["v0", "v1", "v2"]
    for i, v in enumerate(videos):
        write_motion_store(tmp_path / "traj", v, seed=i, hg=8, wg=12, nw=4, t=3)
    train(
        trajectories=tmp_path / "traj",
        videos=videos,
        model_params=ModelParams(input_scale=1),
        train_params=TrainParams(device="cpu", epochs=1, batch_size=2),
        out=tmp_path / "m.pt",
    )
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  videos: {v0: x.mp4, v1: y.mp4, v2: z.mp4}\nevaluate:\n  device: cpu\n  pictures: 2\n")
    args = [
        "--model",
        str(tmp_path / "m.pt"),
        "--trajectories",
        str(tmp_path / "traj"),
        "--out-dir",
        str(tmp_path / "metrics"),
        "--truth",
        str(tmp_path / "no-truth"),
        "--params",
        str(params),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.lstrip().startswith('{\n  "headline": {\n    "model_epe_px"') and "model_to_zero" in printed
    assert json.loads((tmp_path / "metrics" / "details.json").read_text())["epochs"] == 1
    assert len(list((tmp_path / "metrics" / "pictures").iterdir())) == 2
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    assert main([*args[:0], "--model", str(tmp_path / "foreign.pt"), *args[2:]]) == 1
    assert "densemotion evaluate: error:" in capsys.readouterr().err


class HypothesesOracle(torch.nn.Module):
    """A stub hypotheses net: hypothesis 1 is the stored tracker motion, hypothesis 2 its mirror
    image, equally likely (a head that knows the two futures but not which)."""

    def __init__(self, store: TrajectoryStore):
        super().__init__()
        from densemotion.heads import HypothesesHead

        self.head = HypothesesHead(2)
        self.oracle = Oracle(store)

    def forward(self, image):
        disp = self.oracle(image)["out"]  # (B, 1, 2, Hg, Wg)
        hyps = torch.stack([disp, -disp], dim=1)  # (B, 2, 1, 2, Hg, Wg)
        return {"out": {"hyps": hyps, "logits": torch.zeros(hyps.shape[0], 2, *hyps.shape[-2:])}}


def test_a_hypotheses_head_is_scored_best_of_m_against_the_codebook(tmp_path):
    """The oracle's best-of-2 is 0 px, its point estimate (the mean of the two) is zero motion, and
    the codebook baseline (two fixed displacements) is worse than the oracle's best-of-2."""
    write_motion_store(tmp_path, "a", seed=0, nw=4, t=3)
    store = TrajectoryStore(tmp_path / "a")
    ckpt = _checkpoint(["a"], 3)
    ckpt["model_params"].update(head="hypotheses", hypotheses=2)
    ckpt["stats"]["codebook"] = [[1.0, 0.0], [-1.0, 0.0]]
    params = EvaluateParams(pictures=0, hist_bins=4, hist_max_px=8.0)
    summary = evaluate(
        model=HypothesesOracle(store), checkpoint=ckpt, trajectories=tmp_path, out_dir=tmp_path / "out",
        params=params, device="cpu",
    )  # fmt: skip
    head = summary["headline"]
    assert head["best_of_m_epe_px"] == pytest.approx(0.0, abs=1e-5)
    assert head["codebook_best_of_m_epe_px"] > 0.1
    assert head["model_epe_px"] == pytest.approx(head["zero_epe_px"], rel=1e-5)  # the mean of +d and -d is 0
    per_video = json.loads((tmp_path / "out" / "per_video.json").read_text())
    assert per_video["a"]["hypotheses"] == 2 and per_video["a"]["best_of_m_epe_px"] == pytest.approx(0.0, abs=1e-5)


def test_pictures_show_each_hypothesis_and_a_laplace_heads_scale(tmp_path):
    """A hypotheses head's picture has a panel per hypothesis after the model's; a Laplace head's
    ends with its scale as a heat map: each wider than the point head's picture of the same window."""
    from densemotion.evaluation import window_picture
    from densemotion.heads import LaplaceHead

    write_motion_store(tmp_path, "a", seed=0, nw=2, t=3)
    store = TrajectoryStore(tmp_path / "a")

    class LaplaceOracle(torch.nn.Module):
        head = LaplaceHead()

        def __init__(self):
            super().__init__()
            self.oracle = Oracle(store)

        def forward(self, image):
            loc = self.oracle(image)["out"]
            return {"out": {"loc": loc, "scale": torch.rand(loc.shape[0], 1, *loc.shape[-2:]) + 0.1}}

    widths = {}
    for name, net in (("point", Oracle(store)), ("hypotheses", HypothesesOracle(store)), ("laplace", LaplaceOracle())):
        picture = window_picture(net, store, 0, None, 64, name, "cpu")
        assert picture.ndim == 3 and picture.dtype == np.uint8
        widths[name] = picture.shape[1]
    assert widths["hypotheses"] >= widths["point"] + 2 * 64  # two more motion panels
    assert widths["laplace"] > widths["point"] + 32  # the scale's panel
