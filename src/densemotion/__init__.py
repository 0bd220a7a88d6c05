"""densemotion: learn dense motion from a single still frame."""

__version__ = "0.1.0"
