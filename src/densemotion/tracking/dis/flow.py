"""OpenCV DIS optical flow, chained point by point: the ``dis`` tracker's code.

For each consecutive pair of frames (t, t+1) of a window, DIS gives a forward flow F_t
(t -> t+1) and a backward flow B_t (t+1 -> t), each (H, W, 2) float32, computed on the grey
frames. Chaining them along the points and the visibility checks (forward-backward, photometric,
leaving the frame) are ``tracking/flowchain.py``'s, shared with the ``raft`` tracker.

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
from densemotion.tracking.flowchain import ChainChecks, PairFlow, chain_flows, check_inputs, sample_bilinear

if TYPE_CHECKING:
    from densemotion.tracking.dis import DisParams

__all__ = ["PRESETS", "DisTracker", "make", "sample_bilinear"]

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _digest(grey: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(grey).data, digest_size=16).digest()


class DisTracker:
    """Chained DIS flow with forward-backward and photometric visibility (``flowchain.py``).

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
        self.checks = ChainChecks(
            float(fb_threshold),
            float(fb_relative),
            None if photo_threshold is None else float(photo_threshold),
            tracker="dis",
        )
        self.preset = preset
        self.fb_threshold = self.checks.fb_threshold
        self.fb_relative = self.checks.fb_relative
        self.photo_threshold = self.checks.photo_threshold
        self._dis = cv2.DISOpticalFlow_create(PRESETS[preset])  # type: ignore[attr-defined]  # not in the stubs
        if finest_scale is not None:
            self._dis.setFinestScale(int(finest_scale))
        self._cache: OrderedDict[tuple[bytes, bytes], PairFlow] = OrderedDict()
        self.timings = {"flow": 0.0, "rest": 0.0}  # seconds spent, for the benchmark

    def pair_flows(self, grey0: np.ndarray, grey1: np.ndarray, keep: int) -> PairFlow:
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
        planes = [(np.ascontiguousarray(f[..., 0]), np.ascontiguousarray(f[..., 1])) for f in (fwd, bwd)]
        flows = PairFlow(*planes)
        self._cache[key] = flows
        while len(self._cache) > keep:
            self._cache.popitem(last=False)
        return flows

    def window_flows(self, frames: np.ndarray) -> list[PairFlow]:
        """The S - 1 pair flows of frames (S, H, W, 3) uint8 RGB, from their grey versions."""
        greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        keep = max(len(frames) - 1, 1)
        return [self.pair_flows(greys[t], greys[t + 1], keep) for t in range(len(frames) - 1)]

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (S, H, W, 3) uint8 RGB, queries (N, 2) xy -> tracks (S, N, 2), vis (S, N) float32."""
        frames, queries = check_inputs(frames, queries, self.name)
        t0, flow_before = time.perf_counter(), self.timings["flow"]
        tracks, vis = chain_flows(frames, queries, self.window_flows(frames), self.checks)
        # everything but the DIS calls themselves (for the benchmark's time split)
        self.timings["rest"] += time.perf_counter() - t0 - (self.timings["flow"] - flow_before)
        return tracks, vis


def make(p: DisParams) -> DisTracker:
    """Build the tracker from ``trajectories.dis`` (DIS runs on the CPU whatever the device)."""
    return DisTracker(
        preset=p.preset,
        fb_threshold=p.fb_threshold,
        fb_relative=p.fb_relative,
        photo_threshold=p.photo_threshold,
        finest_scale=p.finest_scale,
    )
