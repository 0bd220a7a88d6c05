import json

import numpy as np
import pytest

from densemotion.tracking import grid
from densemotion.trajectories.store import (
    ChunkedStoreWriter,
    TrajectoryStore,
    TrajectoryStoreError,
    grid_points,
    write_store,
)


def _meta(hg=3, wg=4, t=4, g=2, margin=1):
    return {
        "video": "clip",
        "tracker": "dis",
        "tracker_params": {"preset": "medium"},
        "window": t,
        "window_stride": t,
        "grid_stride": g,
        "margin": margin,
        "tracking_size": [hg * g + 2 * margin, wg * g + 2 * margin],
        "frame_size": [hg * g + 2 * margin, wg * g + 2 * margin],
        "grid_shape": [hg, wg],
        "frames_sha256": "0" * 64,
        "past_end": "skip",
    }


def _arrays(nw=5, t=4, hg=3, wg=4, seed=0):
    rng = np.random.default_rng(seed)
    disp = rng.uniform(-64, 64, (nw, t, hg, wg, 2)).astype(np.float16)
    disp[:, 0] = 0
    return {
        "frames0": rng.integers(0, 256, (nw, hg, wg, 3), dtype=np.uint8),
        "disp": disp,
        "vis": rng.integers(0, 256, (nw, t, hg, wg), dtype=np.uint8),
        "starts": np.arange(nw, dtype=np.int64) * t,
    }


def test_write_then_read_roundtrip(tmp_path):
    arrays = _arrays()
    meta = write_store(tmp_path / "clip", meta=_meta(), **arrays)
    assert meta["schema_version"] == 1 and meta["num_windows"] == 5
    store = TrajectoryStore(tmp_path / "clip")
    assert len(store) == 5 and store.video == "clip"
    for name, arr in arrays.items():
        got = getattr(store, name)
        assert isinstance(got, np.memmap) and np.array_equal(got, arr)
    w = store.window(2)
    assert w["disp"].dtype == np.float32 and w["start"] == 8 and w["vis"].max() <= 1.0
    s = store.sample(1)
    assert tuple(s["image"].shape) == (3, 3, 4) and tuple(s["disp"].shape) == (4, 2, 3, 4)
    assert float(s["disp"][2, 1, 0, 3]) == float(arrays["disp"][1, 2, 0, 3, 1])
    assert not list(tmp_path.glob(".*tmp"))


def test_grid_points_from_meta():
    pts = grid_points(_meta(hg=3, wg=4, g=2, margin=1)).reshape(3, 4, 2)
    assert pts[0, 0].tolist() == [1.5, 1.5] and pts[2, 3].tolist() == [7.5, 5.5]


class _KnownTracks:
    """A tracker whose tracks are known exactly: every point moves by its own (dx, dy) * t / (L - 1),
    displacements spread over [-64, 64] px, far from the grid origin (absolute x up to ~600 px)."""

    name = "known"

    def __init__(self, n: int, seed: int = 0):
        self.end = np.random.default_rng(seed).uniform(-64, 64, (n, 2))

    def track(self, frames, queries):
        t = np.arange(len(frames))[:, None, None] / (len(frames) - 1)
        tracks = queries.astype(np.float64)[None] + t * self.end[None]  # (L, N, 2)
        return tracks.astype(np.float32), np.ones(tracks.shape[:2], np.float32)


def test_written_store_reads_back_displacements_within_a_64th_px_up_to_64_px(tmp_path):
    """Through our own writer (track_video's float16 conversion) and reader (TrajectoryStore.window)."""
    from densemotion.params import TrajectoriesParams
    from densemotion.trajectories.run import track_video

    from test_trajectories_run import MemoryFrames

    frames = np.zeros((9, 40, 640, 3), np.uint8)  # wide: absolute x would lose precision in float16
    params = TrajectoriesParams(device="cpu", window=5, window_stride=4, grid_stride=4, chunk_windows=1)
    queries = grid.grid_points(grid.grid_shape((40, 640), 4, 0), 4, 0)
    tracker = _KnownTracks(len(queries))
    track_video(MemoryFrames(frames), tmp_path / "clip", params, tmp_path / "work", tracker=tracker)
    store = TrajectoryStore(tmp_path / "clip")
    assert len(store) == 2
    want = tracker.track(frames[:5], queries)[0].astype(np.float64) - queries  # (S, N, 2) px
    for k in range(len(store)):
        got = store.window(k)["disp"].reshape(5, -1, 2)
        err = np.abs(got - want)
        assert err.max() <= 1 / 64, err.max()  # float16 spacing is 1/32 px in [32, 64)
        assert np.count_nonzero(err) > 0.5 * err.size  # rounded, as documented, not stored exactly


def test_wrong_dtype_is_refused(tmp_path):
    arrays = _arrays()
    arrays["disp"] = arrays["disp"].astype(np.float32)
    with pytest.raises(TrajectoryStoreError, match="disp"):
        write_store(tmp_path / "clip", meta=_meta(), **arrays)
    assert not (tmp_path / "clip").exists()


def test_missing_truncated_and_old_schema_stores_are_refused(tmp_path):
    with pytest.raises(TrajectoryStoreError, match="missing"):
        TrajectoryStore(tmp_path / "nope")
    write_store(tmp_path / "clip", meta=_meta(), **_arrays())
    disp = tmp_path / "clip" / "disp.npy"
    disp.write_bytes(disp.read_bytes()[:-100])
    with pytest.raises(TrajectoryStoreError, match="clip.*disp.npy is truncated"):
        TrajectoryStore(tmp_path / "clip")
    write_store(tmp_path / "old", meta=_meta(), **_arrays())
    meta_file = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["schema_version"] = 0
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(TrajectoryStoreError, match="old.*schema 0"):
        TrajectoryStore(tmp_path / "old")


def test_chunked_writer_assembles_the_same_bytes_as_write_store(tmp_path):
    arrays = _arrays(nw=5)
    fp = "ab" * 32
    w = ChunkedStoreWriter(tmp_path / "work", fp)
    for i, sl in enumerate([slice(0, 2), slice(2, 4), slice(4, 5)]):
        w.write_chunk(i, **{k: v[sl] for k, v in arrays.items()})
    assert w.has_chunk(2) and not w.has_chunk(3)
    w.assemble(tmp_path / "chunked", _meta(), num_chunks=3)
    write_store(tmp_path / "whole", meta=_meta(), **arrays)
    for name in ["frames0.npy", "disp.npy", "vis.npy", "starts.npy", "meta.json"]:
        assert (tmp_path / "chunked" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    w.cleanup()
    assert not (tmp_path / "work").exists()


def test_chunks_of_another_fingerprint_are_not_reused(tmp_path):
    arrays = _arrays(nw=2)
    w = ChunkedStoreWriter(tmp_path / "work", "ab" * 32)
    w.write_chunk(0, **arrays)
    other = ChunkedStoreWriter(tmp_path / "work", "cd" * 32)
    assert not other.has_chunk(0)
    assert not w.dir.exists()  # stale work removed
    with pytest.raises(TrajectoryStoreError, match="chunk 0 is not finished"):
        other.assemble(tmp_path / "out", _meta(), num_chunks=1)
    assert not (tmp_path / "out").exists()
