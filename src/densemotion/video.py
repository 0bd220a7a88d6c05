"""Video decoding, encoding and probing with PyAV (its bundled FFmpeg; no system ffmpeg).

Nothing else in densemotion touches FFmpeg. Frames are (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from densemotion.atomic import atomic_path
from densemotion.errors import DensemotionError


class VideoError(DensemotionError):
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


# a decode this much short of the stated length is reported (see :func:`shortfall`)
SHORT_FRACTION = 0.9


def shortfall(decoded: int, *, frames: int | None, duration: float | None, fps: float) -> str | None:
    """Why ``decoded`` frames fall clearly short of what a container states, or None when they do not.

    What is stated: ``frames``, the stream's frame count (MP4, MOV), else ``duration`` (seconds)
    at ``fps``: what FFmpeg takes from the header (MKV, WebM) or from the first and last timestamps
    (MPEG-TS; a truncated TS still states more than it holds, as B-frames are stored before the
    frames they follow). Clearly short: under ``SHORT_FRACTION`` of it, and by 2 frames or more
    (a duration rounds to a frame either way). Nothing stated: None.
    """
    if frames:
        expected, stated = frames, f"{frames} frames"
    elif duration and fps > 0 and math.isfinite(duration * fps):
        expected = round(duration * fps)
        stated = f"a duration of {duration:.3f} s (about {expected} frames at {fps:g} fps)"
    else:
        return None
    if decoded >= SHORT_FRACTION * expected or expected - decoded < 2:
        return None
    return f"decoded {decoded} frames, but its container states {stated}: truncated or damaged?"


def _stated(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> dict:
    """The length ``container`` states for its video ``stream``, as :func:`shortfall`'s keywords."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    return {"frames": stream.frames or None, "duration": duration, "fps": float(rate) if rate else 0.0}


