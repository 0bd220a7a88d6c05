"""The built-in synthetic clips: textured sprites over a textured background, with exact truth.

Each clip is rendered by inverse mapping. Layer 0 is a static background; layers 1..K are
sprites drawn in that order (higher index on top). Every layer has, per frame, a 2x3 affine
``tex_from_frame`` mapping frame pixel coordinates (x, y) to its texture coordinates (u, v);
each frame pixel samples its layer's texture bilinearly there, and sprites are composited by
z-order through a shape mask (disc, ellipse or rounded rectangle, fixed in texture space).
Because a texture point never changes its texture coordinates, its frame position at any frame
is ``inverse(tex_from_frame[t]) @ (u, v, 1)``: the ground truth is exact.

Motion depends on appearance: every sprite belongs to a texture family (:data:`FAMILIES`) with
its own pattern, colour palette and shape, and the family alone sets the sprite's translation
velocity, rotation rate and scale rate. The background never moves.

With ``sample.ambiguous`` = 2 or 4 appearance tells nothing of the motion: every sprite has the
one look of ``FAMILIES[AMBIGUOUS_FAMILY]`` (its own texture drawn as ever; smaller discs, so that
they keep clear of each other), upright and unscaled, and translates at :data:`AMBIGUOUS_SPEED`
px/frame. The clip is cut in segments of S = ``sample.ambiguous_segment`` frames (frames 0..S-1,
S..2S-1, ...; S = ``trajectories.window`` makes each window one segment): at the start of each
the sprite is placed anew, uniformly in its inner box (its centre at least 0.6 of its radius plus
a segment's travel inside the frame) where it keeps clear of the sprites before it whichever ways
they all take, and moves the whole segment one way drawn uniformly from +x, -x (and +y, -y for
4). Nothing in a segment's first frame tells the way: not the look, not the place (no way can
leave the frame), not the neighbours (the place is chosen before the way, clear of every way),
not which points stay in view (no sprite covers another, so a point seen at the start is seen to
the end): an ideal single-displacement head can do no better than zero motion on the movers.
Between segments the sprite jumps to its new place (frame S-1 to S), a step that no window of S
frames from 0, S, 2S, ... sees; windows that straddle segments (another stride or window) see the
jump as a motion. The truth file is the same (each ``layer_family`` is AMBIGUOUS_FAMILY; places
and directions are in ``tex_from_frame``).

Ground truth file (``.npz``, schema version :data:`SCHEMA_VERSION`), written by
:func:`save_truth`, read by :func:`load_truth`; plain arrays only (no pickles):

- ``schema_version``  () int64
- ``clip``            () str, the clip's name
- ``num_frames``      () int64, T
- ``size``            (2,) int64, [H, W] in pixels
- ``fps``             () float64
- ``tex_from_frame``  (T, K+1, 2, 3) float64: per frame, per layer, frame (x, y, 1) -> texture (u, v)
- ``layers``          (T, H, W) uint8: the layer that owns each pixel (its centre lies inside
  that sprite's shape and no higher sprite's shape; 0 = background)
- ``layer_family``    (K+1,) int64: index into ``family_names`` per layer, -1 for the background
- ``family_names``    (F,) str

Tracks (:meth:`SampleTruth.tracks`): a query point (x, y) at frame ``start`` belongs to the layer
owning pixel ``(round(x), round(y))`` at that frame, where ``round(a) = floor(a + 0.5)``; its
position at a later frame t maps through that layer's transforms; it is visible at t iff its
rounded pixel lies inside the frame and that layer owns it at t. Near a shape's edge (within
half a pixel) this rounding may call a point hidden although its exact position is inside.

Portability: the frames and the truth file are the same bytes on every CPU. sin, cos, exp and
tanh (NumPy's AVX-512, AVX2 or plain paths, or libm) differ in the last bits between CPUs, as do
LAPACK kernels and SIMD-ordered sums; so each such result is rounded to a multiple of 2**-20
(:func:`_snap`) before use, sums are exact (:func:`_mean_std`), and the rest is element-wise
+ - * / and sqrt, which IEEE 754 rounds alike everywhere: no np.linalg, einsum, hypot or interp.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from densemotion.atomic import atomic_path
from densemotion.errors import DensemotionError
from densemotion.params import SampleParams
from densemotion.video import encode_video

SCHEMA_VERSION = 1
EDGE_PX = 1.0  # width of a sprite's anti-aliased edge, frame pixels
_SNAP = 2.0**20  # sin, cos, exp and tanh results are rounded to multiples of 1 / _SNAP
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed zip timestamps keep the .npz byte-identical
_Real = TypeVar("_Real", float, np.ndarray)


class SampleTruthError(DensemotionError):
    """A ground-truth file that is missing keys, has an old schema or inconsistent shapes."""


@dataclass(frozen=True)
class Family:
    """A sprite family: appearance (pattern, palette, shape) and the motion it implies."""

    name: str
    pattern: str  # which texture generator
    palette: tuple[tuple[int, int, int], ...]  # RGB colours for texture values 0 .. 1
    shape: str  # "disc", "ellipse" or "roundrect"
    velocity: tuple[float, float]  # (vx, vy) px/frame
    rotation: float  # degrees/frame (positive turns +x toward +y)
    scale_rate: float  # d log(scale) / frame


FAMILIES: tuple[Family, ...] = (
    Family("stripes", "stripes", ((90, 10, 10), (230, 60, 30), (255, 220, 60)), "roundrect", (1.6, 0.25), 0.8, 0.0),
    Family(
        "checker", "checker", ((10, 20, 90), (60, 120, 230), (235, 245, 255)), "roundrect", (-1.3, 0.5), -0.6, 0.004
    ),
    Family("blobs", "blobs", ((10, 70, 20), (70, 190, 40), (220, 255, 140)), "ellipse", (0.3, -1.0), 1.2, -0.003),
    Family("dots", "dots", ((40, 0, 50), (200, 40, 200), (120, 240, 240)), "disc", (0.9, 0.9), -1.0, 0.0),
)
_BACKGROUND_PALETTE = ((70, 64, 58), (128, 118, 104), (190, 180, 165))  # muted stone greys
AMBIGUOUS_FAMILY = 3  # sample.ambiguous: every sprite looks like FAMILIES[3], "dots", a disc (no outline to orient)
AMBIGUOUS_SPEED = 1.5  # sample.ambiguous: px/frame, every sprite (exact in binary: positions stay exact)
AMBIGUOUS_TRIES = 64  # sample.ambiguous: places drawn for a segment before a sprite sits it out
# sample.ambiguous = N draws each segment's direction uniformly from the first N of these (x, y) unit steps
_DIRECTIONS = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))


# ---------------------------------------------------------------- portable arithmetic


def _snap(x: _Real) -> _Real:
    """Round a result of sin, cos, exp or tanh (array or float) to a multiple of 2**-20.

    Their implementations differ by a few ulp (~1e-16) between CPUs; rounded to this far coarser
    grid (still far finer than anything visible) they agree, and so does all IEEE arithmetic on them.
    """
    if isinstance(x, float):
        return round(x * _SNAP) / _SNAP
    return np.rint(x * _SNAP) / _SNAP


def _mean_std(field: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation from exactly rounded sums (math.fsum), the same in any order.

    NumPy's float sums are ordered by its (SIMD) loops, so their last bits are not portable.
    """
    values = field.ravel()
    mean = math.fsum(values.tolist()) / values.size
    dev = values - mean
    return mean, math.sqrt(math.fsum((dev * dev).tolist()) / values.size)


