"""Trajectory store, schema 1: one folder of NumPy files per video (the training set).

Layout of ``<store>/`` (Nw windows, S frames per window, an Hg x Wg grid):

- ``frames0.npy`` (Nw, Hg, Wg, 3) uint8: first frame of each window, area-downsized by g
- ``disp.npy``    (Nw, S, Hg, Wg, 2) float16: x, y displacement of each grid point from its
  frame-0 position, pixels of the tracking resolution; ``disp[:, 0] == 0``. float16 keeps a
  spacing of 1/32 px up to 64 px, so rounding stays under 1/64 px there.
- ``vis.npy``     (Nw, S, Hg, Wg) uint8: visibility * 255
- ``starts.npy``  (Nw,) int64: window start frame in the frames archive
- ``meta.json``: the keys of ``REQUIRED_META`` (and, from the trajectories stage, those of
  ``OPTIONAL_META``), read once into a :class:`StoreMeta` when a store is opened; grid point
  (i, j) sits at x = margin + (j + 0.5) * g - 0.5, y = margin + (i + 0.5) * g - 0.5 (its
  :class:`~densemotion.tracking.grid.Grid`).

All arrays are plain ``.npy`` (memory-mappable, no pickles). The whole folder is written under a
temporary name and renamed when complete (:func:`write_store`, :class:`ChunkedStoreWriter`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import reprlib
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densemotion.atomic import atomic_path, listing_sha256, sha256_file
from densemotion.errors import DensemotionError
from densemotion.frames.store import MAX_FRAME_PIXELS
from densemotion.metrics import VISIBLE_MIN
from densemotion.tracking import grid
from densemotion.tracking.grid import Grid

SCHEMA_VERSION = 1
REQUIRED_META = (
    "schema_version", "video", "tracker", "tracker_params", "window", "window_stride", "grid_stride",
    "margin", "tracking_size", "frame_size", "grid_shape", "frames_sha256", "past_end", "num_windows",
)  # fmt: skip
# written by the trajectories stage; absent in stores written by hand (or before the key existed)
OPTIONAL_META = ("frame_count", "skipped_starts", "cuts", "cut_starts")
_DTYPES = {"frames0": np.uint8, "disp": np.float16, "vis": np.uint8, "starts": np.int64}


class TrajectoryStoreError(DensemotionError):
    """A trajectory store that is missing, truncated, inconsistent or of another schema."""


@dataclass(frozen=True, kw_only=True)
class StoreMeta:
    """A store's meta.json, typed: one field per key the writer writes, in its order, checked once
    (:meth:`parse`) when a store is written or opened; :meth:`to_dict` is the document back.

    An optional key (``OPTIONAL_META``) that is absent is None; keys of no field are left out
    (``TrajectoryStore.meta`` keeps the document as read).
    """

    video: str
    tracker: str
    tracker_params: dict[str, Any] = field(hash=False)  # the tracker's params section, plain JSON
    window: int  # S, frames per window
    window_stride: int  # frames from one window's start to the next
    grid_stride: int  # g, px of the tracking resolution
    margin: int  # px left out on every side
    tracking_size: tuple[int, int]  # (H, W) the tracker saw
    frame_size: tuple[int, int]  # (H, W) of the frames archive
    grid_shape: tuple[int, int]  # (Hg, Wg)
    frames_sha256: str  # the frames archive tracked
    frame_count: int | None = None  # frames of the video
    past_end: str  # what became of windows running past the last frame ("skip")
    skipped_starts: tuple[int, ...] | None = None  # starts of windows past the end
    cuts: tuple[int, ...] | None = None  # archive frames that start a new shot
    cut_starts: tuple[int, ...] | None = None  # starts of windows spanning a cut (skipped)
    schema_version: int = SCHEMA_VERSION
    num_windows: int

    @property
    def grid(self) -> Grid:
        """The store's query grid (grid_shape, grid_stride, margin, tracking_size)."""
        return Grid(self.grid_shape, self.grid_stride, self.margin, self.tracking_size)

    @property
    def frame_scale(self) -> tuple[float, float]:
        """(sx, sy): px of the frames archive per px of the tracking resolution."""
        return self.grid.scale_to(self.frame_size)

    def to_dict(self) -> dict[str, Any]:
        """The meta.json document: JSON values, absent optional keys left out (== what was parsed)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else copy.deepcopy(value)
        return out

    @classmethod
    def parse(cls, meta: Mapping[str, Any], where: str) -> StoreMeta:
        """``meta`` (meta.json as read) checked and typed; a TrajectoryStoreError naming ``where``
        and the key otherwise: a value of the wrong type, sizes no frame has, a grid that is not
        the one of the tracking size."""
        version = meta.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:  # JSON true == 1 in Python
            raise TrajectoryStoreError(
                f"{where}: trajectory store schema {_short(version)}, this densemotion reads schema "
                f"{SCHEMA_VERSION}; re-run the trajectories stage (dvc repro) to rebuild it"
            )
        if type(meta.get("num_windows")) is not int:
            raise TrajectoryStoreError(
                f"{where}: meta num_windows must be an integer, got {_short(meta.get('num_windows'))}"
            )
        missing = [k for k in REQUIRED_META if k not in meta]
        if missing:
            raise TrajectoryStoreError(f"{where}: meta lacks {', '.join(missing)}")
        _check_meta_types(meta, where)
        return cls(
            video=meta["video"],
            tracker=meta["tracker"],
            tracker_params=copy.deepcopy(meta["tracker_params"]),
            window=meta["window"],
            window_stride=meta["window_stride"],
            grid_stride=meta["grid_stride"],
            margin=meta["margin"],
            tracking_size=tuple(meta["tracking_size"]),
            frame_size=tuple(meta["frame_size"]),
            grid_shape=tuple(meta["grid_shape"]),
            frames_sha256=meta["frames_sha256"],
            frame_count=meta.get("frame_count"),
            past_end=meta["past_end"],
            skipped_starts=_frames_or_none(meta, "skipped_starts"),
            cuts=_frames_or_none(meta, "cuts"),
            cut_starts=_frames_or_none(meta, "cut_starts"),
            schema_version=version,
            num_windows=meta["num_windows"],
        )


def expected_shapes(meta: StoreMeta, num_windows: int) -> dict[str, tuple[int, ...]]:
    """Shape of each array for a store with ``meta``'s window and grid and ``num_windows``."""
    hg, wg = meta.grid_shape
    s = meta.window
    return {
        "frames0": (num_windows, hg, wg, 3),
        "disp": (num_windows, s, hg, wg, 2),
        "vis": (num_windows, s, hg, wg),
        "starts": (num_windows,),
    }


