"""PIPs speed and memory: the published forward pass against the dense engine, fp32 and bf16, in one process.

    .venv/bin/python bench/pips_speed.py [--size 360x640] [--points 1024] [--grid 100x100]
        [--published-points 1024] [--timed-chunks 2] [--chunk-size 256] [--precisions fp32,bf16]
        [--device cpu] [--threads 0] [--rounds 2]

One 8-frame window of a rendered sample clip, stride 4, 6 iterations, the fixture weights of
docs/pips.md (speed does not depend on the values). Every mode runs in this one process on the
same frames and the same query points, in ``--rounds`` interleaved rounds keeping each mode's
fastest, so their ratios are measured side by side (on a shared machine, trust the ratios more
than the seconds).

- published: ``PipsNet.forward(naive=True)``, the published forward pass: all points at once,
  full correlation volumes and the full-resolution score maps of every iteration; bf16 is
  autocast over the whole pass, as one would run the published code. It cannot hold a 100x100
  grid (its memory grows ~2-4 MB per point): that row is its per-point cost extrapolated.
- dense: :class:`PipsEngine` (features once per frame, points in chunks, volume-free lookup);
  bf16 is its ``autocast: bf16`` (encoder, pyramid and Mixer in bf16, the rest float32:
  tracking/pips/precision.py). The ``--points`` row is timed whole; the grid row is timed on
  its first ``--timed-chunks`` chunks and extrapolated (every chunk does the same work); its
  output arrays are allocated at full size.
- points/s = points / (encoder + refinement) for the window. matmul floor: this CPU's (or GPU's)
  rate for the Mixer's own matmul shapes in that precision, measured here first; "of floor" is
  the refinement's useful FLOP rate (the ~2.5 GFLOP per point per window of all its linear
  layers) as a fraction of it. Peak memory: CPU resident set above what was in use before the
  mode (glibc's free memory is handed back between modes); CUDA: peak allocated.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

WINDOW, ITERS, STRIDE = 8, 6, 4
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _grid(shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(Hg * Wg, 2) xy: cell centres of an Hg x Wg grid over an H x W frame."""
    (hg, wg), (h, w) = shape, size
    ys = (np.arange(hg) + 0.5) * h / hg - 0.5
    xs = (np.arange(wg) + 0.5) * w / wg - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def _points(n: int, size: tuple[int, int]) -> np.ndarray:
    """n query points on a near-square grid (the first n of a ceil(sqrt(n))-wide one)."""
    side = int(np.ceil(np.sqrt(n)))
    return _grid((side, side), size)[:n]


def _parse_shape(text: str) -> tuple[int, int]:
    a, b = text.lower().split("x")
    return int(a), int(b)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _trim() -> None:
    """Hand glibc's free memory back to the OS, so that the next mode's peak starts clean."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory while the block runs, above what was in use when it started (MB).

    CPU: resident set size polled every 2 ms by a thread. CUDA: peak allocated by torch.
    """

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak = 0.0

    def __enter__(self) -> PeakMemory:
        _trim()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = self.top = torch.cuda.memory_allocated() / 2**20
        else:
            self.base = self.top = _rss_mb()
            self.running = True
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self) -> None:
        while self.running:
            self.top = max(self.top, _rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.top = max(self.top, torch.cuda.max_memory_allocated() / 2**20)
        else:
            self.running = False
            self.thread.join()
            self.top = max(self.top, _rss_mb())
        self.peak = self.top - self.base


@dataclass
class Result:
    mode: str
    precision: str
    points: int
    encode_s: float
    refine_s: float  # for all points (extrapolated where only some were timed)
    peak_mb: float
    note: str = ""

    @property
    def points_s(self) -> float:
        return self.points / (self.encode_s + self.refine_s)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def matmul_rate(device: str, dtype: torch.dtype | None, rows: int, repeat: int = 5) -> float:
    """GFLOP/s of the Mixer's channel-mixing pair (rows x 512 -> 2048 -> 512) in ``dtype``, best of ``repeat``."""
    dt = dtype or torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 512, generator=gen).to(device, dt)
    w1, w2 = (torch.randn(s, generator=gen).to(device, dt) / 30 for s in ((2048, 512), (512, 2048)))
    best = float("inf")
    for _ in range(repeat + 1):  # the first call is a warm-up
        _sync(device)
        t = time.perf_counter()
        F.linear(F.linear(x, w1), w2)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * 2 * rows * 512 * 2048 / best / 1e9


