"""The trajectories stage: dense tracking over windows and its NumPy store (schema 1)."""

from densemotion.trajectories.store import TrajectoryStore, TrajectoryStoreError, grid_points, write_store

__all__ = ["TrajectoryStore", "TrajectoryStoreError", "grid_points", "write_store"]
