"""The distribution scores (densemotion.scores) against hand-built predictions whose best-of-M,
likelihood and coverage are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densemotion.heads import HypothesesHead, LaplaceHead, PointHead, laplace_radius
from densemotion.scores import point_scores, summary

ONE = np.array([1.0, 1.0], np.float32)  # frame px per tracking px


def _true(points: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(1, 1, 1, N, 2) tracker displacements at one step and all visible."""
    true = np.array(points, np.float32).reshape(1, 1, 1, len(points), 2)
    return true, np.ones(true.shape[:4], bool)


def test_a_point_head_has_no_distribution_scores():
    true, vis = _true([(1.0, 0.0)])
    pred = torch.zeros(1, 1, 2, 1, 1)
    out = point_scores(PointHead(), pred, true, vis, ONE, {"laplace": {"loc": [0, 0], "scale": 1.0}})
    assert summary(out, 1) == {}  # the image-blind fit alone is not reported


def test_best_of_m_picks_the_nearest_hypothesis_and_the_codebook_likewise():
    true, vis = _true([(3.0, 0.0), (-2.0, 0.0)])
    hyps = torch.zeros(1, 3, 1, 2, 1, 2)  # (B, M, K, 2, 1, N)
    hyps[0, :, 0, 0, 0, :] = torch.tensor([[2.5, 2.5], [-1.0, -1.0], [10.0, 10.0]])  # x of each hypothesis
    pred = {"hyps": hyps, "logits": torch.zeros(1, 3, 1, 2)}
    stats = {"codebook": [[0.0, 0.0], [-2.0, 1.0], [4.0, 0.0]]}
    out = point_scores(HypothesesHead(3), pred, true, vis, np.array([2.0, 1.0], np.float32), stats)
    np.testing.assert_allclose(out["best_of_m"], [0.5 * 2, 1.0 * 2])  # nearest x: 2.5 and -1.0, x scaled by 2
    np.testing.assert_allclose(out["codebook_best_of_m"], [2.0, 1.0])  # (4, 0): |1| x 2; (-2, 1): |1| in y
    got = summary(out, 3)
    assert got == {"hypotheses": 3, "best_of_m_epe_px": pytest.approx(1.5), "codebook_best_of_m_epe_px": 1.5}


def test_likelihood_is_per_frame_px_and_coverage_counts_the_points_inside():
    """Laplace(0, b=1) per axis; displacements with L1 = 0.5, 2.5 and 5.5 (tracking px): the NLL is
    2 log 2 + L1 plus log(sx sy) in frame px; the 80% region (L1 <= 2.99) holds the first two."""
    true, vis = _true([(0.5, 0.0), (1.5, -1.0), (0.0, 5.5)])
    pred = {"loc": torch.zeros(1, 1, 2, 1, 3), "scale": torch.ones(1, 1, 1, 3)}
    stats = {"laplace": {"loc": [0.0, 0.0], "scale": 2.0}}
    out = point_scores(LaplaceHead(), pred, true, vis, np.array([2.0, 3.0], np.float32), stats)
    l1 = np.array([0.5, 2.5, 5.5])
    np.testing.assert_allclose(out["model_nll"], 2 * math.log(2) + l1 + math.log(6.0), rtol=1e-6)
    np.testing.assert_allclose(out["fit_nll"], 2 * math.log(4) + l1 / 2 + math.log(6.0), rtol=1e-6)
    assert out["model_in_80"].tolist() == [1.0, 1.0, 0.0] and laplace_radius(0.8) == pytest.approx(2.994, abs=1e-3)
    assert out["model_in_50"].tolist() == [1.0, 0.0, 0.0] and out["model_in_95"].tolist() == [1.0, 1.0, 0.0]
    assert out["fit_in_80"].tolist() == [1.0, 1.0, 1.0]  # b = 2: radius 5.99
    got = summary(out, 1)
    assert got["coverage_80"] == pytest.approx(2 / 3) and got["fit_coverage_95"] == 1.0
    assert got["nll_nats"] == pytest.approx(float(out["model_nll"].mean()))


def test_only_visible_points_are_scored():
    true, vis = _true([(0.5, 0.0), (100.0, 0.0)])
    vis[..., 1] = False
    pred = {"loc": torch.zeros(1, 1, 2, 1, 2), "scale": torch.ones(1, 1, 1, 2)}
    out = point_scores(LaplaceHead(), pred, true, vis, ONE, {})
    assert out["model_nll"].shape == (1,) and out["model_in_95"].tolist() == [1.0]
