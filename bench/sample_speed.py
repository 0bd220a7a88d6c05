"""Speed of the built-in sample: rendering a clip against encoding it, side by side.

    .venv/bin/python bench/sample_speed.py [--repeat 3]

Renders each default clip (``SampleParams()``) in memory, then encodes the same frames as H.264
with the sample's settings, best of ``--repeat`` each. The encoder is the yardstick (what any
video costs to write); measured 2026-12-01 on the 2-core CI machine: render 0.13-0.16 s, encode
0.06 s per clip (ratio ~2.4), so the whole sample stage is well under a second per clip.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from densemotion.params import SampleParams
from densemotion.sample import render_clip
from densemotion.video import encode_video


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    p = SampleParams()
    print(f"{len(p.clips)} clips of {p.num_frames} frames at {p.width}x{p.height}, best of {args.repeat}")
    print(f"{'clip':>10} {'render s':>9} {'encode s':>9} {'render/encode':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(p.clips):
            frames, _ = render_clip(p, i)
            render = best_of(args.repeat, lambda i=i: render_clip(p, i))
            encode = best_of(args.repeat, lambda f=frames: encode_video(Path(tmp) / "clip.mp4", f, p.fps, crf=p.crf))
            print(f"{name:>10} {render:9.3f} {encode:9.3f} {render / encode:14.2f}")


if __name__ == "__main__":
    main()
