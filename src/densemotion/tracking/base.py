"""The tracker interface and the name -> tracker lookup used by the trajectories stage.

A tracker takes a window of frames and query points in frame 0 and returns where each point
is in every frame of the window, and how sure it is that the point is visible there.
Coordinates are (x, y) in pixels of the given frames, pixel centres at integers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from densemotion.params import TrajectoriesParams


class TrackerError(ValueError):
    """Bad tracker name, missing weights or input the tracker cannot handle."""


class Tracker(Protocol):
    name: str

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries`` through ``frames``.

        frames: (L, H, W, 3) uint8 RGB, L >= 2 (a tracker with a fixed window chains or pads).
        queries: (N, 2) float32 (x, y) in pixels of frame 0.
        Returns tracks (L, N, 2) float32 (tracks[0] == queries) and visibility (L, N) float32
        in [0, 1].
        """
        ...


# tracker name -> module exposing ``make(params: TrajectoriesParams, device: str) -> Tracker``;
# ``device`` is passed as configured (cpu, cuda, auto): a tracker that uses torch resolves it with
# resolve_device, so a torch-free tracker (dis) does not pay for importing torch
_TRACKERS: dict[str, str] = {
    "dis": "densemotion.tracking.dis",
    "pips": "densemotion.tracking.pips",
}


def available_trackers() -> list[str]:
    return sorted(_TRACKERS)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TrackerError("device 'cuda' was asked for but no CUDA GPU is available (use 'auto' or 'cpu')")
    return device


def make_tracker(params: TrajectoriesParams) -> Tracker:
    """Build the tracker named by ``params.tracker`` with its own params section."""
    module_name = _TRACKERS.get(params.tracker)
    if module_name is None:
        raise TrackerError(
            f"trajectories.tracker: unknown tracker {params.tracker!r}; available: {', '.join(available_trackers())}"
        )
    module = importlib.import_module(module_name)
    return module.make(params, params.device)
