import numpy as np
import pytest

from densemotion import metrics


def test_endpoint_error_is_euclidean():
    e = metrics.endpoint_error(np.array([[3.0, 4.0], [1, 1]]), np.zeros((2, 2)))
    assert e.tolist() == [5.0, pytest.approx(2**0.5)]
    with pytest.raises(ValueError):
        metrics.endpoint_error(np.zeros((2, 2)), np.zeros((3, 2)))


def test_delta_avg_counts_only_visible_points():
    true = np.zeros((5, 2))
    pred = np.array([[0.5, 0], [1.5, 0], [3, 0], [100, 0], [0, 0]])
    visible = np.array([True, True, True, False, True])
    d = metrics.delta_avg(pred, true, visible)
    # errors on visible points: 0.5, 1.5, 3, 0
    assert d["within_1"] == 0.5 and d["within_2"] == 0.75 and d["within_4"] == 1.0
    assert d["within_16"] == 1.0
    assert d["delta_avg"] == pytest.approx((0.5 + 0.75 + 1 + 1 + 1) / 5)


def test_delta_avg_with_nothing_visible_is_nan():
    d = metrics.delta_avg(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2, bool))
    assert np.isnan(d["delta_avg"])


def test_visibility_accuracy_accepts_probabilities_and_uint8():
    true = np.array([True, False, True, False])
    assert metrics.visibility_accuracy(np.array([0.9, 0.1, 0.2, 0.6]), true) == 0.5
    assert metrics.visibility_accuracy(np.array([255, 0, 255, 0], np.uint8), true) == 1.0
    with pytest.raises(ValueError):
        metrics.visibility_accuracy(np.zeros(3), true)


def test_tracking_summary():
    true = np.zeros((2, 3, 2))
    pred = true.copy()
    pred[1, :, 0] = [0.5, 2.5, 10]
    vis = np.ones((2, 3), bool)
    s = metrics.tracking_summary(pred, true, vis, pred_vis=np.ones((2, 3)))
    assert s["epe_median"] == 0.25 and s["epe_mean"] == pytest.approx(13 / 6)
    assert s["visibility_accuracy"] == 1.0 and s["points"] == 6
