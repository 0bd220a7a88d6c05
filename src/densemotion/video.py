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
class Yuv420:
    """A decoded frame kept as full-range (JPEG) YUV 4:2:0 planes: y (H, W), u and v (H/2, W/2).

    JPEG stores exactly this, so keeping frames as planes skips two colour conversions and a
    chroma resampling per frame (the frames stage's hot path, as in ffmpeg's own JPEG output).
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.shape

    def to_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, BT.601 full range (JFIF's matrix), chroma upsampled bilinearly."""
        import cv2

        h, w = self.y.shape
        y = self.y.astype(np.float32)
        u = cv2.resize(self.u, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 128
        v = cv2.resize(self.v, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 128
        rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
        return np.clip(np.round(rgb), 0, 255).astype(np.uint8)

    def resized(self, width: int, height: int) -> Yuv420:
        """Area-resized planes (width and height even)."""
        import cv2

        def area(p: np.ndarray, size: tuple[int, int]) -> np.ndarray:
            return cv2.resize(p, size, interpolation=cv2.INTER_AREA)

        return Yuv420(
            area(self.y, (width, height)),
            area(self.u, (width // 2, height // 2)),
            area(self.v, (width // 2, height // 2)),
        )


# limited ("TV", 16-235 / 16-240) to full ("JPEG", 0-255) range lookup tables
_Y_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_C_FULL = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)


def _planes(frame: av.VideoFrame) -> Yuv420 | None:
    """The frame's planes as full-range Yuv420 without conversion, or None if not 8-bit 4:2:0."""
    fmt = frame.format.name
    if fmt not in ("yuv420p", "yuvj420p") or frame.width % 2 or frame.height % 2:
        return None
    packed = frame.to_ndarray()  # (H * 3/2, W): Y rows, then U, then V
    h, w = frame.height, frame.width
    y = packed[:h]
    u = packed[h : h + h // 4].reshape(h // 2, w // 2)
    v = packed[h + h // 4 :].reshape(h // 2, w // 2)
    if fmt == "yuv420p" and frame.color_range != 2:  # 2 = AVCOL_RANGE_JPEG: already full range
        return Yuv420(_Y_FULL[y], _C_FULL[u], _C_FULL[v])
    return Yuv420(y.copy(), u.copy(), v.copy())


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


def iter_frames(path: str | Path, *, planes: bool = False) -> Iterator[tuple[int, np.ndarray | Yuv420]]:
    """Yield (frame index, (H, W, 3) uint8 RGB) for every frame, in order.

    With ``planes=True``, 8-bit 4:2:0 frames come as :class:`Yuv420` (no colour conversion);
    other pixel formats still come as RGB.
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
                yuv = _planes(frame) if planes else None
                yield index, yuv if yuv is not None else frame.to_ndarray(format="rgb24")
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
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
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
