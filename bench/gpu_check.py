"""One prepared GPU check: the trackers' reference tests on the device, then a throughput table.

    python3 bench/gpu_check.py [--device cuda|cpu] [--dry] [--out DIR] [--skip-tests] [--batch B]
        [--seconds 4] [--corr-memory-mb 2048] [--pips-chunk 256] [--tests-timeout 300]
    bash bench/gpu_check.sh [ARGS]   (a lent GPU machine: installs the carried wheels, then --device cuda)

1. Reference tests (unless ``--skip-tests``): pytest over the tests that compare alltracker and
   pips with their published outputs, and alltracker's and raft's batched windows with one at a
   time and with the CPU (:data:`REFERENCE_TESTS`), with ``DENSEMOTION_TEST_DEVICE``
   set to ``--device`` (tests/conftest.py ``test_device``: the nets run there, TF32 off, compared
   on the CPU). Their counts go into the report; the table is made whatever they give, and the
   script exits non-zero at the end if they failed.
2. Throughput rows, each after one untimed warm-up call (``torch.cuda.synchronize()`` after every
   call on CUDA), timed over calls until ``--seconds`` have passed (at most :data:`MAX_CALLS`),
   with the peak CUDA memory allocated in the row (warm-up included; "n/a" on a CPU):

   - alltracker, every pixel a query, 8-frame windows of textured frames at 256x256 and 360x640,
     fp32 / bf16 / fp16 autocast (bf16 only where the GPU has it; fp16 on GPUs only): windows/s,
     and each lower precision's distance from fp32's tracks (median and 99th percentile
     end-point distance over the frames after the first, px). ``--batch`` windows a call, through
     the tracker's ``track_windows`` where it has one (if it fails, noted, ``track`` window by
     window instead); ``--corr-memory-mb`` bounds the correlation volumes of a whole call
     (default ``trajectories.alltracker``'s 2048: a batch of 8 windows at 360x640, ~1.2 GB of
     volumes each in fp32, is past it and recomputes them in pieces);
   - raft_small and raft_large (torchvision, random weights), every pixel, 256x256: windows/s;
   - pips, 100x100 query points on 256x256 frames, one window a call: points/s;
   - training steps/s of the default motion model (``ModelParams()``: lraspp_mobilenet_v3_large,
     random init) on batches of 8 random 64x64 grid images, the point head's EPE loss, AdamW and
     its schedule (``training.make_optimizer``): fp32, AMP (bf16 autocast where the GPU has it,
     else fp16 with a GradScaler; bf16 on a CPU), AMP with channels_last, and on a GPU AMP with
     channels_last and torch.compile (``train.compile``; compiled in the warm-up call).

   Weights: the repository's test-made checkpoints (``CHECKPOINT.save_fixture``; speed does not
   depend on the values), in a temporary folder. fp32 rows run with torch's defaults (cuDNN
   convolutions in TF32; the header says). A row that fails keeps its error in the report.
3. ``gpu_check.md`` (a header line and a markdown table for the README) and ``gpu_check.json``
   (the same rows as data) in ``--out`` (default ``$OUT`` when set, else bench/out/); the table
   is printed too.

``--dry``: tiny sizes (64x64 frames, 2 windows a call, raft_small only, 8x8 pips points, 8x8
training grids in batches of 2, one refinement iteration or flow update, no warm-up, one timed
call a row, fp32 and bf16 only), to check the code paths on a CPU in seconds
(tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from densemotion.model import build_model
from densemotion.params import ModelParams, TrainParams
from densemotion.runtime import autocast_to, cuda_has_bf16, resolve_device
from densemotion.tracking import grid, pips, raft
from densemotion.tracking.alltracker import CHECKPOINT as ALLTRACKER
from densemotion.tracking.alltracker import AllTrackerParams
from densemotion.tracking.alltracker.tracker import AllTrackerTracker
from densemotion.tracking.base import Tracker, track_each, track_windows
from densemotion.training import make_optimizer

REPO = Path(__file__).resolve().parents[1]
WINDOW = 8  # frames a window
MAX_CALLS = 200  # timed calls a row at most
REFERENCE_TESTS = (  # the trackers' nets against their published outputs (raft has none: random weights)
    "tests/test_batched_tracking.py::test_a_batch_of_windows_tracks_as_each_window_alone",
    "tests/test_batched_tracking.py::test_the_gpu_tracks_as_the_cpu",  # alltracker and raft: GPU vs CPU
    "tests/test_pips_model.py::test_encoder_matches_fixture_frame0",
    "tests/test_pips_model.py::test_float32_agrees_with_float64_at_every_iteration",
    "tests/test_pips_model.py::test_float64_matches_fixture_every_iteration",
    "tests/test_alltracker_model.py::test_agrees_with_the_published_outputs",
)
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Plan:
    """Sizes and bounds of one run (:func:`make_plan`)."""

    alltracker_sizes: tuple[tuple[int, int], ...]  # (H, W) frames
    precisions: tuple[str, ...]  # keys of DTYPES, fp32 first
    raft_models: tuple[str, ...]
    raft_size: tuple[int, int]
    pips_size: tuple[int, int]
    pips_side: int  # pips tracks side x side query points
    train_grid: tuple[int, int]  # (Hg, Wg) grid images
    train_batch: int
    batch: int  # windows a tracker call
    seconds: float  # timed seconds a row (at least one call)
    warmups: int  # untimed calls before the timed ones
    alltracker_iters: int
    raft_updates: int
    pips_iters: int
    corr_memory_mb: int  # alltracker's bound on the correlation volumes of a call (all its windows)


@dataclass
class Row:
    """One line of the table; ``throughput`` None when the row failed (``error``)."""

    kind: str  # alltracker, raft_small, raft_large, pips, train
    variant: str  # fp32, bf16, fp16, amp, channels_last
    what: str
    size: str
    precision: str
    unit: str  # windows/s, points/s, steps/s
    batch: int = 1
    batched: bool = False  # one track_windows call for the batch (else track window by window)
    throughput: float | None = None
    seconds_per_call: float | None = None
    calls: int = 0
    peak_memory_mb: float | None = None  # CUDA peak allocated; None on a CPU
    vs_fp32: dict[str, float | None] = field(default_factory=dict)  # median_px / p99_px, or speedup
    note: str = ""
    error: str | None = None


@dataclass
class Timing:
    seconds_per_call: float
    calls: int
    peak_memory_mb: float | None
    first: Any  # the first call's result


def make_plan(device: str, dry: bool, batch: int | None, seconds: float, corr_memory_mb: int | None = None) -> Plan:
    cuda = torch.device(device).type == "cuda"
    corr = corr_memory_mb or AllTrackerParams().corr_memory_mb
    if dry:
        return Plan(
            alltracker_sizes=((64, 64),), precisions=("fp32", "bf16"), raft_models=("small",),
            raft_size=(64, 64), pips_size=(64, 64), pips_side=8, train_grid=(8, 8), train_batch=2,
            batch=batch or 2, seconds=0.0, warmups=0, alltracker_iters=1, raft_updates=1, pips_iters=1,
            corr_memory_mb=corr,
        )  # fmt: skip
    precisions = ["fp32"]
    if not cuda or cuda_has_bf16():
        precisions.append("bf16")
    if cuda:
        precisions.append("fp16")  # a GPU mode: on a CPU autocast to fp16 is not what runs
    return Plan(
        alltracker_sizes=((256, 256), (360, 640)), precisions=tuple(precisions), raft_models=("small", "large"),
        raft_size=(256, 256), pips_size=(256, 256), pips_side=100, train_grid=(64, 64), train_batch=8,
        batch=batch or (8 if cuda else 1), seconds=seconds, warmups=1, alltracker_iters=AllTrackerParams().iters,
        raft_updates=raft.RaftParams().num_flow_updates, pips_iters=pips.PipsParams().iters, corr_memory_mb=corr,
    )  # fmt: skip


# ---- inputs ----------------------------------------------------------------------------------


def textured_windows(batch: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(B, S, H, W, 3) uint8 RGB: a smooth random texture a window, translating by a whole-pixel
    velocity of its own (up to 2 px a frame in x and y)."""
    rng = np.random.default_rng(seed)
    pad = 2 * WINDOW
    out = np.empty((batch, WINDOW, h, w, 3), np.uint8)
    for b in range(batch):
        coarse = rng.integers(0, 256, ((h + 2 * pad) // 8 + 2, (w + 2 * pad) // 8 + 2, 3), dtype=np.uint8)
        big = cv2.resize(coarse, (coarse.shape[1] * 8, coarse.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
        vx, vy = rng.integers(-2, 3, 2)
        for t in range(WINDOW):
            y0, x0 = pad + vy * t, pad + vx * t
            out[b, t] = big[y0 : y0 + h, x0 : x0 + w]
    return out


def grid_points(side: int, h: int, w: int) -> np.ndarray:
    """(side * side, 2) xy of a regular grid inside the frame, 2 px from its border."""
    yy, xx = np.meshgrid(np.linspace(2, h - 3, side), np.linspace(2, w - 3, side), indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


# ---- timing ----------------------------------------------------------------------------------


def is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def timed(call: Callable[[], Any], device: str, plan: Plan) -> Timing:
    """``plan.warmups`` untimed calls, then calls until ``plan.seconds`` have passed (at least one,
    at most MAX_CALLS); the peak CUDA memory allocated over all of them."""
    cuda = is_cuda(device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync = torch.cuda.synchronize if cuda else lambda: None
    first = None
    for _ in range(plan.warmups):
        first = call()
        sync()
    calls, t0 = 0, time.perf_counter()
    while True:
        result = call()
        sync()
        calls += 1
        first = result if first is None else first
        elapsed = time.perf_counter() - t0
        if elapsed >= plan.seconds or calls >= MAX_CALLS:
            break
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return Timing(elapsed / calls, calls, peak, first)


def track_batch(tracker: Tracker, frames: np.ndarray, queries: np.ndarray, batched: bool) -> tuple[np.ndarray, ...]:
    """frames (B, S, H, W, 3) uint8, queries (N, 2) -> tracks (B, S, N, 2), vis (B, S, N) float32:
    one ``track_windows`` call (``batched``) or ``track`` window by window."""
    return track_windows(tracker, frames, queries) if batched else track_each(tracker, frames, queries)


def time_tracker(tracker: Tracker, frames: np.ndarray, queries: np.ndarray, device: str, plan: Plan) -> tuple:
    """(Timing, batched, note) of tracking the windows ``frames`` (B, S, H, W, 3); a failing
    ``track_windows`` is noted and the windows tracked one by one instead."""
    batched, note = hasattr(tracker, "track_windows") and len(frames) > 1, ""
    if batched:
        try:
            timing = timed(lambda: track_batch(tracker, frames, queries, True), device, plan)
        except Exception as err:  # kept in the report; the row goes on looped
            batched, note = False, f"track_windows failed ({type(err).__name__}: {err}); looped over track. "
    if not batched:
        timing = timed(lambda: track_batch(tracker, frames, queries, False), device, plan)
    tracks, vis = timing.first
    b, s, n = len(frames), frames.shape[1], len(queries)
    if tracks.shape != (b, s, n, 2) or vis.shape != (b, s, n):
        raise RuntimeError(
            f"tracks {tracks.shape} and vis {vis.shape}, expected ({b}, {s}, {n}, 2) and ({b}, {s}, {n})"
        )
    return timing, batched, note


def distance(tracks: np.ndarray, exact: np.ndarray) -> dict[str, float | None]:
    """Median and 99th percentile end-point distance (px) of tracks (B, S, N, 2) from ``exact``'s,
    over the frames after the first (there both are the queries), and the non-finite tracks."""
    d = np.linalg.norm(tracks[:, 1:].astype(np.float64) - exact[:, 1:], axis=-1)  # (B, S - 1, N)
    nonfinite = float((~np.isfinite(d)).sum())
    return {"median_px": float(np.median(d)), "p99_px": float(np.quantile(d, 0.99)), "nonfinite": nonfinite}


def guarded(row: Row, fill: Callable[..., None], *args: Any) -> Row:
    """``fill(row, *args)``; an exception is kept in ``row.error`` (and printed) instead of ending the run."""
    try:
        fill(row, *args)
    except Exception as err:  # one failing row must not lose the others
        row.error = f"{type(err).__name__}: {err}"
        row.throughput = None
    print(f"  {row.what:<30} {row.size:<36} {row.precision:<32} {fmt_throughput(row)}", flush=True)
    return row


def record(row: Row, timing: Timing, per_call: float) -> None:
    """The row's timing; throughput: ``per_call`` (windows, points, steps) a call."""
    row.seconds_per_call, row.calls, row.peak_memory_mb = timing.seconds_per_call, timing.calls, timing.peak_memory_mb
    row.throughput = per_call / timing.seconds_per_call


# ---- the rows ----------------------------------------------------------------------------------


def fill_alltracker(
    row: Row, net: Any, amp: torch.dtype | None, frames: np.ndarray, exact: list[np.ndarray], device: str, plan: Plan
) -> None:
    """Every pixel of frames (B, S, H, W, 3); fp32's tracks kept in ``exact``, the others measured against them."""
    p = AllTrackerParams()
    tracker = AllTrackerTracker(net, plan.alltracker_iters, p.visible_threshold, amp, plan.corr_memory_mb)
    queries = grid.grid_points(frames.shape[2:4], 1, 0)  # (H * W, 2)
    timing, row.batched, row.note = time_tracker(tracker, frames, queries, device, plan)
    record(row, timing, len(frames))
    tracks = timing.first[0]  # (B, S, N, 2)
    if amp is None:
        exact.append(tracks)
    elif exact:
        row.vs_fp32 = distance(tracks, exact[0])
    row.note += f"iters {plan.alltracker_iters}, corr_memory_mb {plan.corr_memory_mb} (for the whole call)"


def alltracker_rows(plan: Plan, device: str, folder: Path) -> list[Row]:
    """Every pixel of each size, in each precision; lower precisions against fp32's tracks."""
    net = ALLTRACKER.load(ALLTRACKER.save_fixture(folder / ALLTRACKER.file_name), device=device)
    rows = []
    for h, w in plan.alltracker_sizes:
        frames = textured_windows(plan.batch, h, w)  # (B, S, H, W, 3)
        exact: list[np.ndarray] = []  # fp32's tracks (B, S, N, 2), once made
        for precision in plan.precisions:
            row = Row(
                "alltracker", precision, "alltracker, every pixel", f"{h}x{w}, {WINDOW} frames", precision,
                "windows/s", batch=plan.batch,
            )  # fmt: skip
            rows.append(guarded(row, fill_alltracker, net, DTYPES[precision], frames, exact, device, plan))
    return rows


def fill_raft(row: Row, model: str, frames: np.ndarray, folder: Path, device: str, plan: Plan) -> None:
    """Every pixel of frames (B, S, H, W, 3), fp32, the model's test weights."""
    weights = raft.WEIGHTS[model]
    weights.save_fixture(folder / weights.file_name)
    tracker = raft.TRACKER.make(raft.RaftParams(model=model, num_flow_updates=plan.raft_updates), device, folder)
    queries = grid.grid_points(frames.shape[2:4], 1, 0)  # (H * W, 2): every pixel
    timing, row.batched, row.note = time_tracker(tracker, frames, queries, device, plan)
    record(row, timing, len(frames))
    row.note += f"{plan.raft_updates} flow updates"


def raft_rows(plan: Plan, device: str, folder: Path) -> list[Row]:
    """raft_small and raft_large (torchvision, random weights), every pixel, fp32."""
    h, w = plan.raft_size
    frames = textured_windows(plan.batch, h, w)  # (B, S, H, W, 3)
    rows = []
    for model in plan.raft_models:
        row = Row(
            f"raft_{model}", "fp32", f"raft_{model}, every pixel", f"{h}x{w}, {WINDOW} frames", "fp32", "windows/s",
            batch=plan.batch,
        )  # fmt: skip
        rows.append(guarded(row, fill_raft, model, frames, folder, device, plan))
    return rows


def fill_pips(row: Row, folder: Path, chunk: int, device: str, plan: Plan) -> None:
    """side x side query points on one window a call, fp32."""
    h, w = plan.pips_size
    weights = pips.CHECKPOINT.save_fixture(folder / pips.CHECKPOINT.file_name)
    params = pips.PipsParams(iters=plan.pips_iters, chunk_size=chunk)
    tracker = pips.TRACKER.make(params, device, weights)
    queries = grid_points(plan.pips_side, h, w)  # (side * side, 2)
    timing, row.batched, row.note = time_tracker(tracker, textured_windows(1, h, w), queries, device, plan)
    record(row, timing, len(queries))
    row.note += f"stride {params.stride}, iters {params.iters}, chunk_size {params.chunk_size}"


def pips_row(plan: Plan, device: str, folder: Path, chunk: int) -> Row:
    h, w = plan.pips_size
    side = plan.pips_side
    row = Row("pips", "fp32", f"pips, {side}x{side} points", f"{h}x{w}, {WINDOW} frames", "fp32", "points/s")
    return guarded(row, fill_pips, folder, chunk, device, plan)


def train_amp(device: str) -> tuple[torch.dtype, str]:
    """The AMP of training on ``device``: bf16 where the GPU has it (and on a CPU), else fp16."""
    if is_cuda(device) and not cuda_has_bf16():
        return torch.float16, "fp16 autocast + GradScaler"
    return torch.bfloat16, "bf16 autocast"


def train_step(
    plan: Plan, device: str, amp: torch.dtype | None, channels_last: bool, compiled: bool = False
) -> Callable[[], torch.Tensor]:
    """One training step of the default model on a fixed random batch, as training.train_one_epoch
    does it (autocast forward and loss, scaled backward, AdamW and schedule step); ``compiled``: the
    forward through torch.compile, as ``train.compile`` does (compiled in the warm-up call)."""
    torch.manual_seed(0)
    model = build_model(ModelParams(), window=WINDOW).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt, sched = make_optimizer(model, TrainParams(), total_steps=10 * MAX_CALLS)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and is_cuda(device))
    hg, wg, b, k = *plan.train_grid, plan.train_batch, model.steps
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(b, 3, hg, wg, generator=gen).to(device, memory_format=memory_format)  # (B, 3, Hg, Wg) in [0, 1]
    target = (3 * torch.randn(b, k, 2, hg, wg, generator=gen)).to(device)  # (B, K, 2, Hg, Wg) px
    mask = (torch.rand(b, k, hg, wg, generator=gen) < 0.8).to(device)  # (B, K, Hg, Wg) visible
    forward = torch.compile(model) if compiled else model

    def step() -> torch.Tensor:
        with autocast_to(device, amp):
            out = forward(image)
            loss = model.head.loss(out["out"], target, mask, "epe")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        return loss.detach()

    return step


def fill_train(row: Row, amp: torch.dtype | None, fp32: Row | None, device: str, plan: Plan) -> None:
    """Steps/s of :func:`train_step`; against ``fp32``'s speed when given."""
    step = train_step(plan, device, amp, row.variant in ("channels_last", "compile"), row.variant == "compile")
    timing = timed(step, device, plan)
    record(row, timing, 1)
    loss = float(timing.first)
    if not math.isfinite(loss):
        raise RuntimeError(f"the loss is {loss}")
    if fp32 is not None and fp32.throughput:
        row.vs_fp32 = {"speedup": row.throughput / fp32.throughput}  # type: ignore[operator]
    row.note = f"{plan.train_batch * row.throughput:.1f} samples/s; point head, epe loss {loss:.3f}"  # type: ignore[operator]


def train_rows(plan: Plan, device: str) -> list[Row]:
    """Training steps/s: fp32, AMP, AMP + channels_last (+ torch.compile on a GPU); each against fp32's."""
    hg, wg = plan.train_grid
    scale = ModelParams().input_scale  # the net's input: the grid upsampled (max_input_side permitting)
    amp, amp_name = train_amp(device)
    what = f"train {ModelParams().name}"
    size = f"batch {plan.train_batch} of {hg}x{wg} grids (net input {hg * scale}x{wg * scale})"
    fp32 = Row("train", "fp32", what, size, "fp32", "steps/s", batch=plan.train_batch)
    guarded(fp32, fill_train, None, None, device, plan)
    rows = [fp32]
    variants = [("amp", amp_name), ("channels_last", f"{amp_name}, channels_last")]
    if is_cuda(device) and plan.warmups:  # train.compile: a GPU's (a CPU compiles C++ for minutes)
        variants.append(("compile", f"{amp_name}, channels_last, torch.compile"))
    for variant, name in variants:
        row = Row("train", variant, what, size, name, "steps/s", batch=plan.train_batch)
        rows.append(guarded(row, fill_train, amp, fp32, device, plan))
    return rows


# ---- reference tests ---------------------------------------------------------------------------


def run_reference_tests(device: str, timeout: float) -> dict[str, Any]:
    """pytest over REFERENCE_TESTS with DENSEMOTION_TEST_DEVICE=device, streamed; its counts. Killed
    after ``timeout`` seconds (then not ok, whatever it had passed)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *REFERENCE_TESTS]
    env = dict(os.environ, DENSEMOTION_TEST_DEVICE=device, PYTHONUNBUFFERED="1")
    print(f"== reference tests on {device}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    lines: list[str] = []
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
        watchdog.cancel()
    timed_out = proc.returncode < 0 and time.perf_counter() - t0 >= timeout
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    summary = next((line for line in reversed(lines) if re.search(r"\d+ (passed|failed|error|skipped)", line)), "")
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary):
        counts["errors" if word.startswith("error") else word] += int(n)
    if not summary:  # killed: the progress characters so far
        progress = "".join(m.group(1) for line in lines if (m := re.match(r"([.FEs]+)\s*(\[\s*\d+%\])?$", line)))
        counts.update(passed=progress.count("."), failed=progress.count("F"), errors=progress.count("E"))
        counts["skipped"] = progress.count("s")
    return {
        "device": device, "command": " ".join(["python", *cmd[1:]]), "returncode": proc.returncode,
        "ok": proc.returncode == 0, "timed_out": timed_out, **counts, "seconds": round(time.perf_counter() - t0, 1),
        "tail": lines[-30:],
    }  # fmt: skip


# ---- the report ----------------------------------------------------------------------------------


def header(device: str, plan: Plan, dry: bool) -> dict[str, Any]:
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        name = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor})"
    else:
        name = f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return {
        "device": device, "name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "dry": dry,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32, "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "python": platform.python_version(),
        "timed_seconds_per_row": plan.seconds, "warmups": plan.warmups,
    }  # fmt: skip


def fmt_number(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def fmt_throughput(row: Row) -> str:
    return f"error: {row.error}" if row.throughput is None else f"{fmt_number(row.throughput)} {row.unit}"


def fmt_vs(row: Row) -> str:
    vs = row.vs_fp32
    if "speedup" in vs and vs["speedup"] is not None:
        return f"{vs['speedup']:.2f}x fp32's speed"
    if "median_px" in vs:
        text = f"median {vs['median_px']:.3g} px, p99 {vs['p99_px']:.3g} px"
        return text + (f" ({vs['nonfinite']:.0f} non-finite)" if vs.get("nonfinite") else "")
    return ""


def fmt_memory(row: Row) -> str:
    mb = row.peak_memory_mb
    return "n/a" if mb is None else f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def markdown(head: dict[str, Any], tests: dict[str, Any] | None, rows: list[Row]) -> str:
    tf32 = f"cuDNN TF32 {'on' if head['cudnn_tf32'] else 'off'}, matmul TF32 {'on' if head['matmul_tf32'] else 'off'}"
    lines = [
        f"GPU check on {head['name']} · torch {head['torch']} (CUDA {head['cuda']}) · {head['date']}"
        + (" · dry run (tiny sizes)" if head["dry"] else ""),
        "",
    ]
    if tests is not None:
        lines += [
            f"Reference tests on {tests['device']}: {tests['passed']} passed, {tests['failed']} failed, "
            f"{tests['errors']} errors, {tests['skipped']} skipped ({tests['seconds']:.0f} s)",
            "",
        ]
    lines += [
        "| what | size | precision | throughput | vs fp32 | peak memory |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        size = row.size + (
            f", batch {row.batch} ({'track_windows' if row.batched else 'looped'})" if row.unit == "windows/s" else ""
        )
        lines.append(
            f"| {row.what} | {size} | {row.precision} | {fmt_throughput(row)} | {fmt_vs(row)} | {fmt_memory(row)} |"
        )
    timing = f"Each row: {head['warmups']} warm-up call(s), then calls for ~{head['timed_seconds_per_row']:g} s."
    lines += ["", timing + (f" fp32: torch's defaults ({tf32})." if head["device"].startswith("cuda") else "")]
    return "\n".join(lines) + "\n"


def finite_or_none(value: Any) -> Any:
    """The value with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


def write_report(out: Path, head: dict[str, Any], tests: dict[str, Any] | None, rows: list[Row]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(head, tests, rows)
    (out / "gpu_check.md").write_text(text)
    data = {"header": head, "tests": tests, "rows": [asdict(r) for r in rows]}
    (out / "gpu_check.json").write_text(json.dumps(finite_or_none(data), indent=2) + "\n")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dry", action="store_true", help="tiny sizes: the code paths in seconds on a CPU")
    default_out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "out"
    ap.add_argument("--out", type=Path, default=default_out, help="folder of gpu_check.md/.json ($OUT, else bench/out)")
    ap.add_argument("--skip-tests", action="store_true", help="no reference tests")
    ap.add_argument("--batch", type=int, help="windows a tracker call (default 8 on cuda, 1 on cpu, 2 with --dry)")
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds a row after its warm-up")
    ap.add_argument(
        "--corr-memory-mb", type=int, help="alltracker's bound on a call's correlation volumes (default: its params')"
    )
    ap.add_argument("--tests-timeout", type=float, default=300, help="seconds the reference tests may take")
    ap.add_argument("--pips-chunk", type=int, default=pips.PipsParams().chunk_size, help="pips points refined at once")
    args = ap.parse_args()
    device = resolve_device(args.device)
    plan = make_plan(device, args.dry, args.batch, args.seconds, args.corr_memory_mb)
    t0 = time.perf_counter()
    tests = None if args.skip_tests else run_reference_tests(device, args.tests_timeout)
    head = header(device, plan, args.dry)
    print(f"== throughput on {head['name']}, torch {head['torch']}, batch {plan.batch}", flush=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = alltracker_rows(plan, device, folder)
        rows += raft_rows(plan, device, folder)
        rows.append(pips_row(plan, device, folder, args.pips_chunk))
        rows += train_rows(plan, device)
    head["seconds"] = round(time.perf_counter() - t0, 1)
    print("\n" + write_report(args.out, head, tests, rows), end="")
    print(f"wrote {args.out / 'gpu_check.md'} and gpu_check.json in {head['seconds']:.0f} s")
    failed = [f"{r.what} {r.precision}" for r in rows if r.error]
    if tests is not None and not tests["ok"]:
        print(f"reference tests FAILED on {device} (exit status {tests['returncode']})", file=sys.stderr)
    if failed:
        print(f"rows that failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed or (tests is not None and not tests["ok"]) else 0


if __name__ == "__main__":
    sys.exit(main())
