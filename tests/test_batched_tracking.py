"""Windows batched through the learned trackers (trajectories.batch_windows): the same tracks as one
window at a time, batches across chunk borders that resume like any run, and the memory bound."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.prefetch import prefetched
from densemotion.tracking.alltracker import CHECKPOINT
from densemotion.tracking.alltracker.tracker import window_bytes
from densemotion.tracking.base import track_windows
from densemotion.tracking.raft import WEIGHTS
from densemotion.trajectories.run import make_tracker, track_video, window_batch
from densemotion.trajectories.store import TrajectoryStore

from conftest import moving_frames

# the store tests' helpers (and the sample) need PyAV, which bench/gpu_check.py's GPU machine lacks:
# imported where used, so that the device tests above them collect there


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """models/<tracker>/ folders with each tracker's fixture weights under its published name."""
    root = tmp_path_factory.mktemp("models")
    (root / "alltracker").mkdir()
    CHECKPOINT.save_fixture(root / "alltracker" / "alltracker.pth")
    (root / "raft").mkdir()
    WEIGHTS["small"].save_fixture(root / "raft" / WEIGHTS["small"].file_name)
    return root


def _params(tracker: str, **kw) -> TrajectoriesParams:
    sections = {"alltracker": {"alltracker": {"iters": 1}}, "raft": {"raft": {"model": "small", "num_flow_updates": 2}}}
    base = {"tracker": tracker, "device": "cpu", "window": 4, "grid_stride": 4, "chunk_windows": 2}
    return TrajectoriesParams(**{**base, **sections[tracker], **kw})


def _windows(b: int, s: int, h: int, w: int) -> np.ndarray:
    """(B, S, H, W, 3) uint8: B different moving textures."""
    return np.stack([moving_frames(s, h, w, seed=k) for k in range(b)])


@pytest.mark.parametrize("tracker", ["alltracker", "raft"])
def test_a_batch_of_windows_tracks_as_each_window_alone(weights, tracker, test_device):
    """Batched kernels may sum in another order: within 1e-4 px (stored as float16, ~0.004 px at 8 px).
    On ``test_device`` (conftest; bench/gpu_check.py runs it on the GPU)."""
    model = make_tracker(_params(tracker, device=test_device), weights / tracker)
    frames = _windows(3, 4, 40, 56)  # (3, 4, 40, 56, 3)
    queries = np.array([[3, 4], [20, 17], [55, 39], [10.5, 7.25]], np.float32)
    tracks, vis = track_windows(model, frames, queries)  # (3, 4, 4, 2), (3, 4, 4)
    assert tracks.shape == (3, 4, 4, 2) and vis.shape == (3, 4, 4)
    for b in range(3):
        alone_tracks, alone_vis = model.track(frames[b], queries)
        np.testing.assert_allclose(tracks[b], alone_tracks, rtol=0, atol=1e-4)
        np.testing.assert_allclose(vis[b], alone_vis, rtol=0, atol=1e-4)
    assert not np.allclose(tracks[0], tracks[1])  # different windows, different tracks: the test can fail


@pytest.mark.parametrize("tracker", ["alltracker", "raft"])
def test_the_gpu_tracks_as_the_cpu(weights, tracker, test_device):
    """float32 on the GPU (TF32 off) against the CPU: within 1e-3 px (other kernels, other sums)."""
    if test_device == "cpu":
        pytest.skip("compares a GPU with the CPU: DENSEMOTION_TEST_DEVICE=cuda (bench/gpu_check.py)")
    frames = _windows(2, 4, 40, 56)
    queries = np.array([[3, 4], [20, 17], [55, 39], [10.5, 7.25]], np.float32)
    cpu = track_windows(make_tracker(_params(tracker), weights / tracker), frames, queries)
    gpu = track_windows(make_tracker(_params(tracker, device=test_device), weights / tracker), frames, queries)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=0, atol=1e-3)
    assert np.mean(gpu[1] == cpu[1]) > 0.99  # visibility: thresholds may flip a rare point


def test_a_tracker_without_batches_is_called_window_by_window():
    calls = []

    class One:
        name = "one"

        def track(self, frames, queries):
            calls.append(frames.shape)
            s = len(frames)
            return np.repeat(queries[None], s, 0) + frames[:, :1, 0, :2].astype(np.float32), np.ones((s, len(queries)))

    frames = _windows(2, 3, 16, 16)
    tracks, vis = track_windows(One(), frames, np.zeros((5, 2), np.float32))
    assert calls == [(3, 16, 16, 3)] * 2 and tracks.shape == (2, 3, 5, 2) and vis.shape == (2, 3, 5)
    assert np.array_equal(tracks[1, :, 0], frames[1, :, 0, 0, :2].astype(np.float32))


