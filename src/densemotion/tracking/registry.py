"""Tracker name -> :class:`~densemotion.tracking.base.TrackerSpec`.

The known names are the packages under ``densemotion/tracking/`` that declare ``TRACKER`` (found by
listing the folder, so loading params imports no tracker); a spec is imported only when asked for.
Tests and plugins may :func:`register` more.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from densemotion.tracking.base import TrackerError, TrackerSpec

_PACKAGE = "densemotion.tracking"
_registered: dict[str, TrackerSpec] = {}


def names() -> list[str]:
    """Every tracker name: the tracker packages beside this module, and registered ones."""
    found = {m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.ispkg}
    return sorted(found | set(_registered))


def get(name: str) -> TrackerSpec:
    """The spec of tracker ``name``; TrackerError naming the known ones when there is none."""
    if name in _registered:
        return _registered[name]
    if name not in names():
        raise TrackerError(f"trajectories.tracker: unknown tracker {name!r}; available: {', '.join(names())}")
    spec = getattr(importlib.import_module(f"{_PACKAGE}.{name}"), "TRACKER", None)
    if not isinstance(spec, TrackerSpec) or spec.name != name:
        raise TrackerError(f"{_PACKAGE}.{name} does not declare TRACKER = TrackerSpec(name={name!r}, ...)")
    return spec


def register(spec: TrackerSpec) -> None:
    """Make ``spec`` known by its name (a tracker living outside densemotion/tracking/)."""
    _registered[spec.name] = spec


def unregister(name: str) -> None:
    _registered.pop(name, None)
