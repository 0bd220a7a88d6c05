"""The ``alltracker`` tracker: the published AllTracker model (Harley et al., 2025), every pixel at once.

Its weights are ``models/alltracker/alltracker.pth`` (``CHECKPOINT``, whose file name is
``TRACKER.weights``), the authors' published checkpoint, loaded when the tracker is made, so a
missing or foreign file fails before any work, with the command that fetches it: ``alltracker.pth``
on the authors' Hugging Face repository (``aharley/alltracker``), a ``torch.save``d dict whose
``model`` entry is the state_dict of :class:`~densemotion.tracking.alltracker.model.AllTrackerNet`
(235 parameters + ``time_emb``). The network: ``model.py``; reading tracks from it: ``tracker.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.runtime import Autocast
from densemotion.tracking.base import Tracker, TrackerSpec
from densemotion.tracking.weights import CheckpointRecord, Fixture

if TYPE_CHECKING:
    from torch import Tensor, nn

    from densemotion.tracking.alltracker.model import AllTrackerNet


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
    # the most one batch of windows (trajectories.batch_windows) may hold beyond the correlation
    # volumes (MB, estimated from the shapes: tracker.window_bytes, ~160 per window at 256x256 in
    # float32): a larger batch shrinks to fit
    batch_memory_mb: int = Field(4096, ge=1)


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    """Build the tracker from ``trajectories.alltracker`` on ``device`` (cpu, cuda, auto)."""
    from densemotion.runtime import autocast_dtype, resolve_device
    from densemotion.tracking.alltracker.tracker import AllTrackerTracker

    assert isinstance(section, AllTrackerParams) and weights is not None
    device = resolve_device(device)
    net = CHECKPOINT.load(weights, device=device)
    amp_dtype = autocast_dtype(section.autocast, device, "trajectories.alltracker.autocast")
    return AllTrackerTracker(
        net, section.iters, section.visible_threshold, amp_dtype, section.corr_memory_mb, section.batch_memory_mb
    )


def _net() -> AllTrackerNet:
    from densemotion.tracking.alltracker.model import AllTrackerNet

    return AllTrackerNet()


def _fixture_buffers(net: nn.Module) -> dict[str, Tensor]:
    """The fixture's ``time_emb``: the float64 table (the module keeps it in float32)."""
    from densemotion.tracking.alltracker.model import AllTrackerNet, sincos_table

    assert isinstance(net, AllTrackerNet)
    return {"time_emb": sincos_table(net.dim, net.seqlen)}


CHECKPOINT: CheckpointRecord[AllTrackerNet] = CheckpointRecord(
    tracker="alltracker",
    title="AllTracker",
    file_name="alltracker.pth",
    url="https://huggingface.co/aharley/alltracker/resolve/main/alltracker.pth",
    key="model",
    build=_net,
    # the reference outputs' weights (tests/fixtures/alltracker/README.md)
    fixture=Fixture(seed=20250610, gain=0.3, buffers=_fixture_buffers),
)
TRACKER = TrackerSpec(name="alltracker", params=AllTrackerParams, make=_make, weights=CHECKPOINT.file_name)

__all__ = ["CHECKPOINT", "TRACKER", "AllTrackerParams"]
