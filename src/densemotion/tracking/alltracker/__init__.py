"""The ``alltracker`` tracker: the published AllTracker model (Harley et al., 2025), every pixel at once.

Its weights are ``models/alltracker/alltracker.pth`` (``TRACKER.weights``), the authors' published
checkpoint, loaded when the tracker is made, so a missing or foreign file fails before any work,
with the command that fetches it. The network: ``model.py``; reading tracks from it: ``tracker.py``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.runtime import Autocast
from densemotion.tracking.base import Tracker, TrackerSpec


class AllTrackerParams(Section):
    """``trajectories.alltracker``: dense flow from each window's first frame, 16-frame sliding windows."""

    iters: int = Field(4, ge=1)  # refinements per window (published demo: 4)
    # visibility x confidence at or above it counts as visible (published evaluation: 0.6); stored
    # as 0.5 there (tracker.visibility_score), the threshold every consumer uses
    visible_threshold: float = Field(0.6, gt=0, lt=1)
    # mixed precision (runtime.autocast_dtype): none, bf16, fp16 (GPU only) or auto (bf16 where native)
    autocast: Autocast = "none"
    # the most the correlation volumes may hold at once (MB; ~1,260 at 360x640 in float32, growing
    # with the square of the pixels); past it they are recomputed a few pixels at a time at each
    # refinement: same values, less memory, slower (corr.CorrPyramid)
    corr_memory_mb: int = Field(2048, ge=1)


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    """Build the tracker from ``trajectories.alltracker`` on ``device`` (cpu, cuda, auto)."""
    from densemotion.runtime import autocast_dtype, resolve_device
    from densemotion.tracking.alltracker.checkpoint import load_alltracker
    from densemotion.tracking.alltracker.tracker import AllTrackerTracker

    assert isinstance(section, AllTrackerParams) and weights is not None
    device = resolve_device(device)
    net = load_alltracker(weights, device=device)
    amp_dtype = autocast_dtype(section.autocast, device, "trajectories.alltracker.autocast")
    return AllTrackerTracker(net, section.iters, section.visible_threshold, amp_dtype, section.corr_memory_mb)


# the published checkpoint's own file name (checkpoint.CHECKPOINT_NAME)
TRACKER = TrackerSpec(name="alltracker", params=AllTrackerParams, make=_make, weights="alltracker.pth")

__all__ = ["TRACKER", "AllTrackerParams"]
