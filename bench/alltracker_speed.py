"""Every-pixel tracking speed of ``alltracker`` beside ``pips`` (dense engine) and ``dis``.

    .venv/bin/python bench/alltracker_speed.py [--sizes 256x256,360x640] [--window 8]
        [--pips-points 256] [--corr-memory-mb 256] [--autocast bf16,fp16] [--weights F] [--device auto]

One window of ``--window`` rendered sample frames per size; every pixel is a query (H x W
tracks). Each tracker is made as the trajectories stage makes it (``make_tracker``), with
test-made checkpoints of the fixture weights (speed does not depend on the values; ``--weights``
takes the published file instead, for the error of lower precisions): alltracker
(iters 4, its 8 frames padded to the 16-frame window; ``alltracker*`` with the correlation
volumes bounded by ``--corr-memory-mb``; one row per ``--autocast`` mode, with its tracks'
distance from float32's) and dis are timed on every pixel; pips,
which tracks point by point, on 8 points (its fixed cost: the encoder) and on ``--pips-points``
(best of two runs each), and extrapolated to every pixel as the fixed cost plus the per-point
cost times H x W. Each tracker runs once untimed at 128x128 first. Peak memory: CPU resident set
above the start of the run (polled), CUDA peak allocated (``pips_speed.PeakMemory``). ``x pips``: tracks/s over pips'.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pips_speed import PeakMemory

from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.runtime import resolve_device
from densemotion.sample import render_clip
from densemotion.tracking import alltracker, grid, pips
from densemotion.trajectories.run import make_tracker


def timed(tracker, frames: np.ndarray, queries: np.ndarray, device: str) -> tuple[float, float, np.ndarray]:
    """(seconds, peak MB, tracks) of one ``track`` call."""
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        tracks, _ = tracker.track(frames, queries)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return seconds, mem.peak, tracks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256x256,360x640", help="HxW, comma separated")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--pips-points", type=int, default=512, help="pips is timed on this many pixels (and on 8)")
    ap.add_argument("--corr-memory-mb", type=int, default=256, help="alltracker*'s correlation bound")
    ap.add_argument("--autocast", default="", help="alltracker rows in these precisions too, e.g. bf16,fp16")
    ap.add_argument("--weights", type=Path, help="an alltracker.pth to time instead of the fixture weights")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        folders = {name: Path(tmp) / name for name in ("alltracker", "pips")}
        for folder in folders.values():
            folder.mkdir()
        if args.weights:  # the published file: the autocast rows' error is then the one to quote
            (folders["alltracker"] / "alltracker.pth").symlink_to(args.weights.resolve())
        else:
            alltracker.CHECKPOINT.save_fixture(folders["alltracker"] / "alltracker.pth")
        pips.CHECKPOINT.save_fixture(folders["pips"] / "model-000200000.pth")
        trackers = {
            name: make_tracker(TrajectoriesParams(tracker=name, device=device), folders.get(name))
            for name in ("alltracker", "pips", "dis")
        }
        bounded = {"corr_memory_mb": args.corr_memory_mb}
        trackers["alltracker*"] = make_tracker(
            TrajectoriesParams(tracker="alltracker", device=device, alltracker=bounded), folders["alltracker"]
        )
        lower = [mode for mode in args.autocast.split(",") if mode]
        for mode in lower:
            section = {"autocast": mode}
            trackers[f"alltracker {mode}"] = make_tracker(
                TrajectoriesParams(tracker="alltracker", device=device, alltracker=section), folders["alltracker"]
            )
        warm, _ = render_clip(SampleParams(num_frames=args.window, height=128, width=128), 0)
        for tracker in trackers.values():
            tracker.track(warm, grid.grid_points((128, 128), 1, 0)[:64])
        print(f"every pixel of one {args.window}-frame window, {device}, {torch.get_num_threads()} threads")
        print(
            f"{'size':>8} {'tracker':>16} {'tracks':>8} {'s/window':>9} {'tracks/s':>10} {'x pips':>7} {'peak MB':>8}"
        )
        for size in args.sizes.split(","):
            h, w = map(int, size.split("x"))
            frames, _ = render_clip(SampleParams(num_frames=args.window, height=h, width=w), 0)
            queries = grid.grid_points((h, w), 1, 0)
            n = len(queries)
            rows = {}
            k = args.pips_points  # pips: a fixed cost (the encoder) plus one per point, from 8 and k points
            few = min(timed(trackers["pips"], frames, queries[:: n // 8][:8], device)[0] for _ in range(2))
            many = [timed(trackers["pips"], frames, queries[:: max(1, n // k)][:k], device) for _ in range(2)]
            per_point = max(min(t for t, _, _ in many) - few, 0.0) / (k - 8)
            peak = max(p for _, p, _ in many)
            rows["pips"] = (few + per_point * n, peak, f" (extrapolated from 8 and {k} points)")
            seconds, peak, exact = timed(trackers["alltracker"], frames, queries, device)
            rows["alltracker"] = (seconds, peak, "")
            for name in ("alltracker*", *(f"alltracker {mode}" for mode in lower), "dis"):
                seconds, peak, tracks = timed(trackers[name], frames, queries, device)
                note = ""
                if name.startswith("alltracker "):  # a lower precision: its distance from float32
                    error = np.linalg.norm(tracks - exact, axis=-1)  # (S, N) px
                    note = f" (max {error.max():.3f}, median {np.median(error):.4f} px from float32)"
                rows[name] = (seconds, peak, note)
            pips_rate = n / rows["pips"][0]
            for name, (seconds, peak, note) in rows.items():
                rate = n / seconds
                print(
                    f"{size:>8} {name:>16} {n:>8} {seconds:>9.2f} {rate:>10.0f} {rate / pips_rate:>7.1f} "
                    f"{peak:>8.0f}{note}"
                )


if __name__ == "__main__":
    main()
