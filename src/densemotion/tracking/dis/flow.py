"""OpenCV DIS optical flow, chained point by point: the ``dis`` tracker's code.

For each consecutive pair of frames (t, t+1) of a window, DIS gives a forward flow F_t
(t -> t+1) and a backward flow B_t (t+1 -> t), each (H, W, 2) float32. A point at p_t moves to
p_{t+1} = p_t + F_t(p_t), with F_t sampled bilinearly at the (sub-pixel) current position; all
points of the window move together (vectorised, no Python loop over points).

Visibility, two checks per step, both named params of ``trajectories.dis``:

- forward-backward: going back from p_{t+1} by B_t should land on p_t; the point is judged
  occluded at t+1 when |p_{t+1} + B_t(p_{t+1}) - p_t|^2 > fb_threshold^2 +
  fb_relative * (|F_t(p_t)|^2 + |B_t(p_{t+1})|^2) (pixels; the relative term, as in Sundaram et
  al. 2010, tolerates the larger flow errors of fast motion);
- photometric (``photo_threshold``, None to skip): the colour of the point, sampled on frames
  blurred with a Gaussian of sigma 1 px, differs from its colour in frame 0 by more than this many
  levels (0..255) in some RGB channel. Chained flow sliding onto an occluder keeps a smooth,
  self-consistent flow that the forward-backward check misses; its colour gives it away.

A point is also occluded once it leaves the frame. Occlusion is sticky: once a chained track has
lost its point, what it follows afterwards is the occluder, so it stays invisible for the rest
of the window (its position keeps being propagated by the flow). Visibility is 0 or 1.

Flows are cached by the content of the two frames, so overlapping windows (stride < window)
compute each pair once.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import cv2
import numpy as np

from densemotion.tracking.base import TrackerError

if TYPE_CHECKING:
    from densemotion.tracking.dis import DisParams

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


_MAP_COLS = 4096  # cv2.remap wants map sides < 32767: points are laid out in rows of this many
_MAX_SIDE = 32766  # the same limit on the frame


def _remap(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """cv2.remap of an (H, W) or (H, W, C in {3, 4}) float32 field at (N, 2) points -> (N, C)."""
    n = len(points)
    full = n // _MAP_COLS * _MAP_COLS
    parts = []
    for lo, hi, cols in ((0, full, _MAP_COLS), (full, n, n - full)):
        if hi > lo:
            grid_xy = points[lo:hi].reshape(-1, cols, 2)
            # map2=None with a 2-channel map1 is OpenCV's documented form; its stubs omit it
            out = cv2.remap(field, grid_xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # type: ignore[call-overload]
            parts.append(out.reshape(hi - lo, -1))
    if not parts:
        return np.zeros((0, 1 if field.ndim == 2 else field.shape[2]), np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def sample_bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinearly sample an (H, W, C) float32 field at (N, 2) x, y -> (N, C) float32.

    Points outside the field take the value at the nearest border. Uses cv2.remap, which
    interpolates float32 fields of 1, 3 or 4 channels exactly (OpenCV >= 4.11; older versions
    round positions to 1/32 px); other channel counts are sampled one plane at a time.
    """
    field = np.asarray(field, dtype=np.float32)
    points = np.ascontiguousarray(points, dtype=np.float32)
    c = field.shape[2]
    if c in (3, 4):
        return _remap(field, points)
    out = np.empty((len(points), c), np.float32)
    for k in range(c):
        out[:, k] = _remap(np.ascontiguousarray(field[..., k]), points)[:, 0]
    return out


def _sample_planes(planes: tuple[np.ndarray, ...], points: np.ndarray) -> list[np.ndarray]:
    """Sample contiguous (H, W) planes at (N, 2) points -> one (N,) float32 array per plane."""
    return [_remap(plane, points).reshape(-1) for plane in planes]


def _digest(grey: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(grey).data, digest_size=16).digest()


