"""Score a trained motion model on its held-out (test) videos, next to two baselines.

For every window of every test video the model predicts, from the window's first frame, the
displacement of each grid point; it is compared with the tracker's displacement on the points
the tracker saw (visibility >= 0.5) at the window's last frame. Two baselines are scored on the
very same points: **zero** motion, and the **mean** displacement of the training set (one
vector, over all visible training points; the checkpoint stores it). Errors are end-point
errors in pixels of the frames archive: tracking-resolution displacements are multiplied by
``frame_size / tracking_size`` of each video's trajectory meta (x and y separately).

Where ground truth exists (the built-in sample), the same predictions, the tracker's own
displacements and the baselines are also scored against the true motion of the grid points
(their positions mapped to the clip's pixels), on the points truly visible at the last frame.

Outputs (``out_dir``), every error in px at frame scale and every key saying so (``_px``):

- ``summary.json`` (the DVC metric, small: one ``dvc exp show`` column per number): the
  ``headline``, the model against both baselines (``model_epe_px``, ``zero_epe_px``,
  ``mean_epe_px``, ``model_to_zero``, ``model_to_mean``, ``beats_zero_motion``), then the means
  against ground truth where there is some (``vs_truth``), and nothing else.
- ``details.json``: the pooled statistics (means, medians, ratios, points) against the tracker
  and the truth, the test videos' names, and what was scored: the model and its ``target``, its
  ``epochs``, ``weights_epoch`` (the checkpoint's ``best_epoch``: whose weights were scored), the
  counts of videos and windows; ``per_video.json``: the statistics per video.
- ``per_video.csv``, ``epe_hist.csv`` and ``calibration.csv`` (DVC plot data; the last, for a
  head with a density, the coverage of its 50/80/95% regions, :mod:`densemotion.scores`),
  ``epe_hist.png`` and ``per_video.png``,
  and ``pictures/*.png``: input frame | tracker motion | predicted motion | colour key, each panel
  titled, at the video's aspect (the frame from the frames archive when ``frames_dir`` is given);
  full colour is the 95th percentile of the tracker's visible motion (:func:`densemotion.viz.motion_scale`).

The model beats zero motion when its EPE is lower by more than :data:`~densemotion.metrics.BEAT_MARGIN` (a tie, such as
an untrained net's zero-initialised head, is no win); when it does not, ``beats_zero_motion`` is
false and a ``WARNING`` line goes to stderr. An undefined score (a test video where the tracker
saw no point) is null in the JSON (strict: no NaN token) and an empty cell in the CSV; when no
test video has a visible point at all, evaluation is refused, as there is nothing to score.

Letters: Nw windows of S frames, K predicted steps, Hg x Wg grid, N = Hg * Wg points.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from densemotion.atomic import atomic_path, check_writable, finite_json, write_json
from densemotion.errors import DensemotionError
from densemotion.imaging import fit_box
from densemotion.metrics import SPREAD_HEADLINE, beats_zero, endpoint_error, error_summary
from densemotion.model import MotionNet, predicted_steps
from densemotion.params import EvaluateParams
from densemotion.scores import LEVELS, point_scores
from densemotion.scores import summary as spread_summary
from densemotion.trajectories.store import TrajectoryStore
from densemotion.viz import grid_frame, motion_picture, save_png, scale_panel, side_by_side

if TYPE_CHECKING:
    from densemotion.frames.store import FrameArchive

METHODS = ("model", "zero", "mean")
TRUTH_METHODS = ("model", "tracker", "zero", "mean")


class EvaluationError(DensemotionError):
    """The model and the trajectories or ground truth do not fit together."""


@dataclass
class VideoErrors:
    """End-point errors (frame px) of the visible points of one video, per method."""

    video: str
    windows: int
    tracker: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (n,) vs tracker, last step
    steps: dict[str, float] = field(default_factory=dict)  # method -> mean over all predicted steps
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (m,) vs ground truth
    spread: dict[str, np.ndarray] = field(default_factory=dict)  # scores.point_scores, vs tracker


def predict(model: MotionNet, frames0: np.ndarray, device: str) -> np.ndarray:
    """frames0 (B, Hg, Wg, 3) uint8 -> predictions (B, K, Hg, Wg, 2), tracking px."""
    return predict_all(model, frames0, device)[0]


@torch.no_grad()
def predict_all(model: MotionNet, frames0: np.ndarray, device: str) -> tuple[np.ndarray, Any]:
    """frames0 (B, Hg, Wg, 3) uint8 -> (the head's point estimate (B, K, Hg, Wg, 2) tracking px,
    the head's whole prediction on the CPU)."""
    model.eval()
    image = torch.from_numpy(frames0).permute(0, 3, 1, 2).float().div_(255.0).to(device)
    out = model(image)["out"]
    pred = model.head.point(out)  # (B, K, 2, Hg, Wg): the head's point estimate
    full = {k: v.float().cpu() for k, v in out.items()} if isinstance(out, dict) else out.float().cpu()
    return pred.permute(0, 1, 3, 4, 2).float().cpu().numpy(), full


def batches(store: TrajectoryStore, steps: list[int], batch_size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(first window index, stacked :meth:`TrajectoryStore.window` arrays) of ``batch_size`` windows."""
    for w0 in range(0, len(store), batch_size):
        windows = [store.window(k, steps) for k in range(w0, min(w0 + batch_size, len(store)))]
        yield w0, {key: np.stack([w[key] for w in windows]) for key in ("frame0", "disp", "visible")}


def check_store(store: TrajectoryStore, window: int) -> None:
    if store.info.window != window:
        raise EvaluationError(
            f"{store.path}: trajectories of {store.info.window}-frame windows, but the model was "
            f"trained on {window}-frame windows (its target depends on the window): retrain it"
        )


def video_errors(
    model: MotionNet,
    store: TrajectoryStore,
    mean_disp: np.ndarray,
    target: str,
    device: str,
    batch_size: int,
    truth_fn=None,
    stats: dict | None = None,
) -> VideoErrors:
    """Errors of the model and the baselines on one video (see the module docstring).

    mean_disp: (K, 2) training-set mean displacement, tracking px. ``truth_fn(w) -> (true
    displacement (N, 2) tracking px, visible (N,) bool)`` at the last frame, or None. ``stats``:
    the checkpoint's training statistics (the distribution scores' baselines, :mod:`densemotion.scores`).
    """
    window = store.info.window
    steps = predicted_steps(target, window)
    scale = np.array(store.info.frame_scale, np.float32)
    found: dict[str, list] = {m: [] for m in METHODS}
    step_sums = dict.fromkeys(METHODS, 0.0)
    step_count = 0
    truth_found: dict[str, list] = {m: [] for m in TRUTH_METHODS}
    spread: dict[str, list] = {}
    for w0, batch in batches(store, steps, batch_size):
        pred, full = predict_all(model, batch["frame0"], device)  # (B, K, Hg, Wg, 2), the head's
        true, vis = batch["disp"], batch["visible"]  # (B, K, Hg, Wg, 2), (B, K, Hg, Wg)
        for key, values in point_scores(model.head, full, true, vis, scale, stats or {}).items():
            spread.setdefault(key, []).append(values)
        guesses = {
            "model": pred,
            "zero": np.zeros_like(pred),
            "mean": np.broadcast_to(mean_disp[:, None, None], pred.shape),
        }
        for method, guess in guesses.items():
            err = endpoint_error(guess, true, scale)  # (B, K, Hg, Wg)
            found[method].append(err[:, -1][vis[:, -1]])
            step_sums[method] += float(err[vis].sum())
        step_count += int(vis.sum())
        if truth_fn is not None:
            for i in range(len(pred)):
                tracked = true[i, -1].reshape(-1, 2)
                for method, err in _truth_errors(w0 + i, tracked, pred[i, -1], mean_disp[-1], scale, truth_fn).items():
                    truth_found[method].append(err)
    result = VideoErrors(video=store.video, windows=len(store))
    result.tracker = {m: np.concatenate(v) if v else np.zeros(0) for m, v in found.items()}
    result.steps = {m: s / max(step_count, 1) for m, s in step_sums.items()}
    result.spread = {key: np.concatenate(v) for key, v in spread.items()}
    if truth_fn is not None:
        result.truth = {m: np.concatenate(v) if v else np.zeros(0) for m, v in truth_found.items()}
    return result


def _truth_errors(
    w: int, tracked: np.ndarray, pred_end: np.ndarray, mean_end: np.ndarray, scale: np.ndarray, truth_fn
) -> dict[str, np.ndarray]:
    """Errors against ground truth of window ``w``'s truly visible points, per method (frame px).

    tracked (N, 2) the tracker's displacement at the last frame; pred_end (Hg, Wg, 2) the
    model's; mean_end (2,); tracking px. A point the tracker left non-finite counts as a
    zero-motion guess.
    """
    true_end, seen = truth_fn(w)  # (N, 2), (N,)
    tracked = np.nan_to_num(tracked, posinf=0, neginf=0)
    guesses = {
        "model": pred_end.reshape(-1, 2),
        "tracker": tracked,
        "zero": np.zeros_like(tracked),
        "mean": np.broadcast_to(mean_end, tracked.shape),
    }
    return {method: endpoint_error(guess, true_end, scale)[seen] for method, guess in guesses.items()}


def truth_lookup(store: TrajectoryStore, truth, source_indices: list[int] | None):
    """A ``truth_fn`` for :func:`video_errors`: ground-truth endpoint motion of the grid points.

    Grid points (tracking px) map to clip px by the resize rule x -> (x + 0.5) * s - 0.5; frame
    indices of the archive map to the clip's through ``source_indices`` (identity when None).
    The truth comes back in tracking px, so every method is scaled to frame px the same way.
    """
    clip, grid = (truth.height, truth.width), store.info.grid
    sx, sy = grid.scale_to(clip)
    query = grid.points_at(clip)  # (N, 2) clip px
    window = store.info.window

    def truth_fn(w: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(store.starts[w])
        frames = [start + t for t in range(window)]
        if source_indices is not None:
            frames = [int(source_indices[f]) for f in frames]
        tracks, visible = truth.tracks(frames[0], frames[-1] - frames[0] + 1, query)  # (S, N, 2), (S, N)
        end = frames[-1] - frames[0]
        disp = (tracks[end] - tracks[0]) / np.array([sx, sy])  # (N, 2) tracking px
        return disp.astype(np.float32), visible[end] & visible[0]

    return truth_fn


# --- summaries ------------------------------------------------------------------------------


def _stats(errors: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    """Per method: ``<method>_epe_px`` (mean) and ``<method>_epe_px_median``; the model over each baseline."""
    out: dict[str, float] = {}
    for method, err in errors.items():
        summary = error_summary(err)
        out[f"{prefix}{method}_epe_px"] = summary["epe_mean"]
        out[f"{prefix}{method}_epe_px_median"] = summary["epe_median"]
    if "model" in errors:
        for base in ("zero", "mean"):
            denom = out.get(f"{prefix}{base}_epe_px", float("nan"))
            out[f"{prefix}model_to_{base}"] = out[f"{prefix}model_epe_px"] / denom if denom > 0 else float("nan")
    out[f"{prefix}points"] = int(next(iter(errors.values())).size) if errors else 0
    return out


def headline(vs_tracker: dict) -> dict:
    """The model against both baselines, pooled over the test videos (px at frame scale), and
    whether it beats zero motion (:func:`~densemotion.metrics.beats_zero`)."""
    model, zero = vs_tracker["model_epe_px"], vs_tracker["zero_epe_px"]
    beats = beats_zero(model, zero)
    keys = ("model_epe_px", "zero_epe_px", "mean_epe_px", "model_to_zero", "model_to_mean")
    spread = {k: vs_tracker[k] for k in SPREAD_HEADLINE if k in vs_tracker}  # a head with more than a point
    return {**{k: vs_tracker[k] for k in keys}, "beats_zero_motion": bool(beats), **spread}


def not_beating_warning(head: dict) -> str:
    """The stderr line for a model that does no better than predicting no motion."""
    return (
        f"WARNING: the model does not beat zero motion on the held-out videos: EPE {head['model_epe_px']:.4g} px, "
        f"zero motion {head['zero_epe_px']:.4g} px, training-set mean {head['mean_epe_px']:.4g} px (at frame "
        "scale); predicting no motion does as well: check the training curves, the data and the split"
    )


def video_row(v: VideoErrors, target: str, hypotheses: int = 1) -> dict:
    row: dict = {"video": v.video, "windows": v.windows, **_stats(v.tracker), **spread_summary(v.spread, hypotheses)}
    if target == "trajectory":
        row.update({f"{m}_epe_px_all_steps": s for m, s in v.steps.items()})
    if v.truth:
        row.update(_stats(v.truth, "truth_"))
    return row


def summarize(videos: list[VideoErrors], target: str, extra: dict, hypotheses: int = 1) -> dict:
    """Pooled over all visible points of all test videos (videos with more points weigh more)."""
    pooled = {m: np.concatenate([v.tracker[m] for v in videos]) for m in METHODS}
    spread = {k: np.concatenate([v.spread[k] for v in videos]) for k in videos[0].spread} if videos else {}
    vs_tracker = {**_stats(pooled), **spread_summary(spread, hypotheses)}
    summary: dict = {"vs_tracker": vs_tracker, "videos": len(videos), "windows": sum(v.windows for v in videos)}
    if target == "trajectory":
        total = sum(v.tracker["model"].size for v in videos) or 1
        summary["vs_tracker"].update(
            {
                f"{m}_epe_px_all_steps": sum(v.steps[m] * v.tracker["model"].size for v in videos) / total
                for m in METHODS
            }
        )
    with_truth = [v for v in videos if v.truth]
    if with_truth:
        summary["vs_truth"] = _stats({m: np.concatenate([v.truth[m] for v in with_truth]) for m in TRUTH_METHODS})
        summary["vs_truth"]["videos"] = len(with_truth)
    return {**summary, **extra}


def histogram(videos: list[VideoErrors], bins: int, max_px: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bin centres and the fraction of points per bin per method; errors past max_px go in the last bin."""
    edges = np.linspace(0.0, max_px, bins + 1)
    fractions = {}
    for method in METHODS:
        err = np.concatenate([v.tracker[method] for v in videos])
        counts, _ = np.histogram(np.minimum(err, max_px), bins=edges)
        fractions[method] = counts / max(err.size, 1)
    return (edges[:-1] + edges[1:]) / 2, fractions


# --- files ------------------------------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    def fmt(x) -> str:  # an undefined value (a video without visible points) is an empty cell, not "nan"
        if isinstance(x, float):
            return f"{x:.6g}" if math.isfinite(x) else ""
        return str(x)

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # quotes a video name holding a comma or quote
        writer.writerow(header)
        writer.writerows([fmt(x) for x in row] for row in rows)


def write_plots(out_dir: Path, rows: list[dict], centres: np.ndarray, fractions: dict[str, np.ndarray]) -> None:
    """CSV data for DVC plots, and the same as PNG charts."""
    truth_cols = [f"truth_{m}_epe_px" for m in TRUTH_METHODS] if all("truth_model_epe_px" in r for r in rows) else []
    cols = [f"{m}_epe_px" for m in METHODS] + truth_cols
    labels = {
        c: f"{c.removeprefix('truth_').removesuffix('_epe_px')} vs {'truth' if c.startswith('truth_') else 'tracker'}"
        for c in cols
    }
    # long format, one bar per (video, method): DVC's bar templates plot one column against one label
    _write_csv(
        out_dir / "per_video.csv",
        ["bar", "video", "method", "epe_px"],
        [[f"{r['video']}: {labels[c]}", r["video"], labels[c], r[c]] for r in rows for c in cols],
    )
    _write_csv(
        out_dir / "epe_hist.csv",
        ["epe_px", *METHODS],
        [[float(c), *(float(fractions[m][i]) for m in METHODS)] for i, c in enumerate(centres)],
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in METHODS:
        ax.plot(centres, fractions[m], label=m, drawstyle="steps-mid")
    ax.set(
        title="held-out end-point error vs tracker",
        xlabel="end-point error (px at frame scale; last bin: larger)",
        ylabel="fraction of points",
    )
    ax.legend()
    _save_figure(fig, out_dir / "epe_hist.png")
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.12 * len(rows) * len(cols)))
    y = np.arange(len(rows))
    height = 0.8 / len(cols)
    for k, c in enumerate(cols):
        ax.barh(y + k * height, [r[c] for r in rows], height=height, label=labels[c])
    ax.set_yticks(y + 0.4 - height / 2, [r["video"] for r in rows])
    ax.invert_yaxis()
    ax.set(title="held-out end-point error per video", xlabel="mean end-point error (px at frame scale)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save_figure(fig, out_dir / "per_video.png")


def write_calibration(path: Path, vs_tracker: dict) -> None:
    """calibration.csv (a DVC plot): per nominal level, the fraction of tracker displacements inside
    the model's region of that probability and the image-blind fit's (empty for a head without a
    density), beside the ideal (= the level)."""
    rows = []
    for level in LEVELS:
        pct = round(level * 100)
        model, fit = (
            vs_tracker.get(f"coverage_{pct}", float("nan")),
            vs_tracker.get(f"fit_coverage_{pct}", float("nan")),
        )
        rows.append([level, level, model, fit])
    _write_csv(path, ["nominal", "ideal", "model", "fit"], rows)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_pictures(
    out_dir: Path,
    model: MotionNet,
    stores: dict[str, TrajectoryStore],
    params: EvaluateParams,
    device: str,
    *,
    model_name: str = "model",
    frames_dir: str | Path | None = None,
) -> list[str]:
    """``params.pictures`` pictures (frame | tracker motion | predicted motion | colour key, at the
    last frame) of windows spread evenly over the test videos; returns their names.

    The frame is the window's first frame from ``frames_dir/<video>.zip`` (the stored grid-size
    frame without it); every panel has the video's aspect, its longest side ``params.picture_side``.
    """
    pairs = [(v, w) for v, s in stores.items() for w in range(len(s))]
    if not pairs or params.pictures == 0:
        return []
    picks = sorted({pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(params.pictures, len(pairs))).round()})
    names = []
    only_pictures = lambda d: all(p.suffix == ".png" for p in d.iterdir())
    with (
        atomic_path(out_dir / "pictures", is_dir=True, same_kind=only_pictures, kind="a folder of pictures") as tmp,
        contextlib.ExitStack() as opened,
    ):
        archives = {v: _archive(stores[v], frames_dir, opened) for v in sorted({v for v, _ in picks})}
        for video, w in picks:
            picture = window_picture(model, stores[video], w, archives[video], params.picture_side, model_name, device)
            name = f"{video}_window{w:04d}.png"
            save_png(tmp / name, picture)
            names.append(name)
    return names


