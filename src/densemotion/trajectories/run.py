"""Track one video: frames archive + tracker + params -> trajectory store (resumable).

Windows of ``window`` frames start every ``window_stride`` frames; windows that would run past
the last frame are skipped (listed in the store's meta as ``skipped_starts``), and so are windows
spanning a shot cut found by the frames stage (the archive meta's ``cuts``; listed as
``cut_starts``), whose tracks would join unrelated frames. Windows are tracked in chunks of
``chunk_windows``; each finished chunk is saved in a work folder outside the output (see
:class:`~densemotion.trajectories.store.ChunkedStoreWriter`), so a rerun after an interruption
continues after the last finished chunk, and the final store is assembled in one atomic step,
byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from densemotion.errors import DensemotionError
from densemotion.params import MAX_TRACKING_PIXELS, TrajectoriesParams
from densemotion.prefetch import prefetched
from densemotion.tracking import grid, registry
from densemotion.tracking.base import Tracker, TrackerError, track_windows
from densemotion.tracking.grid import Grid
from densemotion.trajectories.store import SCHEMA_VERSION, ChunkedStoreWriter

# bump when the tracking code changes what it writes, so old work chunks are not reused
ALGORITHM_VERSION = 1
AUTO_BATCH = 8  # trajectories.batch_windows: null on a GPU (bounded by the tracker's max_windows)


class TrajectoriesError(DensemotionError):
    """A video that cannot be tracked with these params (the message names the video)."""


class FrameReader(Protocol):
    """What the run needs from a frames archive (``densemotion.frames.store.FrameArchive``)."""

    meta: dict

    @property
    def sha256(self) -> str: ...

    def __len__(self) -> int: ...

    def read_range(self, start: int, count: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Plan:
    """Everything about a video's windows and grid, derived from its frames and the params."""

    video: str
    num_frames: int
    frame_size: tuple[int, int]  # (H, W) of the archive
    grid: Grid  # the query grid, in the (H, W) tracking size the tracker sees
    starts: np.ndarray  # (Nw,) int64
    skipped: list[int]  # starts of windows that would run past the end
    window: int
    stride: int
    cuts: list[int]  # archive frames that start a new shot
    cut_starts: list[int]  # starts of windows that span a cut (skipped)

    def chunks(self, chunk_windows: int) -> list[np.ndarray]:
        return [self.starts[i : i + chunk_windows] for i in range(0, len(self.starts), chunk_windows)]


def make_plan(source: FrameReader, params: TrajectoriesParams) -> Plan:
    """Check the video against the params and lay out its windows and grid."""
    meta = source.meta
    video = str(meta.get("video", "?"))
    frame_size = (int(meta["height"]), int(meta["width"]))
    tracking_size = params.resolution if params.resolution is not None else frame_size
    _check_tracking_size(video, frame_size, params.resolution)
    stride = params.window_stride or params.window
    cuts = [int(c) for c in meta.get("cuts") or []]  # archives from before cut detection have none
    try:
        starts, skipped = grid.window_starts(len(source), params.window, stride)
        query_grid = Grid.of(tracking_size, params.grid_stride, params.margin)
    except grid.GridError as err:
        raise TrajectoriesError(f"video {video!r}: {err}") from None
    spans = spans_cut(starts, params.window, cuts)
    if spans.all():
        raise TrajectoriesError(
            f"video {video!r}: all {len(starts)} windows of {params.window} frames (stride {stride}) span a shot "
            f"cut (new shots start at frames {cuts}), fewer than one window is left; use a shorter "
            "trajectories.window or window_stride, or frames.cut_threshold: null if these are not cuts"
        )
    cut_starts = [int(s) for s in starts[spans]]
    kept = starts[~spans]
    return Plan(video, len(source), frame_size, query_grid, kept, skipped, params.window, stride, cuts, cut_starts)


def _check_tracking_size(video: str, frame_size: tuple[int, int], resolution: tuple[int, int] | None) -> None:
    """Refuse a tracking size over MAX_TRACKING_PIXELS, naming the param that sets it."""
    h, w = resolution if resolution is not None else frame_size
    if h * w <= MAX_TRACKING_PIXELS:
        return
    bound = f"more than the {MAX_TRACKING_PIXELS} (4096x4096) a tracker takes"
    if resolution is not None:
        raise TrajectoriesError(
            f"video {video!r}: trajectories.resolution {h}x{w} is {h * w} pixels, {bound}; set a smaller "
            "trajectories.resolution (H, W)"
        )
    raise TrajectoriesError(
        f"video {video!r}: frames of {w}x{h} are {h * w} pixels, {bound}; set trajectories.resolution (H, W) "
        "to track them at a smaller size, or frames.max_size to store smaller frames"
    )


def spans_cut(starts: np.ndarray, window: int, cuts: list[int]) -> np.ndarray:
    """(Nw,) bool: the window [s, s + window) holds frames of two shots, i.e. a cut c (frame c-1 and
    frame c are different shots) with s < c <= s + window - 1."""
    c = np.asarray(cuts, np.int64)[None, :]  # (1, K)
    s = np.asarray(starts, np.int64)[:, None]  # (Nw, 1)
    return np.asarray(((s < c) & (c < s + window)).any(axis=1))


