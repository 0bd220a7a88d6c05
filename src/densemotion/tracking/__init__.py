"""Point trackers behind one interface (see :mod:`densemotion.tracking.base`)."""

from densemotion.tracking.base import Tracker, TrackerError, available_trackers, make_tracker, resolve_device

__all__ = ["Tracker", "TrackerError", "available_trackers", "make_tracker", "resolve_device"]
