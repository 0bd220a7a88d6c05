"""The trajectories stage: dense tracking over windows (run.py), its NumPy store (store.py), accuracy."""
