"""The ``alltracker`` tracker's code: dense flow of a window, read at the query points.

One :meth:`~densemotion.tracking.alltracker.model.AllTrackerNet.forward_sliding` call per window
gives the flow from frame 0 and (visibility, confidence) for every pixel of every frame; a
query's track is its position plus the flow read there (exact at pixel centres, bilinear in
between, clamped at the border). Memory is the model's: one 16-frame window of features at a
time, whatever the window's length, frames encoded :data:`BATCH` at a time, and the correlation
volumes bounded by ``corr_memory_mb``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from densemotion.runtime import autocast_to, to_device
from densemotion.tracking.alltracker.model import AllTrackerNet
from densemotion.tracking.base import TrackerError

BATCH = 4  # frames per encoder (and upsampler) call: less memory than a window's 16, same speed on CPU
# values held per 1/8-resolution pixel of one window's 16 frames beyond the correlation volumes
# (bounded on their own): features 256 + anchor copy 256 + flow/context 256 + correlation samples
# 405 + the update block's ~1,000 + full-resolution flows and visibility (4 x 64) ~ 2,400
WINDOW_VALUES_PER_PIXEL8 = 2400


def window_bytes(size: tuple[int, int], amp_dtype: torch.dtype | None = None) -> int:
    """Estimated activation bytes of one window at (H, W): 16 frames x (H/8 x W/8, padded) x
    WINDOW_VALUES_PER_PIXEL8 values, 4 bytes each (2 under autocast; the outputs stay float32)."""
    h8, w8 = -(-size[0] // 8), -(-size[1] // 8)
    return 16 * h8 * w8 * WINDOW_VALUES_PER_PIXEL8 * (4 if amp_dtype is None else 2)


def sample_bilinear(maps: Tensor, points: Tensor) -> Tensor:
    """maps (S, C, H, W), points (N, 2) x, y in pixels (centres at integers) -> (S, C, N).

    Exact at integer points (weights 1 and 0, no normalised-coordinate round trip); points
    outside the frame read its border.
    """
    h, w = maps.shape[-2:]
    x = points[:, 0].clamp(0, w - 1)  # (N,)
    y = points[:, 1].clamp(0, h - 1)
    x0, y0 = x.floor().long().clamp(max=w - 2 if w > 1 else 0), y.floor().long().clamp(max=h - 2 if h > 1 else 0)
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    wx, wy = (x - x0).to(maps.dtype), (y - y0).to(maps.dtype)  # (N,) in [0, 1]
    top = maps[..., y0, x0] * (1 - wx) + maps[..., y0, x1] * wx  # (S, C, N)
    bottom = maps[..., y1, x0] * (1 - wx) + maps[..., y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def visibility_score(visconf: Tensor, threshold: float) -> Tensor:
    """(..., 2, N) visibility and confidence probabilities -> (..., N) in [0, 1], 0.5 at the threshold.

    The published evaluation counts a point visible where visibility x confidence >= threshold
    (its ``vis_thr`` 0.6); ours counts it where the stored value >= 0.5, so the product is mapped
    piecewise linearly: [0, threshold] -> [0, 0.5], [threshold, 1] -> [0.5, 1].
    """
    p = visconf[..., 0, :] * visconf[..., 1, :]
    return torch.where(p < threshold, 0.5 * p / threshold, 0.5 + 0.5 * (p - threshold) / (1 - threshold))


class AllTrackerTracker:
    """Tracker protocol over :class:`AllTrackerNet` (float32 weights, optional autocast)."""

    name = "alltracker"

    def __init__(
        self,
        net: AllTrackerNet,
        iters: int,
        visible_threshold: float,
        amp_dtype: torch.dtype | None = None,
        corr_memory_mb: int | None = None,
        batch_memory_mb: int | None = None,
    ) -> None:
        self.net = net
        self.corr_max_bytes = None if corr_memory_mb is None else corr_memory_mb << 20
        self.batch_max_bytes = None if batch_memory_mb is None else batch_memory_mb << 20
        self.device = next(net.parameters()).device
        self.iters = iters
        self.visible_threshold = visible_threshold
        self.amp_dtype = amp_dtype  # runtime.autocast_dtype: None is float32

    def max_windows(self, size: tuple[int, int], window: int) -> int:
        """How many windows of ``window`` frames at ``size`` (H, W) fit ``batch_memory_mb`` at once
        (:func:`window_bytes`; at least 1; unbounded when no bound is set)."""
        if self.batch_max_bytes is None:
            return 1 << 30
        return max(1, self.batch_max_bytes // window_bytes(size, self.amp_dtype))

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (S, H, W, 3) uint8 RGB, queries (N, 2) xy -> tracks (S, N, 2), vis (S, N) float32."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
            raise TrackerError(f"alltracker: frames must be (S >= 2, H, W, 3), got {frames.shape}")
        tracks, vis = self.track_windows(frames[None], queries)
        return tracks[0], vis[0]

    @torch.inference_mode()
    def track_windows(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (B, S, H, W, 3) uint8 RGB, queries (N, 2) xy -> tracks (B, S, N, 2), vis (B, S, N)
        float32: B windows through the network in one call (the model's batch axis)."""
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[1] < 2:
            raise TrackerError(f"alltracker: windows must be (B, S >= 2, H, W, 3), got {frames.shape}")
        images = to_device(frames, self.device).permute(0, 1, 4, 2, 3).float()  # (B, S, 3, H, W) in [0, 255]
        with autocast_to(self.device, self.amp_dtype):
            flows, visconf = self.net.forward_sliding(  # (B, S, 2, H, W) each
                images, iters=self.iters, corr_max_bytes=self.corr_max_bytes, batch=BATCH
            )
        points = torch.from_numpy(np.asarray(queries, np.float32)).to(self.device)  # (N, 2)
        b, s = flows.shape[:2]
        flow_at = sample_bilinear(flows.flatten(0, 1).float(), points).reshape(b, s, 2, -1)  # (B, S, 2, N)
        tracks = points + flow_at.transpose(2, 3)  # (B, S, N, 2)
        seen = sample_bilinear(visconf.flatten(0, 1).float(), points).reshape(b, s, 2, -1)  # (B, S, 2, N)
        vis = visibility_score(seen, self.visible_threshold)  # (B, S, N)
        tracks[:, 0], vis[:, 0] = points, 1.0  # the queries themselves, seen in frame 0
        return tracks.cpu().numpy().astype(np.float32), vis.cpu().numpy().astype(np.float32)
