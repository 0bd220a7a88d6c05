"""Optical flow chained point by point, with forward-backward and photometric visibility.

The one implementation behind every flow-based tracker (``dis``, ``raft``): a tracker computes,
for each consecutive pair of frames (t, t+1) of a window, a forward flow F_t (t -> t+1) and a
backward flow B_t (t+1 -> t) (a :class:`PairFlow`); :func:`chain_flows` does the rest, so the
trackers differ only in how their flows are computed.

A point at p_t moves to p_{t+1} = p_t + F_t(p_t), with F_t sampled bilinearly at the (sub-pixel)
current position; all points of the window move together (vectorised, no Python loop over points).

Visibility, two checks per step (:class:`ChainChecks`, named params of each flow tracker):

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from densemotion.tracking.base import TrackerError

_MAP_COLS = 4096  # cv2.remap wants map sides < 32767: points are laid out in rows of this many
MAX_SIDE = 32766  # the same limit on the frame


class PairFlow(NamedTuple):
    """The flows of frames (t, t+1): (x, y) planes, each (H, W) float32 C-contiguous, in pixels."""

    forward: tuple[np.ndarray, np.ndarray]  # t -> t+1
    backward: tuple[np.ndarray, np.ndarray]  # t+1 -> t


@dataclass(frozen=True)
class ChainChecks:
    """The visibility checks' thresholds (see the module docstring); ``tracker`` names errors."""

    fb_threshold: float = 0.7
    fb_relative: float = 0.01
    photo_threshold: float | None = 30.0
    tracker: str = "flow"

    def __post_init__(self) -> None:
        bad_photo = self.photo_threshold is not None and not self.photo_threshold > 0
        if not self.fb_threshold > 0 or self.fb_relative < 0 or bad_photo:
            raise TrackerError(
                f"trajectories.{self.tracker}: fb_threshold and photo_threshold must be > 0 and fb_relative >= 0 "
                f"(got {self.fb_threshold}, {self.photo_threshold}, {self.fb_relative})"
            )


def _remap(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """cv2.remap of an (H, W) or (H, W, C in {3, 4}) float32 field at (N, 2) points -> (N, C)."""
    n = len(points)
    full = n // _MAP_COLS * _MAP_COLS
    parts = []
    for lo, hi, cols in ((0, full, _MAP_COLS), (full, n, n - full)):
        if hi > lo:
            grid_xy = points[lo:hi].reshape(-1, cols, 2)
            # map2=None with a 2-channel map1 is OpenCV's documented form; the stubs of OpenCV < 5.1 omit it
            out = cv2.remap(field, grid_xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # type: ignore[call-overload, unused-ignore]
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


def chain_flows(
    frames: np.ndarray, queries: np.ndarray, flows: Sequence[PairFlow], checks: ChainChecks
) -> tuple[np.ndarray, np.ndarray]:
    """Chain ``flows`` along ``queries``: tracks (S, N, 2) and visibility (S, N) float32 in {0, 1}.

    frames: (S, H, W, 3) uint8 RGB (for the photometric check and the frame size), checked by
    :func:`check_inputs`; queries: (N, 2) float32 x, y in frame 0; flows: S - 1 pairs.
    """
    num, h, w = frames.shape[:3]
    if len(flows) != num - 1:
        raise TrackerError(f"{checks.tracker}: {len(flows)} flow pairs for a window of {num} frames")
    colour = _Colour(frames, queries) if checks.photo_threshold is not None else None
    tracks = np.empty((num, len(queries), 2), np.float32)  # (S, N, 2)
    vis = np.empty((num, len(queries)), np.float32)  # (S, N)
    tracks[0] = queries
    vis[0] = 1.0  # the query frame: the point is where it was asked for
    alive = _inside(queries, h, w)  # (N,) bool
    for t in range(num - 1):
        fwd, bwd = flows[t]
        p, q = tracks[t], tracks[t + 1]  # (N, 2) each, contiguous
        fx, fy = _sample_planes(fwd, p)  # (N,) each
        q[:, 0] = p[:, 0] + fx
        q[:, 1] = p[:, 1] + fy
        bx, by = _sample_planes(bwd, q)
        # column-wise arithmetic: NumPy reductions over a length-2 axis are slow
        err2 = np.square(q[:, 0] + bx - p[:, 0]) + np.square(q[:, 1] + by - p[:, 1])
        bound = checks.fb_threshold**2 + checks.fb_relative * (fx * fx + fy * fy + bx * bx + by * by)
        alive &= (err2 <= bound) & _inside(q, h, w)
        if colour is not None:
            alive &= colour.difference(t + 1, q) <= checks.photo_threshold
        vis[t + 1] = alive
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


def check_inputs(frames: np.ndarray, queries: np.ndarray, tracker: str) -> tuple[np.ndarray, np.ndarray]:
    """The Tracker protocol's inputs as arrays: frames (S >= 2, H, W, 3) uint8, queries (N, 2) float32."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise TrackerError(f"{tracker}: frames must be (S >= 2, H, W, 3) uint8, got {frames.dtype}{list(frames.shape)}")
    if max(frames.shape[1:3]) > MAX_SIDE:
        raise TrackerError(f"{tracker}: frames of {frames.shape[2]}x{frames.shape[1]} exceed {MAX_SIDE} px a side")
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != 2:
        raise TrackerError(f"{tracker}: queries must be (N, 2) x, y, got shape {list(queries.shape)}")
    return frames, queries
