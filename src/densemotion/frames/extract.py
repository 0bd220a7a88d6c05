"""Turn one source (video, frame folder or zip) into one frame archive.

Decoding runs in the calling thread (FFmpeg already uses its own threads); resizing and JPEG
encoding, which dominate, run in a pool of ``workers`` threads (OpenCV releases the GIL).
Frames are written in source order whatever the worker count, so the archive's bytes do not
depend on it. Shot cuts are found on the way (:mod:`densemotion.frames.cuts`): the workers also
reduce each frame to block means, which the writing loop scores in order against the frame before.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from densemotion.atomic import atomic_path
from densemotion.errors import DensemotionError
from densemotion.frames.cuts import CutDetector, block_means
from densemotion.frames.sources import (
    FrameSource,
    Payload,
    SourceError,
    SourceInfo,
    VideoSource,
    frame_keeper,
    open_source,
)
from densemotion.frames.store import (
    FrameArchive,
    FrameArchiveWriter,
    decode_jpeg,
    encode_jpeg,
    encode_jpeg_planes,
    is_frame_archive,
    is_jpeg,
)
from densemotion.params import FramesParams
from densemotion.video import Yuv420, bounded_size


class TooShortError(DensemotionError):
    """The source has fewer frames than one tracking window."""


def _to_jpeg(
    payload: Payload,
    size: tuple[int, int],
    quality: int,
    where: str,
    source_size: tuple[int, int],
    cut_means: bool = False,
) -> tuple[bytes, np.ndarray | None]:
    """Resize to ``size`` (W, H) when needed and encode; JPEG bytes of the right size pass through.

    With ``cut_means``, also returns what cut detection needs of the stored frame, its
    :func:`~densemotion.frames.cuts.block_means`, made here in the worker from pixels it has; else None.
    Image bytes must decode to ``source_size``, the size of every frame: a file changed since the
    source's ``info()`` read its header is refused, never resized to fit.
    """
    if isinstance(payload, Yuv420):
        planes = payload if (payload.shape[1], payload.shape[0]) == size else None
        if planes is None and size[0] % 2 == 0 and size[1] % 2 == 0:
            planes = payload.resized(*size)
        if planes is not None:
            return encode_jpeg_planes(planes, quality), block_means(planes) if cut_means else None
        payload = payload.to_rgb()
    if isinstance(payload, bytes):
        rgb = decode_jpeg(payload, where, SourceError)
        got = (rgb.shape[1], rgb.shape[0])
        if got != source_size:
            raise SourceError(
                f"{where}: decodes to {got[0]}x{got[1]}, not the {source_size[0]}x{source_size[1]} of the other "
                "frames; all frames of a video must have one size"
            )
        if got == size and is_jpeg(payload):
            return payload, block_means(rgb) if cut_means else None
    else:
        rgb = payload
    if (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(rgb)
    return encode_jpeg(rgb, quality), block_means(rgb) if cut_means else None


def _check_size(payload: Payload, expected: tuple[int, int], where: str) -> None:
    """Refuse a decoded video frame whose size differs from the stream's.

    Image sources yield encoded bytes: their sizes are all checked from the headers by the
    source's ``info()`` before anything is written, and again once decoded (:func:`_to_jpeg`).
    """
    if not isinstance(payload, bytes) and (payload.shape[1], payload.shape[0]) != expected:
        raise SourceError(f"{where}: frame size changes mid-stream ({payload.shape[1]}x{payload.shape[0]})")


def extract(
    source_spec: str,
    dest: str | Path,
    params: FramesParams,
    *,
    name: str | None = None,
    image_fps: float | None = None,
    progress: bool = True,
) -> dict:
    """Write the frame archive of ``source_spec`` to ``dest`` atomically; return its meta."""
    dest = Path(dest)
    name = name or dest.stem
    source = open_source(source_spec, image_fps)
    info = source.info()  # image sources: every header read, mixed sizes refused, before writing
    (out_w, out_h), out_fps, keep = _output_plan(info, params, str(source_spec))
    src_size, kept = (info.width, info.height), list[int]()
    detector = CutDetector(params.cut_threshold) if params.cut_threshold is not None else None

    with (
        atomic_path(dest, same_kind=is_frame_archive, kind="a frame archive") as tmp,
        ThreadPoolExecutor(params.workers) as pool,
    ):
        writer = FrameArchiveWriter(tmp)
        pending: collections.deque[Future[tuple[bytes, np.ndarray | None]]] = collections.deque()
        bar = tqdm(desc=f"frames {name}", unit="frame", disable=None if progress else True, leave=False)

        def store(done: Future[tuple[bytes, np.ndarray | None]]) -> None:
            """Write the oldest pending frame; cut detection scores it against the one before."""
            jpeg, means = done.result()
            writer.add(jpeg)
            if detector is not None and means is not None:  # block means come exactly when detecting
                detector.add(means)
            bar.update()

        try:
            for index, payload in source.frames():
                if not keep(index):
                    continue
                _check_size(payload, src_size, f"{source_spec} frame {index}")
                # errors name the image file, or the frame of a video
                where = f"{source_spec} frame {index}" if isinstance(source, VideoSource) else source.name_of(index)
                job = (payload, (out_w, out_h), params.jpeg_quality, where, src_size, detector is not None)
                pending.append(pool.submit(_to_jpeg, *job))
                kept.append(index)
                while len(pending) > 4 * params.workers:  # bounded memory: at most a few frames in flight
                    store(pending.popleft())
            while pending:
                store(pending.popleft())
        except BaseException:
            for f in pending:
                f.cancel()
            writer.abort()
            raise
        finally:
            bar.close()
        _refuse_too_short(source, str(source_spec), kept, params.min_frames, writer)
        meta = _archive_meta(name, str(source_spec), source, info, (out_w, out_h), out_fps, kept, params, detector)
        writer.close(meta)
    with FrameArchive(dest) as archive:  # read back what was written: count and meta must agree
        return archive.meta


def _output_plan(
    info: SourceInfo, params: FramesParams, where: str
) -> tuple[tuple[int, int], float | None, Callable[[int], bool]]:
    """The archive's (W, H) (``frames.max_size``), frame rate and which source frames it keeps (``frames.fps``)."""
    size = bounded_size(info.width, info.height, params.max_size)
    out_fps = info.fps if params.fps is None or not info.fps else min(params.fps, info.fps)
    return size, out_fps, frame_keeper(info.fps, params.fps, where)


