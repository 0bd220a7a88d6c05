"""The weight-free ``dis`` tracker: OpenCV DIS optical flow (``flow.py``) chained over the window (``flowchain.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.tracking.base import Tracker, TrackerSpec


class DisParams(Section):
    """``trajectories.dis``: OpenCV DIS flow chained over a window (``tracking/flowchain.py`` explains the checks)."""

    preset: Literal["ultrafast", "fast", "medium"] = "medium"  # OpenCV's DIS preset
    finest_scale: int | None = Field(0, ge=0, le=6)  # pyramid level DIS stops at (0: full res); None: preset's
    # forward-backward check: occluded when the round trip misses by more than
    # sqrt(fb_threshold^2 + fb_relative * (|fwd|^2 + |bwd|^2)) px of the tracking resolution
    fb_threshold: float = Field(0.7, gt=0)
    fb_relative: float = Field(0.01, ge=0)
    # photometric check: occluded when the point's colour (frames blurred, sigma 1 px) moves more
    # than this many levels (0..255) from its frame-0 colour in any RGB channel; None: off
    photo_threshold: float | None = Field(30.0, gt=0)


def _make(section: BaseModel, device: str, weights: Path | None) -> Tracker:
    from densemotion.tracking.dis.flow import make

    assert isinstance(section, DisParams)
    return make(section)  # DIS runs on the CPU whatever the device


TRACKER = TrackerSpec(name="dis", params=DisParams, make=_make)
