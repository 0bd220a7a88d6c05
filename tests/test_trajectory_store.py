import json
import re

import numpy as np
import pytest

from densemotion.tracking import grid
from densemotion.trajectories.store import (
    OPTIONAL_META,
    REQUIRED_META,
    ChunkedStoreWriter,
    StoreMeta,
    TrajectoryStore,
    TrajectoryStoreError,
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


def test_grid_points_from_meta(tmp_path):
    write_store(tmp_path / "clip", meta=_meta(hg=3, wg=4, g=2, margin=1), **_arrays())
    store = TrajectoryStore(tmp_path / "clip")
    pts = store.info.grid.points().reshape(3, 4, 2)
    assert pts[0, 0].tolist() == [1.5, 1.5] and pts[2, 3].tolist() == [7.5, 5.5]
    assert np.array_equal(store.grid_points(), pts.reshape(-1, 2))


def _written(tmp_path, meta: dict) -> tuple[TrajectoryStore, dict]:
    written = write_store(tmp_path / "clip", meta=meta, **_arrays())
    return TrajectoryStore(tmp_path / "clip"), written


def test_store_meta_round_trips_the_writers_dict(tmp_path):
    """Parsed once on opening, and back to a dict: exactly the document written (hand-written
    stores lack the optional keys; they stay absent)."""
    store, written = _written(tmp_path, _meta())
    on_disk = json.loads((tmp_path / "clip" / "meta.json").read_text())
    assert store.info.to_dict() == written == on_disk == store.meta
    assert StoreMeta.parse(on_disk, "x").to_dict() == on_disk
    info = store.info
    assert (info.window, info.grid_shape, info.tracking_size, info.frame_count, info.cuts) == (
        4,
        (3, 4),
        (8, 10),
        None,
        None,
    )
    assert {f for f in StoreMeta.__dataclass_fields__} == {*REQUIRED_META, *OPTIONAL_META}


def test_store_meta_round_trips_the_trajectories_stage_meta_in_its_order(tmp_path):
    """Every key the stage writes (the optional ones too) is a field, in the writer's order."""
    from densemotion.params import TrajectoriesParams
    from densemotion.trajectories.run import track_video

    from test_trajectories_run import MemoryFrames

    frames = np.zeros((14, 16, 24, 3), np.uint8)
    params = TrajectoriesParams(device="cpu", tracker="dis", window=4, window_stride=3, grid_stride=4, margin=2)
    meta = track_video(MemoryFrames(frames, cuts=[5]), tmp_path / "clip", params, tmp_path / "work")
    assert set(OPTIONAL_META) <= set(meta) and meta["cut_starts"] and meta["skipped_starts"]
    info = TrajectoryStore(tmp_path / "clip").info
    assert list(info.to_dict().items()) == list(meta.items())  # same keys, values and order
    assert info.to_dict() == json.loads((tmp_path / "clip" / "meta.json").read_text())
    assert info.cut_starts == tuple(meta["cut_starts"]) and info.grid.size == (16, 24)


BAD_VALUES = {
    "video": ["clip"],
    "tracker": 3,
    "tracker_params": [],
    "window": "4",
    "window_stride": 0,
    "grid_stride": 2.0,
    "margin": -1,
    "tracking_size": [8],
    "frame_size": "8x10",
    "grid_shape": [3, True],
    "frames_sha256": None,
    "past_end": 1,
    "num_windows": "5",
    "frame_count": -3,
    "skipped_starts": [-1],
    "cuts": "3",
    "cut_starts": [1.5],
}


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_a_malformed_meta_is_one_line_naming_the_store_and_the_key(tmp_path, key):
    store, written = _written(tmp_path, _meta())
    path = tmp_path / "clip"
    for doc in ({**written, key: BAD_VALUES[key]}, {k: v for k, v in written.items() if k != key}):
        if key in OPTIONAL_META and key not in doc:
            continue  # an optional key may be absent
        (path / "meta.json").write_text(json.dumps(doc))
        with pytest.raises(TrajectoryStoreError, match=rf"^{re.escape(str(path))}: meta .*\b{key}\b") as err:
            TrajectoryStore(path)
        assert "\n" not in str(err.value)
        with pytest.raises(TrajectoryStoreError, match=rf"^where: meta .*\b{key}\b"):
            StoreMeta.parse(doc, "where")


def test_a_meta_without_schema_version_is_named_as_of_another_schema(tmp_path):
    _, written = _written(tmp_path, _meta())
    doc = {k: v for k, v in written.items() if k != "schema_version"}
    with pytest.raises(
        TrajectoryStoreError, match=r"^where: trajectory store schema None, this densemotion reads schema 1"
    ):
        StoreMeta.parse(doc, "where")


def test_a_writer_given_a_malformed_meta_writes_nothing(tmp_path):
    w = ChunkedStoreWriter(tmp_path / "work", "ab" * 32)
    w.write_chunk(0, **_arrays(nw=2))
    with pytest.raises(TrajectoryStoreError, match=rf"^{re.escape(str(tmp_path / 'out'))}: meta lacks past_end"):
        w.assemble(tmp_path / "out", {k: v for k, v in _meta().items() if k != "past_end"}, num_chunks=1)
    assert not (tmp_path / "out").exists()


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
