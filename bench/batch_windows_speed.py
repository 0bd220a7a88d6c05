"""Windows batched through a tracker (``trajectories.batch_windows``) against one window per call.

    .venv/bin/python bench/batch_windows_speed.py [--trackers alltracker,raft] [--size 128x128]
        [--windows 8] [--batches 1,4] [--rounds 3] [--device auto]

Each row tracks the same ``--windows`` windows of 8 rendered sample frames (every pixel of a grid
every 4 px) through :func:`densemotion.trajectories.run.track_chunks` (the stage's own loop: the
prefetching reader, batches across chunks) with each batch size in turn, ``--rounds`` rounds
alternating the sizes so that a drift of the machine hits them alike, after one untimed warm-up
of each. Printed per tracker: the best time per window of each batch size, its ratio to batch 1
(below 1 is faster), and the largest difference of the stored tracks from batch 1's (px).
Fixture weights (speed does not depend on them); ``raft`` is raft_small with 4 updates.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.runtime import resolve_device
from densemotion.sample import render_clip
from densemotion.tracking.alltracker import CHECKPOINT
from densemotion.tracking.raft import WEIGHTS
from densemotion.trajectories.run import make_plan, make_tracker, track_chunks


class Frames:
    """An in-memory frames archive (what the run reads)."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames
        self.meta = {"video": "bench", "height": frames.shape[1], "width": frames.shape[2]}
        self.sha256 = "bench"

    def __len__(self) -> int:
        return len(self.frames)

    def read_range(self, start: int, count: int) -> np.ndarray:
        return self.frames[start : start + count]


def params(tracker: str, device: str, batch: int) -> TrajectoriesParams:
    sections = {"alltracker": {"alltracker": {"iters": 4}}, "raft": {"raft": {"model": "small", "num_flow_updates": 4}}}
    return TrajectoriesParams(
        tracker=tracker,
        device=device,
        window=8,
        grid_stride=4,
        chunk_windows=4,
        batch_windows=batch,
        **sections[tracker],
    )


def run_once(source: Frames, tracker, p: TrajectoriesParams) -> tuple[float, np.ndarray]:
    """(seconds, stored disp (Nw, S, Hg, Wg, 2) float16) of every window of ``source``."""
    plan = make_plan(source, p)
    if str(p.device).startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    disp = np.concatenate([a["disp"] for a in track_chunks(source, tracker, plan, plan.chunks(p.chunk_windows), p)])
    return time.perf_counter() - t0, disp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trackers", default="alltracker,raft")
    ap.add_argument("--size", default="128x128")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    device = resolve_device(args.device)
    batches = [int(b) for b in args.batches.split(",")]
    frames, _ = render_clip(SampleParams(height=h, width=w, num_frames=8 * args.windows, sprites=4), 0)
    source = Frames(frames)
    print(f"{args.windows} windows of 8 frames at {h}x{w}, {device}, {torch.get_num_threads()} threads")
    print("| tracker | batch | s/window | vs batch 1 | max diff from batch 1 (px) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        (models / "alltracker").mkdir()
        CHECKPOINT.save_fixture(models / "alltracker" / CHECKPOINT.file_name)
        (models / "raft").mkdir()
        WEIGHTS["small"].save_fixture(models / "raft" / WEIGHTS["small"].file_name)
        for name in args.trackers.split(","):
            tracker = make_tracker(params(name, device, 1), models / name)
            best: dict[int, float] = {}
            disps: dict[int, np.ndarray] = {}
            for b in batches:  # warm-up: kernels set up per batch shape
                run_once(source, tracker, params(name, device, b))
            for _ in range(args.rounds):
                for b in batches:
                    seconds, disps[b] = run_once(source, tracker, params(name, device, b))
                    best[b] = min(best.get(b, float("inf")), seconds)
            base = batches[0]
            for b in batches:
                diff = float(np.abs(disps[b].astype(np.float32) - disps[base].astype(np.float32)).max())
                per = best[b] / args.windows
                print(f"| {name} | {b} | {per:.3f} | {best[b] / best[base]:.2f} | {diff:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
