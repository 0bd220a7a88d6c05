"""Bytes per window of the trajectory store, and float16's rounding error on the sample.

    .venv/bin/python bench/trajectory_storage.py [--clips 2] [--grid-stride 4]

Tracks a few rendered sample clips with ``dis`` (params defaults, 8-frame windows), keeps the
tracker's float32 output, writes the schema-1 store (float16 displacements, uint8 visibility,
frame 0 at grid resolution) and, as the baseline, the same windows as absolute float32
coordinates with float32 visibility (and the same frame 0), then compares bytes on disk per
window. The rounding error is |float16(d) - d| over every stored displacement d.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.sample import render_clip
from densemotion.tracking import grid
from densemotion.trajectories.run import make_tracker
from densemotion.trajectories.store import write_store

WINDOW = 8


def track_windows(frames: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """-> frames0 (Nw, Hg, Wg, 3), tracks (Nw, T, N, 2) float32, vis (Nw, T, N) float32, queries."""
    tracker = make_tracker(TrajectoriesParams(device="cpu"))
    shape = grid.grid_shape(frames.shape[1:3], g, 0)
    q = grid.grid_points(shape, g, 0)
    out = [tracker.track(frames[s : s + WINDOW], q) for s in range(0, len(frames) - WINDOW + 1, WINDOW)]
    f0 = np.stack([grid.downsize_to_grid(frames[s], shape, g, 0) for s in range(0, WINDOW * len(out), WINDOW)])
    return f0, np.stack([t for t, _ in out]), np.stack([v for _, v in out]), q


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--grid-stride", type=int, default=4)
    args = ap.parse_args()
    sp = SampleParams()
    ours = base = windows = 0
    worst = max_disp = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.clips):
            frames, _ = render_clip(sp, c)
            f0, tracks, vis, q = track_windows(frames, args.grid_stride)
            nw, t, n = vis.shape
            hg, wg = f0.shape[1:3]
            disp32 = tracks - q  # (Nw, T, N, 2) float32, the tracker's own precision
            disp16 = disp32.astype(np.float16)
            worst = max(worst, float(np.abs(disp16.astype(np.float64) - disp32).max()))
            max_disp = max(max_disp, float(np.abs(disp32).max()))
            meta = {
                "video": f"c{c}",
                "tracker": "dis",
                "tracker_params": {},
                "window": t,
                "window_stride": t,
                "grid_stride": args.grid_stride,
                "margin": 0,
                "tracking_size": list(frames.shape[1:3]),
                "frame_size": list(frames.shape[1:3]),
                "grid_shape": [hg, wg],
                "frames_sha256": "",
                "past_end": "skip",
            }
            store = Path(tmp) / f"c{c}"
            write_store(
                store,
                frames0=f0,
                disp=disp16.reshape(nw, t, hg, wg, 2),
                vis=np.rint(vis * 255).astype(np.uint8).reshape(nw, t, hg, wg),
                starts=np.arange(nw, dtype=np.int64) * t,
                meta=meta,
            )
            ours += folder_bytes(store)
            baseline = Path(tmp) / f"b{c}"
            baseline.mkdir()
            np.save(baseline / "tracks.npy", tracks)  # absolute float32 coordinates
            np.save(baseline / "vis.npy", vis.astype(np.float32))
            np.save(baseline / "frames0.npy", f0)
            np.save(baseline / "starts.npy", np.arange(nw, dtype=np.int64) * t)
            base += folder_bytes(baseline)
            windows += nw
            points = n
    print(
        f"sample: {args.clips} clips {sp.height}x{sp.width}, {windows} windows of {WINDOW} frames, "
        f"grid stride {args.grid_stride} ({points} points)"
    )
    print(f"schema-1 store:                      {ours / windows:10.0f} bytes/window")
    print(
        f"absolute float32 coords + float32 vis: {base / windows:8.0f} bytes/window  "
        f"-> store is {base / ours:.2f}x smaller (goal >= 4x)"
    )
    per_pt = {"float16 disp": 2 * 2 * WINDOW, "uint8 vis": WINDOW, "frame0": 3}
    print(
        "  per point and window, store: "
        + ", ".join(f"{k} {v} B" for k, v in per_pt.items())
        + f"; baseline: float32 xy {4 * 2 * WINDOW} B, float32 vis {4 * WINDOW} B, frame0 3 B"
    )
    print(
        f"largest float16 rounding error on the sample: {worst:.5f} px "
        f"(largest |displacement| {max_disp:.2f} px; bound 0.05 px up to 64 px)"
    )


if __name__ == "__main__":
    main()
