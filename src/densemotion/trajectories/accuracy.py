"""Score stored trajectories against the sample's exact ground truth.

For every window, the grid points and their stored trajectories are mapped from tracking pixels
to the clip's own pixels (by the size ratio, x -> (x + 0.5) * W_clip / W_track - 0.5) and from
archive frames to clip frames (the archive's ``source_indices``), then compared with
``SampleTruth.tracks`` on frames 1 .. S-1 of the window (frame 0 is the query itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from densemotion import metrics
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
        out = _scores(err, vis)
        out["visibility_accuracy"] = float(np.mean(pvis == vis))
        out["zero_motion_epe_mean"] = float(still[vis].mean()) if vis.any() else float("nan")
        out["moving"] = {**_scores(err, vis & mov), "zero_motion_epe_mean": _mean(still[vis & mov])}
        out["last_frame"] = _scores(err, vis & last)
        return out


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")


def _scores(err: np.ndarray, mask: np.ndarray) -> dict:
    """EPE mean/median and TAP-Vid's within-threshold fractions of errors ``err[mask]``."""
    e = err[mask]
    return {
        "epe_mean": _mean(e),
        "epe_median": float(np.median(e)) if e.size else float("nan"),
        **metrics.delta_from_errors(e),
        "points": int(e.size),
    }


def score_store(store: TrajectoryStore, truth: SampleTruth, source_indices: list[int]) -> Errors:
    """Compare every window of ``store`` with ``truth``; ``source_indices`` maps archive -> clip frames."""
    th, tw = store.meta["tracking_size"]
    sx, sy = truth.width / tw, truth.height / th
    q = store.grid_points().astype(np.float64)  # (N, 2) tracking px
    q_clip = np.stack([(q[:, 0] + 0.5) * sx - 0.5, (q[:, 1] + 0.5) * sy - 0.5], axis=1)
    window = int(store.meta["window"])
    out = Errors()
    for k in range(len(store)):
        start = int(store.starts[k])
        frames = np.asarray(source_indices[start : start + window])  # clip frame of each window frame
        if len(frames) != window or frames.max() >= truth.num_frames:
            raise ValueError(
                f"{store.path}: window {start} maps to clip frames {frames.tolist()}, outside the "
                f"truth's {truth.num_frames} frames"
            )
        true, visible = truth.tracks(int(frames[0]), int(frames[-1] - frames[0] + 1), q_clip)
        true, visible = true[frames - frames[0]][1:], visible[frames - frames[0]][1:]  # (S-1, N, ...)
        disp = store.disp[k, 1:].astype(np.float64).reshape(window - 1, -1, 2)
        pred = np.stack([(q[:, 0] + disp[..., 0] + 0.5) * sx - 0.5, (q[:, 1] + disp[..., 1] + 0.5) * sy - 0.5], -1)
        last = np.zeros(visible.shape, bool)
        last[-1] = True
        out.err.append(metrics.endpoint_error(pred, true).astype(np.float32).ravel())
        out.still.append(metrics.endpoint_error(np.broadcast_to(q_clip, true.shape), true).astype(np.float32).ravel())
        out.visible.append(visible.ravel())
        out.pred_visible.append(metrics.as_visible(store.vis[k, 1:]).reshape(window - 1, -1).ravel())
        out.moving.append(out.still[-1] > MOVING_PX)
        out.last.append(last.ravel())
    return out
