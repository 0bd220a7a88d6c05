"""Speed of the ``raft`` tracker's flow beside ``dis``: seconds per frame pair, and the ratio.

    .venv/bin/python bench/raft_speed.py [--sizes 360x640] [--models small,large] [--updates 12]
        [--window 8] [--repeat 2] [--device auto] [--autocast none|bf16|fp16|auto]

A frame pair is what chaining needs for two consecutive frames: the forward and the backward
flow. Each row tracks one window of ``--window`` rendered sample frames (S - 1 pairs; RAFT runs
all 2 (S - 1) image pairs in one batch, as the tracker does): the best of ``--repeat`` runs,
after one untimed warm-up run of the same window (oneDNN and CUDA set up per batch shape), with
randomly initialised weights (speed does not depend on them). ``s/pair`` is the flows alone,
``win/s`` the whole track (flow, chaining, visibility) of a grid every 4 px. ``dis`` is the
baseline (params' defaults, CPU whatever ``--device``); ``x dis`` is RAFT's time per pair over
dis's. Peak memory is the GPU's (``torch.cuda.max_memory_allocated``); on the CPU it is left out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from densemotion.params import SampleParams
from densemotion.runtime import Autocast, autocast_dtype, resolve_device
from densemotion.sample import render_clip
from densemotion.tracking import grid
from densemotion.tracking.dis.flow import DisTracker
from densemotion.tracking.flowchain import ChainChecks, chain_flows
from densemotion.tracking.raft import WEIGHTS
from densemotion.tracking.raft.flow import RaftFlow


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_flows(window_flows, frames: np.ndarray, device: str) -> tuple[float, float]:
    """(seconds per frame pair of the flows alone, seconds of the whole track) on one window."""
    queries = grid.grid_points(grid.grid_shape(frames.shape[1:3], 4, 0), 4, 0)
    _sync(device)
    t0 = time.perf_counter()
    flows = window_flows(frames)
    _sync(device)
    t1 = time.perf_counter()
    chain_flows(frames, queries, flows, ChainChecks())
    t2 = time.perf_counter()
    return (t1 - t0) / (len(frames) - 1), t2 - t0


def raft_row(model: str, frames: np.ndarray, args: argparse.Namespace, folder: Path) -> tuple[float, float, float]:
    """(s per pair, s per window, peak GPU GiB or nan) of RAFT ``model`` on ``frames``."""
    device = resolve_device(args.device)
    record = WEIGHTS[model]
    net = record.load(record.save_fixture(folder / f"{model}.pth"), device)
    flow = RaftFlow(net, args.updates, args.batch_pairs, autocast_dtype(args.autocast, device, "--autocast"))
    flow.window_flows(frames)  # warm-up: allocation, kernel choice for this batch shape
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    per_pair, per_window = min(time_flows(flow.window_flows, frames, device) for _ in range(args.repeat))
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return per_pair, per_window, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="360x640", help="HxW, comma separated")
    ap.add_argument("--models", default="small,large")
    ap.add_argument("--updates", type=int, default=12, help="RAFT num_flow_updates")
    ap.add_argument("--window", type=int, default=8, help="frames per window (S - 1 pairs)")
    ap.add_argument("--batch-pairs", type=int, default=None, help="image pairs per RAFT call (default: all)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per row; the best is kept")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--autocast", default="none", choices=get_args(Autocast))
    args = ap.parse_args()
    device = resolve_device(args.device)
    print(
        f"RAFT ({args.updates} updates, {device}, autocast {args.autocast}, {torch.get_num_threads()} threads) "
        f"vs dis (CPU), one window of {args.window} frames, random weights"
    )
    print(f"{'size':>8} {'tracker':>11} {'s/pair':>8} {'x dis':>6} {'win/s':>7} {'peak GiB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            h, w = map(int, size.split("x"))
            frames, _ = render_clip(SampleParams(num_frames=args.window, height=h, width=w), 0)
            # a fresh tracker (flow cache) per run: every pair computed
            base, base_window = min(time_flows(DisTracker().window_flows, frames, "cpu") for _ in range(args.repeat))
            print(f"{size:>8} {'dis':>11} {base:>8.3f} {1.0:>6.1f} {1 / base_window:>7.2f} {'-':>8}")
            for model in args.models.split(","):
                per_pair, per_window, peak = raft_row(model, frames, args, Path(tmp))
                shown = "-" if np.isnan(peak) else f"{peak:.2f}"
                print(
                    f"{size:>8} {'raft_' + model:>11} {per_pair:>8.3f} {per_pair / base:>6.1f} "
                    f"{1 / per_window:>7.2f} {shown:>8}"
                )


if __name__ == "__main__":
    main()
