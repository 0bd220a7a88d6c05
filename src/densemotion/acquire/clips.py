"""Cut the clips of one source video in one decoding pass: frame range, box, resize, encode.

The published procedure, made exact: decoded frame i belongs to a clip when
``i * fps_row >= start * fps_decoded`` and ``i * fps_row < end * fps_decoded`` (in exact rational
arithmetic, so a download at another frame rate still maps to the same moments); the box is
scaled by the decoded size over the row's (``width``, ``height``), cut (the part inside the frame,
as the published NumPy slicing did), and resized to ``size`` x ``size`` with anti-aliasing (area
averaging when shrinking). Clips are kept in memory until their last frame (at most a few
hundred frames of ``size`` x ``size``; a clip that would need more than :data:`MAX_CLIP_BYTES` is
failed before decoding), then encoded atomically with :func:`encode_video`. A clip is written only
where :func:`~densemotion.acquire.manifest.clip_path` allows (inside the output folder, symlinks
resolved). Reasons name the video by its file name, never by its path on this machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from densemotion.acquire.manifest import BAD_ROW, BAD_VIDEO, FAILED, OK, PAST_END, Entry, clip_path, outside
from densemotion.acquire.metadata import ClipRow
from densemotion.atomic import sha256_file
from densemotion.imaging import fit_image
from densemotion.video import VideoError, encode_video, iter_frames, probe

# rates closer than this are one rate: the metadata gives fps to two decimals (29.97 for
# 30000/1001, 23.97 for 24000/1001), and mapping 29.97 onto 29.97003 would shift a clip by a frame
SAME_RATE_FPS = Fraction(1, 100)
CRF = 18  # x264 quality of the written clips (visually lossless at 256x256)
MAX_SIZE = 4096  # --size at most (a frame of 4096x4096 is 50 MB in memory)
MAX_CLIP_BYTES = 8 << 30  # frames of one clip held in memory until it is encoded (TaiChi: 1024 frames)


def frame_range(row: ClipRow, decoded_fps: Fraction) -> range:
    """The decoded frame indices of the clip (see the module docstring for the rule)."""
    fps = decoded_fps if abs(decoded_fps - row.fps) >= SAME_RATE_FPS else row.fps
    first = math.ceil(row.start * fps / row.fps)  # smallest i with i * fps_row >= start * fps
    stop = math.ceil(row.end * fps / row.fps)  # i < end * fps / fps_row  <=>  i < ceil(...)
    return range(first, stop)


def scaled_box(row: ClipRow, width: int, height: int) -> tuple[int, int, int, int]:
    """The row's box in pixels of a ``width`` x ``height`` frame (floored, as published)."""
    left, top, right, bottom = row.box
    return (
        left * width // row.width,
        top * height // row.height,
        right * width // row.width,
        bottom * height // row.height,
    )


