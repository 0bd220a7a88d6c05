"""The tracker interface, and what a tracker module declares about itself.

A tracker takes a window of frames and query points in frame 0 and returns where each point
is in every frame of the window, and how sure it is that the point is visible there.
Coordinates are (x, y) in pixels of the given frames, pixel centres at integers.

Each tracker is one package ``densemotion.tracking.<name>`` whose ``__init__`` defines
``TRACKER``, a :class:`TrackerSpec`: its name, its params section (``trajectories.<name>`` in
params.yaml) and its weights file. The package's ``__init__`` stays light (pydantic only); the
tracker's own code is imported by ``spec.make`` when it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from densemotion.errors import DensemotionError


class TrackerError(DensemotionError):
    """Bad tracker name, missing weights or input the tracker cannot handle."""


class Tracker(Protocol):
    name: str

    def track(self, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries`` through ``frames``.

        frames: (S, H, W, 3) uint8 RGB, S >= 2 (a tracker with a fixed window chains or pads).
        queries: (N, 2) float32 (x, y) in pixels of frame 0.
        Returns tracks (S, N, 2) float32 (tracks[0] == queries) and visibility (S, N) float32
        in [0, 1].

        A tracker may also have ``track_windows(frames (B, S, H, W, 3), queries)`` -> tracks
        (B, S, N, 2), visibility (B, S, N): several windows per network call (a GPU idles between
        small ones), the same results as B calls of ``track``; and ``max_windows((H, W), S)``, how
        many windows its memory bound lets into one call. :func:`track_windows` uses either.
        """
        ...


def track_windows(tracker: Tracker, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """frames (B, S, H, W, 3) uint8, queries (N, 2) -> tracks (B, S, N, 2), vis (B, S, N) float32:
    one batched call where the tracker has ``track_windows``, else one ``track`` call per window."""
    batched = getattr(tracker, "track_windows", None)
    return batched(frames, queries) if batched is not None else track_each(tracker, frames, queries)


def track_each(tracker: Tracker, frames: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_windows` one ``track`` call per window, whatever the tracker has."""
    each = [tracker.track(window, queries) for window in frames]
    return np.stack([t for t, _ in each]), np.stack([v for _, v in each])


@dataclass(frozen=True)
class TrackerSpec:
    """What the trajectories stage, params and dvc.yaml need to know of a tracker.

    ``make(section, device, weights)`` builds the tracker from its validated params section, the
    device as configured (cpu, cuda, auto) and the path of its weights file (None when
    ``weights`` is None). ``weights`` is the file's name inside ``models/<name>/``, the folder
    the trajectories stage depends on (a tracker without weights keeps a README there).
    """

    name: str
    params: type[BaseModel]
    make: Callable[[BaseModel, str, Path | None], Tracker]
    weights: str | None = None


def weights_file_name(name: str, tracker: str) -> str:
    """``name`` if it is a plain file name, to be looked up in ``models/<tracker>/``; else ValueError.

    The trajectories stage depends on that folder, so a weights file anywhere else (a path, ``..``,
    a hidden file DVC ignores) could change without DVC re-running the stage.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise TrackerError(
            f"{name!r} must be the name of a file in models/{tracker}/, the folder the trajectories "
            "stage depends on (a path elsewhere would change without DVC re-running the stage): put the file there"
        )
    return name


def import_url_command(url: str, path: str | Path) -> str:
    """The shell commands that put the published weights file ``url`` at ``path`` as DVC data (an
    import records where it came from) and share it: what a missing-weights error tells users to run."""
    folder = Path(path).parent
    return f"dvc import-url {url} {path} && git add {folder}/*.dvc {folder}/.gitignore && dvc push"
