"""The ``raft`` tracker: torchvision's RAFT optical flow (``flow.py``), chained over the window.

Chaining and visibility are ``tracking/flowchain.py``'s, shared with ``dis``: the two differ only
in how the flows are computed. The weights are torchvision's published state_dict, read from
``models/raft/`` (``model.py``; never downloaded at run time), so a missing or foreign file fails
before any work, with the command that fetches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from densemotion.params import Section
from densemotion.runtime import Autocast
from densemotion.tracking.base import Tracker, TrackerSpec, weights_file_name


class RaftParams(Section):
    """``trajectories.raft``: torchvision's RAFT flow, all pairs of a window in one batch, chained."""

    model: Literal["small", "large"] = "large"  # raft_small (1M weights) or raft_large (5.3M, better)
    # file in models/raft/; None: torchvision's published file for `model` (model.py, WEIGHTS)
    weights: str | None = None
    num_flow_updates: int = Field(12, ge=1)  # RAFT's recurrent refinements (torchvision's default 12)
    # image pairs per network call (each window has 2 (S - 1): forward and backward); None: all at once
    batch_pairs: int | None = Field(None, ge=1)
    # mixed precision (runtime.autocast_dtype): none, bf16, fp16 (GPU only) or auto (bf16 where native)
    autocast: Autocast = "none"
    # visibility checks, as trajectories.dis (tracking/flowchain.py)
    fb_threshold: float = Field(0.7, gt=0)
    fb_relative: float = Field(0.01, ge=0)
    photo_threshold: float | None = Field(30.0, gt=0)

    @field_validator("weights")
    @classmethod
    def _in_its_folder(cls, v: str | None) -> str | None:
        return None if v is None else weights_file_name(v, "raft")


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    """Build the tracker on ``device`` (cpu, cuda, auto) from the weights folder ``weights``."""
    from densemotion.runtime import resolve_device
    from densemotion.tracking.raft.flow import make

    assert isinstance(section, RaftParams) and weights is not None
    return make(section, resolve_device(device), weights)


# weights=".": make gets the folder models/raft/ itself (the stage's dep), since the file in it
# depends on trajectories.raft.model (or .weights)
TRACKER = TrackerSpec(name="raft", params=RaftParams, make=_make, weights=".")

__all__ = ["TRACKER", "RaftParams"]