def tracker_params(params: TrajectoriesParams) -> dict:
    """The params section of the tracker in use as plain JSON values."""
    return registry.section(params).model_dump(mode="json")


def make_tracker(params: TrajectoriesParams, weights_dir: str | Path | None = None) -> Tracker:
    """The tracker named by ``params.tracker``, with its weights from ``weights_dir`` (default
    ``models/<tracker>``, the folder the trajectories stage depends on)."""
    spec = registry.get(params.tracker)
    weights = None
    if spec.weights is not None:
        weights = Path(weights_dir if weights_dir is not None else Path("models") / spec.name) / spec.weights
    return spec.make(registry.section(params), params.device, weights)


def store_meta(plan: Plan, params: TrajectoriesParams, frames_sha256: str) -> dict:
    return {
        "video": plan.video,
        "tracker": params.tracker,
        "tracker_params": tracker_params(params),
        "window": plan.window,
        "window_stride": plan.stride,
        "grid_stride": plan.grid.stride,
        "margin": plan.grid.margin,
        "tracking_size": list(plan.grid.size),
        "frame_size": list(plan.frame_size),
        "grid_shape": list(plan.grid.shape),
        "frames_sha256": frames_sha256,
        "frame_count": plan.num_frames,
        "past_end": "skip",
        "skipped_starts": plan.skipped,
        "cuts": plan.cuts,  # part of the chunks' fingerprint: other cuts, other windows
        "cut_starts": plan.cut_starts,
    }


