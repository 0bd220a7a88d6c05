"""Motion scores, one home for each: end-point error, error summaries, visibility, pixel scales.

Used by the tracker accuracy (against ground truth), training (validation) and evaluation
(model and baselines against the tracker). Arrays are NumPy or torch: :func:`endpoint_error`
takes either.

Conventions follow TAP-Vid: position errors count only where the point is truly visible; the
<delta^x_avg score is the mean, over thresholds 1, 2, 4, 8 and 16 px, of the fraction of those
points whose predicted position is within the threshold of the truth.

Two pixel grids meet here: the tracking resolution (where grid points and stored displacements
live) and the frames archive's own size (where errors are reported). A position x maps between
them by the resize rule x -> (x + 0.5) * s - 0.5, a displacement d by d * s, with s the size
ratio of each axis (:func:`size_ratio`; a store's frame scale is its grid's ``scale_to`` the
frames' size, ``StoreMeta.frame_scale``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

DELTA_THRESHOLDS: tuple[float, ...] = (1, 2, 4, 8, 16)
# a point counts as visible from this probability (the one visibility threshold; trackers map their
# own published thresholds onto it) and, stored as uint8 (probability x 255), from VISIBLE_MIN
VISIBLE_PROB = 0.5
VISIBLE_MIN = 128


def endpoint_error(pred: Any, true: Any, scale: Any = None) -> Any:
    """Euclidean distance between (..., 2) positions or displacements -> (...).

    NumPy arrays or torch tensors; ``scale`` (broadcastable to (..., 2), x and y) multiplies the
    difference first, e.g. to report tracking-pixel displacements in frame pixels.
    """
    if pred.shape[-1:] != (2,) or true.shape[-1:] != (2,):
        raise ValueError(f"endpoint_error: shapes must end in 2, got {tuple(pred.shape)} and {tuple(true.shape)}")
    d = pred - true
    if scale is not None:
        d = d * scale
    return (d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) ** 0.5


def within_key(threshold: float) -> str:
    """Result key of one threshold: 1 -> 'within_1', 0.5 -> 'within_0.5'."""
    return f"within_{threshold:g}"


def _mean(a: np.ndarray) -> float:
    return float(a.mean()) if a.size else float("nan")


def delta_from_errors(err: np.ndarray, thresholds: tuple[float, ...] = DELTA_THRESHOLDS) -> dict[str, float]:
    """Fraction of errors (of visible points) under each threshold, and their mean ('delta_avg')."""
    err = np.asarray(err).ravel()
    out = {within_key(t): _mean(err < t) for t in thresholds}
    out["delta_avg"] = float(np.mean([out[within_key(t)] for t in thresholds])) if err.size else float("nan")
    return out


def error_summary(err: np.ndarray) -> dict[str, float]:
    """EPE mean and median, TAP-Vid's within-threshold fractions and delta_avg, and the point count
    of end-point errors ``err`` (already restricted to the points that count); NaN when empty."""
    err = np.asarray(err).ravel()
    return {
        "epe_mean": _mean(err),
        "epe_median": float(np.median(err)) if err.size else float("nan"),
        **delta_from_errors(err),
        "points": int(err.size),
    }


def delta_avg(
    pred: np.ndarray, true: np.ndarray, visible: np.ndarray, thresholds: tuple[float, ...] = DELTA_THRESHOLDS
) -> dict[str, float]:
    """:func:`delta_from_errors` of positions ``pred`` vs ``true`` (..., 2) where ``visible`` (...)."""
    visible = np.asarray(visible, dtype=bool)
    err = endpoint_error(np.asarray(pred, np.float64), np.asarray(true, np.float64))
    if visible.shape != err.shape:
        raise ValueError(f"delta_avg: visible has shape {visible.shape}, expected {err.shape}")
    return delta_from_errors(err[visible], thresholds)


def as_visible(vis: np.ndarray) -> np.ndarray:
    """Boolean visibility from bool, a probability in [0, 1] (>= VISIBLE_PROB) or uint8 * 255 (>= VISIBLE_MIN)."""
    vis = np.asarray(vis)
    if vis.dtype == bool:
        return vis
    if vis.dtype == np.uint8:
        return vis >= VISIBLE_MIN
    return vis >= VISIBLE_PROB


def visibility_accuracy(pred_vis: np.ndarray, true_vis: np.ndarray) -> float:
    """Fraction of entries whose predicted visibility (see :func:`as_visible`) matches the truth."""
    pred = as_visible(pred_vis)
    true = as_visible(true_vis)
    if pred.shape != true.shape:
        raise ValueError(f"visibility_accuracy: shapes differ, {pred.shape} and {true.shape}")
    return _mean(pred == true)


def tracking_summary(
    pred: np.ndarray, true: np.ndarray, true_visible: np.ndarray, pred_vis: np.ndarray | None = None
) -> dict[str, float]:
    """:func:`error_summary` of positions on truly visible points, and visibility accuracy."""
    true_visible = np.asarray(true_visible, dtype=bool)
    err = endpoint_error(np.asarray(pred, np.float64), np.asarray(true, np.float64))[true_visible]
    out = error_summary(err)
    if pred_vis is not None:
        out["visibility_accuracy"] = visibility_accuracy(pred_vis, true_visible)
    return out


# --- pixel grids ------------------------------------------------------------------------------


def size_ratio(to_size: Sequence[int], from_size: Sequence[int]) -> tuple[float, float]:
    """(sx, sy): pixels of ``to_size`` (H, W) per pixel of ``from_size`` (H, W)."""
    (th, tw), (fh, fw) = to_size, from_size
    return tw / fw, th / fh


def rescale_points(points: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """(..., 2) x, y positions mapped to a grid ``scale`` (sx, sy) times as large, by the resize
    rule x -> (x + 0.5) * s - 0.5 (pixel centres at integers on both grids)."""
    s = np.asarray(scale, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) + 0.5) * s - 0.5


def endpoint_epe_sum(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor
) -> tuple[float, int]:
    """Sum and count of end-point errors at the last predicted step, in frame pixels.

    scale (B, 2): frame px per tracking px (x, y) of each sample's video.
    """
    last = pred[:, -1].float().permute(0, 2, 3, 1), target[:, -1].permute(0, 2, 3, 1)  # (B, Hg, Wg, 2) each
    err = endpoint_error(*last, scale[:, None, None, :])  # (B, Hg, Wg)
    m = mask[:, -1]
    return float(err[m].sum()), int(m.sum())


# a model beats zero motion when its EPE is lower by more than this fraction: a tie within rounding
# (an untrained net's zero-initialised head predicts no motion) is no win
BEAT_MARGIN = 1e-3


def beats_zero(model_epe: float, zero_epe: float) -> bool:
    """Whether a model's EPE beats zero motion's by more than :data:`BEAT_MARGIN` (NaN never does)."""
    return math.isfinite(model_epe) and math.isfinite(zero_epe) and model_epe < (1 - BEAT_MARGIN) * zero_epe


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """(k, 2) centres of (N, 2) ``points`` by Lloyd's k-means from a k-means++ start (seeded): the
    "codebook" of k fixed displacements that the hypotheses head must beat at best-of-k. Fewer
    distinct points than k: the centres repeat."""
    points = np.asarray(points, np.float64)
    if points.shape[0] == 0:
        return np.zeros((k, 2))
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = np.min([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        total = d2.sum()
        centres.append(points[rng.choice(len(points), p=d2 / total)] if total > 0 else centres[-1])
    c = np.array(centres)
    for _ in range(iterations):
        nearest = ((points[:, None] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        moved = np.array([points[nearest == j].mean(axis=0) if (nearest == j).any() else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def laplace_fit(points: np.ndarray) -> dict[str, object]:
    """The image-independent Laplace of (N, 2) displacements (maximum likelihood, one scale for
    both axes): loc the per-axis median, scale the mean absolute deviation over both axes. The
    likelihood baseline of a head with a density."""
    points = np.asarray(points, np.float64)
    if points.shape[0] == 0:
        return {"loc": [0.0, 0.0], "scale": 1.0}
    loc = np.median(points, axis=0)
    return {"loc": loc.tolist(), "scale": max(float(np.abs(points - loc).sum(axis=1).mean() / 2), 1e-3)}


# summary.json's headline keys beyond a point head's (densemotion.scores), with the report's labels
SPREAD_HEADLINE = ("best_of_m_epe_px", "codebook_best_of_m_epe_px", "nll_nats", "fit_nll_nats", "coverage_80")
SPREAD_LABELS = {
    "best_of_m_epe_px": "best-of-M EPE (px)",
    "codebook_best_of_m_epe_px": "codebook best-of-M EPE (px)",
    "nll_nats": "likelihood, NLL (nats/point)",
    "fit_nll_nats": "image-blind Laplace NLL (nats/point)",
    "coverage_80": "80% region holds",
}
