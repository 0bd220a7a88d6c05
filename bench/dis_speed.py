"""Speed of the ``dis`` tracker: windows/s and points/s, and flow vs the rest of the work.

    .venv/bin/python bench/dis_speed.py [--windows 2] [--sizes 128x224,360x640] [--strides 1,4,8]

Frames are rendered sample clips (textured sprites over a textured background) at each size.
Each configuration uses a fresh tracker (no flow cache carried over) on ``--windows``
non-overlapping windows of 8 frames, with the params' defaults and, for comparison, DIS's own
``finest_scale`` of the preset. "rest" is everything but the DIS calls: grey conversion,
bilinear sampling, the forward-backward and photometric checks. Goal: rest < 20% of the total.
"""

from __future__ import annotations

import argparse
import time

from densemotion.params import SampleParams
from densemotion.sample import render_clip
from densemotion.tracking import grid
from densemotion.tracking.dis import DisParams
from densemotion.tracking.dis.flow import DisTracker

WINDOW = 8


def measure(frames, stride: int, finest_scale: int | None, windows: int) -> dict:
    p = DisParams()
    tracker = DisTracker(p.preset, p.fb_threshold, p.fb_relative, p.photo_threshold, finest_scale)
    shape = grid.grid_shape(frames.shape[1:3], stride, 0)
    queries = grid.grid_points(shape, stride, 0)
    t0 = time.perf_counter()
    for w in range(windows):
        tracker.track(frames[w * WINDOW : (w + 1) * WINDOW], queries)
    total = time.perf_counter() - t0
    return {
        "points": len(queries),
        "windows_s": windows / total,
        "points_s": windows * len(queries) / total,
        "flow": tracker.timings["flow"],
        "rest": tracker.timings["rest"],
        "total": total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--sizes", default="128x224,360x640")
    ap.add_argument("--strides", default="1,4,8")
    args = ap.parse_args()
    default_fs = DisParams().finest_scale
    print(f"dis tracker, preset {DisParams().preset}, {args.windows} windows of {WINDOW} frames per row")
    print(
        f"{'size':>8} {'fs':>4} {'g':>2} {'points':>7} {'win/s':>7} {'points/s':>10} "
        f"{'flow s':>7} {'rest s':>7} {'rest %':>6}"
    )
    for size in args.sizes.split(","):
        h, w = map(int, size.split("x"))
        frames, _ = render_clip(SampleParams(num_frames=WINDOW * args.windows, height=h, width=w), 0)
        for fs in dict.fromkeys([default_fs, None]):
            for g in map(int, args.strides.split(",")):
                r = measure(frames, g, fs, args.windows)
                share = 100 * r["rest"] / r["total"]
                fs_name = "pre" if fs is None else str(fs)
                print(
                    f"{size:>8} {fs_name:>4} {g:>2} {r['points']:>7} {r['windows_s']:>7.2f} {r['points_s']:>10.0f} "
                    f"{r['flow']:>7.2f} {r['rest']:>7.2f} {share:>5.1f}%"
                )


if __name__ == "__main__":
    main()
