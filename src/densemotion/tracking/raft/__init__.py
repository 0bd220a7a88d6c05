"""The ``raft`` tracker: torchvision's RAFT optical flow (``flow.py``), chained over the window.

Chaining and visibility are ``tracking/flowchain.py``'s, shared with ``dis``: the two differ only
in how the flows are computed. The weights are torchvision's published state_dicts (``WEIGHTS``:
the files torchvision's ``Raft_Small_Weights.DEFAULT`` / ``Raft_Large_Weights.DEFAULT`` download,
each a plain ``torch.save``d state_dict of ``raft_small`` / ``raft_large``), read from
``models/raft/`` (never downloaded at run time), so a missing or foreign file fails before any
work, with the command that fetches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from densemotion.params import Section
from densemotion.runtime import Autocast
from densemotion.statedict import mismatch
from densemotion.tracking.base import Tracker, TrackerSpec, weights_file_name
from densemotion.tracking.weights import CheckpointRecord, Fixture

if TYPE_CHECKING:
    from torchvision.models.optical_flow import RAFT


class RaftParams(Section):
    """``trajectories.raft``: torchvision's RAFT flow, all pairs of a window in one batch, chained."""

    model: Literal["small", "large"] = "large"  # raft_small (1M weights) or raft_large (5.3M, better)
    # file in models/raft/; None: torchvision's published file for `model` (WEIGHTS below)
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


def _raft_small() -> RAFT:
    from torchvision.models.optical_flow import raft_small

    return raft_small(weights=None, progress=False)  # untrained: weights=None downloads nothing


def _raft_large() -> RAFT:
    from torchvision.models.optical_flow import raft_large

    return raft_large(weights=None, progress=False)


def _fits_another_model(state: Mapping[str, Any]) -> str:
    """What a mismatch message adds when ``state`` is the other model's state_dict."""
    for model, record in WEIGHTS.items():
        if not mismatch(state, record.expected_shapes()):
            return f" (it is {record.title}'s: set trajectories.raft.model: {model})"
    return ""


# trajectories.raft.model -> torchvision's published file: the DEFAULT weights of torchvision 0.29,
# each a plain state_dict; test weights are torchvision's own initialisation, seeded
WEIGHTS: dict[str, CheckpointRecord[RAFT]] = {
    "small": CheckpointRecord(
        tracker="raft",
        title="RAFT small",
        file_name="raft_small_C_T_V2-01064c6d.pth",
        url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
        key=None,
        build=_raft_small,
        fixture=Fixture(seed=0, gain=None),
        noun="weights file",
        hint=_fits_another_model,
    ),
    "large": CheckpointRecord(
        tracker="raft",
        title="RAFT large",
        file_name="raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        key=None,
        build=_raft_large,
        fixture=Fixture(seed=0, gain=None),
        noun="weights file",
        hint=_fits_another_model,
    ),
}

# weights=".": make gets the folder models/raft/ itself (the stage's dep), since the file in it
# depends on trajectories.raft.model (or .weights)
TRACKER = TrackerSpec(name="raft", params=RaftParams, make=_make, weights=".")

__all__ = ["TRACKER", "WEIGHTS", "RaftParams"]
