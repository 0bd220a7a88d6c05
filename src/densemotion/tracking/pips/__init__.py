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
    # encoder, feature pyramid and Mixer in bf16/fp16, the rest fp32; auto: bf16 where the CPU or GPU
    # multiplies bf16 natively, else fp32 (tracking/pips/precision.py; fp16 is GPU-only)
    autocast: Literal["none", "bf16", "fp16", "auto"] = "none"


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

    ``autocast`` picks what runs in a lower precision on the resolved device (precision.py).
    """
    from densemotion.runtime import resolve_device
    from densemotion.tracking.pips.checkpoint import load_pips
    from densemotion.tracking.pips.engine import PipsEngine
    from densemotion.tracking.pips.precision import resolve_precision

    assert isinstance(section, PipsParams) and weights is not None
    device = resolve_device(device)
    net = load_pips(weights, stride=section.stride, device=device)
    precision = resolve_precision(section.autocast, device)
    engine = PipsEngine(net, device, iters=section.iters, chunk_size=section.chunk_size, precision=precision)
    return PipsTracker(engine)


# the published checkpoint's own file name (checkpoint.CHECKPOINT_NAME)
TRACKER = TrackerSpec(name="pips", params=PipsParams, make=_make, weights="model-000200000.pth")

__all__ = ["TRACKER", "PipsParams", "PipsTracker"]