def _check_arrays(arrays: dict[str, np.ndarray], meta: StoreMeta, where: str) -> None:
    shapes = expected_shapes(meta, len(arrays["starts"]))
    for name, shape in shapes.items():
        arr = arrays[name]
        if arr.dtype != _DTYPES[name] or arr.shape != shape:
            raise TrajectoryStoreError(
                f"{where}: {name} is {arr.dtype}{list(arr.shape)}, expected {np.dtype(_DTYPES[name])}{list(shape)}"
            )


def _is_pair(value: object) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(type(v) is int and v > 0 for v in value)


def _check_meta_types(meta: Mapping[str, Any], where: str) -> None:
    """meta.json is read from disk: a value of the wrong type is an error naming the key, not a crash;
    so are sizes no frame has and a grid that is not the one of the tracking size."""
    for key in ("window", "window_stride", "grid_stride"):
        if type(meta[key]) is not int or meta[key] < 1:
            raise TrajectoryStoreError(f"{where}: meta {key} must be a positive integer, got {_short(meta[key])}")
    if type(meta["margin"]) is not int or meta["margin"] < 0:
        raise TrajectoryStoreError(f"{where}: meta margin must be a non-negative integer, got {_short(meta['margin'])}")
    for key in ("grid_shape", "tracking_size", "frame_size"):
        if not _is_pair(meta[key]):
            raise TrajectoryStoreError(f"{where}: meta {key} must be two positive integers, got {_short(meta[key])}")
    for key in ("tracking_size", "frame_size"):
        h, w = meta[key]
        if h * w > MAX_FRAME_PIXELS:
            raise TrajectoryStoreError(
                f"{where}: meta {key} {h}x{w} is more pixels than any frame has (cap {MAX_FRAME_PIXELS})"
            )
    try:
        want = Grid.of(tuple(meta["tracking_size"]), meta["grid_stride"], meta["margin"]).shape
    except grid.GridError as err:
        raise TrajectoryStoreError(f"{where}: meta holds no grid: {err}") from None
    if tuple(meta["grid_shape"]) != want:
        raise TrajectoryStoreError(
            f"{where}: meta grid_shape {meta['grid_shape']} is not the {list(want)} grid of tracking_size "
            f"{meta['tracking_size']}, grid_stride {meta['grid_stride']} and margin {meta['margin']}"
        )
    for key in ("video", "tracker", "frames_sha256", "past_end"):
        if not isinstance(meta[key], str):
            raise TrajectoryStoreError(f"{where}: meta {key} must be a string, got {_short(meta[key])}")
    if not isinstance(meta["tracker_params"], dict):
        raise TrajectoryStoreError(
            f"{where}: meta tracker_params must be an object, got {_short(meta['tracker_params'])}"
        )
    count = meta.get("frame_count", 0)  # absent in stores written by hand
    if type(count) is not int or count < 0:
        raise TrajectoryStoreError(f"{where}: meta frame_count must be a whole number >= 0, got {_short(count)}")
    for key in ("skipped_starts", "cuts", "cut_starts"):
        frames = meta.get(key, [])
        if not isinstance(frames, list) or not all(type(f) is int and f >= 0 for f in frames):
            raise TrajectoryStoreError(
                f"{where}: meta {key} must be a list of frames (whole numbers >= 0), got {_short(frames)}"
            )