def _wave(fx: float, fy: float, phase: float, h: int, w: int) -> np.ndarray:
    """(h, w) plane wave cos(2 pi (fx x + fy y) + phase) from snapped 1-D rows and columns.

    cos(A + B) = cos A cos B - sin A sin B: products and differences of multiples of 2**-20 of
    magnitude <= 1 are exact, so the wave and sums of thousands of waves are portable (and it
    takes h + w cosines, not h * w).
    """
    a = 2 * np.pi * fx * np.arange(w, dtype=np.float64) + phase  # (w,)
    b = 2 * np.pi * fy * np.arange(h, dtype=np.float64)  # (h,)
    return _snap(np.cos(b))[:, None] * _snap(np.cos(a)) - _snap(np.sin(b))[:, None] * _snap(np.sin(a))


def _rotation(degrees: float) -> tuple[float, float]:
    """(cos, sin) of an angle, snapped, then rescaled to unit length (to an ulp)."""
    c, s = _snap(math.cos(math.radians(degrees))), _snap(math.sin(math.radians(degrees)))
    norm = math.sqrt(c * c + s * s)
    return c / norm, s / norm


# ---------------------------------------------------------------- textures (float32, 0..255)


def _band_noise(rng: np.random.Generator, h: int, w: int, periods: tuple[float, float], modes: int = 24) -> np.ndarray:
    """(h, w) smooth random field, zero mean, unit std: a sum of random plane waves."""
    period = rng.uniform(*periods, size=modes)
    angle = rng.uniform(0, np.pi, size=modes)
    phase = rng.uniform(0, 2 * np.pi, size=modes)
    fx, fy = _snap(np.cos(angle)) / period, _snap(np.sin(angle)) / period  # cycles/px
    field = np.zeros((h, w))
    for i in range(modes):  # an exact sum (see _wave)
        field += _wave(fx[i], fy[i], phase[i], h, w)
    mean, std = _mean_std(field)
    return (field - mean) / (std + 1e-12)


