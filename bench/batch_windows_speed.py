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

``--baseline SRC`` (another checkout's ``src``, e.g. a ``git worktree`` of the commit before
batching) adds, per tracker, that code's whole ``track_video`` beside this code's at batch 1, both
in fresh processes, alternating, each process's best: the stage's loop before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
from densemotion.trajectories.run import make_plan, make_tracker


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


def raw_params(tracker: str, device: str, batch: int | None) -> dict:
    """The bench's trajectories params (``batch`` None: no batch_windows key, for code before it)."""
    sections = {"alltracker": {"alltracker": {"iters": 4}}, "raft": {"raft": {"model": "small", "num_flow_updates": 4}}}
    raw = {"tracker": tracker, "device": device, "window": 8, "grid_stride": 4, "chunk_windows": 4, **sections[tracker]}
    return raw if batch is None else {**raw, "batch_windows": batch}


def params(tracker: str, device: str, batch: int) -> TrajectoriesParams:
    return TrajectoriesParams(**raw_params(tracker, device, batch))


def run_once(source: Frames, tracker, p: TrajectoriesParams) -> tuple[float, np.ndarray]:
    """(seconds, stored disp (Nw, S, Hg, Wg, 2) float16) of every window of ``source``."""
    from densemotion.trajectories.run import track_chunks  # not in code before batching (--baseline)

    plan = make_plan(source, p)
    if str(p.device).startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    disp = np.concatenate([a["disp"] for a in track_chunks(source, tracker, plan, plan.chunks(p.chunk_windows), p)])
    return time.perf_counter() - t0, disp


def child(name: str, size: str, windows: int, repeats: int) -> None:
    """In a fresh process on whichever ``src`` is on PYTHONPATH: the best of ``repeats`` whole
    track_video runs at batch 1 (after one warm-up), printed as JSON seconds."""
    from densemotion.trajectories.run import track_video

    h, w = (int(v) for v in size.split("x"))
    frames, _ = render_clip(SampleParams(height=h, width=w, num_frames=8 * windows, sprites=4), 0)
    before = "batch_windows" not in TrajectoriesParams.model_fields  # code from before batching
    p = TrajectoriesParams(**raw_params(name, "cpu", None if before else 1))
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        (models / name).mkdir(parents=True)
        if name == "alltracker":
            CHECKPOINT.save_fixture(models / name / CHECKPOINT.file_name)
        else:
            WEIGHTS["small"].save_fixture(models / name / WEIGHTS["small"].file_name)
        tracker = make_tracker(p, models / name)
        best = float("inf")
        for k in range(repeats + 1):
            out = Path(tmp) / f"out{k}"
            t0 = time.perf_counter()
            track_video(Frames(frames), out, p, Path(tmp) / f"work{k}", tracker)
            if k:  # the first is the warm-up
                best = min(best, time.perf_counter() - t0)
    print(json.dumps({"seconds": best}))


def side_by_side(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Per-window seconds of this code's and the baseline's track_video, fresh processes alternating."""
    srcs = {"this": str(Path(__file__).resolve().parents[1] / "src"), "baseline": args.baseline}
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for label, src in srcs.items():
            env = dict(os.environ, PYTHONPATH=src)
            cmd = [sys.executable, __file__, "--child", name, "--size", args.size, "--windows", str(args.windows)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
            best[label] = min(best.get(label, float("inf")), seconds / args.windows)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="another checkout's src/: its track_video beside this one's")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--trackers", default="alltracker,raft")
    ap.add_argument("--size", default="128x128")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.size, args.windows, 2)
        return 0
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
    if args.baseline:
        print("\n| tracker | track_video s/window, baseline | this code (batch 1) | this / baseline |")
        print("|---|---|---|---|")
        for name in args.trackers.split(","):
            pair = side_by_side(name, args)
            print(f"| {name} | {pair['baseline']:.3f} | {pair['this']:.3f} | {pair['this'] / pair['baseline']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
