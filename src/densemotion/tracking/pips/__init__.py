"""The ``pips`` tracker: the published PIPs model run densely (see ``engine.py``).

``make(params, device)`` loads the checkpoint named by ``trajectories.pips.checkpoint`` at once,
so a missing or foreign file fails before any work, with the command that fetches it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from densemotion.params import TrajectoriesParams
    from densemotion.tracking.pips.engine import PipsEngine, TrackInfo

_AMP = {"none": None, "bf16": "bfloat16", "fp16": "float16"}


class PipsTracker:
    """Tracker protocol over :class:`~densemotion.tracking.pips.engine.PipsEngine`."""

    name = "pips"

    def __init__(self, engine: PipsEngine) -> None:
        self.engine = engine
        self.last_info: TrackInfo | None = None  # padding / chaining of the last call
        self._warned_padding = False

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames (L, H, W, 3) uint8, queries (N, 2) float32 xy -> tracks (L, N, 2), vis (L, N) in [0, 1]."""
        tracks, vis, self.last_info = self.engine.track(frames, queries)
        if self.last_info.padded_frames and not self._warned_padding:
            self._warned_padding = True
            warnings.warn(
                f"pips: windows of {len(frames)} frames are padded to 8 by repeating their last frame "
                "(as the published demo does); set trajectories.window >= 8 to avoid it",
                stacklevel=2,
            )
        return tracks, vis


def make(params: TrajectoriesParams, device: str) -> PipsTracker:
    """Build the tracker from ``trajectories.pips``; ``device`` is cpu, cuda or auto.

    Autocast applies on CUDA only (CPU stays float32).
    """
    import torch

    from densemotion.tracking.base import resolve_device
    from densemotion.tracking.pips.checkpoint import load_pips
    from densemotion.tracking.pips.engine import PipsEngine

    device = resolve_device(device)
    p = params.pips
    net = load_pips(p.checkpoint, stride=p.stride, device=device)
    amp = _AMP[p.autocast]
    amp_dtype = getattr(torch, amp) if amp is not None and torch.device(device).type == "cuda" else None
    return PipsTracker(PipsEngine(net, device, iters=p.iters, chunk_size=p.chunk_size, amp_dtype=amp_dtype))


__all__ = ["PipsTracker", "make"]
