"""The frames stage: sources -> per-video frame archives (see ``store`` for the format)."""
