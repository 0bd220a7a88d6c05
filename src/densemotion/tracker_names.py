"""The tracker names: the packages under ``densemotion/tracking/``, found by listing that folder.

A leaf module (it imports nothing of densemotion), so that params.py can check
``trajectories.tracker`` without importing the tracking package: editing the tracker protocol
then re-runs only the stages that track, not the sample or every video's frames.
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

TRACKING = Path(__file__).parent / "tracking"  # one package per tracker


def tracker_names() -> list[str]:
    """Every tracker's name, sorted: the packages in :data:`TRACKING` (none is imported)."""
    return sorted(m.name for m in pkgutil.iter_modules([str(TRACKING)]) if m.ispkg)
