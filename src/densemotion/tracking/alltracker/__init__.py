"""The ``alltracker`` tracker: the published AllTracker model (Harley et al., 2025), every pixel at once.

Its weights are ``models/alltracker/alltracker.pth`` (``TRACKER.weights``), the authors' published
checkpoint, loaded when the tracker is made, so a missing or foreign file fails before any work,
with the command that fetches it. The network: ``model.py``; reading tracks from it: ``tracker.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.tracking.base import Tracker, TrackerSpec


class AllTrackerParams(Section):
    """``trajectories.alltracker``: dense flow from each window's first frame, 16-frame sliding windows."""

    iters: int = Field(4, ge=1)  # refinements per window (published demo: 4)
    # visibility x confidence at or above it counts as visible (published evaluation: 0.6); stored
    # as 0.5 there (tracker.visibility_score), the threshold every consumer uses
    visible_threshold: float = Field(0.6, gt=0, lt=1)
    autocast: Literal["none", "bf16", "fp16"] = "none"  # mixed precision on CUDA; ignored on CPU


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    """Build the tracker from ``trajectories.alltracker`` on ``device`` (cpu, cuda, auto)."""
    from densemotion.runtime import resolve_device
    from densemotion.tracking.alltracker.checkpoint import load_alltracker
    from densemotion.tracking.alltracker.tracker import AllTrackerTracker

    assert isinstance(section, AllTrackerParams) and weights is not None
    net = load_alltracker(weights, device=resolve_device(device))
    return AllTrackerTracker(net, section.iters, section.visible_threshold, section.autocast)


# the published checkpoint's own file name (checkpoint.CHECKPOINT_NAME)
TRACKER = TrackerSpec(name="alltracker", params=AllTrackerParams, make=_make, weights="alltracker.pth")

__all__ = ["TRACKER", "AllTrackerParams"]