def window_picture(
    model: MotionNet,
    store: TrajectoryStore,
    w: int,
    archive: FrameArchive | None,
    side: int,
    model_name: str,
    device: str,
) -> np.ndarray:
    """The picture of window ``w``: its first frame (from ``archive``; the grid thumbnail when
    None), the tracker's and the model's motion to the last frame, then, for a head with several
    hypotheses, each one with its mean probability, the colour key (the tracker's scale); for a
    head with a scale, the scale as a last panel, in px at its own colour scale."""
    info = store.info
    grid = info.grid
    window = store.window(w, [info.window - 1])
    point, full = predict_all(model, window["frame0"][None], device)
    pred = point[0, -1]  # (Hg, Wg, 2)
    everywhere = np.ones(pred.shape[:2], bool)
    motions = [(window["disp"][0], window["visible"][0]), (pred, everywhere)]
    titles = ["frame", f"tracker ({info.tracker})", f"model ({model_name})"]
    hyps, probs = model.head.hypotheses(full)  # (1, M, K, 2, Hg, Wg), (1, M, Hg, Wg)
    if hyps.shape[1] > 1:
        titles[-1] = f"model ({model_name}): mean of {hyps.shape[1]}"
        for m in range(hyps.shape[1]):
            motions.append((hyps[0, m, -1].permute(1, 2, 0).numpy(), everywhere))
            titles.append(f"hypothesis {m + 1}: p = {float(probs[0, m].mean()):.2f}")
    frame = grid_frame(grid, window["frame0"]) if archive is None else archive.read(window["start"])
    picture = motion_picture(
        frame,
        motions,
        titles=titles,
        cell=grid.stride,
        origin=grid.origin,
        extent=grid.size,
        panel=fit_box(info.frame_size, (side, side)),
        px_scale=float(np.mean(info.frame_scale)),
    )
    if isinstance(full, dict) and "scale" in full:  # the Laplace head's uncertainty beside it
        scale = full["scale"][0, -1].numpy() * float(np.mean(info.frame_scale))  # (Hg, Wg) frame px
        picture = side_by_side([picture, scale_panel(scale, picture.shape[0], side)])
    return picture