def _frames_or_none(meta: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    return tuple(meta[key]) if key in meta else None


def _short(value: object) -> str:
    return reprlib.repr(value)  # a hostile meta's value may be a megabyte of list


def _final_meta(meta: dict, num_windows: int) -> dict:
    return {**meta, "schema_version": SCHEMA_VERSION, "num_windows": int(num_windows)}


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def write_store(
    path: str | Path,
    *,
    frames0: np.ndarray,
    disp: np.ndarray,
    vis: np.ndarray,
    starts: np.ndarray,
    meta: dict,
) -> dict:
    """Write a whole store at once, atomically; returns the meta written.

    ``schema_version`` and ``num_windows`` are filled in; the other keys of ``REQUIRED_META``
    must be in ``meta``. Arrays must already have the schema's dtypes and shapes.
    """
    arrays = {"frames0": frames0, "disp": disp, "vis": vis, "starts": starts}
    _check_arrays(arrays, StoreMeta.parse(_final_meta(meta, len(starts)), str(path)), str(path))
    return _write(Path(path), meta, [arrays])


def _write(path: Path, meta: dict, parts: Iterable[dict[str, np.ndarray]] | Sequence[dict[str, np.ndarray]]) -> dict:
    """The one writer of a store: ``parts`` (dicts of consecutive windows' arrays) streamed into
    ``path`` with ordinary buffered writes (a full disk is an OSError, not a crash), atomically.

    ``parts`` is iterated twice (count, then write), so a generator must be passed as a list of
    loaders or a re-iterable; the bytes equal ``np.save`` of the concatenated arrays.
    """
    counts = [len(part["starts"]) for part in parts]
    meta = _final_meta(meta, sum(counts))
    info = StoreMeta.parse(meta, str(path))  # a bad meta is refused before anything is written
    shapes = expected_shapes(info, info.num_windows)
    with atomic_path(path, is_dir=True, same_kind=_is_store_folder, kind="a trajectory store") as tmp:
        files = {name: open(tmp / f"{name}.npy", "wb") for name in shapes}  # noqa: SIM115  # closed below
        try:
            for name, f in files.items():
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(_DTYPES[name])), "fortran_order": False,
                          "shape": shapes[name]}  # fmt: skip
                np.lib.format.write_array_header_1_0(f, header)
            for part, n in zip(parts, counts, strict=True):
                for name, f in files.items():
                    arr = np.ascontiguousarray(part[name])
                    if arr.dtype != _DTYPES[name] or len(arr) != n:
                        raise TrajectoryStoreError(f"{path}: a part's {name} is {arr.dtype}{list(arr.shape)}")
                    f.write(arr.tobytes())  # one part (a chunk of windows) at a time
        finally:
            for f in files.values():
                f.close()
        _write_meta(tmp, meta)
        TrajectoryStore(tmp)  # refuse to finish with a store that does not read back
    return meta


