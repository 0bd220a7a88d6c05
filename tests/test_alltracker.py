"""The ``alltracker`` tracker: tracks read from the dense flow, visibility, weights handling.

Checkpoints are the deterministic fixture weights (CHECKPOINT.fixture_state_dict) written by the
tests in the published file format; the network itself is checked in test_alltracker_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densemotion.params import TrajectoriesParams
from densemotion.runtime import cpu_has_native_bf16
from densemotion.tracking import registry
from densemotion.tracking.alltracker import CHECKPOINT
from densemotion.tracking.alltracker.tracker import BATCH, AllTrackerTracker, sample_bilinear, visibility_score
from densemotion.tracking.weights import CheckpointError
from densemotion.trajectories.run import make_tracker

from conftest import moving_frames


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """models/alltracker/ with the fixture weights under the published file name."""
    folder = tmp_path_factory.mktemp("alltracker")
    CHECKPOINT.save_fixture(folder / "alltracker.pth")
    return folder


def _params(**section) -> TrajectoriesParams:
    return TrajectoriesParams(tracker="alltracker", device="cpu", alltracker={"iters": 1, **section})


def test_sampling_is_exact_at_pixel_centres_and_bilinear_between():
    maps = torch.randn(3, 2, 5, 7, dtype=torch.float64)  # (S, C, H, W)
    centres = torch.tensor([[0.0, 0.0], [6.0, 4.0], [3.0, 2.0]], dtype=torch.float64)
    got = sample_bilinear(maps, centres)  # (S, C, N)
    assert torch.equal(got[..., 0], maps[..., 0, 0]) and torch.equal(got[..., 1], maps[..., 4, 6])
    assert torch.equal(got[..., 2], maps[..., 2, 3])
    between = sample_bilinear(maps, torch.tensor([[2.25, 1.5]], dtype=torch.float64))[..., 0]
    row1 = 0.75 * maps[..., 1, 2] + 0.25 * maps[..., 1, 3]
    row2 = 0.75 * maps[..., 2, 2] + 0.25 * maps[..., 2, 3]
    torch.testing.assert_close(between, 0.5 * row1 + 0.5 * row2)
    outside = sample_bilinear(maps, torch.tensor([[-3.0, 9.0]], dtype=torch.float64))[..., 0]
    assert torch.equal(outside, maps[..., 4, 0])  # the border


def test_visibility_maps_the_threshold_to_one_half():
    visconf = torch.tensor([[1.0, 0.6, 0.8, 0.0], [1.0, 1.0, 1.0, 1.0]])  # (2, N): visibility, confidence
    score = visibility_score(visconf, 0.6)
    torch.testing.assert_close(score, torch.tensor([1.0, 0.5, 0.75, 0.0]))


def test_tracks_are_the_queries_plus_the_model_flow(weights_dir):
    tracker = make_tracker(_params(corr_memory_mb=3), weights_dir)
    assert isinstance(tracker, AllTrackerTracker) and tracker.corr_max_bytes == 3 << 20
    frames = moving_frames(5, 40, 56)  # (5, 40, 56, 3) uint8
    queries = np.array([[3, 4], [20, 17], [55, 39], [10.5, 7.25]], np.float32)
    tracks, vis = tracker.track(frames, queries)
    assert tracks.shape == (5, 4, 2) and vis.shape == (5, 4) and tracks.dtype == vis.dtype == np.float32
    np.testing.assert_array_equal(tracks[0], queries)
    assert np.all(vis[0] == 1) and np.all((vis >= 0) & (vis <= 1))
    images = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float()
    with torch.no_grad():
        flows = tracker.net.forward_sliding(images, iters=1, corr_max_bytes=3 << 20, batch=BATCH)[0][0].numpy()
    assert flows.shape == (5, 2, 40, 56)
    for n, (x, y) in enumerate(queries[:3].astype(int)):  # pixel centres: the flow there, exactly
        np.testing.assert_array_equal(tracks[1:, n], queries[n] + flows[1:, :, y, x])


def test_autocast_follows_the_shared_vocabulary(weights_dir):
    with pytest.warns(UserWarning, match="trajectories.alltracker.autocast: fp16 is a GPU mode"):
        fp16 = make_tracker(_params(autocast="fp16"), weights_dir)
    assert isinstance(fp16, AllTrackerTracker) and fp16.amp_dtype is None  # CPU: float32
    auto = make_tracker(_params(autocast="auto"), weights_dir)
    assert isinstance(auto, AllTrackerTracker)
    assert auto.amp_dtype == (torch.bfloat16 if cpu_has_native_bf16() else None)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 on a CPU without AVX512_BF16/AMX runs 5-65x slower")
def test_bf16_tracks_stay_near_float32(weights_dir):
    frames = moving_frames(5, 40, 56)
    queries = np.stack(np.meshgrid(np.arange(0, 56, 5), np.arange(0, 40, 5)), -1).reshape(-1, 2).astype(np.float32)
    exact, exact_vis = make_tracker(_params(), weights_dir).track(frames, queries)
    low, low_vis = make_tracker(_params(autocast="bf16"), weights_dir).track(frames, queries)
    error = np.linalg.norm(low - exact, axis=-1)  # (S, N) px
    assert 0 < error.max() < 0.1  # it did run in bf16, and stayed within a tenth of a pixel
    assert np.abs(low_vis - exact_vis).max() < 0.05


def test_missing_weights_fail_at_once_with_the_fetch_command(tmp_path):
    with pytest.raises(CheckpointError, match="dvc import-url https://huggingface.co/aharley/alltracker"):
        make_tracker(_params(), tmp_path)


def test_params_section_rejects_unknown_keys():
    with pytest.raises(ValueError, match="nonsense"):
        registry.section(_params(nonsense=1))
    with pytest.raises(ValueError, match="corr_memory_mb"):
        registry.section(_params(corr_memory_mb=0))
