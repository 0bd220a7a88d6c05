"""Training-loader throughput from trajectory stores: samples/s with one worker and several.

    .venv/bin/python bench/loader_speed.py [--videos 4] [--windows 64] [--grids 32x56,90x160]

Writes synthetic schema-1 stores (random content, the shapes the trajectories stage writes:
32x56 is the sample's 128x224 at grid stride 4, 90x160 is 360x640 at stride 4) to a temporary
folder, then iterates ``densemotion.dataset.MotionDataset`` (target ``trajectory``, flips on)
through a torch DataLoader (batch 16, shuffled) with 0 (in the main process), 1 and 2 workers.
Files are read through the page cache after the first epoch, as in training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from densemotion.dataset import MotionDataset
from densemotion.trajectories.store import write_store

WINDOW = 8


def make_store(path: Path, windows: int, hg: int, wg: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    meta = {
        "video": path.name,
        "tracker": "dis",
        "tracker_params": {},
        "window": WINDOW,
        "window_stride": WINDOW,
        "grid_stride": 4,
        "margin": 0,
        "tracking_size": [hg * 4, wg * 4],
        "frame_size": [hg * 4, wg * 4],
        "grid_shape": [hg, wg],
        "frames_sha256": "",
        "past_end": "skip",
    }
    disp = rng.normal(0, 3, (windows, WINDOW, hg, wg, 2)).astype(np.float16)
    disp[:, 0] = 0
    write_store(
        path,
        frames0=rng.integers(0, 256, (windows, hg, wg, 3), dtype=np.uint8),
        disp=disp,
        vis=rng.integers(0, 256, (windows, WINDOW, hg, wg), dtype=np.uint8),
        starts=np.arange(windows, dtype=np.int64) * WINDOW,
        meta=meta,
    )


def samples_per_second(dataset: MotionDataset, workers: int, epochs: int = 2) -> float:
    loader = DataLoader(
        dataset,
        batch_size=16,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # warm-up epoch: worker start-up, page cache
        pass
    t0 = time.perf_counter()
    for _ in range(epochs):
        for _ in loader:
            pass
    return epochs * len(dataset) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--grids", default="32x56,90x160")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"MotionDataset over {args.videos} stores x {args.windows} windows, batch 16")
    for spec in args.grids.split(","):
        hg, wg = map(int, spec.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            names = [f"v{i}" for i in range(args.videos)]
            for i, name in enumerate(names):
                make_store(Path(tmp) / name, args.windows, hg, wg, i)
            dataset = MotionDataset(tmp, names, "trajectory", hflip=True)
            rates = {w: samples_per_second(dataset, w) for w in (0, 1, 2)}
        print(f"grid {hg}x{wg}: " + ", ".join(f"{w} workers {r:7.0f} samples/s" for w, r in rates.items()))


if __name__ == "__main__":
    main()
