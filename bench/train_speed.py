"""Training speed of every motion model, and the data loader's share of a training step.

    .venv/bin/python bench/train_speed.py [--models all] [--grid 32x56] [--input-scale 4] [--max-input-side 320|none]
        [--batch-size 8] [--steps 4] [--threads 2] [--device cpu] [--autocast none] [--head point]
        [--hypotheses 4] [--json OUT.json]

Writes synthetic schema-1 stores of the sample's shape (6 videos x 6 windows of 8 frames,
32x56 grid = 128x224 frames at grid stride 4) to a temporary folder and runs the real training
step on it: ``densemotion.training.build`` (MotionDataset, MotionNet, the head's criterion, AdamW,
OneCycle) and ``train_one_epoch`` over ``--steps`` batches the loader made beforehand (timed
apart). Per model it prints training samples per second (after one warm-up step) and the
loader's share of a step, loader / (loader + step) (goal: under 10%). ``--autocast`` as
``train.autocast`` (none, bf16, fp16, auto).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from densemotion.dataset import make_loader
from densemotion.model import MODEL_NAMES, SPECS
from densemotion.params import ModelParams, TrainParams
from densemotion.runtime import ALONE
from densemotion.training import build, train_one_epoch
from densemotion.trajectories.store import write_store

WINDOW = 8


def make_stores(root: Path, videos: int, windows: int, hg: int, wg: int) -> list[str]:
    names = []
    for v in range(videos):
        rng = np.random.default_rng(v)
        disp = rng.normal(0, 3, (windows, WINDOW, hg, wg, 2)).astype(np.float16)
        disp[:, 0] = 0
        meta = {
            "video": f"v{v}",
            "tracker": "synthetic",
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
        write_store(
            root / f"v{v}",
            frames0=rng.integers(0, 256, (windows, hg, wg, 3), dtype=np.uint8),
            disp=disp,
            vis=rng.integers(0, 256, (windows, WINDOW, hg, wg), dtype=np.uint8),
            starts=np.arange(windows, dtype=np.int64) * WINDOW,
            meta=meta,
        )
        names.append(f"v{v}")
    return names


def measure(name: str, root: Path, videos: list[str], args: argparse.Namespace) -> dict:
    """Time ``args.steps`` training steps (the real one) after one warm-up step; the loader apart."""
    side = None if args.max_input_side == "none" else int(args.max_input_side)
    mp = ModelParams(
        name=name, input_scale=args.input_scale, aux_loss=SPECS[name].has_aux, max_input_side=side,
        head=args.head, hypotheses=args.hypotheses,
    )  # fmt: skip
    tp = TrainParams(
        device=args.device, batch_size=args.batch_size, autocast=args.autocast, workers=args.workers,
        val_videos=0, test_videos=0, epochs=10_000,
    )  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()):  # the split's report and its warnings
        run = build(
            trajectories=root, videos=videos, model_params=mp, train_params=tp, out=root / "m.pt", live_dir=None,
            resume=False, work_dir=None, pretrained_dir=None, partition=None, rank=ALONE,
        )  # fmt: skip
    loader_time = step_time = 0.0
    for epoch in range(args.steps + 1):  # one batch an epoch: step 0 is the warm-up (allocations, kernels)
        t0 = time.perf_counter()
        batches = list(islice(make_loader(run.train_ds, tp.batch_size, shuffle_seed=epoch, workers=tp.workers), 1))
        t1 = time.perf_counter()
        train_one_epoch(run, batches, epoch)  # type: ignore[arg-type]  # a list of batches is a loader here
        if args.device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if epoch > 0:
            loader_time += t1 - t0
            step_time += t2 - t1
    samples = args.steps * args.batch_size
    return {
        "model": name,
        "samples_per_s": samples / step_time,
        "step_s": step_time / args.steps,
        "loader_share": loader_time / (loader_time + step_time),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated model names (default: all)")
    p.add_argument("--grid", default="32x56", help="grid HxW (the sample: 32x56)")
    p.add_argument("--input-scale", type=int, default=4)
    p.add_argument("--max-input-side", default="320", help="model.max_input_side: px, or none (unbounded)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=4, help="timed steps per model (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads on CPU")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--autocast", default="none", choices=["none", "bf16", "fp16", "auto"], help="as train.autocast")
    p.add_argument("--head", default="point", choices=["point", "laplace", "hypotheses"], help="as model.head")
    p.add_argument("--hypotheses", type=int, default=4, help="as model.hypotheses (for --head hypotheses)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(MODEL_NAMES) if args.models == "all" else args.models.split(",")
    hg, wg = (int(x) for x in args.grid.split("x"))
    print(
        f"grid {hg}x{wg}, net input {hg * args.input_scale}x{wg * args.input_scale}, batch {args.batch_size}, "
        f"device {args.device}, autocast {args.autocast}, {args.threads} threads, {args.workers} workers, "
        f"head {args.head}" + (f" ({args.hypotheses})" if args.head == "hypotheses" else "")
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = make_stores(Path(tmp), videos=6, windows=6, hg=hg, wg=wg)
        print(f"{'model':<30} {'samples/s':>10} {'s/step':>8} {'loader share':>13}")
        for name in names:
            r = measure(name, Path(tmp), videos, args)
            results.append(r)
            print(f"{name:<30} {r['samples_per_s']:>10.1f} {r['step_s']:>8.3f} {r['loader_share']:>12.2%}")
    worst = max(r["loader_share"] for r in results)
    print(f"largest loader share {worst:.2%} (goal < 10%): {'met' if worst < 0.10 else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
