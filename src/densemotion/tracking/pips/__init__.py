"""The ``pips`` tracker: the published PIPs model run densely (see ``engine.py``).

Its weights are ``models/pips/model-000200000.pth`` (``TRACKER.weights``), loaded when the
tracker is made, so a missing or foreign file fails before any work, with the command that
fetches it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.tracking.base import Tracker, TrackerSpec

if TYPE_CHECKING:
    from densemotion.tracking.pips.engine import PipsEngine, TrackInfo


class PipsParams(Section):
    """``trajectories.pips``: the published PIPs model; windows of 8 frames, chained past 8."""

    stride: Literal[4, 8] = 4  # feature map = frame size / stride (the published demo: 4 at 360x640)
    iters: int = Field(6, ge=1)  # refinement iterations (published demo: 6)
    chunk_size: int = Field(256, ge=1)  # points refined at once: bounds memory, not results (CPU best ~256)
    autocast: Literal["none", "bf16", "fp16"] = "none"  # mixed precision on CUDA; ignored on CPU


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


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    """Build the tracker from ``trajectories.pips`` and the checkpoint at ``weights``.

    Autocast applies on CUDA only (CPU stays float32).
    """
    import torch

    from densemotion.runtime import resolve_device
    from densemotion.tracking.pips.checkpoint import load_pips
    from densemotion.tracking.pips.engine import PipsEngine

    assert isinstance(section, PipsParams) and weights is not None
    device = resolve_device(device)
    net = load_pips(weights, stride=section.stride, device=device)
    amp = _AMP[section.autocast]
    amp_dtype = getattr(torch, amp) if amp is not None and torch.device(device).type == "cuda" else None
    engine = PipsEngine(net, device, iters=section.iters, chunk_size=section.chunk_size, amp_dtype=amp_dtype)
    return PipsTracker(engine)


# the published checkpoint's own file name (checkpoint.CHECKPOINT_NAME)
TRACKER = TrackerSpec(name="pips", params=PipsParams, make=_make, weights="model-000200000.pth")

__all__ = ["TRACKER", "PipsParams", "PipsTracker"]