def _colourise(value: np.ndarray, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """Map values in [0, 1] (h, w) through a piecewise-linear palette -> (h, w, 3) float32.

    Element-wise arithmetic rather than np.interp, whose compiled loop may fuse multiply-adds.
    """
    colours = np.asarray(palette, np.float64)  # (n, 3)
    pos = np.clip(value, 0, 1) * (len(palette) - 1)
    i = np.minimum(pos.astype(np.int64), len(palette) - 2)  # between colours i and i + 1
    frac = (pos - i)[..., None]
    return (colours[i] + (colours[i + 1] - colours[i]) * frac).astype(np.float32)


def _pattern(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) values in [0, 1] for a family pattern, with 2D detail (no aperture problem)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    noise = _snap(np.tanh(0.8 * _band_noise(rng, size, size, (8.0, 18.0))))
    if name == "stripes":
        theta = rng.uniform(0, np.pi)
        base = _wave(_snap(np.cos(theta)) / 11.0, _snap(np.sin(theta)) / 11.0, 0.0, size, size)
        value = 0.5 + 0.3 * base + 0.2 * noise
    elif name == "checker":
        cell = 8.0
        off = rng.uniform(0, 2 * cell, size=2)
        along_x = _snap(np.sin(np.pi * (x[0] + off[0]) / cell))  # (size,)
        along_y = _snap(np.sin(np.pi * (y[:, 0] + off[1]) / cell))  # (size,)
        base = _snap(np.tanh(3.0 * along_y[:, None] * along_x))
        value = 0.5 + 0.35 * base + 0.15 * noise
    elif name == "blobs":
        value = 0.5 + 0.5 * _snap(np.tanh(1.5 * _band_noise(rng, size, size, (9.0, 20.0))))
    elif name == "dots":
        spacing, radius = 11.0, 3.5
        off = rng.uniform(0, spacing, size=2)
        dx = (x + off[0]) % spacing - spacing / 2
        dy = (y + off[1]) % spacing - spacing / 2
        dot = np.clip(radius + 0.5 - np.sqrt(dx * dx + dy * dy), 0, 1)
        value = 0.15 + 0.7 * dot + 0.15 * noise
    else:
        raise ValueError(f"unknown texture pattern {name!r}")
    return value


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 static background: muted, mid-frequency 'stone' texture."""
    fine = _band_noise(rng, h, w, (8.0, 18.0), modes=32)
    coarse = _band_noise(rng, h, w, (30.0, 80.0), modes=8)
    value = 0.5 + 0.17 * _snap(np.tanh(0.9 * fine)) + 0.12 * _snap(np.tanh(coarse))
    return _colourise(value, _BACKGROUND_PALETTE)


# ---------------------------------------------------------------- sprites


@dataclass(frozen=True)
class _Sprite:
    family: int  # index into FAMILIES
    half: tuple[float, float]  # shape half sizes (a, b) in texture units
    texture: np.ndarray  # (S, S, 3) float32; texture coordinate 0 at the array's centre
    frame_from_tex: np.ndarray  # (T, 2, 3) float64


def _signed_distance(shape: str, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Distance to the shape's edge in texture units, positive inside (exact zero set).

    Lengths are sqrt(x * x + y * y), correctly rounded everywhere (np.hypot is the platform's libm).
    """
    if shape == "disc":
        return a - np.sqrt(u * u + v * v)
    if shape == "ellipse":
        ua, vb = u / a, v / b
        return (1.0 - np.sqrt(ua * ua + vb * vb)) * min(a, b)
    if shape == "roundrect":
        r = 0.35 * min(a, b)
        qx, qy = np.abs(u) - (a - r), np.abs(v) - (b - r)
        px, py = np.maximum(qx, 0), np.maximum(qy, 0)
        outside = np.sqrt(px * px + py * py) + np.minimum(np.maximum(qx, qy), 0)
        return r - outside
    raise ValueError(f"unknown sprite shape {shape!r}")


def _start_coordinate(rng: np.random.Generator, travel: float, extent: float, margin: float) -> float:
    """Start position along one axis so the path [c, c + travel] stays in [margin, extent-1-margin]."""
    lo = margin - min(0.0, travel)
    hi = extent - 1 - margin - max(0.0, travel)
    return float(rng.uniform(lo, hi)) if lo <= hi else (lo + hi) / 2  # too long: centre the path


def _make_sprite(rng: np.random.Generator, params: SampleParams, placed: Sequence[_Sprite] = ()) -> _Sprite:
    if params.ambiguous:
        return _make_ambiguous_sprite(rng, params, placed)
    fam_index = int(rng.integers(len(FAMILIES)))
    fam = FAMILIES[fam_index]
    a = float(rng.uniform(0.14, 0.20) * min(params.height, params.width) + 6)
    b = a if fam.shape == "disc" else a * float(rng.uniform(0.6, 1.0))
    size = 2 * int(np.ceil(max(a, b))) + 4
    texture = _colourise(_pattern(fam.pattern, rng, size), fam.palette)

    n = params.num_frames
    t = np.arange(n, dtype=np.float64)
    travel = np.asarray(fam.velocity) * (n - 1)
    margin = 0.6 * max(a, b)
    c0 = [
        _start_coordinate(rng, travel[0], params.width, margin),
        _start_coordinate(rng, travel[1], params.height, margin),
    ]
    # linear part scale * rotation = [[c, -s], [s, c]]; each frame applies the family's fixed step
    # (turn by fam.rotation, grow by exp(fam.scale_rate)) to the previous one. Plain float products
    # keep it portable, and every sprite of a family turns and grows at exactly the same rate.
    c, s = _rotation(rng.uniform(0, 360))
    step_c, step_s = _rotation(fam.rotation)
    grow = _snap(math.exp(fam.scale_rate))
    scale = _snap(math.exp(-fam.scale_rate * (n - 1) / 2))  # 1 at mid-clip (to ~1e-6)
    c, s = scale * c, scale * s
    frame_from_tex = np.empty((n, 2, 3))
    for k in range(n):
        frame_from_tex[k, :, :2] = [[c, -s], [s, c]]
        c, s = (c * step_c - s * step_s) * grow, (s * step_c + c * step_s) * grow
    frame_from_tex[:, 0, 2] = c0[0] + fam.velocity[0] * t
    frame_from_tex[:, 1, 2] = c0[1] + fam.velocity[1] * t
    return _Sprite(fam_index, (a, b), texture, frame_from_tex)


def _make_ambiguous_sprite(rng: np.random.Generator, params: SampleParams, placed: Sequence[_Sprite] = ()) -> _Sprite:
    """A sprite of ``sample.ambiguous``: one look for all, one speed, a new place and way every segment.

    Drawn in this order: its look, then per segment up to :data:`AMBIGUOUS_TRIES` places (x, y,
    uniform in the inner box) until one is free, and one uniform number for its way. A place is
    free when the sprite keeps clear of every sprite ``placed`` before it whichever ways the two
    take (centres at least both radii plus both segments' travel apart): no sprite ever covers
    another, so every point seen at a segment's start is seen to its end, and which way a sprite
    goes cannot be read from where its neighbours are (a check that looked at the ways would be
    such a clue). A sprite with no free place sits the segment out, outside the frame.
    """
    fam = FAMILIES[AMBIGUOUS_FAMILY]
    a = float(rng.uniform(0.08, 0.12) * min(params.height, params.width) + 6)
    size = 2 * int(np.ceil(a)) + 4
    texture = _colourise(_pattern(fam.pattern, rng, size), fam.palette)

    n, seg = params.num_frames, params.ambiguous_segment
    travel = AMBIGUOUS_SPEED * (seg - 1)  # the farthest a segment carries a centre
    margin = 0.6 * a + travel  # inner box: any way keeps the centre 0.6 of the radius inside the frame
    directions = np.array(_DIRECTIONS[: params.ambiguous])  # (N, 2)
    frame_from_tex = np.zeros((n, 2, 3))
    frame_from_tex[:, 0, 0] = frame_from_tex[:, 1, 1] = 1.0  # upright, unscaled: a pure translation
    for t0 in range(0, n, seg):  # segment: frames t0 .. t0 + seg - 1 (the last one may be shorter)
        place = np.array([-4.0 * (params.width + a), -4.0 * (params.height + a)])  # sitting out
        for _ in range(AMBIGUOUS_TRIES):
            # on the 2**-20 grid (_snap), the place plus any multiple of AMBIGUOUS_SPEED is exact,
            # and so are the truth's inverses
            here = np.array(
                [
                    _snap(_start_coordinate(rng, 0.0, params.width, margin)),
                    _snap(_start_coordinate(rng, 0.0, params.height, margin)),
                ]
            )
            if all(_clear(here, a, other, t0, travel) for other in placed):
                place = here
                break
        way = directions[min(int(rng.random() * len(directions)), len(directions) - 1)]
        frames = min(seg, n - t0)
        frame_from_tex[t0 : t0 + frames, :, 2] = place + np.arange(frames)[:, None] * (way * AMBIGUOUS_SPEED)
    return _Sprite(AMBIGUOUS_FAMILY, (a, a), texture, frame_from_tex)


def _clear(centre: np.ndarray, radius: float, other: _Sprite, t0: int, travel: float) -> bool:
    """Whether a disc at ``centre`` and ``other`` (at frame t0) stay apart through a segment whichever
    ways they move: centres at least both radii plus twice ``travel`` apart (one plain sqrt)."""
    dx, dy = (float(v) for v in centre - other.frame_from_tex[t0, :, 2])
    return math.sqrt(dx * dx + dy * dy) >= radius + other.half[0] + 2.0 * travel


def _invert_affine(m: np.ndarray) -> np.ndarray:
    """Invert affines (..., 2, 3) -> (..., 2, 3) by the closed 2x2 formula.

    Portable, unlike np.linalg.inv and einsum, whose LAPACK or SIMD kernels vary between CPUs.
    """
    a, b, tx = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    c, d, ty = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    det = a * d - b * c
    out = np.empty_like(m)
    out[..., 0, 0], out[..., 0, 1] = d / det, -b / det
    out[..., 1, 0], out[..., 1, 1] = -c / det, a / det
    out[..., 0, 2] = -(out[..., 0, 0] * tx + out[..., 0, 1] * ty)
    out[..., 1, 2] = -(out[..., 1, 0] * tx + out[..., 1, 1] * ty)
    return out


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample (h, w, C) at float pixel coordinates (clamped to the border) -> (..., C)."""
    h, w = img.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _draw_sprite(canvas: np.ndarray, owner: np.ndarray, layer: int, sprite: _Sprite, t: int) -> None:
    """Composite one sprite onto canvas (H, W, 3) float and owner (H, W) uint8, in place."""
    f = sprite.frame_from_tex[t]  # (2, 3)
    scale = math.sqrt(abs(float(f[0, 0] * f[1, 1] - f[0, 1] * f[1, 0])))
    reach = scale * math.sqrt(sprite.half[0] ** 2 + sprite.half[1] ** 2) + EDGE_PX + 1
    h, w = owner.shape
    x0, x1 = max(int(np.floor(f[0, 2] - reach)), 0), min(int(np.ceil(f[0, 2] + reach)) + 1, w)
    y0, y1 = max(int(np.floor(f[1, 2] - reach)), 0), min(int(np.ceil(f[1, 2] + reach)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return  # wholly outside the frame
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    inv = _invert_affine(f)
    u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    dist = _signed_distance(FAMILIES[sprite.family].shape, u, v, *sprite.half) * scale  # frame px
    alpha = np.clip(0.5 + dist / EDGE_PX, 0.0, 1.0)[..., None]
    centre = (sprite.texture.shape[0] - 1) / 2
    colour = _bilinear(sprite.texture, u + centre, v + centre)
    box = canvas[y0:y1, x0:x1]
    box[:] = box * (1 - alpha) + colour * alpha
    owner[y0:y1, x0:x1][dist >= 0] = layer


def render_clip(params: SampleParams, index: int) -> tuple[np.ndarray, SampleTruth]:
    """Render clip ``params.clips[index]`` in memory -> (frames (T, H, W, 3) uint8 RGB, truth)."""
    if not 0 <= index < len(params.clips):
        raise SampleTruthError(f"clip index {index} is outside sample.clips (0..{len(params.clips) - 1})")
    # seeded by the clip's name, not its position: adding or removing clips changes no other clip
    rng = np.random.default_rng([params.seed, zlib.crc32(params.clips[index].encode())])
    h, w, n = params.height, params.width, params.num_frames
    background = _background(rng, h, w)
    sprites: list[_Sprite] = []
    for _ in range(params.sprites):
        sprites.append(_make_sprite(rng, params, sprites))

    frames = np.empty((n, h, w, 3), np.uint8)
    layers = np.empty((n, h, w), np.uint8)
    for t in range(n):
        canvas = background.astype(np.float64)
        owner = np.zeros((h, w), np.uint8)
        for k, sprite in enumerate(sprites, start=1):
            _draw_sprite(canvas, owner, k, sprite, t)
        frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        layers[t] = owner

    frame_from_tex = np.empty((n, len(sprites) + 1, 2, 3))
    frame_from_tex[:, 0] = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # static background
    for k, sprite in enumerate(sprites, start=1):
        frame_from_tex[:, k] = sprite.frame_from_tex
    truth = SampleTruth(
        tex_from_frame=_invert_affine(frame_from_tex),
        layers=layers,
        fps=float(params.fps),
        layer_family=np.array([-1] + [s.family for s in sprites], np.int64),
        family_names=tuple(f.name for f in FAMILIES),
        clip=params.clips[index],
    )
    return frames, truth


# ---------------------------------------------------------------- ground truth


class SampleTruth:
    """Exact ground truth of one clip: per-frame layer ownership and per-layer affines."""

    def __init__(
        self,
        *,
        tex_from_frame: np.ndarray,
        layers: np.ndarray,
        fps: float,
        layer_family: np.ndarray,
        family_names: tuple[str, ...],
        clip: str = "",
    ) -> None:
        self.tex_from_frame = np.asarray(tex_from_frame, np.float64)  # (T, K+1, 2, 3)
        self.layers = np.asarray(layers, np.uint8)  # (T, H, W)
        self.fps = float(fps)
        self.layer_family = np.asarray(layer_family, np.int64)  # (K+1,)
        self.family_names = tuple(family_names)
        self.clip = clip
        shape = self.tex_from_frame.shape
        if len(shape) != 4 or shape[2:] != (2, 3) or self.layers.ndim != 3 or self.layers.shape[0] != shape[0]:
            raise SampleTruthError(
                f"inconsistent shapes: tex_from_frame {shape} (want (T, K+1, 2, 3)), "
                f"layers {self.layers.shape} (want (T, H, W))"
            )
        k1 = shape[1]
        if self.layer_family.shape != (k1,) or int(self.layers.max(initial=0)) >= k1:
            raise SampleTruthError(f"layers refer to more than the {k1} layers described")
        self.frame_from_tex = _invert_affine(self.tex_from_frame)  # (T, K+1, 2, 3)

    @property
    def num_frames(self) -> int:
        return int(self.layers.shape[0])

    @property
    def height(self) -> int:
        return int(self.layers.shape[1])

    @property
    def width(self) -> int:
        return int(self.layers.shape[2])

    @property
    def num_layers(self) -> int:
        """K + 1: the background plus the sprites."""
        return int(self.layer_family.shape[0])

    def tracks(self, start: int, length: int, query_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True positions and visibility of points over frames start .. start+length-1.

        query_xy: (N, 2) x, y in clip pixels at frame ``start``, inside the frame.
        Returns tracks (length, N, 2) float64 (tracks[0] == query_xy) and visible (length, N) bool.
        """
        query = np.asarray(query_xy, np.float64).reshape(-1, 2)  # (N, 2)
        if not (start >= 0 and length >= 1 and start + length <= self.num_frames):
            raise SampleTruthError(
                f"frames {start}..{start + length - 1} are outside the clip's "
                f"{self.num_frames} frames (start >= 0, length >= 1)"
            )
        ix, iy, inside = self._pixel(query)
        if not inside.all():
            bad = query[~inside][0]
            raise SampleTruthError(
                f"query point ({bad[0]}, {bad[1]}) lies outside the {self.width}x{self.height} frame"
            )
        layer = self.layers[start, iy, ix].astype(np.int64)  # (N,)
        a = self.tex_from_frame[start, layer]  # (N, 2, 3)
        uv = np.einsum("nij,nj->ni", a[..., :2], query) + a[..., 2]  # (N, 2)
        f = self.frame_from_tex[start : start + length][:, layer]  # (L, N, 2, 3)
        tracks = np.einsum("lnij,nj->lni", f[..., :2], uv) + f[..., 2]  # (L, N, 2)
        tracks[0] = query
        ix, iy, inside = self._pixel(tracks)  # (L, N) each
        frames = np.arange(start, start + length)[:, None]  # (L, 1)
        visible = inside & (self.layers[frames, iy, ix] == layer)
        return tracks, visible

    def _pixel(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rounded pixel (floor(a + 0.5)) of points (..., 2), clamped, and whether it is in the frame."""
        px = np.floor(xy + 0.5)
        finite = np.isfinite(px).all(axis=-1)
        px = np.where(np.isfinite(px), px, -1).astype(np.int64)
        inside = finite & (px[..., 0] >= 0) & (px[..., 0] < self.width) & (px[..., 1] >= 0) & (px[..., 1] < self.height)
        ix = np.clip(px[..., 0], 0, self.width - 1)
        iy = np.clip(px[..., 1], 0, self.height - 1)
        return ix, iy, inside


def save_truth(path: str | Path, truth: SampleTruth) -> None:
    """Write the .npz described in the module docstring, atomically and byte-deterministically."""
    arrays = {
        "schema_version": np.array(SCHEMA_VERSION, np.int64),
        "clip": np.array(truth.clip),
        "num_frames": np.array(truth.num_frames, np.int64),
        "size": np.array([truth.height, truth.width], np.int64),
        "fps": np.array(truth.fps, np.float64),
        "tex_from_frame": truth.tex_from_frame,
        "layers": truth.layers,
        "layer_family": truth.layer_family,
        "family_names": np.array(truth.family_names),
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)


def load_truth(path: str | Path) -> SampleTruth:
    """Read a ground-truth .npz written by :func:`save_truth`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ground-truth file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise SampleTruthError(f"{path}: not a readable ground-truth .npz ({err})") from None
    try:
        version = int(data["schema_version"]) if "schema_version" in data else None
    except (TypeError, ValueError):
        version = None
    if version != SCHEMA_VERSION:
        raise SampleTruthError(
            f"{path}: schema_version {version}, expected {SCHEMA_VERSION}; regenerate it with `densemotion sample`"
        )
    needed = {"clip", "num_frames", "size", "fps", "tex_from_frame", "layers", "layer_family", "family_names"}
    if missing := sorted(needed - data.keys()):
        raise SampleTruthError(f"{path}: missing arrays {missing}")
    try:
        truth = SampleTruth(
            tex_from_frame=data["tex_from_frame"],
            layers=data["layers"],
            fps=float(data["fps"]),
            layer_family=data["layer_family"],
            family_names=tuple(str(s) for s in data["family_names"]),
            clip=str(data["clip"]),
        )
    except SampleTruthError as err:
        raise SampleTruthError(f"{path}: {err}") from None
    if [truth.num_frames, truth.height, truth.width] != [int(data["num_frames"]), *data["size"].tolist()]:
        raise SampleTruthError(f"{path}: num_frames/size disagree with the layers array")
    return truth


def generate_clip(params: SampleParams, name: str, video_path: str | Path, truth_path: str | Path) -> SampleTruth:
    """Render clip ``name`` of ``params.clips``, encode it as H.264 MP4 and save its truth."""
    if name not in params.clips:
        raise SampleTruthError(f"clip {name!r} is not in sample.clips {params.clips}")
    frames, truth = render_clip(params, params.clips.index(name))
    encode_video(video_path, frames, params.fps, crf=params.crf)
    save_truth(truth_path, truth)
    return truth