def iter_frames(
    path: str | Path, *, planes: bool = False, warn: Callable[[str], None] | None = None
) -> Iterator[tuple[int, np.ndarray | Yuv420]]:
    """Yield (frame index, (H, W, 3) uint8 RGB) for every frame, in order.

    With ``planes=True``, 8-bit 4:2:0 frames come as :class:`Yuv420` (no colour conversion);
    other pixel formats still come as RGB.
    A stream that breaks off mid-way raises :class:`VideoError` naming the file and how many
    frames decoded, rather than silently returning a short video. One that ends cleanly but
    clearly short of the length its container states (a truncated MPEG-TS; frames the decoder
    dropped as damaged) is passed to ``warn`` at the end, as a line naming the file and both
    counts (see :func:`shortfall`).
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
        if warn is not None and (why := shortfall(index, **_stated(container, stream))) is not None:
            warn(f"{path}: {why}")
    finally:
        container.close()


# RGB -> Y'CbCr, ITU-R BT.601 limited ("TV") range: the matrix swscale applies to rgb24 -> yuv420p
# when nothing else is said, and what H.264 decoders assume for an untagged SD stream.
#   Y  = 16 + 219/255 * (Kr R + Kg G + Kb B)        Kr = 0.299, Kb = 0.114, Kg = 1 - Kr - Kb
#   Cb = 128 + 224/255 * (B - Y') / (2 (1 - Kb))    Cr = 128 + 224/255 * (R - Y') / (2 (1 - Kr))
# as integers scaled by 2**_FRAC_BITS, derived with exact rationals (no float rounding anywhere), the
# chroma rows' G term chosen so each row sums to exactly 0: greys get Cb = Cr = 128 exactly.
_FRAC_BITS = 16


def _fixed(x: Fraction) -> int:
    return round(x * (1 << _FRAC_BITS))


def _yuv_rows() -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    kr, kb = Fraction(299, 1000), Fraction(114, 1000)
    kg = 1 - kr - kb
    luma, chroma = Fraction(219, 255), Fraction(224, 255)
    y_row = (_fixed(kr * luma), _fixed(kg * luma), _fixed(kb * luma))
    cb_r, cb_b = _fixed(-kr * chroma / (2 * (1 - kb))), _fixed(chroma / 2)
    cr_r, cr_b = _fixed(chroma / 2), _fixed(-kb * chroma / (2 * (1 - kr)))
    return y_row, (cb_r, -cb_r - cb_b, cb_b), (cr_r, -cr_r - cr_b, cr_b)


_Y_ROW, _CB_ROW, _CR_ROW = _yuv_rows()  # (16829, 33039, 6416), (-9714, -19070, 28784), (28784, -24103, -4681)

# x264 settings beyond crf/preset/threads, as x264-params. cpu-independent=1 makes x264 pick the same
# algorithms on every CPU: without it, CPUs with SSSE3 or newer use whole-block intra mode search
# (intra_*_x9) that decides differently from the C/SSE2 search, and the lookahead's macroblock-tree
# propagation runs SIMD float code (rcpps approximations, FMA) whose results depend on the SIMD level
# and, with AVX-512, even changed from run to run within one process. The flag switches both to x264's
# portable C code; every other SIMD routine x264 uses is bit-exact with its C version. It is a plain
# flag, valid for every x264 build and architecture (unlike asm=<level> names). Tests append to it
# (e.g. ":asm=0") to check that the bytes do not depend on the SIMD level.
_X264_PARAMS = "cpu-independent=1"


def _rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> yuv420p packed as PyAV wants it: (H * 3/2, W) uint8, Y rows then U then V.

    BT.601 limited range (see ``_Y_ROW``), chroma the rounded mean of each 2x2 block (centred siting).
    Integer arithmetic only, so the same on every CPU and NumPy build. Bounds: Y in [16, 235] and
    Cb, Cr in [16, 240] for any input; every intermediate fits in int32 (|sum| < 2**26).
    """
    h, w = rgb.shape[:2]
    r, g, b = (rgb[..., c].astype(np.int32) for c in range(3))
    half = 1 << (_FRAC_BITS - 1)
    y = (_Y_ROW[0] * r + _Y_ROW[1] * g + _Y_ROW[2] * b + ((16 << _FRAC_BITS) + half)) >> _FRAC_BITS
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = y
    chroma = out[h:].reshape(2, h // 2, w // 2)  # a view: U, then V
    for plane, (cr, cg, cb) in zip(chroma, (_CB_ROW, _CR_ROW), strict=True):
        full = cr * r + cg * g + cb * b  # scaled by 2**_FRAC_BITS, not yet rounded
        quad = full[0::2, 0::2] + full[0::2, 1::2] + full[1::2, 0::2] + full[1::2, 1::2]
        plane[:] = (quad + ((128 << (_FRAC_BITS + 2)) + (half << 2))) >> (_FRAC_BITS + 2)
    return out


def encode_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    crf: int = 18,
    codec: str = "libx264",
    muxer: str = "mp4",
) -> int:
    """Encode RGB frames (H, W, 3) uint8 as an H.264 MP4 (yuv420p), atomically; return the count.

    H and W must be even (yuv420p) and the same for every frame. ``muxer`` names another FFmpeg
    container format for the same stream (``"mpegts"``, ``"matroska"``, ``"mov"``: what tests of
    other containers need); the byte-for-byte promise below is made for MP4 only.

    With the default ``libx264`` the file's bytes depend only on the frames, ``fps``, ``crf`` and the
    PyAV build (its FFmpeg and x264 versions): the same from run to run and on any x86-64 CPU,
    whatever SIMD it has. ``dvc.lock`` pins the sample clips' bytes, so this matters:

    - RGB -> YUV 4:2:0 is done here in exact integer NumPy arithmetic (BT.601 limited range, the
      matrix swscale would use), not by swscale, whose result depends on FFmpeg's SIMD path;
    - x264 runs single-threaded with ``cpu-independent=1`` (see ``_X264_PARAMS``).

    Checked on x86-64 only (tests/test_video_encode.py: x264 from plain C to AVX-512, NumPy, FFmpeg
    and libm SIMD off). aarch64 runs the same integer conversion and x264 algorithms, but x264's C
    float code (rate control, macroblock tree) and libm are compiled for it separately, so its bytes
    may differ. Other codecs get the same YUV frames but no such guarantee.
    """
    path = Path(path)
    count = 0
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format=muxer) as container:
        stream = _yuv420p_stream(container, codec, fps, crf)
        size = (0, 0)
        for rgb in frames:
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise VideoError(f"{path}: frame {count} is {rgb.dtype} {rgb.shape}, expected (H, W, 3) uint8 RGB")
            if count == 0:
                h, w = size = rgb.shape[:2]
                if h % 2 or w % 2:
                    raise VideoError(f"{path}: frame size {w}x{h} must be even for yuv420p")
                stream.width, stream.height = w, h
            elif rgb.shape[:2] != size:
                raise VideoError(
                    f"{path}: frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, the first was {size[1]}x{size[0]}"
                )
            # already yuv420p at the stream's size: PyAV hands it to x264 without swscale
            frame = av.VideoFrame.from_ndarray(_rgb_to_yuv420p(rgb), format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
            count += 1
        if count == 0:
            raise VideoError(f"{path}: no frames to encode")
        for packet in stream.encode(None):
            container.mux(packet)
    return count


def _yuv420p_stream(container: Any, codec: str, fps: float, crf: int) -> Any:
    """The output stream of :func:`encode_video`: yuv420p, one thread, BT.601 limited range tagged."""
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.pix_fmt = "yuv420p"
    # one thread: x264's frame threads would make the bitstream depend on timing
    options = {"crf": str(crf), "threads": "1", "preset": "medium"}
    if codec == "libx264":
        options["x264-params"] = _X264_PARAMS
    stream.options = options
    stream.thread_count = 1
    # say what the planes are (SMPTE 170M = BT.601 matrix, limited range), as untagged HD video
    # is taken as BT.709 by many players
    stream.codec_context.colorspace = 6  # AVCOL_SPC_SMPTE170M
    stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG
    return stream


def bounded_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(W, H) scaled so the longest side is at most ``max_size``, aspect kept, never upscaled."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5))
