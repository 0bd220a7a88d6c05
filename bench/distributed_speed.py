"""Tracking and training scaled across processes: alone against `torchrun --nproc-per-node=K`.

    .venv/bin/python bench/distributed_speed.py [--videos 4] [--frames 32] [--ranks 2] [--size 128 224]
        [--epochs 2]

Makes ``--videos`` frame archives of moving textures (``--frames`` each), then tracks them all
with ``dis`` once in one process and once under torchrun with ``--ranks`` processes on the CPU,
each in a fresh folder, and prints both wall times, the speed-up and the scaling efficiency
(speed-up / ranks), and checks that both wrote the same bytes. Then it trains the motion network
on those stores for ``--epochs`` the same two ways (`densemotion train`, the same global batch). Every process gets
``cores // ranks`` threads (torchrun's default of 1 would starve the single run). Start-up
(importing torch, joining the group) is included: it is what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from densemotion.frames.store import FrameArchiveWriter, encode_jpeg
from densemotion.params import SampleParams
from densemotion.sample import render_clip


def make_project(root: Path, videos: int, frames: int, size: tuple[int, int]) -> None:
    (root / "data" / "frames").mkdir(parents=True)
    params = {
        "data": {"videos": {f"v{i}": f"x/v{i}.mp4" for i in range(videos)}},
        "trajectories": {"tracker": "dis", "device": "cpu", "window": 8, "grid_stride": 4},
        "train": {"device": "cpu", "epochs": 2, "batch_size": 8},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    sample = SampleParams(clips=[f"v{i}" for i in range(videos)], num_frames=frames, height=size[0], width=size[1])
    for i in range(videos):
        frames_rgb, _ = render_clip(sample, i)
        writer = FrameArchiveWriter(root / "data" / "frames" / f"v{i}.zip")
        for f in frames_rgb:
            writer.add(encode_jpeg(f, 95))
        h, w = frames_rgb.shape[1:3]
        writer.close({"video": f"v{i}", "source": "bench", "source_sha256": "0" * 64, "fps": 24.0, "width": w,
                      "height": h, "source_width": w, "source_height": h, "source_fps": 24.0,
                      "source_indices": list(range(len(frames_rgb))), "jpeg_quality": 95})  # fmt: skip


def timed(cmd: list[str], cwd: Path, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[128, 224])
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        alone, spread = Path(tmp, "alone"), Path(tmp, "spread")
        for root in (alone, spread):
            make_project(root, args.videos, args.frames, tuple(args.size))
        one = timed([sys.executable, "-m", "densemotion", "trajectories-all"], alone, cores)
        torchrun = Path(sys.executable).parent / "torchrun"
        many = timed([str(torchrun), "--standalone", f"--nproc-per-node={args.ranks}", "-m", "densemotion",
                      "trajectories-all"], spread, max(1, cores // args.ranks))  # fmt: skip
        same = all(
            a.read_bytes() == (spread / a.relative_to(alone)).read_bytes()
            for a in (alone / "data" / "trajectories").rglob("*")
            if a.is_file()
        )
        train = ["-m", "densemotion", "train", "--trajectories", "data/trajectories", "--out", "m.pt",
                 "--params", "params.yaml"]  # fmt: skip
        for root in (alone, spread):
            text = (root / "params.yaml").read_text().replace("epochs: 2", f"epochs: {args.epochs}")
            (root / "params.yaml").write_text(text)
        train_one = timed([sys.executable, *train], alone, cores)
        train_many = timed([str(torchrun), "--standalone", f"--nproc-per-node={args.ranks}", *train], spread,
                           max(1, cores // args.ranks))  # fmt: skip
    print(f"{args.videos} videos x {args.frames} frames {args.size[0]}x{args.size[1]}, dis, {cores} cores")
    print("| stage | processes | wall s | speed-up | efficiency |\n|---|---|---|---|---|")
    for stage, a, b in (("trajectories-all", one, many), (f"train ({args.epochs} epochs)", train_one, train_many)):
        print(f"| {stage} | 1 | {a:.1f} | 1.00 | 1.00 |")
        print(f"| {stage} | {args.ranks} (torchrun) | {b:.1f} | {a / b:.2f} | {a / b / args.ranks:.2f} |")
    print(f"same tracking bytes: {same}")


if __name__ == "__main__":
    main()
