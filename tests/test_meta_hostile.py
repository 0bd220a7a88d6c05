"""Property-based tests: the readers of a frame archive's and a trajectory store's meta.json, fed
random and hostile JSON (wrong types, missing keys, huge or negative numbers, NaN, nesting, unicode)
inside an otherwise valid archive or store.

Either the reader accepts the document, and then what it hands on makes sense (positive sizes,
counts that match the data, indices in range), or it raises the module's own error (a ValueError
subclass) naming the file; never another exception (KeyError, TypeError, IndexError, ...).
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")

from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from densemotion.frames.store import (  # noqa: E402
    MAX_FRAME_PIXELS,
    FrameArchive,
    FrameArchiveError,
    FrameArchiveWriter,
    encode_jpeg,
)
from densemotion.params import TrajectoriesParams  # noqa: E402
from densemotion.tracking import grid  # noqa: E402
from densemotion.trajectories.run import TrajectoriesError, make_plan  # noqa: E402
from densemotion.trajectories.store import StoreMeta, TrajectoryStore, TrajectoryStoreError, write_store  # noqa: E402

from conftest import moving_frames  # noqa: E402

# --- hostile JSON ------------------------------------------------------------------------------

NAN_LIKE = ["NaN", "nan", "inf", "-Infinity", "1e999", "", "0", "-1", "8000x8000", "null", "true", "\u0000", "é"]
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-3, 12)  # near the valid values: a hole shows at the edges
    | st.sampled_from([0, -1, 2**31, 2**63, -(2**63), 10**30, 10**400])  # huge and negative
    | st.floats(allow_nan=True, allow_infinity=True)  # json.dumps writes NaN / Infinity tokens, json.loads reads them
    | st.sampled_from(NAN_LIKE)
    | st.text(max_size=6)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8,
)
DELETE = object()  # a key removed from the document


def _mutated(base: dict, extra_keys: list[str]) -> st.SearchStrategy[dict]:
    """``base`` with some of its keys (or others readers may look for) deleted or given hostile values."""
    keys = st.sampled_from(sorted(base) + extra_keys)
    changes = st.dictionaries(keys, st.one_of(st.just(DELETE), json_values), min_size=1, max_size=4)

    def apply(change: dict) -> dict:
        doc = dict(base)
        for key, value in change.items():
            if value is DELETE:
                doc.pop(key, None)
            else:
                doc[key] = value
        return doc

    return changes.map(apply)


def _dump(doc: object) -> bytes:
    return json.dumps(doc).encode()  # allow_nan: the NaN and Infinity tokens Python's reader takes


RAW = [b"", b"{", b"[" * 100_000 + b"]" * 100_000, b'{"schema_version": 1', b"\xff\xfe\x00garbage", b"null", b"[]"]


# --- frame archive -----------------------------------------------------------------------------

FRAMES = moving_frames(3, 16, 24)  # (H, W) 16 x 24
_JPEGS = [encode_jpeg(f, 90) for f in FRAMES]


def _archive_meta() -> dict:
    buf = io.BytesIO()
    writer = FrameArchiveWriter(buf)
    for jpeg in _JPEGS:
        writer.add(jpeg)
    writer.close(
        {"video": "clip", "source": "clip.mp4", "source_kind": "video", "source_sha256": "0" * 64, "fps": 24.0,
         "source_fps": 24.0, "width": 24, "height": 16, "source_width": 24, "source_height": 16,
         "source_indices": [0, 1, 2], "jpeg_quality": 90, "passthrough": False, "cuts": [2], "cut_threshold": 0.5}
    )  # fmt: skip
    with zipfile.ZipFile(buf) as z:
        return json.loads(z.read("meta.json"))


ARCHIVE_META = _archive_meta()


def _write_archive(path: Path, meta_bytes: bytes) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for i, jpeg in enumerate(_JPEGS):
            z.writestr(f"frames/{i:06d}.jpg", jpeg)
        z.writestr("meta.json", meta_bytes)


def _outcome(call, error: type[Exception]) -> tuple[object, Exception | None]:
    """(what ``call()`` returns, None), or (None, the ``error`` it raised); any other exception escapes."""
    try:
        return call(), None
    except error as err:
        return None, err


def _check_archive(path: Path) -> None:
    """Open ``path``: a FrameArchiveError naming it, or an archive whose meta makes sense."""
    archive, err = _outcome(lambda: FrameArchive(path), FrameArchiveError)
    if err is not None:
        assert str(path) in str(err) and "\n" not in str(err), err
        return
    assert isinstance(archive, FrameArchive)
    with archive:
        meta = archive.meta
        count = len(archive)
        assert count == len(_JPEGS) == meta["frame_count"]  # what the archive holds
        assert type(meta["schema_version"]) is int  # JSON true equals 1 in Python, yet is no version
        h, w = archive.size
        assert type(h) is int and type(w) is int and h >= 1 and w >= 1 and h * w <= MAX_FRAME_PIXELS
        indices = meta["source_indices"]
        assert len(indices) == count and all(type(i) is int and i >= 0 for i in indices)
        assert all(a < b for a, b in zip(indices, indices[1:], strict=False))  # source order
        cuts = meta.get("cuts", [])
        assert all(type(c) is int and 1 <= c < count for c in cuts) and cuts == sorted(set(cuts))
        assert isinstance(meta.get("video", ""), str)
        for key in ("fps", "source_fps"):
            fps = meta.get(key)
            assert fps is None or (type(fps) in (int, float) and math.isfinite(fps) and fps > 0), (key, fps)
        # frames of another size than meta states are refused when read, naming the archive
        frame, err = _outcome(lambda: archive.read(0), FrameArchiveError)
        assert frame.shape == (h, w, 3) if err is None else str(path) in str(err)
        # and the trajectories stage lays out its windows from this meta, or says why not
        params = TrajectoriesParams(device="cpu", window=2, grid_stride=2)
        _, err = _outcome(lambda: make_plan(archive, params), TrajectoriesError)
        assert err is None or f"video {meta.get('video', '?')!r}" in str(err)


def test_valid_archive_meta_is_accepted(tmp_path):
    path = tmp_path / "clip.zip"
    _write_archive(path, _dump(ARCHIVE_META))
    with FrameArchive(path) as archive:
        assert len(archive) == 3 and archive.size == (16, 24)
    _check_archive(path)


@given(doc=_mutated(ARCHIVE_META, ["frame_count", "width", "height", "cuts", "schema_version", "video", "fps"]))
@example(doc={**ARCHIVE_META, "schema_version": True})
@example(doc={**ARCHIVE_META, "fps": float("nan")})
@example(doc={**ARCHIVE_META, "source_indices": [2, 1, 0]})
@example(doc={**ARCHIVE_META, "width": 10**400, "height": 1})
@example(doc={**ARCHIVE_META, "width": 8192, "height": 8192, "cuts": []})
def test_hostile_archive_meta_is_refused_or_makes_sense(tmp_path, doc):
    path = tmp_path / "clip.zip"
    _write_archive(path, _dump(doc))
    _check_archive(path)


@given(doc=json_values)
@example(doc=[ARCHIVE_META])
@example(doc={"schema_version": 1})
def test_any_json_document_as_archive_meta(tmp_path, doc):
    path = tmp_path / "clip.zip"
    _write_archive(path, _dump(doc))
    _check_archive(path)


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_unparsable_archive_meta(tmp_path, raw):
    path = tmp_path / "clip.zip"
    _write_archive(path, raw)
    with pytest.raises(FrameArchiveError, match=re.escape(str(path))):
        FrameArchive(path)


# --- trajectory store --------------------------------------------------------------------------

NW, T, HG, WG, G, MARGIN = 2, 3, 2, 3, 4, 1
STORE_META = {
    "video": "clip",
    "tracker": "dis",
    "tracker_params": {"preset": "medium"},
    "window": T,
    "window_stride": T,
    "grid_stride": G,
    "margin": MARGIN,
    "tracking_size": [HG * G + 2 * MARGIN, WG * G + 2 * MARGIN],
    "frame_size": [HG * G + 2 * MARGIN, WG * G + 2 * MARGIN],
    "grid_shape": [HG, WG],
    "frames_sha256": "0" * 64,
    "frame_count": 7,
    "past_end": "skip",
}


@pytest.fixture
def store_dir(tmp_path) -> tuple[Path, dict]:
    """A valid store and its meta.json as written (schema_version and num_windows filled in)."""
    rng = np.random.default_rng(0)
    write_store(
        tmp_path / "clip",
        frames0=rng.integers(0, 256, (NW, HG, WG, 3), dtype=np.uint8),
        disp=rng.uniform(-4, 4, (NW, T, HG, WG, 2)).astype(np.float16),
        vis=rng.integers(0, 256, (NW, T, HG, WG), dtype=np.uint8),
        starts=np.array([0, T], np.int64),
        meta=STORE_META,
    )
    return tmp_path / "clip", json.loads((tmp_path / "clip" / "meta.json").read_text())


def _check_store(path: Path) -> None:
    """Open ``path``: a TrajectoryStoreError naming it, or a store whose meta makes sense."""
    store, err = _outcome(lambda: TrajectoryStore(path), TrajectoryStoreError)
    if err is not None:
        assert str(path) in str(err) and "\n" not in str(err), err
        return
    assert isinstance(store, TrajectoryStore)
    info = store.info  # what every reader reads: typed, checked once
    for key in ("window", "window_stride", "grid_stride"):
        assert type(getattr(info, key)) is int and getattr(info, key) >= 1, key
    assert type(info.margin) is int and info.margin >= 0
    for key in ("grid_shape", "tracking_size", "frame_size"):
        value = getattr(info, key)
        assert type(value) is tuple and len(value) == 2 and all(type(v) is int and v >= 1 for v in value), key
        if key != "grid_shape":
            assert value[0] * value[1] <= MAX_FRAME_PIXELS, key
    assert info.grid_shape == grid.grid_shape(info.tracking_size, info.grid_stride, info.margin) == info.grid.shape
    assert info.num_windows == len(store) == NW
    assert type(info.schema_version) is int
    for key in ("video", "tracker", "frames_sha256", "past_end"):
        assert isinstance(getattr(info, key), str), key
    assert isinstance(info.tracker_params, dict)
    if info.frame_count is not None:
        assert type(info.frame_count) is int and int(store.starts.max()) + info.window <= info.frame_count
    for key in ("skipped_starts", "cuts", "cut_starts"):
        frames = getattr(info, key)
        assert frames is None or all(type(f) is int and f >= 0 for f in frames), key
    fields = StoreMeta.__dataclass_fields__
    assert info.to_dict() == {k: v for k, v in store.meta.items() if k in fields}  # the document, typed
    window = store.window(NW - 1)
    assert window["disp"].shape == (info.window, *info.grid_shape, 2)
    assert len(store.grid_points()) == info.grid.count == info.grid_shape[0] * info.grid_shape[1]


def test_valid_store_meta_is_accepted(store_dir):
    path, meta = store_dir
    assert len(TrajectoryStore(path)) == NW
    _check_store(path)


@given(data=st.data())
def test_hostile_store_meta_is_refused_or_makes_sense(store_dir, data):
    path, meta = store_dir
    doc = data.draw(_mutated(meta, ["schema_version", "num_windows", "frame_count", "skipped_starts", "cut_starts"]))
    (path / "meta.json").write_bytes(_dump(doc))
    _check_store(path)


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": True},
        {"tracking_size": [50, 14]},  # grid_shape is not the grid of tracking_size, grid_stride and margin
        {"tracking_size": [10**30, 12], "frame_size": [10**30, 12]},
        {"frame_size": [1, 10**12]},
        {"video": ["clip"]},
        {"tracker_params": "medium"},
        {"frame_count": T},  # the second window starts past it
        {"frame_count": "7"},
    ],
    ids=lambda c: ",".join(c),
)
def test_store_meta_holes_found_are_closed(store_dir, change):
    path, meta = store_dir
    (path / "meta.json").write_bytes(_dump({**meta, **change}))
    with pytest.raises(TrajectoryStoreError, match=re.escape(str(path))):
        TrajectoryStore(path)


@given(doc=json_values)
@example(doc=[1])
@example(doc={"schema_version": 1, "num_windows": 2})
def test_any_json_document_as_store_meta(store_dir, doc):
    path, _ = store_dir
    (path / "meta.json").write_bytes(_dump(doc))
    _check_store(path)


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_unparsable_store_meta(store_dir, raw):
    path, _ = store_dir
    (path / "meta.json").write_bytes(raw)
    with pytest.raises(TrajectoryStoreError, match=re.escape(str(path))):
        TrajectoryStore(path)


def test_negative_starts_are_refused(store_dir):
    path, _ = store_dir
    np.save(path / "starts.npy", np.array([-1, T], np.int64))
    with pytest.raises(TrajectoryStoreError, match=rf"{path}: .*starts"):
        TrajectoryStore(path)