class DisTracker:
    """Chained DIS flow with forward-backward and photometric visibility (see the module docstring).

    Defaults are those of ``trajectories.dis`` in params.
    """

    name = "dis"

    def __init__(
        self,
        preset: str = "medium",
        fb_threshold: float = 0.7,
        fb_relative: float = 0.01,
        photo_threshold: float | None = 30.0,
        finest_scale: int | None = 0,
    ):
        if preset not in PRESETS:
            raise TrackerError(f"trajectories.dis.preset: unknown preset {preset!r}; use one of {sorted(PRESETS)}")
        if not fb_threshold > 0 or fb_relative < 0 or (photo_threshold is not None and not photo_threshold > 0):
            raise TrackerError(
                "trajectories.dis: fb_threshold and photo_threshold must be > 0 and fb_relative >= 0 "
                f"(got {fb_threshold}, {photo_threshold}, {fb_relative})"
            )
        self.preset = preset
        self.fb_threshold = float(fb_threshold)
        self.fb_relative = float(fb_relative)
        self.photo_threshold = None if photo_threshold is None else float(photo_threshold)
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])  # type: ignore[attr-defined]  # not in the stubs
        if finest_scale is not None:
            self._dis.setFinestScale(int(finest_scale))
        self._cache: OrderedDict[tuple[bytes, bytes], tuple[tuple[np.ndarray, ...], ...]] = OrderedDict()
        self.timings = {"flow": 0.0, "rest": 0.0}  # seconds spent, for the benchmark

    def pair_flows(self, grey0: np.ndarray, grey1: np.ndarray, keep: int) -> tuple[tuple[np.ndarray, ...], ...]:
        """Forward (0 -> 1) and backward (1 -> 0) flows as (x, y) planes, (H, W) float32 each; cached."""
        key = (_digest(grey0), _digest(grey1))
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        t0 = time.perf_counter()
        fwd = self._dis.calc(grey0, grey1, None)  # (H, W, 2)
        bwd = self._dis.calc(grey1, grey0, None)
        self.timings["flow"] += time.perf_counter() - t0
        flows = tuple(tuple(np.ascontiguousarray(f[..., k]) for k in range(2)) for f in (fwd, bwd))
        self._cache[key] = flows
        while len(self._cache) > keep:
            self._cache.popitem(last=False)
        return flows

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (S, H, W, 3) uint8 RGB, queries (N, 2) xy -> tracks (S, N, 2), vis (S, N) float32."""
        frames, queries = _check_inputs(frames, queries)
        num, h, w = frames.shape[:3]
        t0, flow_before = time.perf_counter(), self.timings["flow"]
        greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        colour = _Colour(frames, queries) if self.photo_threshold is not None else None
        tracks = np.empty((num, len(queries), 2), np.float32)  # (S, N, 2)
        vis = np.empty((num, len(queries)), np.float32)  # (S, N)
        tracks[0] = queries
        vis[0] = 1.0  # the query frame: the point is where it was asked for
        alive = _inside(queries, h, w)  # (N,) bool
        for t in range(num - 1):
            fwd, bwd = self.pair_flows(greys[t], greys[t + 1], keep=max(num - 1, 1))
            p, q = tracks[t], tracks[t + 1]  # (N, 2) each, contiguous
            fx, fy = _sample_planes(fwd, p)  # (N,) each
            q[:, 0] = p[:, 0] + fx
            q[:, 1] = p[:, 1] + fy
            bx, by = _sample_planes(bwd, q)
            # column-wise arithmetic: NumPy reductions over a length-2 axis are slow
            err2 = np.square(q[:, 0] + bx - p[:, 0]) + np.square(q[:, 1] + by - p[:, 1])
            bound = self.fb_threshold**2 + self.fb_relative * (fx * fx + fy * fy + bx * bx + by * by)
            alive &= (err2 <= bound) & _inside(q, h, w)
            if colour is not None:
                alive &= colour.difference(t + 1, q) <= self.photo_threshold
            vis[t + 1] = alive
        # everything but the DIS calls themselves (for the benchmark's time split)
        self.timings["rest"] += time.perf_counter() - t0 - (self.timings["flow"] - flow_before)
        return tracks, vis


class _Colour:
    """Colour of each point on Gaussian-blurred frames, compared with its colour in frame 0."""

    SIGMA = 1.0  # px; blurring makes the colour robust to sub-pixel position error on texture

    def __init__(self, frames: np.ndarray, queries: np.ndarray):
        self.frames = frames
        self.ref = sample_bilinear(self._blurred(0), queries)  # (N, 3)

    def _blurred(self, t: int) -> np.ndarray:
        return cv2.GaussianBlur(self.frames[t].astype(np.float32), (0, 0), self.SIGMA)

    def difference(self, t: int, points: np.ndarray) -> np.ndarray:
        """(N,) largest absolute RGB difference (0..255) between frame t at ``points`` and frame 0."""
        d = np.abs(sample_bilinear(self._blurred(t), points) - self.ref)  # (N, 3)
        return np.maximum(np.maximum(d[:, 0], d[:, 1]), d[:, 2])


def _inside(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N,) bool: point within the frame's pixel area [-0.5, size - 0.5)."""
    x, y = points[:, 0], points[:, 1]
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


def _check_inputs(frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise TrackerError(f"dis: frames must be (S >= 2, H, W, 3) uint8, got {frames.dtype}{list(frames.shape)}")
    if max(frames.shape[1:3]) > _MAX_SIDE:
        raise TrackerError(f"dis: frames of {frames.shape[2]}x{frames.shape[1]} exceed {_MAX_SIDE} px a side")
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != 2:
        raise TrackerError(f"dis: queries must be (N, 2) x, y, got shape {list(queries.shape)}")
    return frames, queries


def make(p: DisParams) -> DisTracker:
    """Build the tracker from ``trajectories.dis`` (DIS runs on the CPU whatever the device)."""
    return DisTracker(
        preset=p.preset,
        fb_threshold=p.fb_threshold,
        fb_relative=p.fb_relative,
        photo_threshold=p.photo_threshold,
        finest_scale=p.finest_scale,
    )
