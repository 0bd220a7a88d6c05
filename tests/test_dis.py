import numpy as np
import pytest

from densemotion import metrics
from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.sample import render_clip
from densemotion.tracking import grid
from densemotion.tracking.base import TrackerError
from densemotion.tracking.dis.flow import DisTracker, sample_bilinear
from densemotion.trajectories.run import make_tracker


def test_sample_bilinear_is_exact_on_linear_fields_and_clamps():
    h, w = 5, 7
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.stack([2 * xx + 1, 3 * yy - xx], axis=-1)  # (H, W, 2), linear
    pts = np.array([[0.25, 0.5], [5.9, 3.999], [6.0, 4.0], [3, 2]], np.float32)
    got = sample_bilinear(field, pts)
    want = np.stack([2 * pts[:, 0] + 1, 3 * pts[:, 1] - pts[:, 0]], axis=1)
    assert np.allclose(got, want, atol=1e-5)
    outside = sample_bilinear(field, np.array([[-3.0, -2.0], [50.0, 9.0]], np.float32))
    assert np.allclose(outside, field[[0, h - 1], [0, w - 1]])


def _default_tracker() -> DisTracker:
    """The tracker as params.yaml's defaults build it."""
    return make_tracker(TrajectoriesParams(device="cpu"))


def _small_clip(num_frames=8, sprites=4, seed=3):
    p = SampleParams(seed=seed, num_frames=num_frames, height=96, width=160, sprites=sprites)
    return render_clip(p, 0)


def test_dis_tracks_the_sample_against_its_ground_truth():
    frames, truth = _small_clip()
    shape = grid.grid_shape(frames.shape[1:3], 4, 0)
    q = grid.grid_points(shape, 4, 0)
    tracks, vis = _default_tracker().track(frames, q)
    assert tracks.shape == (8, len(q), 2) and vis.shape == (8, len(q))
    assert np.array_equal(tracks[0], q) and (vis[0] == 1).all()
    true, visible = truth.tracks(0, 8, q)
    s = metrics.tracking_summary(tracks[1:], true[1:], visible[1:], vis[1:])
    assert s["epe_median"] < 1.0 and s["delta_avg"] > 0.85 and s["visibility_accuracy"] > 0.85
    # moving points only (sprites): still sub-pixel-ish, and clearly better than standing still
    moving = visible[1:] & (np.linalg.norm(true[1:] - q, axis=-1) > 1.0)
    assert moving.sum() > 50
    err = metrics.endpoint_error(tracks[1:], true[1:])[moving]
    still = metrics.endpoint_error(np.broadcast_to(q, true[1:].shape), true[1:])[moving]
    assert np.median(err) < 1.5 and np.median(err) < 0.3 * np.median(still)


def test_occlusion_checks_mark_points_that_get_covered():
    frames, truth = _small_clip(sprites=6)
    q = grid.grid_points(grid.grid_shape(frames.shape[1:3], 2, 0), 2, 0)
    _, vis = _default_tracker().track(frames, q)
    _, visible = truth.tracks(0, 8, q)
    hidden = ~visible[-1]
    assert hidden.sum() > 20
    recall = float((vis[-1][hidden] < 0.5).mean())  # truly hidden points we call hidden
    precision = float((~visible[-1])[vis[-1] < 0.5].mean())
    assert recall > 0.4 and precision > 0.5, (recall, precision)
    # without the checks, only points leaving the frame are called hidden: far fewer found
    _, vis_off = DisTracker(fb_threshold=1e6, photo_threshold=None).track(frames, q)
    assert float((vis_off[-1][hidden] < 0.5).mean()) < recall - 0.15


def test_points_leaving_the_frame_are_not_visible():
    frames, _ = _small_clip()
    shifted = np.stack([np.roll(frames[0], 3 * t, axis=1) for t in range(4)])  # 3 px/frame right
    w = frames.shape[2]
    q = np.array([[w - 2.0, 40.0], [20.0, 40.0]], np.float32)
    tracks, vis = DisTracker().track(shifted, q)
    assert vis[-1, 0] == 0 and vis[-1, 1] == 1
    assert abs(tracks[-1, 1, 0] - 29.0) < 0.5


def test_overlapping_windows_reuse_cached_flows():
    frames, _ = _small_clip()
    tracker = DisTracker("ultrafast")
    q = np.array([[10.0, 10.0]], np.float32)
    calls = []
    real = tracker._dis.calc
    tracker._dis = type("Spy", (), {"calc": lambda self, a, b, f: calls.append(1) or real(a, b, f)})()
    tracker.track(frames[0:4], q)
    tracker.track(frames[2:6], q)
    assert len(calls) == 2 * (3 + 2)  # pairs 0-1, 1-2, 2-3, then only 3-4, 4-5 are new


def test_bad_inputs_and_params():
    with pytest.raises(TrackerError, match="preset"):
        DisTracker("slowest")
    with pytest.raises(TrackerError, match="uint8"):
        DisTracker().track(np.zeros((3, 8, 8, 3), np.float32), np.zeros((1, 2), np.float32))
    with pytest.raises(TrackerError, match="S >= 2"):
        DisTracker().track(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 2), np.float32))
    with pytest.raises(TrackerError, match="queries"):
        DisTracker().track(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3,), np.float32))


def test_made_by_name_from_params():
    params = TrajectoriesParams(tracker="dis", device="cpu", dis={"preset": "fast", "fb_threshold": 2.0})
    tracker = make_tracker(params)
    assert tracker.name == "dis" and tracker.preset == "fast" and tracker.fb_threshold == 2.0
    with pytest.raises(ValueError, match="unknown tracker 'nope'"):
        TrajectoriesParams(tracker="nope")