def inside(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The part of ``box`` inside the frame, or None when nothing of it is."""
    left, top = max(box[0], 0), max(box[1], 0)
    right, bottom = min(box[2], width), min(box[3], height)
    return (left, top, right, bottom) if right > left and bottom > top else None


def crop(frame: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(size, size, 3) uint8: ``frame`` (H, W, 3) cut to ``box`` (inside the frame) and resized."""
    left, top, right, bottom = box
    return fit_image(frame[top:bottom, left:right], (size, size))


@dataclass
class _Plan:
    row: ClipRow
    frames: range
    box: tuple[int, int, int, int]
    note: str
    kept: list[np.ndarray]


def local(text: str, out_dir: Path, video: Path | None = None) -> str:
    """``text`` with the video's path as its file name and the output folder's as nothing: a
    reason the manifest can hold (the same on every machine, no machine path)."""
    if video is not None:
        text = text.replace(str(video), video.name)
    return text.replace(f"{out_dir}{os.sep}", "")


def cut_clips(video: Path, rows: list[ClipRow], out_dir: Path, size: int) -> list[Entry]:
    """Write every clip of ``rows`` (all of one source video) under ``out_dir``; one entry per row."""
    try:
        info = probe(video)
    except VideoError as err:
        return [Entry.of(row, BAD_VIDEO, local(str(err), out_dir, video)) for row in rows]
    finite = math.isfinite(info.fps)
    source = {"source_width": info.width, "source_height": info.height, "source_fps": info.fps if finite else None}
    fps = Fraction(info.fps).limit_denominator(1001) if finite else Fraction(0)
    if fps <= 0:
        return [Entry.of(row, BAD_VIDEO, f"{video.name}: no frame rate", **source) for row in rows]
    if info.width <= 0 or info.height <= 0:
        return [Entry.of(row, BAD_VIDEO, f"{video.name}: no frame size", **source) for row in rows]
    done: dict[int, Entry] = {}
    plans: list[_Plan] = []
    for row in rows:
        box = scaled_box(row, info.width, info.height)
        kept = inside(box, info.width, info.height)
        frames = frame_range(row, fps)
        need = len(frames) * size * size * 3
        if kept is None:
            reason = f"box {row.box} scaled to {box} lies outside the {info.width}x{info.height} frame"
            done[row.row] = Entry.of(row, BAD_ROW, reason, **source)
        elif clip_path(out_dir, row.path) is None:
            done[row.row] = Entry.of(row, FAILED, outside(out_dir, row.path), **source)
        elif need > MAX_CLIP_BYTES:
            reason = (
                f"{len(frames)} frames of {size}x{size} need {need / 2**30:.1f} GiB in memory "
                f"(more than {MAX_CLIP_BYTES / 2**30:g} GiB): use a smaller --size"
            )
            done[row.row] = Entry.of(row, FAILED, reason, **source)
        elif not frames:
            reason = f"frames {row.start}..{row.end} at {row.fps} fps hold no frame at {float(fps):.6g} fps"
            done[row.row] = Entry.of(row, BAD_VIDEO, reason, **source)
        else:
            note = "" if kept == box else f"box {box} cut to the {info.width}x{info.height} frame: {kept}"
            plans.append(_Plan(row, frames, kept, note, []))
    failure = ""
    short: list[str] = []  # the decoder's word that the video holds fewer frames than it states
    try:
        for written in _decode_and_write(video, plans, out_dir, size, fps, source, short.append):
            done[written.row] = written
    except VideoError as err:
        failure = local(str(err), out_dir, video)
    for plan in plans:
        if plan.row.row not in done:
            ends = f"the video has {info.frames} frames" if info.frames else "the video ends first"
            needs = f"needs frames {plan.frames.start}..{plan.frames.stop - 1} at {float(fps):.6g} fps"
            if failure:
                entry = Entry.of(plan.row, BAD_VIDEO, failure, **source)
            elif short:  # a cut-short download is no end of the video: failed, so a rerun fetches it again
                entry = Entry.of(plan.row, FAILED, local(f"{needs}: {short[0]}", out_dir, video), **source)
            else:
                entry = Entry.of(plan.row, PAST_END, f"{needs}: {ends}", **source)
            done[plan.row.row] = entry
    return [done[row.row] for row in rows]


def _decode_and_write(
    video: Path,
    plans: list[_Plan],
    out_dir: Path,
    size: int,
    fps: Fraction,
    source: dict,
    warn: Callable[[str], None] | None = None,
) -> Iterator[Entry]:
    """Decode until the last clip's last frame, writing each clip as soon as it is complete
    (``warn`` hears of a video that ends short of the length its container states)."""
    pending = list(plans)
    stop = max((p.frames.stop for p in pending), default=0)
    for index, frame in iter_frames(video, warn=warn):
        if index >= stop:
            break
        assert isinstance(frame, np.ndarray)  # RGB (planes=False)
        for plan in pending:
            if index in plan.frames:
                plan.kept.append(crop(frame, plan.box, size))
            if index == plan.frames.stop - 1:
                yield _write(plan, out_dir, fps, source)
        pending = [p for p in pending if p.frames.stop - 1 > index]


def _write(plan: _Plan, out_dir: Path, fps: Fraction, source: dict) -> Entry:
    path = out_dir / plan.row.path
    height, width = plan.kept[0].shape[:2]
    try:
        count = encode_video(path, plan.kept, float(fps), crf=CRF)
    except OSError as err:  # a full disk (DiskFullError) included: nothing of the clip is kept
        return Entry.of(plan.row, FAILED, local(str(err), out_dir), **source)
    finally:
        plan.kept = []
    return Entry.of(
        plan.row,
        OK,
        plan.note,
        **source,
        frames=count,
        width=width,
        height=height,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
    )
