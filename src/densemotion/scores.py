"""Scores of a head that predicts more than one motion: best-of-M, likelihood, calibration, each
next to a baseline that does not look at the image.

For the visible points of each window's last predicted step (as evaluate's EPE), in frame px:

- **best-of-M EPE** (a head with M > 1 hypotheses): the EPE of the hypothesis nearest the
  tracker's displacement (an oracle's pick); baseline: the **codebook**, the M k-means centres of
  the training set's displacements (the checkpoint's ``stats.codebook``), at best-of-M too. A head
  that does not beat it learned nothing from the image.
- **likelihood** (a head with a density, e.g. ``laplace``): nats per point of the tracker's
  displacement at frame scale (that in tracking px plus log sx + log sy: the density per frame px²); baseline: the
  image-independent Laplace fitted to the training set (``stats.laplace``).
- **calibration**: for nominal levels :data:`LEVELS`, the fraction of tracker displacements inside
  the predicted region of that probability (1.0 = 100%), for the head and for the fitted Laplace.

Per-point arrays come from :func:`point_scores` per batch; :func:`summary` makes the numbers.
Keys are absent where a head has no such output (a point head: none at all).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from densemotion.heads import LaplaceHead, MotionHead

LEVELS = (0.5, 0.8, 0.95)  # nominal coverage levels of the calibration


def point_scores(
    head: MotionHead, prediction: Any, true: np.ndarray, visible: np.ndarray, scale: np.ndarray, stats: dict
) -> dict[str, np.ndarray]:
    """Per visible last-step point: name -> (n,) values (see the module docstring).

    prediction: the head's (CPU); true (B, K, Hg, Wg, 2) tracking px; visible (B, K, Hg, Wg);
    scale (2,) frame px per tracking px; stats: the checkpoint's training statistics."""
    seen = torch.from_numpy(np.asarray(visible[:, -1], bool))  # (B, Hg, Wg)
    target = torch.from_numpy(np.ascontiguousarray(true)).permute(0, 1, 4, 2, 3).float()  # (B, K, 2, Hg, Wg)
    px = torch.from_numpy(np.asarray(scale, np.float32)).view(1, 1, 2, 1, 1)
    out: dict[str, np.ndarray] = {}
    hyps, _ = head.hypotheses(prediction)  # (B, M, K, 2, Hg, Wg)
    if hyps.shape[1] > 1:
        out["best_of_m"] = _best_of(hyps[:, :, -1].float(), target[:, -1], px)[seen].numpy()
        if "codebook" in stats:
            codebook = torch.tensor(stats["codebook"], dtype=torch.float32)  # (M, 2)
            fixed = codebook.view(1, -1, 2, 1, 1).expand(target.shape[0], -1, -1, *target.shape[3:])
            out["codebook_best_of_m"] = _best_of(fixed, target[:, -1], px)[seen].numpy()
    jacobian = math.log(float(scale[0])) + math.log(float(scale[1]))  # density per tracking px -> per frame px
    fitted = _fitted_laplace(stats, target) if "laplace" in stats else None
    for name, pred, scorer in (("model", prediction, head), ("fit", fitted, LaplaceHead())):
        if pred is None:
            continue
        nll = scorer.nll(pred, target)
        if nll is None:
            continue
        out[f"{name}_nll"] = (nll[:, -1] + jacobian)[seen].numpy()
        for level in LEVELS:
            inside = scorer.inside(pred, target, level)
            if inside is not None:
                out[f"{name}_in_{round(level * 100)}"] = inside[:, -1][seen].float().numpy()
    return out


def _best_of(hyps: torch.Tensor, target: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """hyps (B, M, 2, Hg, Wg), target (B, 2, Hg, Wg) tracking px -> (B, Hg, Wg) min EPE, frame px."""
    diff = (hyps - target[:, None]) * px  # px (1, 1, 2, 1, 1): x and y to frame px
    return diff.pow(2).sum(dim=2).sqrt().min(dim=1).values


def _fitted_laplace(stats: dict, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """The training set's image-independent Laplace as a LaplaceHead prediction shaped like ``target``."""
    b, k, _, h, w = target.shape
    loc = torch.tensor(stats["laplace"]["loc"], dtype=torch.float32).view(1, 1, 2, 1, 1).expand(b, k, 2, h, w)
    return {"loc": loc, "scale": torch.full((b, k, h, w), float(stats["laplace"]["scale"]))}


def summary(arrays: dict[str, np.ndarray], hypotheses: int) -> dict[str, float]:
    """The scores of pooled per-point ``arrays`` (names as in details.json)."""
    out: dict[str, float] = {}

    def mean(key: str) -> float:
        values = arrays.get(key)
        return float(values.mean()) if values is not None and values.size else float("nan")

    if "best_of_m" in arrays:
        out["hypotheses"] = hypotheses
        out["best_of_m_epe_px"] = mean("best_of_m")
        if "codebook_best_of_m" in arrays:
            out["codebook_best_of_m_epe_px"] = mean("codebook_best_of_m")
    for name, prefix in (("model", ""), ("fit", "fit_")):
        if name == "fit" and "model_nll" not in arrays:  # the baseline alone says nothing of the model
            continue
        if f"{name}_nll" in arrays:
            out[f"{prefix}nll_nats"] = mean(f"{name}_nll")
        for level in LEVELS:
            key = f"{name}_in_{round(level * 100)}"
            if key in arrays:
                out[f"{prefix}coverage_{round(level * 100)}"] = mean(key)
    return out