def _is_store_folder(path: Path) -> bool:
    """A folder of files with a meta.json: a trajectory store (of any schema) that may be replaced."""
    return (path / "meta.json").is_file() and all(p.is_file() for p in path.iterdir())


def looks_like_store(path: str | Path) -> bool:
    """A folder holding any of a store's files: a store (perhaps incomplete), not a folder of stores."""
    return any((Path(path) / name).is_file() for name in ("meta.json", *(f"{n}.npy" for n in _DTYPES)))


def store_sha256(path: str | Path) -> str:
    """Hex SHA-256 over a store's file names and bytes: which data a model was trained on."""
    return listing_sha256((f.name, sha256_file(f)) for f in sorted(Path(path).iterdir()) if f.is_file())


class TrajectoryStore:
    """Read-only, memory-mapped view of one store.

    Attributes: ``info`` (:class:`StoreMeta`, what every reader reads), ``meta`` (the meta.json
    document as read, a dict: the file format), ``frames0``, ``disp``, ``vis``, ``starts``
    (np.memmap, schema dtypes), ``path``. ``len(store)`` is the number of windows.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = self._read_meta()
        self.info = StoreMeta.parse(self.meta, str(self.path))
        arrays = {name: self._load(name) for name in _DTYPES}
        _check_arrays(arrays, self.info, str(self.path))
        if len(arrays["starts"]) != self.info.num_windows:
            raise TrajectoryStoreError(
                f"{self.path}: meta says {self.info.num_windows} windows, arrays hold {len(arrays['starts'])}"
            )
        self._check_starts(np.asarray(arrays["starts"]))
        self.frames0, self.disp, self.vis, self.starts = (arrays[k] for k in ("frames0", "disp", "vis", "starts"))

    def _read_meta(self) -> dict[str, Any]:
        meta_path = self.path / "meta.json"
        if not self.path.is_dir():
            raise TrajectoryStoreError(f"{self.path}: no such trajectory store (folder missing)")
        if not meta_path.is_file():
            raise TrajectoryStoreError(
                f"{self.path}: has no meta.json, so it is not a complete trajectory store (an interrupted copy?); "
                "re-run the trajectories stage (dvc repro) to rebuild it"
            )
        try:
            meta = json.loads(meta_path.read_bytes())
        except (OSError, ValueError, RecursionError) as err:  # ValueError: not JSON, not text; Recursion: nesting
            raise TrajectoryStoreError(f"{self.path}: unreadable meta.json ({type(err).__name__}: {err})") from None
        if not isinstance(meta, dict):
            raise TrajectoryStoreError(f"{self.path}: meta.json is not a JSON object")
        return meta

    def _check_starts(self, starts: np.ndarray) -> None:
        """Window starts are frames: never negative, and within meta's frame_count where it has one."""
        if not len(starts):
            return
        first, last = int(starts.min()), int(starts.max())
        if first < 0:
            raise TrajectoryStoreError(f"{self.path}: starts.npy holds a window starting at frame {first}")
        count, window = self.info.frame_count, self.info.window
        if count is not None and last + window > count:
            raise TrajectoryStoreError(
                f"{self.path}: a window starts at frame {last}, so its {window} frames run past the "
                f"{count} frames meta.json says the video has"
            )

    def _load(self, name: str) -> np.ndarray:
        file = self.path / f"{name}.npy"
        try:
            return np.load(file, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise TrajectoryStoreError(f"{self.path}: {file.name} is missing") from None
        except (ValueError, OSError, EOFError) as err:
            raise TrajectoryStoreError(f"{self.path}: {file.name} is truncated or corrupt ({err})") from None

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def video(self) -> str:
        return self.info.video

    def check_frames(self, archive: Any) -> None:
        """Refuse a frames archive (a :class:`~densemotion.frames.store.FrameArchive`) other than the
        one this store was tracked on: its checksum is the store's ``frames_sha256``."""
        if archive.sha256 != self.info.frames_sha256:
            raise TrajectoryStoreError(
                f"{self.path} was made from other frames than {archive.path}: re-run its trajectories"
            )

    def grid_points(self) -> np.ndarray:
        """(Hg*Wg, 2) float32 (x, y) in tracking pixels."""
        return self.info.grid.points()

    def window(self, k: int, steps: Sequence[int] | None = None) -> dict:
        """Window ``k`` as in-memory arrays, the one way consumers read a store.

        ``steps``: frame indices within the window to read (default all S; K of them).
        Returns frame0 (Hg, Wg, 3) uint8, disp (K, Hg, Wg, 2) float32 px of the tracking
        resolution, vis (K, Hg, Wg) float32 in [0, 1], visible (K, Hg, Wg) bool (the tracker saw
        the point: ``vis >= VISIBLE_MIN / 255`` and a finite displacement), start (int).
        """
        if not -len(self) <= k < len(self):
            raise IndexError(f"{self.path}: window {k} out of range (store has {len(self)})")
        pick = slice(None) if steps is None else list(steps)
        disp = np.asarray(self.disp[k][pick], dtype=np.float32)
        vis = np.asarray(self.vis[k][pick])
        return {
            "frame0": np.array(self.frames0[k]),
            "disp": disp,
            "vis": vis.astype(np.float32) / 255.0,
            "visible": (vis >= VISIBLE_MIN) & np.isfinite(disp).all(axis=-1),
            "start": int(self.starts[k]),
        }

    def sample(self, k: int) -> dict:
        """Window ``k`` as torch tensors, channels first: image (3, Hg, Wg) float32 in [0, 1],
        disp (S, 2, Hg, Wg) float32 px, vis (S, Hg, Wg) float32 in [0, 1], start (int)."""
        import torch

        w = self.window(k)
        return {
            "image": torch.from_numpy(w["frame0"]).permute(2, 0, 1).float().div_(255.0),
            "disp": torch.from_numpy(w["disp"]).permute(0, 3, 1, 2).contiguous(),
            "vis": torch.from_numpy(w["vis"]),
            "start": w["start"],
        }


_FP_DIR = re.compile(r"^fp-[0-9a-f]{16}$")


class ChunkedStoreWriter:
    """Resumable writing: finished chunks of windows go to a work folder, then one assembly.

    Chunks live in ``work_dir/fp-<fingerprint[:16]>/chunk-<i>.npz`` (each written atomically and
    holding the full fingerprint), so a chunk made from other frames or params is never reused;
    work folders of other fingerprints are removed on start. ``assemble`` streams the chunks
    into the final store folder (atomic) whose bytes do not depend on how often the run stopped.
    Folders are made when the first chunk is written, so a run failing before that leaves none;
    :meth:`abandon` says what a failed run keeps.
    """

    def __init__(self, work_dir: str | Path, fingerprint: str):
        if not re.fullmatch(r"[0-9a-f]{16,}", fingerprint):
            raise ValueError(f"fingerprint must be a hex digest, got {fingerprint!r}")
        self.fingerprint = fingerprint
        self.root = Path(work_dir)
        self.dir = self.root / f"fp-{fingerprint[:16]}"
        self._made: list[Path] = []  # folders this writer created, innermost first
        if self.root.is_dir():
            for stale in self.root.iterdir():
                if stale != self.dir and stale.is_dir() and _FP_DIR.match(stale.name):
                    shutil.rmtree(stale, ignore_errors=True)

    def _chunk_path(self, i: int) -> Path:
        return self.dir / f"chunk-{i:06d}.npz"

    def _make_dir(self) -> None:
        missing = []
        folder = self.dir
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        self.dir.mkdir(parents=True, exist_ok=True)
        self._made.extend(missing)

    def finished(self) -> int:
        """How many chunk files this fingerprint's folder holds."""
        return len(list(self.dir.glob("chunk-*.npz"))) if self.dir.is_dir() else 0

    def abandon(self) -> int:
        """After a failed run: the number of finished chunks, kept as the state a rerun resumes
        from; when there are none, the folders this writer made are removed (only if empty: a
        folder it did not make, or anything else in one, is never touched)."""
        kept = self.finished()
        if not kept:
            for folder in self._made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return kept

    def read_chunk(self, i: int) -> dict[str, np.ndarray] | None:
        """The arrays of finished chunk ``i``, or None when it is absent, unreadable or stale."""
        path = self._chunk_path(i)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) != self.fingerprint:
                    return None
                return {name: z[name] for name in _DTYPES}
        except (OSError, ValueError, KeyError, EOFError):
            return None

    def has_chunk(self, i: int) -> bool:
        return self.read_chunk(i) is not None

    def write_chunk(self, i: int, *, frames0, disp, vis, starts) -> None:
        """Save chunk ``i`` atomically (arrays already in schema dtypes)."""
        arrays = {"frames0": frames0, "disp": disp, "vis": vis, "starts": starts}
        for name, arr in arrays.items():
            if arr.dtype != _DTYPES[name]:
                raise TypeError(f"chunk {i}: {name} must be {np.dtype(_DTYPES[name])}, got {arr.dtype}")
        self._make_dir()
        with atomic_path(self._chunk_path(i)) as tmp:
            np.savez(tmp, fingerprint=np.array(self.fingerprint), **arrays)

    def assemble(self, path: str | Path, meta: dict, num_chunks: int) -> dict:
        """Write the store at ``path`` from chunks 0 .. num_chunks - 1 (all must be finished).

        Chunks are read one at a time while writing: memory stays at one chunk.
        """
        missing = [i for i in range(num_chunks) if not self.has_chunk(i)]
        if missing:
            raise TrajectoryStoreError(f"{path}: chunk {missing[0]} is not finished in {self.dir}")
        return _write(Path(path), meta, _Chunks(self, num_chunks))

    def cleanup(self) -> None:
        """Remove this fingerprint's chunks, and the work folder when nothing else is in it."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: other work is kept
            self.root.rmdir()


class _Chunks:
    """The finished chunks of a writer as a re-iterable sequence of parts, loaded one at a time."""

    def __init__(self, writer: ChunkedStoreWriter, n: int):
        self.writer, self.n = writer, n

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.n):
            chunk = self.writer.read_chunk(i)
            if chunk is None:
                raise TrajectoryStoreError(f"chunk {i} in {self.writer.dir} became unreadable while assembling")
            yield chunk
