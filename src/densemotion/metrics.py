"""Point-tracking and motion metrics on NumPy arrays (pixels in, plain floats out).

Conventions follow TAP-Vid: position errors count only where the point is truly visible; the
<delta^x_avg score is the mean, over thresholds 1, 2, 4, 8 and 16 px, of the fraction of those
points whose predicted position is within the threshold of the truth.
"""

from __future__ import annotations

import numpy as np

DELTA_THRESHOLDS: tuple[float, ...] = (1, 2, 4, 8, 16)


def endpoint_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Euclidean distance between (..., 2) positions or displacements -> (...) float64."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.shape[-1:] != (2,):
        raise ValueError(f"endpoint_error: shapes must match and end in 2, got {pred.shape} and {true.shape}")
    return np.hypot(pred[..., 0] - true[..., 0], pred[..., 1] - true[..., 1])


def within_key(threshold: float) -> str:
    """Result key of one threshold: 1 -> 'within_1', 0.5 -> 'within_0.5'."""
    return f"within_{threshold:g}"


def delta_avg(
    pred: np.ndarray,
    true: np.ndarray,
    visible: np.ndarray,
    thresholds: tuple[float, ...] = DELTA_THRESHOLDS,
) -> dict[str, float]:
    """Fraction of visible points within each threshold, and their mean ('delta_avg').

    pred, true: (..., 2) positions; visible: (...) bool. Returns {'within_1': ..., ...,
    'delta_avg': ...}; NaN for every key when no point is visible.
    """
    visible = np.asarray(visible, dtype=bool)
    err = endpoint_error(pred, true)
    if visible.shape != err.shape:
        raise ValueError(f"delta_avg: visible has shape {visible.shape}, expected {err.shape}")
    return delta_from_errors(err[visible], thresholds)


def delta_from_errors(err: np.ndarray, thresholds: tuple[float, ...] = DELTA_THRESHOLDS) -> dict[str, float]:
    """:func:`delta_avg` from end-point errors already restricted to the visible points."""
    err = np.asarray(err).ravel()
    out: dict[str, float] = {}
    for t in thresholds:
        out[within_key(t)] = float(np.mean(err < t)) if err.size else float("nan")
    out["delta_avg"] = float(np.mean([out[within_key(t)] for t in thresholds])) if err.size else float("nan")
    return out


def as_visible(vis: np.ndarray) -> np.ndarray:
    """Boolean visibility from bool, a probability in [0, 1] (>= 0.5) or uint8 * 255 (>= 128)."""
    vis = np.asarray(vis)
    if vis.dtype == bool:
        return vis
    if vis.dtype == np.uint8:
        return vis >= 128
    return vis >= 0.5


def visibility_accuracy(pred_vis: np.ndarray, true_vis: np.ndarray) -> float:
    """Fraction of entries whose predicted visibility (see :func:`as_visible`) matches the truth."""
    pred = as_visible(pred_vis)
    true = as_visible(true_vis)
    if pred.shape != true.shape:
        raise ValueError(f"visibility_accuracy: shapes differ, {pred.shape} and {true.shape}")
    return float(np.mean(pred == true)) if pred.size else float("nan")


def tracking_summary(
    pred: np.ndarray,
    true: np.ndarray,
    true_visible: np.ndarray,
    pred_vis: np.ndarray | None = None,
) -> dict[str, float]:
    """EPE mean/median on visible points, <delta_avg and its parts, visibility accuracy, counts."""
    true_visible = np.asarray(true_visible, dtype=bool)
    err = endpoint_error(pred, true)[true_visible]
    out = {
        "epe_mean": float(err.mean()) if err.size else float("nan"),
        "epe_median": float(np.median(err)) if err.size else float("nan"),
        **delta_avg(pred, true, true_visible),
        "visible_points": int(err.size),
    }
    if pred_vis is not None:
        out["visibility_accuracy"] = visibility_accuracy(pred_vis, true_visible)
    return out