def _archive(
    store: TrajectoryStore, frames_dir: str | Path | None, opened: contextlib.ExitStack
) -> FrameArchive | None:
    """The frames archive ``store`` was tracked on (None without ``frames_dir``), closed with ``opened``."""
    if frames_dir is None:
        return None
    from densemotion.frames.store import FrameArchive

    archive = opened.enter_context(FrameArchive(Path(frames_dir) / f"{store.video}.zip"))
    store.check_frames(archive)
    return archive


def evaluate(
    *,
    model: MotionNet,
    checkpoint: dict,
    trajectories: str | Path,
    out_dir: str | Path,
    params: EvaluateParams,
    device: str,
    truth_dir: str | Path | None = None,
    frames_dir: str | Path | None = None,
) -> dict:
    """Evaluate ``model`` (from ``checkpoint``) on the checkpoint's test videos; write ``out_dir``.

    Returns summary.json's contents, then what was scored (:func:`scored`: the model, its epochs,
    the counts), then ``details`` (details.json's).
    """
    out_dir = Path(out_dir)
    videos = list(checkpoint["split"]["test"])
    if not videos:
        raise EvaluationError("the model's test split is empty (train.test_videos = 0): nothing to evaluate on")
    target, window = checkpoint["model_params"]["target"], int(checkpoint["window"])
    mean_disp = np.asarray(checkpoint["stats"]["mean"], np.float32)  # (K, 2) tracking px
    stores = {v: TrajectoryStore(Path(trajectories) / v) for v in videos}
    for store in stores.values():
        check_store(store, window)
    _check_visible(stores, window)
    check_writable(out_dir, "the scores", EvaluationError)
    results = []
    stats = checkpoint.get("stats", {})
    for video, store in stores.items():
        truth_fn = _truth_for(store, video, truth_dir, frames_dir)
        results.append(video_errors(model, store, mean_disp, target, device, params.batch_size, truth_fn, stats))
    m = (
        int(checkpoint["model_params"].get("hypotheses", 1))
        if checkpoint["model_params"].get("head") == "hypotheses"
        else 1
    )
    rows = [video_row(r, target, m) for r in results]
    centres, fractions = histogram(results, params.hist_bins, params.hist_max_px)
    details = summarize(results, target, {"test_videos": videos}, m)
    summary, run = brief(details), scored(details, checkpoint)
    details = {**details, **{k: run[k] for k in ("model", "target", "epochs", "weights_epoch")}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "details.json", details)
    write_json(out_dir / "per_video.json", {r["video"]: {k: v for k, v in r.items() if k != "video"} for r in rows})
    write_plots(out_dir, rows, centres, fractions)
    write_calibration(out_dir / "calibration.csv", details["vs_tracker"])
    model_name = str(checkpoint["model_params"]["name"])
    write_pictures(out_dir, model, stores, params, device, model_name=model_name, frames_dir=frames_dir)
    write_ordered_json(out_dir / "summary.json", summary)  # last: the metric exists only when all else does
    if not summary["headline"]["beats_zero_motion"]:
        print(not_beating_warning(summary["headline"]), file=sys.stderr)
    return {**summary, **run, "details": details}