@pytest.fixture(scope="module")
def clip():
    from densemotion.sample import render_clip

    frames, _ = render_clip(SampleParams(seed=2, num_frames=22, height=40, width=64, sprites=2), 0)
    return frames  # 22 frames: 5 windows of 4, chunks of 2 windows (the last of 1)


@pytest.mark.parametrize("tracker", ["alltracker", "raft"])
def test_batched_and_unbatched_runs_write_the_same_store(weights, tracker, clip, tmp_path):
    """Batches of 3 cross the chunks of 2: the stores agree byte for byte (float16 tracks, uint8 vis)."""
    from test_trajectories_run import STORE_FILES, MemoryFrames

    stores = {}
    for batch in (1, 3):
        out = tmp_path / f"out{batch}"
        track_video(
            MemoryFrames(clip), out, _params(tracker, batch_windows=batch), tmp_path / "work", None, weights / tracker
        )
        stores[batch] = out
    for name in STORE_FILES:
        if name.endswith(".npy"):
            a, b = (np.load(stores[k] / name) for k in (1, 3))
            if a.dtype == np.float16:  # a batched kernel's last bit may round the other way
                np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=2e-3, atol=1e-3)
            else:
                assert np.array_equal(a, b), name
    assert len(TrajectoryStore(stores[3]).starts) == 5


def test_a_batched_run_killed_mid_way_resumes_to_the_same_store(weights, clip, tmp_path):
    from test_trajectories_run import STORE_FILES, FailingTracker, MemoryFrames

    params = _params("alltracker", batch_windows=3)
    model = make_tracker(params, weights / "alltracker")
    calls = []

    class Killed:
        name = "alltracker"

        def track(self, frames, queries):  # pragma: no cover - the batched path is taken
            raise AssertionError("batched trackers are called by batch")

        def track_windows(self, frames, queries):
            calls.append(len(frames))
            if len(calls) == 2:
                raise KeyboardInterrupt("killed")
            return model.track_windows(frames, queries)

    with pytest.raises(KeyboardInterrupt):
        track_video(MemoryFrames(clip), tmp_path / "out", params, tmp_path / "work", Killed())
    assert calls == [3, 2]  # 5 windows: a batch of 3, then the 2 left (killed there)
    kept = sorted(p.name for p in (tmp_path / "work").rglob("chunk-*"))
    assert len(kept) == 1  # windows 0-2 tracked: chunk 0 (windows 0, 1) finished, chunk 1 not
    track_video(MemoryFrames(clip), tmp_path / "out", params, tmp_path / "work", FailingTracker(model))
    track_video(MemoryFrames(clip), tmp_path / "whole", params, tmp_path / "work2", model)
    for name in STORE_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_the_batch_follows_the_param_the_device_and_the_memory_bound(weights):
    params = _params("alltracker")
    model = make_tracker(params, weights / "alltracker")
    assert window_batch(model, params, (256, 256)) == 1  # auto on the CPU
    assert window_batch(model, _params("alltracker", batch_windows=6), (256, 256)) == 6
    model.device = type(model.device)("cuda")  # what auto does on a GPU (nothing runs here)
    assert window_batch(model, params, (256, 256)) == 8
    per_window = window_bytes((256, 256))  # ~150 MiB in float32
    assert 100 << 20 < per_window < 200 << 20 and window_bytes((256, 256), np.float16) == per_window // 2
    model.batch_max_bytes = 3 * per_window + 1
    assert window_batch(model, _params("alltracker", batch_windows=6), (256, 256)) == 3  # shrinks to fit
    model.batch_max_bytes = 1
    assert window_batch(model, params, (256, 256)) == 1  # never below one window
    dis = _params("alltracker", batch_windows=6).model_copy(update={"tracker": "dis"})
    assert window_batch(make_tracker(dis), dis, (256, 256)) == 1  # dis takes one window a call


def test_prefetched_keeps_order_passes_errors_and_stops_its_thread():
    assert list(prefetched(iter(range(10)), depth=3)) == list(range(10))
    assert list(prefetched(iter(range(4)), depth=0)) == list(range(4))

    def failing():
        yield 1
        raise ValueError("bad frame 7")

    got = prefetched(failing(), depth=2)
    assert next(got) == 1
    with pytest.raises(ValueError, match="bad frame 7"):
        next(got)
    before = threading.active_count()
    endless = prefetched(iter(range(10**9)), depth=2)
    assert next(endless) == 0
    endless.close()  # the consumer stops early: the reader thread ends
    assert threading.active_count() <= before
