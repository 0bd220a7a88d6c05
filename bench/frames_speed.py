"""Frames stage throughput against the ffmpeg command line, and archive storage overhead.

Run:  .venv/bin/python bench/frames_speed.py [--clips 4] [--frames 132] [--repeat 3]
Needs the bench extra (pip install -e ".[bench]") for a static ffmpeg binary (imageio-ffmpeg).

Side by side on the same clips: (a) `densemotion frames` (PyAV decode + threaded JPEG encode
into one zip per video) and (b) `ffmpeg -i clip.mp4 -q:v Q %06d.jpg` writing loose JPEGs, with Q
ffmpeg's finest (-q:v 1) by default; the PSNR of both against the decoded source is printed, so
the comparison is at stated quality. Prints frames/s
of both and their ratio (goal >= 1.0), and bytes per frame of the zip against the loose JPEGs
(goal: overhead < 1%).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clips(folder: Path, clips: int, frames: int, size: tuple[int, int]) -> list[Path]:
    import cv2

    from densemotion.video import encode_video

    h, w = size
    paths = []
    for c in range(clips):
        rng = np.random.default_rng(c)
        base = rng.integers(0, 256, (h // 8 + 4, (w + 2 * frames) // 8 + 4, 3), dtype=np.uint8)
        tex = cv2.resize(base, (base.shape[1] * 8, base.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
        seq = (tex[:h, 2 * t : 2 * t + w] for t in range(frames))  # a camera pan, 2 px/frame
        path = folder / f"clip{c}.mp4"
        encode_video(path, seq, 25.0, crf=18)
        paths.append(path)
    return paths


def run_ours(clips: list[Path], out: Path, workers: int) -> tuple[float, int, int]:
    from densemotion.frames.extract import extract
    from densemotion.frames.store import FrameArchive
    from densemotion.params import FramesParams

    params = FramesParams(jpeg_quality=95, workers=workers)
    t = time.perf_counter()
    for clip in clips:
        extract(str(clip), out / f"{clip.stem}.zip", params, progress=False)
    elapsed = time.perf_counter() - t
    archive_bytes = sum((out / f"{c.stem}.zip").stat().st_size for c in clips)
    jpeg_bytes = 0
    for c in clips:
        with FrameArchive(out / f"{c.stem}.zip") as a:
            jpeg_bytes += sum(len(a.read_bytes(i)) for i in range(len(a)))
    return elapsed, archive_bytes, jpeg_bytes


def run_ffmpeg(ffmpeg: str, clips: list[Path], out: Path, q: int) -> tuple[float, int]:
    t = time.perf_counter()
    for clip in clips:
        d = out / clip.stem
        d.mkdir(parents=True)
        subprocess.run(
            [ffmpeg, "-v", "error", "-i", str(clip), "-qmin", "1", "-q:v", str(q), str(d / "%06d.jpg")], check=True
        )
    elapsed = time.perf_counter() - t
    return elapsed, sum(p.stat().st_size for p in out.rglob("*.jpg"))


def psnr_against_source(clips: list[Path], ours: Path, theirs: Path) -> tuple[float, float]:
    """Mean PSNR (dB) of both outputs' JPEGs against the decoded source frames (RGB)."""
    import simplejpeg

    from densemotion.frames.store import FrameArchive
    from densemotion.video import iter_frames

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = np.mean((a.astype(np.float64) - b) ** 2)
        return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))

    p_ours, p_theirs = [], []
    for clip in clips:
        with FrameArchive(ours / f"{clip.stem}.zip") as archive:
            for i, rgb in iter_frames(clip):
                p_ours.append(psnr(archive.read(i), rgb))
                jpg = (theirs / clip.stem / f"{i + 1:06d}.jpg").read_bytes()
                p_theirs.append(psnr(simplejpeg.decode_jpeg(jpg, "RGB"), rgb))
    return float(np.mean(p_ours)), float(np.mean(p_theirs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--frames", type=int, default=132)
    ap.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--q", type=int, default=1, help="ffmpeg -q:v (1 = its finest, with -qmin 1)")
    args = ap.parse_args()
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    root = Path(tempfile.mkdtemp(prefix="bench_frames_"))
    try:
        clips = make_clips(root, args.clips, args.frames, tuple(args.size))
        n = args.clips * args.frames
        ours, theirs = [], []
        for _ in range(args.repeat):  # interleaved, best of N for each
            shutil.rmtree(root / "ours", ignore_errors=True)
            shutil.rmtree(root / "ffmpeg", ignore_errors=True)
            (root / "ours").mkdir()
            t_ours, archive_bytes, jpeg_bytes = run_ours(clips, root / "ours", args.workers)
            t_ff, ff_bytes = run_ffmpeg(ffmpeg, clips, root / "ffmpeg", args.q)
            ours.append(t_ours)
            theirs.append(t_ff)
        t_ours, t_ff = min(ours), min(theirs)
        print(f"clips: {args.clips} x {args.frames} frames at {args.size[0]}x{args.size[1]}, {args.workers} workers")
        print(
            f"densemotion frames : {n / t_ours:8.1f} frames/s  ({t_ours:.2f} s, JPEG q95, "
            f"{jpeg_bytes / n / 1024:.1f} KiB/frame)"
        )
        print(
            f"ffmpeg -q:v {args.q}      : {n / t_ff:8.1f} frames/s  ({t_ff:.2f} s, {ff_bytes / n / 1024:.1f} KiB/frame)"
        )
        q_ours, q_theirs = psnr_against_source(clips, root / "ours", root / "ffmpeg")
        print(f"quality (PSNR vs decoded source): ours {q_ours:.2f} dB, ffmpeg {q_theirs:.2f} dB")
        print(f"throughput ratio (ours / ffmpeg): {t_ff / t_ours:.2f}x  (goal >= 1.0)")
        overhead = archive_bytes / jpeg_bytes - 1
        print(
            f"storage: {archive_bytes / n:.0f} B/frame in zips vs {jpeg_bytes / n:.0f} B/frame as loose JPEGs: "
            f"overhead {100 * overhead:.2f}% (goal < 1%)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
