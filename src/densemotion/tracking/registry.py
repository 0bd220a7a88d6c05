"""Tracker name -> :class:`~densemotion.tracking.base.TrackerSpec`.

The known names are the packages under ``densemotion/tracking/`` that declare ``TRACKER``
(:func:`densemotion.tracker_names.tracker_names` lists the folder, so loading params imports no
tracker); a spec is imported only when asked for, and :func:`section` validates its params.
"""

from __future__ import annotations

import importlib

from pydantic import BaseModel, ValidationError

from densemotion.params import ParamsError, TrajectoriesParams, describe_validation
from densemotion.tracker_names import tracker_names
from densemotion.tracking.base import TrackerError, TrackerSpec

_PACKAGE = "densemotion.tracking"


def names() -> list[str]:
    """Every tracker name: the tracker packages beside this module."""
    return tracker_names()


def get(name: str) -> TrackerSpec:
    """The spec of tracker ``name``; TrackerError naming the known ones when there is none."""
    if name not in names():
        raise TrackerError(f"trajectories.tracker: unknown tracker {name!r}; available: {', '.join(names())}")
    spec = getattr(importlib.import_module(f"{_PACKAGE}.{name}"), "TRACKER", None)
    if not isinstance(spec, TrackerSpec) or spec.name != name:
        raise TrackerError(f"{_PACKAGE}.{name} does not declare TRACKER = TrackerSpec(name={name!r}, ...)")
    return spec


def section(params: TrajectoriesParams, name: str | None = None) -> BaseModel:
    """The validated params of tracker ``name`` (default: the tracker in use), ``trajectories.<name>``;
    its defaults when params.yaml has no section for it. ParamsError names a bad key."""
    name = name or params.tracker
    model = get(name).params
    raw = (params.model_extra or {}).get(name, {})
    try:
        return raw if isinstance(raw, model) else model.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(
            f"trajectories.{name} is invalid:\n{describe_validation(err, prefix=f'trajectories.{name}.')}"
        ) from None
