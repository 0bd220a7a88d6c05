"""PIPs speed and memory: the dense engine against a naive mode that works like the published code.

    .venv/bin/python bench/pips_speed.py [--size 360x640] [--grids 32x32,100x100,180x320]
        [--naive-grid 16x16] [--timed-chunks 4] [--chunk-size 256] [--device cpu] [--threads 0]
        [--repeat 1] [--bf16-points 32]

One 8-frame window of a rendered sample clip, stride 4, 6 iterations, synthetic weights (the
fixture weights of docs/pips.md: speed does not depend on the values). Every measurement runs in its
own child process, so each peak memory figure is its own (CPU: peak RSS above the RSS once the
model and frames are loaded; CUDA: peak allocated).

- dense: the engine (features once per window, points in chunks, volume-free lookup). On CPU
  a grid larger than ``--timed-chunks`` chunks is timed on its first chunks and extrapolated
  (refinement time is linear in points: every chunk does the same work); output arrays are
  allocated at full size. Printed as "extrapolated".
- naive: ``PipsNet.forward(naive=True)``: all points at once, full correlation volumes and the
  full-resolution score maps of every iteration, as the published forward pass. Run at a size
  that fits in memory; per-point memory and time are extrapolated to larger grids.
- points x frames / s = points * 8 / (encoder + refinement) for the window; the ratio is dense
  against naive at the same number of points (naive extrapolated where it cannot run).
- bf16: autocast error against float32 on a few points (CPU autocast here; on CUDA the engine's
  ``autocast`` param), at the first and the last iteration.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time

import numpy as np

WINDOW = 8


def _grid(shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(Hg * Wg, 2) xy: cell centres of an Hg x Wg grid over an H x W frame."""
    (hg, wg), (h, w) = shape, size
    ys = (np.arange(hg) + 0.5) * h / hg - 0.5
    xs = (np.arange(wg) + 0.5) * w / wg - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def _parse_shape(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class PeakMemory:
    """Peak memory while the block runs, above what was in use when it started (MB); may nest.

    CPU: resident set size polled every 2 ms by a thread. CUDA: peak allocated by torch.
    """

    _active: list[PeakMemory] = []

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak = 0.0

    def __enter__(self) -> PeakMemory:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            for outer in self._active:  # resetting the counter below must not lose their peak
                outer.top = max(outer.top, torch.cuda.max_memory_allocated() / 2**20)
            self.base = self.top = torch.cuda.memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        else:
            self.base = self.top = _rss_mb()
            self.running = True
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        self._active.append(self)
        return self

    def _poll(self) -> None:
        while self.running:
            self.top = max(self.top, _rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        import torch

        self._active.remove(self)
        if self.cuda:
            torch.cuda.synchronize()
            self.top = max(self.top, torch.cuda.max_memory_allocated() / 2**20)
        else:
            self.running = False
            self.thread.join()
            self.top = max(self.top, _rss_mb())
        self.peak = self.top - self.base


def _setup(job: dict):
    import torch

    from densemotion.params import SampleParams
    from densemotion.sample import render_clip
    from densemotion.tracking.pips.checkpoint import fixture_state_dict
    from densemotion.tracking.pips.corr import FeaturePyramid, SampledLookup, VolumeLookup
    from densemotion.tracking.pips.engine import PipsEngine
    from densemotion.tracking.pips.model import PipsNet

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    h, w = job["size"]
    frames, _ = render_clip(SampleParams(height=h, width=w, num_frames=WINDOW), 0)
    net = PipsNet(stride=4)
    net.load_state_dict(fixture_state_dict())
    engine = PipsEngine(net, job["device"], iters=6, chunk_size=job["chunk"])
    # warm-up (kernel selection, first-call allocations), not timed
    with torch.inference_mode():
        fm = engine.net.encode(torch.from_numpy(frames[:2]).permute(0, 3, 1, 2).float().to(job["device"]))
        engine.net.refine(VolumeLookup(fm.repeat(4, 1, 1, 1)), torch.full((4, 2), 5.0, device=job["device"]), iters=1)
        engine.net.refine(
            SampledLookup(FeaturePyramid(fm), [0, 1] * 4), torch.full((4, 2), 5.0, device=job["device"]), 1
        )
    return torch, frames, engine


def _sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def child_dense(job: dict) -> dict:
    torch, frames, engine = _setup(job)
    dev = job["device"]
    queries = _grid(tuple(job["grid"]), tuple(job["size"]))
    n = len(queries)
    timed = n if job["timed_chunks"] <= 0 else min(n, job["timed_chunks"] * job["chunk"])
    with PeakMemory(dev) as mem:
        tracks = np.zeros((WINDOW, n, 2), np.float32)  # full-size outputs, counted in the peak
        vis = np.zeros((WINDOW, n), np.float32)
        t0 = time.perf_counter()
        pyramid = engine.encode(frames)
        _sync(torch, dev)
        t1 = time.perf_counter()
        refine = []
        with PeakMemory(dev) as refine_mem:  # the refinement alone, features already in memory
            for _ in range(job["repeat"]):
                t = time.perf_counter()
                tr, lg, _ = engine.run_window(pyramid, list(range(WINDOW)), torch.from_numpy(queries[:timed]))
                _sync(torch, dev)
                refine.append(time.perf_counter() - t)
        t2 = t1 + min(refine)
        tracks[:, :timed], vis[:, :timed] = tr.numpy(), torch.sigmoid(lg).numpy()
    return {
        "points": n,
        "timed_points": timed,
        "encode_s": t1 - t0,
        "refine_s": (t2 - t1) * n / timed,
        "peak_mb": mem.peak,
        "refine_peak_mb": refine_mem.peak,
    }


def child_naive(job: dict) -> dict:
    torch, frames, engine = _setup(job)
    dev = job["device"]
    queries = torch.from_numpy(_grid(tuple(job["grid"]), tuple(job["size"]))).to(dev)
    rgbs = torch.from_numpy(frames).permute(0, 3, 1, 2).float().to(dev)
    from densemotion.tracking.pips.corr import VolumeLookup

    with torch.inference_mode(), PeakMemory(dev) as mem:
        t0 = time.perf_counter()
        fmaps = engine.net.encode(rgbs)
        _sync(torch, dev)
        t1 = time.perf_counter()
        refine = []
        for _ in range(job["repeat"]):
            t = time.perf_counter()
            out = engine.net.refine(VolumeLookup(fmaps, score_maps=True), queries, iters=6)
            _sync(torch, dev)
            refine.append(time.perf_counter() - t)
            del out.score_maps[:]
        t2 = t1 + min(refine)
    return {
        "points": len(queries),
        "timed_points": len(queries),
        "encode_s": t1 - t0,
        "refine_s": t2 - t1,
        "peak_mb": mem.peak,
    }


def child_bf16(job: dict) -> dict:
    torch, frames, engine = _setup(job)
    queries = torch.from_numpy(_grid(tuple(job["grid"]), tuple(job["size"])))
    out = {}
    for name, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        engine.amp_dtype = amp
        t0 = time.perf_counter()
        pyramid = engine.encode(frames)
        with torch.inference_mode(), engine._autocast():
            from densemotion.tracking.pips.corr import SampledLookup

            res = engine.net.refine(SampledLookup(pyramid, list(range(WINDOW))), queries.to(job["device"]), iters=6)
        out[name] = [t.float().cpu().numpy() for t in res.trajs]
        out[name + "_s"] = time.perf_counter() - t0
    err = [np.abs(a - b).max(axis=-1) for a, b in zip(out["fp32"], out["bf16"], strict=True)]  # (S, N) per iteration
    return {
        "points": len(queries),
        "first_iter_max_px": float(err[0].max()),
        "first_iter_median_px": float(np.median(err[0])),
        "last_iter_max_px": float(err[-1].max()),
        "last_iter_median_px": float(np.median(err[-1])),
        "fp32_s": out["fp32_s"],
        "bf16_s": out["bf16_s"],
    }


def run_child(kind: str, job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(label: str, r: dict, note: str = "") -> str:
    total = r["encode_s"] + r["refine_s"]
    pfs = r["points"] * WINDOW / total
    return (
        f"{label:<28} {r['points']:>7} pts  enc {r['encode_s']:6.1f} s  refine {r['refine_s']:8.1f} s  "
        f"{pfs:9.0f} pts*frames/s  {r['points'] / total:7.1f} pts/s  peak {r['peak_mb']:7.0f} MB  {note}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="360x640")
    ap.add_argument("--grids", default="32x32,100x100,180x320")
    ap.add_argument("--naive-grid", default="16x16", help="grid the naive mode runs at (all points at once)")
    ap.add_argument("--timed-chunks", type=int, default=4, help="chunks timed per grid (0: all); rest extrapolated")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=1, help="refinement timings per measurement; the best is kept")
    ap.add_argument("--bf16-points", type=int, default=32, help="points for the bf16 error (0: skip)")
    args = ap.parse_args()
    size = _parse_shape(args.size)
    base = {
        "size": size,
        "device": args.device,
        "chunk": args.chunk_size,
        "timed_chunks": args.timed_chunks,
        "threads": args.threads,
        "repeat": args.repeat,
    }
    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"PIPs one window of {WINDOW} frames at {size[0]}x{size[1]}, stride 4, 6 iterations, {args.device} "
        f"({threads} threads), chunk {args.chunk_size}, refinement time: best of {args.repeat}"
    )

    ng = _parse_shape(args.naive_grid)
    naive = run_child("naive", {**base, "grid": ng})
    dense_same = run_child("dense", {**base, "grid": ng, "timed_chunks": 0})
    for label, r in (("naive (published way)", naive), ("dense engine", dense_same)):
        print(_row(label, r) if "error" not in r else f"{label}: failed: {r['error']}")
    if "error" in naive or "error" in dense_same:
        return
    naive_pt_s, naive_pt_mb = naive["refine_s"] / naive["points"], naive["peak_mb"] / naive["points"]
    print(
        f"same {naive['points']} points: dense/naive points/s = "
        f"{(naive['encode_s'] + naive['refine_s']) / (dense_same['encode_s'] + dense_same['refine_s']):.2f}x, "
        f"refinement per point {naive_pt_s * 1e3:.1f} ms naive vs "
        f"{dense_same['refine_s'] / dense_same['points'] * 1e3:.1f} ms dense, "
        f"naive memory {naive_pt_mb:.2f} MB per point"
    )

    for g in [_parse_shape(t) for t in args.grids.split(",")]:
        r = run_child("dense", {**base, "grid": g})
        if "error" in r:
            print(f"dense {g[0]}x{g[1]}: failed: {r['error']}")
            continue
        note = f"(timed {r['timed_points']}, extrapolated)" if r["timed_points"] < r["points"] else ""
        note += f" refinement alone: peak {r['refine_peak_mb']:.0f} MB"
        print(_row(f"dense {g[0]}x{g[1]}", r, note))
        n = r["points"]
        naive_s = naive["encode_s"] + naive_pt_s * n  # naive extrapolated to n points at once
        print(
            f"{'':<28} vs naive extrapolated to {n} points (would need {naive_pt_mb * n / 1024:.1f} GB): "
            f"{naive_s / (r['encode_s'] + r['refine_s']):.2f}x points/s"
        )

    if args.bf16_points > 0:
        side = max(1, int(round(args.bf16_points**0.5)))
        r = run_child("bf16", {**base, "grid": (side, side)})
        if "error" in r:
            print(f"bf16: failed: {r['error']}")
        else:
            print(
                f"bf16 autocast vs fp32, {r['points']} points: first iteration max {r['first_iter_max_px']:.3f} px "
                f"(median {r['first_iter_median_px']:.4f}); last iteration max {r['last_iter_max_px']:.2f} px "
                f"(median {r['last_iter_median_px']:.3f}); time fp32 {r['fp32_s']:.1f} s, bf16 {r['bf16_s']:.1f} s "
                "(synthetic weights amplify differences ~10x per iteration)"
            )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        kind, job = sys.argv[2], json.loads(sys.argv[3])
        result = {"dense": child_dense, "naive": child_naive, "bf16": child_bf16}[kind](job)
        print(json.dumps(result))
    else:
        main()
