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

Outputs (``out_dir``): ``summary.json`` and ``per_video.json`` (DVC metrics), ``per_video.csv``
and ``epe_hist.csv`` (DVC plot data), ``epe_hist.png`` and ``per_video.png``, and
``pictures/*.png``: input frame | tracker motion | predicted motion | colour-wheel legend.

Letters: Nw windows, K predicted steps, Hg x Wg grid, N = Hg * Wg points.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from densemotion.atomic import atomic_path, write_json
from densemotion.dataset import VISIBLE_MIN, frame_scale, predicted_steps
from densemotion.model import MotionNet
from densemotion.params import EvaluateParams
from densemotion.trajectories.store import TrajectoryStore, grid_points

METHODS = ("model", "zero", "mean")
TRUTH_METHODS = ("model", "tracker", "zero", "mean")


class EvaluationError(ValueError):
    """The model and the trajectories or ground truth do not fit together."""


@dataclass
class VideoErrors:
    """End-point errors (frame px) of the visible points of one video, per method."""

    video: str
    windows: int
    tracker: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (n,) vs tracker, last step
    steps: dict[str, float] = field(default_factory=dict)  # method -> mean over all predicted steps
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (m,) vs ground truth


@torch.no_grad()
def predict_windows(
    model: MotionNet, store: TrajectoryStore, device: str, batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first window index, predictions (B, K, Hg, Wg, 2) tracking px) batch by batch."""
    model.eval()
    for w0 in range(0, len(store), batch_size):
        frames = torch.from_numpy(np.array(store.frames0[w0 : w0 + batch_size]))  # (B, Hg, Wg, 3)
        image = frames.permute(0, 3, 1, 2).float().div_(255.0).to(device)
        pred = model(image)["out"]  # (B, K, 2, Hg, Wg)
        yield w0, pred.permute(0, 1, 3, 4, 2).float().cpu().numpy()


def _epe(pred: np.ndarray, true: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(..., 2) displacements in tracking px -> (...) end-point error in frame px."""
    d = (pred - true) * scale
    return np.sqrt((d * d).sum(axis=-1))


def check_store(store: TrajectoryStore, window: int) -> None:
    if int(store.meta["window"]) != window:
        raise EvaluationError(
            f"{store.path}: trajectories of {store.meta['window']}-frame windows, but the model was "
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
) -> VideoErrors:
    """Errors of the model and the baselines on one video (see the module docstring).

    mean_disp: (K, 2) training-set mean displacement, tracking px. ``truth_fn(w) -> (true
    displacement (N, 2) tracking px, visible (N,) bool)`` at the last frame, or None.
    """
    window = int(store.meta["window"])
    steps = predicted_steps(target, window)
    scale = np.array(frame_scale(store.meta), np.float32)
    found: dict[str, list] = {m: [] for m in METHODS}
    step_sums = dict.fromkeys(METHODS, 0.0)
    step_count = 0
    truth_found: dict[str, list] = {m: [] for m in TRUTH_METHODS}
    for w0, pred in predict_windows(model, store, device, batch_size):
        b = len(pred)
        true = np.asarray(store.disp[w0 : w0 + b][:, steps], np.float32)  # (B, K, Hg, Wg, 2)
        vis = np.asarray(store.vis[w0 : w0 + b][:, steps]) >= VISIBLE_MIN  # (B, K, Hg, Wg)
        vis &= np.isfinite(true).all(axis=-1)
        guesses = {
            "model": pred,
            "zero": np.zeros_like(pred),
            "mean": np.broadcast_to(mean_disp[:, None, None], pred.shape),
        }
        for method, guess in guesses.items():
            err = _epe(guess, true, scale)  # (B, K, Hg, Wg)
            found[method].append(err[:, -1][vis[:, -1]])
            step_sums[method] += float(err[vis].sum())
        step_count += int(vis.sum())
        if truth_fn is not None:
            for i in range(b):
                for method, err in _truth_errors(store, w0 + i, pred[i, -1], mean_disp[-1], scale, truth_fn).items():
                    truth_found[method].append(err)
    result = VideoErrors(video=store.video, windows=len(store))
    result.tracker = {m: np.concatenate(v) if v else np.zeros(0) for m, v in found.items()}
    result.steps = {m: s / max(step_count, 1) for m, s in step_sums.items()}
    if truth_fn is not None:
        result.truth = {m: np.concatenate(v) if v else np.zeros(0) for m, v in truth_found.items()}
    return result


def _truth_errors(
    store: TrajectoryStore, w: int, pred_end: np.ndarray, mean_end: np.ndarray, scale: np.ndarray, truth_fn
) -> dict[str, np.ndarray]:
    """Errors against ground truth of window ``w``'s truly visible points, per method (frame px).

    pred_end (Hg, Wg, 2) model's endpoint prediction; mean_end (2,); tracking px. A point the
    tracker left non-finite counts as a zero-motion guess.
    """
    true_end, seen = truth_fn(w)  # (N, 2), (N,)
    window = int(store.meta["window"])
    tracked = np.nan_to_num(np.asarray(store.disp[w, window - 1], np.float32).reshape(-1, 2), posinf=0, neginf=0)
    guesses = {
        "model": pred_end.reshape(-1, 2),
        "tracker": tracked,
        "zero": np.zeros_like(tracked),
        "mean": np.broadcast_to(mean_end, tracked.shape),
    }
    return {method: _epe(guess, true_end, scale)[seen] for method, guess in guesses.items()}


def truth_lookup(store: TrajectoryStore, truth, source_indices: list[int] | None):
    """A ``truth_fn`` for :func:`video_errors`: ground-truth endpoint motion of the grid points.

    Grid points (tracking px) map to clip px by the resize rule x -> (x + 0.5) * s - 0.5; frame
    indices of the archive map to the clip's through ``source_indices`` (identity when None).
    The truth comes back in tracking px, so every method is scaled to frame px the same way.
    """
    th, tw = store.meta["tracking_size"]
    sx, sy = truth.width / tw, truth.height / th
    points = grid_points(store.meta).astype(np.float64)  # (N, 2) tracking px
    query = np.stack([(points[:, 0] + 0.5) * sx - 0.5, (points[:, 1] + 0.5) * sy - 0.5], axis=1)
    window = int(store.meta["window"])

    def truth_fn(w: int) -> tuple[np.ndarray, np.ndarray]:
        start = int(store.starts[w])
        frames = [start + t for t in range(window)]
        if source_indices is not None:
            frames = [int(source_indices[f]) for f in frames]
        tracks, visible = truth.tracks(frames[0], frames[-1] - frames[0] + 1, query)  # (L, N, 2), (L, N)
        end = frames[-1] - frames[0]
        disp = (tracks[end] - tracks[0]) / np.array([sx, sy])  # (N, 2) tracking px
        return disp.astype(np.float32), visible[end] & visible[0]

    return truth_fn


# --- summaries ------------------------------------------------------------------------------


def _stats(errors: dict[str, np.ndarray], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for method, err in errors.items():
        out[f"{prefix}{method}_epe"] = float(err.mean()) if err.size else float("nan")
        out[f"{prefix}{method}_epe_median"] = float(np.median(err)) if err.size else float("nan")
    if "model" in errors:
        for base in ("zero", "mean"):
            denom = out.get(f"{prefix}{base}_epe", float("nan"))
            out[f"{prefix}model_to_{base}"] = out[f"{prefix}model_epe"] / denom if denom > 0 else float("nan")
    out[f"{prefix}points"] = int(next(iter(errors.values())).size) if errors else 0
    return out


def video_row(v: VideoErrors, target: str) -> dict:
    row: dict = {"video": v.video, "windows": v.windows, **_stats(v.tracker)}
    if target == "trajectory":
        row.update({f"{m}_epe_all_steps": s for m, s in v.steps.items()})
    if v.truth:
        row.update(_stats(v.truth, "truth_"))
    return row


def summarize(videos: list[VideoErrors], target: str, extra: dict) -> dict:
    """Pooled over all visible points of all test videos (videos with more points weigh more)."""
    pooled = {m: np.concatenate([v.tracker[m] for v in videos]) for m in METHODS}
    summary: dict = {"vs_tracker": _stats(pooled), "videos": len(videos), "windows": sum(v.windows for v in videos)}
    if target == "trajectory":
        total = sum(v.tracker["model"].size for v in videos) or 1
        summary["vs_tracker"].update(
            {f"{m}_epe_all_steps": sum(v.steps[m] * v.tracker["model"].size for v in videos) / total for m in METHODS}
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
    def fmt(x) -> str:
        return f"{x:.6g}" if isinstance(x, float) else str(x)

    with atomic_path(path) as tmp:
        tmp.write_text("\n".join([",".join(header), *(",".join(fmt(x) for x in r) for r in rows)]) + "\n")


def write_plots(out_dir: Path, rows: list[dict], centres: np.ndarray, fractions: dict[str, np.ndarray]) -> None:
    """CSV data for DVC plots, and the same as PNG charts."""
    truth_cols = [f"truth_{m}_epe" for m in TRUTH_METHODS] if all("truth_model_epe" in r for r in rows) else []
    cols = [f"{m}_epe" for m in METHODS] + truth_cols
    labels = {
        c: f"{c.removeprefix('truth_').removesuffix('_epe')} vs {'truth' if c.startswith('truth_') else 'tracker'}"
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
    ax.set(xlabel="end-point error vs tracker (px, frame scale; last bin: larger)", ylabel="fraction of points")
    ax.legend()
    _save_figure(fig, out_dir / "epe_hist.png")
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.12 * len(rows) * len(cols)))
    y = np.arange(len(rows))
    height = 0.8 / len(cols)
    for k, c in enumerate(cols):
        ax.barh(y + k * height, [r[c] for r in rows], height=height, label=labels[c])
    ax.set_yticks(y + 0.4 - height / 2, [r["video"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="mean end-point error (px, frame scale)")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save_figure(fig, out_dir / "per_video.png")


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def picture(
    frame0: np.ndarray, tracked: np.ndarray, visible: np.ndarray, predicted: np.ndarray, scale: int
) -> np.ndarray:
    """One (H, W, 3) uint8 picture: frame | tracker motion | predicted motion | colour wheel.

    frame0 (Hg, Wg, 3) uint8; tracked, predicted (Hg, Wg, 2) px; visible (Hg, Wg) bool. Both
    motions share one colour scale (the tracker's 99th-percentile magnitude); points the
    tracker lost are grey.
    """
    from densemotion.viz import color_wheel, flow_to_color

    mags = np.hypot(tracked[..., 0], tracked[..., 1])[visible]
    max_mag = float(np.percentile(mags, 99)) if mags.size else 1.0
    tracker_img = flow_to_color(tracked, max_mag=max_mag or 1.0)
    tracker_img[~visible] = 128
    panels = [frame0, tracker_img, flow_to_color(predicted, max_mag=max_mag or 1.0)]
    panels = [np.repeat(np.repeat(p, scale, axis=0), scale, axis=1) for p in panels]
    h = panels[0].shape[0]
    gap = np.full((h, 4, 3), 255, np.uint8)
    wheel = np.full((h, h, 3), 255, np.uint8)
    wheel_img = color_wheel(min(h, 64))
    wheel[: wheel_img.shape[0], : wheel_img.shape[1]] = wheel_img
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2], gap, wheel], axis=1)


def write_pictures(
    out_dir: Path,
    model: MotionNet,
    stores: dict[str, TrajectoryStore],
    target: str,
    count: int,
    scale: int,
    device: str,
) -> list[str]:
    """``count`` pictures of windows spread evenly over the test videos; returns their names."""
    from densemotion.viz import save_png

    pairs = [(v, w) for v, s in stores.items() for w in range(len(s))]
    if not pairs or count == 0:
        return []
    picks = sorted({pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round()})
    names = []
    with atomic_path(out_dir / "pictures", is_dir=True) as tmp:
        for video, w in picks:
            store = stores[video]
            window = int(store.meta["window"])
            frame0 = np.array(store.frames0[w])
            with torch.no_grad():
                image = torch.from_numpy(frame0).permute(2, 0, 1)[None].float().div_(255.0).to(device)
                pred = model(image)["out"][0, -1].permute(1, 2, 0).float().cpu().numpy()  # (Hg, Wg, 2)
            tracked = np.asarray(store.disp[w, window - 1], np.float32)
            visible = np.asarray(store.vis[w, window - 1]) >= VISIBLE_MIN
            name = f"{video}_window{w:04d}.png"
            save_png(tmp / name, picture(frame0, tracked, visible, pred, scale))
            names.append(name)
    return names


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
    """Evaluate ``model`` (from ``checkpoint``) on the checkpoint's test videos; write ``out_dir``."""
    out_dir = Path(out_dir)
    videos = list(checkpoint["split"]["test"])
    if not videos:
        raise EvaluationError("the model's test split is empty (train.test_videos = 0): nothing to evaluate on")
    target, window = checkpoint["model_params"]["target"], int(checkpoint["window"])
    mean_disp = np.asarray(checkpoint["stats"]["mean"], np.float32)  # (K, 2) tracking px
    stores = {v: TrajectoryStore(Path(trajectories) / v) for v in videos}
    results = []
    for video, store in stores.items():
        check_store(store, window)
        truth_fn = _truth_for(store, video, truth_dir, frames_dir)
        results.append(video_errors(model, store, mean_disp, target, device, params.batch_size, truth_fn))
    rows = [video_row(r, target) for r in results]
    centres, fractions = histogram(results, params.hist_bins, params.hist_max_px)
    extra = {
        "target": target,
        "model": checkpoint["model_params"]["name"],
        "epochs": int(checkpoint["epoch"]),
        "test_videos": videos,
    }
    summary = summarize(results, target, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "summary.json", summary)
    write_json(out_dir / "per_video.json", {r["video"]: {k: v for k, v in r.items() if k != "video"} for r in rows})
    write_plots(out_dir, rows, centres, fractions)
    write_pictures(out_dir, model, stores, target, params.pictures, params.picture_scale, device)
    return summary


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