def refine_flop_per_point(net) -> float:
    """FLOP of all linear layers and 1x1 convs of one point's refinement over one window."""
    S, flop = WINDOW, 0
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Linear) and not name.startswith("vis_predictor"):
            rows = 1 if name.endswith(f"to_delta.{3 + 12}") else S  # the last layer sees the token mean
            flop += 2 * rows * m.in_features * m.out_features
        elif isinstance(m, torch.nn.Conv1d):  # token mixing: (4S, S) @ (S, D) per point
            flop += 2 * m.out_channels * m.in_channels * 512
    return ITERS * flop


def run_published(net, frames, queries, device, dtype) -> Result:
    from densemotion.tracking.pips.corr import VolumeLookup

    rgbs = torch.from_numpy(frames).permute(0, 3, 1, 2).float().to(device)
    xys = torch.from_numpy(queries).to(device)
    with torch.inference_mode(), _autocast(device, dtype):  # warm-up: kernels of these shapes and precision
        net.refine(VolumeLookup(net.encode(rgbs)), xys[:4], iters=1)
    with torch.inference_mode(), _autocast(device, dtype), PeakMemory(device) as mem:
        t0 = time.perf_counter()
        fmaps = net.encode(rgbs)  # the body of PipsNet.forward(naive=True), timed in two parts
        _sync(device)
        t1 = time.perf_counter()
        out = net.refine(VolumeLookup(fmaps, score_maps=True), xys, iters=ITERS)
        _sync(device)
        t2 = time.perf_counter()
        del out
    return Result("published forward", _name(dtype), len(queries), t1 - t0, t2 - t1, mem.peak)


def run_dense(net, frames, grids, device, dtype, chunk, timed_chunks) -> list[Result]:
    """The dense engine on the two query sets ``grids`` (label, (N, 2)); frames encoded once.

    The first set is timed whole; the second on its first ``timed_chunks`` chunks.
    """
    from densemotion.tracking.pips.engine import PipsEngine
    from densemotion.tracking.pips.precision import Precision

    engine = PipsEngine(net, device, ITERS, chunk, Precision(mixer=dtype, encoder=dtype, lookup=dtype))
    ids = list(range(WINDOW))
    with torch.inference_mode():  # warm-up: the shapes of all frames and of one chunk, one iteration
        warm = engine.encode(frames)
        engine.iters = 1
        engine.run_window(warm, ids, torch.full((chunk, 2), 5.0))
        engine.iters = ITERS
        del warm
    with PeakMemory(device) as enc_mem:
        t0 = time.perf_counter()
        pyramid = engine.encode(frames)
        _sync(device)
        encode_s = time.perf_counter() - t0
    results = []
    for (label, queries), partly in zip(grids, (False, True), strict=True):
        n = len(queries)
        timed = n if timed_chunks <= 0 or not partly else min(n, timed_chunks * chunk)
        with PeakMemory(device) as mem:
            tracks = np.zeros((WINDOW, n, 2), np.float32)  # full-size outputs, counted in the peak
            vis = np.zeros((WINDOW, n), np.float32)
            t = time.perf_counter()
            tr, lg, _ = engine.run_window(pyramid, ids, torch.from_numpy(queries[:timed]))
            _sync(device)
            refine_s = (time.perf_counter() - t) * n / timed
            tracks[:, :timed], vis[:, :timed] = tr.numpy(), torch.sigmoid(lg).numpy()
        note = f"timed on {timed:,}, extrapolated" if timed < n else ""
        results.append(
            Result(f"dense engine {label}", _name(dtype), n, encode_s, refine_s, enc_mem.peak + mem.peak, note)
        )
    return results


