"""The ``pips`` tracker: the published PIPs model run densely (see ``engine.py``).

Its weights are ``models/pips/model-000200000.pth`` (``CHECKPOINT``, whose file name is
``TRACKER.weights``), loaded when the tracker is made, so a missing or foreign file fails before
any work, with the command that fetches it. The published checkpoint is that file inside
``reference_model.tar.gz`` (linked from the authors' repository, aharley/pips,
``get_reference_model.sh``; unpacked by ``densemotion fetch-pips``, ``cli/fetch_pips.py``): a
``torch.save``d dict whose ``model_state_dict`` holds the 200 tensors of
:class:`~densemotion.tracking.pips.model.PipsNet`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from densemotion.params import Section
from densemotion.tracking.base import Tracker, TrackerSpec
from densemotion.tracking.weights import CheckpointRecord, Fixture

if TYPE_CHECKING:
    from densemotion.tracking.pips.engine import PipsEngine, TrackInfo
    from densemotion.tracking.pips.model import PipsNet


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
    from densemotion.tracking.pips.engine import PipsEngine
    from densemotion.tracking.pips.precision import resolve_precision

    assert isinstance(section, PipsParams) and weights is not None
    device = resolve_device(device)
    net = CHECKPOINT.load(weights, device=device, stride=section.stride)
    precision = resolve_precision(section.autocast, device)
    engine = PipsEngine(net, device, iters=section.iters, chunk_size=section.chunk_size, precision=precision)
    return PipsTracker(engine)


ARCHIVE_NAME = "reference_model.tar.gz"  # the published archive, which holds the checkpoint


def _net(stride: int = 4) -> PipsNet:
    from densemotion.tracking.pips.model import PipsNet

    return PipsNet(stride=stride)


def _fetch_from_archive(url: str, checkpoint: str | Path) -> str:
    """The shell commands that put the checkpoint at ``checkpoint`` (DVC-tracked): import the
    archive at ``url`` beside it, unpack the checkpoint from it, add that."""
    folder = Path(checkpoint).parent
    archive = folder / ARCHIVE_NAME
    return (
        f"dvc import-url '{url}' {archive} && densemotion fetch-pips {archive} {folder}/ && "
        f"dvc add {checkpoint} && git add {folder}/*.dvc {folder}/.gitignore && dvc push"
    )


CHECKPOINT: CheckpointRecord[PipsNet] = CheckpointRecord(
    tracker="pips",
    title="PIPs",
    file_name="model-000200000.pth",
    # the archive's: from aharley/pips get_reference_model.sh; "?dl=1" makes Dropbox serve the file itself
    url="https://www.dropbox.com/s/glk6jmoa9yeervl/reference_model.tar.gz?dl=1",
    key="model_state_dict",
    build=_net,
    fixture=Fixture(seed=20221024, gain=0.3),  # the fixture weights (docs/pips.md, "How it is checked")
    fetch=_fetch_from_archive,
)
TRACKER = TrackerSpec(name="pips", params=PipsParams, make=_make, weights=CHECKPOINT.file_name)

__all__ = ["CHECKPOINT", "TRACKER", "PipsParams", "PipsTracker"]