def brief(details: dict) -> dict:
    """summary.json: the headline, then the means against ground truth. Nothing else: each number
    is a column of `dvc exp show`, and the model and its epochs are params there already."""
    summary: dict = {"headline": headline(details["vs_tracker"])}
    if "vs_truth" in details:
        summary["vs_truth"] = {f"{m}_epe_px": details["vs_truth"][f"{m}_epe_px"] for m in TRUTH_METHODS}
    return summary


def scored(details: dict, checkpoint: dict) -> dict:
    """What was scored (in details.json): the model, its epochs, whose weights, the counts."""
    epochs = int(checkpoint["epoch"])
    return dict(
        model=checkpoint["model_params"]["name"],
        target=checkpoint["model_params"]["target"],
        epochs=epochs,
        weights_epoch=int(checkpoint.get("best_epoch", epochs)),  # the scored weights' (older checkpoints: the last)
        videos=details["videos"],
        windows=details["windows"],
        points=details["vs_tracker"]["points"],
    )


def write_ordered_json(dest: Path, obj: dict) -> None:
    """Strict JSON in the order given (write_json sorts keys): a person reads the top first."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")


def _check_visible(stores: dict[str, TrajectoryStore], window: int) -> None:
    """Refuse test videos without one point the tracker saw at a window's last frame: every score
    would be undefined (written as null), and a stage that scored nothing must not look done.
    Such videos among others are named on stderr; their per-video scores are null."""
    seen = lambda s: any(s.window(k, [window - 1])["visible"].any() for k in range(len(s)))  # stops at the first
    blind = [v for v, s in stores.items() if not seen(s)]
    if blind and len(blind) == len(stores):
        raise EvaluationError(
            f"the test videos {blind} have no visible point at the last frame of any window (every point "
            "invisible or its displacement not finite): nothing to score; check their trajectory stores"
        )
    if blind:
        print(f"test videos with no visible point: {', '.join(blind)} (their scores are null)", file=sys.stderr)


def _truth_for(store: TrajectoryStore, video: str, truth_dir, frames_dir):
    """The truth_fn of ``video`` when ``truth_dir/<video>.npz`` exists, else None."""
    if truth_dir is None or not (Path(truth_dir) / f"{video}.npz").is_file():
        return None
    from densemotion.sample import load_truth

    truth = load_truth(Path(truth_dir) / f"{video}.npz")
    source_indices = None
    if frames_dir is not None:
        from densemotion.frames.store import FrameArchive

        with FrameArchive(Path(frames_dir) / f"{video}.zip") as archive:
            source_indices = list(archive.meta["source_indices"])
    return truth_lookup(store, truth, source_indices)
