"""Score stored trajectories against the sample's exact ground truth.

For every window, the grid points and their stored trajectories are mapped from tracking pixels
to the clip's own pixels (by the size ratio, x -> (x + 0.5) * W_clip / W_track - 0.5) and from
archive frames to clip frames (the archive's ``source_indices``), then compared with
``SampleTruth.tracks`` on frames 1 .. S-1 of the window (frame 0 is the query itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from densemotion import metrics
from densemotion.errors import DensemotionError
from densemotion.metrics import rescale_points
from densemotion.sample import SampleTruth
from densemotion.trajectories.store import TrajectoryStore

MOVING_PX = 1.0  # a point "moves" when its true displacement from frame 0 exceeds this (clip px)


@dataclass
class Errors:
    """Pooled per-point results over frames 1 .. S-1 of every window (flat float32/bool arrays)."""

    err: list[np.ndarray] = field(default_factory=list)  # end-point error, clip px
    still: list[np.ndarray] = field(default_factory=list)  # error of predicting no motion
    visible: list[np.ndarray] = field(default_factory=list)  # truth
    pred_visible: list[np.ndarray] = field(default_factory=list)
    moving: list[np.ndarray] = field(default_factory=list)
    last: list[np.ndarray] = field(default_factory=list)  # True on the window's last frame

    def extend(self, other: Errors) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def summary(self) -> dict:
        if not self.err:
            return {}
        err, still, vis, pvis, mov, last = (np.concatenate(getattr(self, n)) for n in self.__dataclass_fields__)
        out: dict[str, Any] = dict(metrics.error_summary(err[vis]))
        out["visibility_accuracy"] = metrics.visibility_accuracy(pvis, vis)
        out["zero_motion_epe_mean"] = metrics.error_summary(still[vis])["epe_mean"]
        out["moving"] = {
            **metrics.error_summary(err[vis & mov]),
            "zero_motion_epe_mean": metrics.error_summary(still[vis & mov])["epe_mean"],
        }
        out["last_frame"] = metrics.error_summary(err[vis & last])
        return out


def score_store(store: TrajectoryStore, truth: SampleTruth, source_indices: list[int]) -> Errors:
    """Compare every window of ``store`` with ``truth``; ``source_indices`` maps archive -> clip frames."""
    clip, grid = (truth.height, truth.width), store.info.grid
    scale = grid.scale_to(clip)
    q = grid.points().astype(np.float64)  # (N, 2) tracking px
    q_clip = grid.points_at(clip)  # (N, 2) clip px
    window = store.info.window
    out = Errors()
    for k in range(len(store)):
        start = int(store.starts[k])
        frames = np.asarray(source_indices[start : start + window])  # clip frame of each window frame
        if len(frames) != window or frames.max() >= truth.num_frames:
            raise DensemotionError(
                f"{store.path}: window {start} maps to clip frames {frames.tolist()}, outside the "
                f"truth's {truth.num_frames} frames"
            )
        true, visible = truth.tracks(int(frames[0]), int(frames[-1] - frames[0] + 1), q_clip)
        true, visible = true[frames - frames[0]][1:], visible[frames - frames[0]][1:]  # (S-1, N, ...)
        tracked = store.window(k, range(1, window))
        disp = tracked["disp"].astype(np.float64).reshape(window - 1, -1, 2)
        pred = rescale_points(q + disp, scale)  # (S-1, N, 2) clip px
        last = np.zeros(visible.shape, bool)
        last[-1] = True
        out.err.append(metrics.endpoint_error(pred, true).astype(np.float32).ravel())
        out.still.append(metrics.endpoint_error(np.broadcast_to(q_clip, true.shape), true).astype(np.float32).ravel())
        out.visible.append(visible.ravel())
        out.pred_visible.append(tracked["visible"].ravel())
        out.moving.append(out.still[-1] > MOVING_PX)
        out.last.append(last.ravel())
    return out


# metrics/tracker.json, the DVC metric: a few pooled numbers (one `dvc exp show` column each), in
# this order; everything else (per video, per subset, the within-px fractions) goes to the details
HEADLINE_KEYS = ("epe_mean", "epe_median", "moving_epe_median", "delta_avg", "visibility_accuracy")


def flat_summary(summary: dict) -> dict[str, Any]:
    """:meth:`Errors.summary` with its nested subsets flattened: ``moving.epe_median`` -> ``moving_epe_median``."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update({f"{key}_{k}": v for k, v in flat_summary(value).items()})
        else:
            out[key] = value
    return out


def headline(summary: dict) -> dict[str, Any]:
    """The metric's numbers (:data:`HEADLINE_KEYS`) of a pooled :meth:`Errors.summary`; null when
    nothing was scored (no video with ground truth)."""
    flat = flat_summary(summary)
    return {k: flat.get(k) for k in HEADLINE_KEYS}


def per_video_table(videos: dict[str, dict]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the per-video CSV: one row per scored video, every flattened number."""
    flat = {v: flat_summary(s) for v, s in videos.items()}
    columns: list[str] = []
    for row in flat.values():
        columns += [k for k in row if k not in columns]
    return ["video", *columns], [[v, *(row.get(c) for c in columns)] for v, row in flat.items()]
