"""Video decoding, encoding and probing with PyAV (its bundled FFmpeg; no system ffmpeg).

Nothing else in densemotion touches FFmpeg. Frames are (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from densemotion.atomic import atomic_path


class VideoError(ValueError):
    """A file that is not a decodable video (corrupt, empty, no video stream)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    codec: str
    frames: int | None  # container's count; None where the container does not say


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError as err:
        raise VideoError(f"{path}: not a readable video ({err.__class__.__name__}: {err})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: contains no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Size, frame rate, codec and (where known) frame count, without decoding."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            codec=stream.codec_context.name,
            frames=stream.frames or None,
        )


def iter_frames(path: str | Path) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, (H, W, 3) uint8 RGB) for every frame, in order.

    A stream that breaks off mid-way raises :class:`VideoError` naming the file and how many
    frames decoded, rather than silently returning a short video.
    """
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's own frame/slice threads
        index = 0
        try:
            for frame in container.decode(stream):
                yield index, frame.to_ndarray(format="rgb24")
                index += 1
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: decoding failed after {index} frames ({err})") from None
    finally:
        container.close()


def encode_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    codec: str = "libx264",
) -> int:
    """Encode RGB frames (H, W, 3) uint8 as an H.264 MP4 (yuv420p), atomically; return count.

    H and W must be even (yuv420p). Deterministic for identical input.
    """
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            rate = Fraction(fps).limit_denominator(1001)
            stream = container.add_stream(codec, rate=rate)
            stream.pix_fmt = "yuv420p"
            # single-threaded x264 keeps the bitstream identical from run to run
            stream.options = {"crf": str(crf), "threads": "1", "preset": "medium"}
            stream.thread_count = 1
            for rgb in frames:
                if count == 0:
                    h, w = rgb.shape[:2]
                    if h % 2 or w % 2:
                        raise VideoError(f"{path}: frame size {w}x{h} must be even for yuv420p")
                    stream.width, stream.height = w, h
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                count += 1
            if count == 0:
                raise VideoError(f"{path}: no frames to encode")
            for packet in stream.encode(None):
                container.mux(packet)
    return count


def fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(W, H) scaled so the longest side is at most ``max_size``, aspect kept, never upscaled."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5))