def fingerprint(meta: dict, params: TrajectoriesParams) -> str:
    """Hex digest of everything a chunk's content depends on (frames, tracker, grid, chunking)."""
    key = {
        "schema": SCHEMA_VERSION,
        "algorithm": ALGORITHM_VERSION,
        "meta": meta,
        "resolution": params.resolution,
        "chunk_windows": params.chunk_windows,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_windows(
    source: FrameReader, starts: np.ndarray, window: int, size: tuple[int, int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, (window, h, w, 3) frames), reading each run of overlapping windows once.

    With ``size`` (h, w) other than the frames' own, each frame is resized as soon as it is read,
    so at most one frame of the archive's size is in memory (8K frames are 192 MiB each).
    """
    i = 0
    while i < len(starts):
        j = i + 1
        while j < len(starts) and starts[j] < starts[j - 1] + window:
            j += 1  # windows i..j-1 overlap: one read covers them (windows that only touch share no frame)
        first, last = int(starts[i]), int(starts[j - 1]) + window
        if size is None:
            block = source.read_range(first, last - first)
        else:
            block = np.stack([grid.resize_frames(source.read_range(f, 1), size)[0] for f in range(first, last)])
        for s in starts[i:j]:
            yield int(s), block[s - first : s - first + window]
        i = j


def _empty_chunk(plan: Plan, starts: np.ndarray) -> dict[str, np.ndarray]:
    """The store's arrays for the windows at ``starts``, to be filled (schema dtypes)."""
    hg, wg = plan.grid.shape
    n, s_len = len(starts), plan.window
    return {
        "frames0": np.empty((n, hg, wg, 3), np.uint8),
        "disp": np.empty((n, s_len, hg, wg, 2), np.float16),
        "vis": np.empty((n, s_len, hg, wg), np.uint8),
        "starts": np.asarray(starts, np.int64),
    }


def window_batch(tracker: Tracker, params: TrajectoriesParams, size: tuple[int, int]) -> int:
    """Windows per tracker call: ``trajectories.batch_windows`` (None: AUTO_BATCH on a GPU, 1 on
    the CPU, where batching buys nothing), 1 for a tracker without ``track_windows``, and at most
    what the tracker's memory bound (``max_windows``) lets in at this (H, W) tracking size."""
    if not hasattr(tracker, "track_windows"):
        return 1
    wanted = params.batch_windows
    if wanted is None:
        wanted = AUTO_BATCH if str(getattr(tracker, "device", "cpu")).startswith("cuda") else 1
    fits = getattr(tracker, "max_windows", None)
    return max(1, min(wanted, fits(size, params.window))) if fits is not None else wanted


def track_chunks(
    source: FrameReader,
    tracker: Tracker,
    plan: Plan,
    chunks: list[np.ndarray],
    params: TrajectoriesParams,
    bar: tqdm | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Track the windows of ``chunks`` (each an array of starts) -> each chunk's store arrays, in order.

    The windows are read ahead in a thread (:func:`~densemotion.prefetch.prefetched`) and go to the
    tracker :func:`window_batch` at a time, across chunk borders; a chunk is yielded as soon as its
    last window is tracked, so an interrupted run keeps every chunk finished before.
    """
    hg, wg = plan.grid.shape
    s_len = plan.window
    queries = plan.grid.points()  # (N, 2)
    resize = plan.grid.size if plan.grid.size != tuple(plan.frame_size) else None
    batch = window_batch(tracker, params, plan.grid.size)
    where = [(c, k) for c, starts in enumerate(chunks) for k in range(len(starts))]  # window -> (chunk, row)
    every = np.concatenate(chunks) if chunks else np.empty(0, np.int64)
    windows = prefetched(_read_windows(source, every, s_len, resize), depth=2 * batch)
    out = _empty_chunk(plan, chunks[0]) if chunks else {}  # the chunk being filled
    done = 0  # windows tracked
    while done < len(every):
        group = [next(windows) for _ in range(min(batch, len(every) - done))]
        frames = np.stack([f for _, f in group])  # (B, S, H, W, 3)
        tracks, vis = track_windows(tracker, frames, queries)  # (B, S, N, 2), (B, S, N)
        for b, (start, window) in enumerate(group):
            if not np.isfinite(tracks[b]).all():
                raise TrackerError(
                    f"video {plan.video!r}: tracker {tracker.name!r} gave non-finite tracks in window {start}"
                )
            c, k = where[done + b]
            disp = (tracks[b] - queries[None]).reshape(s_len, hg, wg, 2)
            disp[0] = 0.0
            out["disp"][k] = disp.astype(np.float16)
            out["vis"][k] = np.rint(np.clip(vis[b], 0.0, 1.0) * 255.0).reshape(s_len, hg, wg).astype(np.uint8)
            out["frames0"][k] = plan.grid.downsize(window[0])
            if k == len(chunks[c]) - 1:  # the chunk's last window
                yield out
                if c + 1 < len(chunks):
                    out = _empty_chunk(plan, chunks[c + 1])
        done += len(group)
        if bar is not None:
            bar.update(len(group))


def store_is_current(out_dir: str | Path, source: FrameReader, params: TrajectoriesParams) -> bool:
    """Whether ``out_dir`` holds the finished store that :func:`track_video` would write now
    (same frames, tracker, tracker params and grid): a rerun of a multi-video job skips it."""
    meta_path = Path(out_dir) / "meta.json"
    try:
        found = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    expected = store_meta(make_plan(source, params), params, source.sha256)
    return isinstance(found, dict) and all(found.get(k) == v for k, v in expected.items())


def track_video(
    source: FrameReader,
    out_dir: str | Path,
    params: TrajectoriesParams,
    work_dir: str | Path,
    tracker: Tracker | None = None,
    weights_dir: str | Path | None = None,
) -> dict:
    """Track every window of ``source`` into the store ``out_dir``; returns the store's meta.

    Finished chunks are kept in ``work_dir`` until the store is complete, then removed. A run that
    fails keeps the chunks it (or an earlier run) finished, saying so in its error, as the resumable
    state they are; with none finished it removes the work folders it made itself (and no other).
    Without ``tracker``, the one of ``params`` is made (weights from ``weights_dir``, see
    :func:`make_tracker`).
    """
    plan = make_plan(source, params)
    meta = store_meta(plan, params, source.sha256)
    writer = ChunkedStoreWriter(work_dir, fingerprint(meta, params))
    chunks = plan.chunks(params.chunk_windows)
    try:
        todo = [i for i in range(len(chunks)) if not writer.has_chunk(i)]
        if todo:
            if tracker is None:
                try:
                    tracker = make_tracker(params, weights_dir)
                except TrackerError as err:
                    raise TrackerError(f"video {plan.video!r}: {err}") from None
            done_windows = sum(len(chunks[i]) for i in range(len(chunks)) if i not in set(todo))
            with tqdm(
                total=len(plan.starts), initial=done_windows, desc=f"track {plan.video}", unit="win", disable=None
            ) as bar:
                tracked = track_chunks(source, tracker, plan, [chunks[i] for i in todo], params, bar)
                for i, arrays in zip(todo, tracked, strict=True):
                    writer.write_chunk(i, **arrays)
        meta = writer.assemble(out_dir, meta, len(chunks))
    except BaseException as err:
        kept = writer.abandon()
        if not kept:
            raise
        note = (
            f"{kept} of {len(chunks)} chunks finished stay in {writer.root}: the same command resumes "
            "after them (delete that folder to start over)"
        )
        noted = _with_note(err, note)
        if noted is None:  # an interrupt, or an error that cannot be re-made: the note on a line of its own
            print(f"video {plan.video!r}: {note}", file=sys.stderr)
            raise
        raise noted.with_traceback(err.__traceback__) from None
    writer.cleanup()
    return meta


def _with_note(err: BaseException, note: str) -> BaseException | None:
    """``err`` again, of its own type, its message ending in ``note`` (the CLIs print an error as
    one line: the note must be in it); None for an exception that cannot be re-made so."""
    try:
        if isinstance(err, OSError) and err.strerror:
            extra = [err.filename] if err.filename is not None else []
            return type(err)(err.errno, f"{err.strerror}; {note}", *extra)
        if isinstance(err, ValueError) and len(err.args) == 1 and isinstance(err.args[0], str):
            noted = type(err)(f"{err}; {note}")
            return noted if str(noted) == f"{err}; {note}" else None
    except Exception:  # a constructor of other arguments (pydantic's ValidationError, ...)
        return None
    return None