def _memory_mb(device: str) -> float:
    """Memory of the machine (CPU) or the GPU, MB."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def _name(dtype: torch.dtype | None) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def main() -> None:
    from densemotion.params import SampleParams
    from densemotion.runtime import cpu_has_native_bf16
    from densemotion.sample import render_clip
    from densemotion.tracking.pips import CHECKPOINT
    from densemotion.tracking.pips.model import PipsNet

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="360x640")
    ap.add_argument("--points", type=int, default=1024, help="points of the side-by-side comparison")
    ap.add_argument("--grid", default="100x100", help="dense engine grid (timed on --timed-chunks chunks)")
    ap.add_argument("--published-points", type=int, default=0, help="points the published pass runs (0: --points)")
    ap.add_argument("--timed-chunks", type=int, default=2, help="chunks timed for the grid (0: all)")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of all modes; each mode's fastest is kept")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size, dev = _parse_shape(args.size), args.device
    frames, _ = render_clip(SampleParams(height=size[0], width=size[1], num_frames=WINDOW), 0)
    net = PipsNet(stride=STRIDE)
    net.load_state_dict(CHECKPOINT.fixture_state_dict())
    net = net.to(dev).eval()
    flop_pt = refine_flop_per_point(net)
    side = _parse_shape(args.grid)
    queries = _points(args.points, size)
    pub_n = args.published_points or args.points
    hw = torch.cuda.get_device_name() if dev.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    bf16_native = cpu_has_native_bf16() if not dev.startswith("cuda") else torch.cuda.is_bf16_supported()
    print(
        f"PIPs, one window of {WINDOW} frames at {size[0]}x{size[1]}, stride {STRIDE}, {ITERS} iterations, "
        f"{dev} ({hw}; native bf16: {bf16_native}), chunk {args.chunk_size}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}; refinement: {flop_pt / 1e9:.2f} GFLOP per point"
    )
    memory = _memory_mb(dev)
    rates: dict[str, float] = {}
    names = args.precisions.split(",")
    for name in names:
        rates[name] = matmul_rate(dev, DTYPES[name], WINDOW * args.chunk_size)
        print(f"matmul floor {name}: {rates[name]:.0f} GFLOP/s ({WINDOW * args.chunk_size} x 512 -> 2048 -> 512)")
    grids = [(f"{args.points:,} pts", queries), (f"{side[0]}x{side[1]}", _grid(side, size))]
    best: dict[tuple[str, str], Result] = {}  # (mode, precision) -> fastest of the rounds
    for round_ in range(args.rounds):  # rounds interleave the modes: a burst of load on a shared
        for name in names:  # machine then hits one round of each, not one mode
            runs = run_dense(net, frames, grids, dev, DTYPES[name], args.chunk_size, args.timed_chunks)
            _trim()
            runs.append(run_published(net, frames, _points(pub_n, size), dev, DTYPES[name]))
            _trim()
            for r in runs:
                old = best.get((r.mode, r.precision))
                if old is None or r.encode_s + r.refine_s < old.encode_s + old.refine_s:
                    best[r.mode, r.precision] = r
            print(f"  (round {round_ + 1}: {name} done)", flush=True)
    rows = list(best.values())
    for name in names:
        pub = best["published forward", name]
        for n, label in ((args.points, f"{args.points:,} pts"), (side[0] * side[1], f"{side[0]}x{side[1]}")):
            if n == pub.points:
                continue
            rows.append(
                Result(
                    f"published forward {label}",
                    name,
                    n,
                    pub.encode_s,
                    pub.refine_s * n / pub.points,
                    pub.peak_mb * n / pub.points,
                    f"extrapolated from {pub.points:,} pts; "
                    + ("cannot run here: " if pub.peak_mb * n / pub.points > 0.8 * memory else "")
                    + f"needs ~{pub.peak_mb * n / pub.points / 1024:.0f} GB of the machine's {memory / 1024:.0f} GB",
                )
            )
    base = {(r.points, r.precision): r for r in rows if r.mode.startswith("published")}
    print()
    print(
        "| mode | precision | points | encoder s | refinement s | points/s | x published fp32 "
        "| x published same precision | peak memory | of matmul floor |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r.points, r.mode.startswith("dense"), r.precision)):
        ref32, refsame = base.get((r.points, "fp32")), base.get((r.points, r.precision))
        floor = flop_pt * r.points / r.refine_s / 1e9 / rates[r.precision]
        x32 = f"{r.points_s / ref32.points_s:.2f}x" if ref32 else "-"
        xsame = f"{r.points_s / refsame.points_s:.2f}x" if refsame else "-"
        note = f" ({r.note})" if r.note else ""
        print(
            f"| {r.mode}{note} | {r.precision} | {r.points:,} | {r.encode_s:.1f} | {r.refine_s:.1f} | "
            f"{r.points_s:.1f} | {x32} | {xsame} | {r.peak_mb:,.0f} MB | {floor:.0%} |"
        )


if __name__ == "__main__":
    main()