def _refuse_too_short(
    source: FrameSource, source_spec: str, kept: list[int], min_frames: int, writer: FrameArchiveWriter
) -> None:
    """Say a video's short decode (kept, never silently), and refuse fewer than ``min_frames``."""
    for warning in source.warnings if isinstance(source, VideoSource) else []:
        print(f"WARNING: {warning}", file=sys.stderr)
    if len(kept) < min_frames:
        writer.abort()
        raise TooShortError(
            f"{source_spec}: {len(kept)} frames after decoding, fewer than frames.min_frames="
            f"{min_frames} (one tracking window); nothing was written"
        )


def _archive_meta(
    name: str,
    source_spec: str,
    source: FrameSource,
    info: SourceInfo,
    out_size: tuple[int, int],
    out_fps: float | None,
    kept: list[int],
    params: FramesParams,
    detector: CutDetector | None,
) -> dict:
    """The archive's meta.json, in its key order (the frame archive's schema: docs/data.md)."""
    out_w, out_h = out_size
    return {
        "video": name,
        "source": source_spec,
        "source_kind": info.kind,
        "source_sha256": source.checksum(),
        "fps": out_fps,
        "source_fps": info.fps,
        "width": out_w,
        "height": out_h,
        "source_width": info.width,
        "source_height": info.height,
        "source_indices": kept,
        "jpeg_quality": params.jpeg_quality,
        # image sources needing no resize keep their JPEG bytes (no second lossy encode)
        "passthrough": info.kind != "video" and (out_w, out_h) == (info.width, info.height),
        # archive frames that start a new shot (frames.cut_threshold; null: detection was off)
        "cuts": detector.cuts if detector is not None else [],
        "cut_threshold": params.cut_threshold,
    }
