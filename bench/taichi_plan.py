"""TaiChi at scale on paper: time, cost and remote storage of tracking every pixel, from measured rows.

    .venv/bin/python bench/taichi_plan.py --metadata taichi-metadata.csv [--rows gpu_check.json]
        [--user-windows 16500] [--gpu-rate NAME=WIN_PER_S ...] [--price NAME=USD_PER_H ...]
        [--session-hours 12] [--usable-hours 11] [--user-frames-gb 5.8]

Prints the tables of docs/gpu-scale.md as markdown. Inputs:

- ``--metadata``: TaiChi-HD's clip list (``video_id,start,end,bbox,fps,width,height,partition``);
  a clip has ``end - start`` frames and ``floor(frames / 8)`` non-overlapping 8-frame windows
  (the trajectories stage's default ``window: 8``, ``window_stride: null``; windows past the end
  are skipped). Without it the public set's rows are left out.
- ``--user-windows``: the users' 132 clips, ~16.5k windows (their ~5.8 GB of 256x256 JPEG
  frames; the figure the issue gives and docs/trackers.md uses). Their clips are longer than the
  public median, so they are not 132 clips of the public set.
- ``--rows``: ``gpu_check.json`` as bench/gpu_check.py writes it (``{"header": {...}, "rows":
  [...]}``): its fastest ``alltracker`` row at 256x256 in windows/s, and its fastest ``train``
  row in steps/s (x its batch = samples/s), are measurements on the device it names. A missing
  file or rows fall back to the assumptions below, each labelled as one.
- ``--gpu-rate NAME=WIN_PER_S``: a measured every-pixel 256x256 rate for a GPU kind (repeatable).

Assumptions, never measurements: the goal rate (4.6 windows/s on one H100 at 256x256: the users'
clips in under an hour), and other GPUs scaled from the reference one by the ratio of their dense
bf16/fp16 tensor TFLOP/s on the vendors' spec sheets (:data:`SPEC_TFLOPS`). The 2-core CPU rows
are measured (docs/trackers.md, "AllTracker speed and memory").
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WINDOW = 8  # frames a window (trajectories.window)
SIZE = "256x256"  # TaiChi-HD's published crops
GOAL_RATE = 4.6  # windows/s every pixel at 256x256 on one H100: 16.5k windows in just under an hour
REFERENCE = "H100"
USER_CLIPS = 132
USER_WINDOWS = 16_500  # the issue's figure for the users' 132 clips (their ~5.8 GB of 256x256 JPEGs)
USER_FRAMES_GB = 5.8  # the users' frames archives, as the issue gives them
SESSION_HOURS = 12.0  # a Colab session's limit
USABLE_HOURS = 11.0  # of which assumed left for tracking after set-up and dvc pull
GPU_COUNTS = (1, 2, 4, 8)  # torchrun --nproc-per-node
COLAB_KINDS = ("T4", "L4", "A100")
# dense (no sparsity) tensor TFLOP/s from the vendors' spec sheets: bf16, or fp16 where the GPU has no bf16
SPEC_TFLOPS = {"H100": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0}
SPEC_NOTES = {
    "H100": "H100 SXM, bf16",
    "A100": "A100, bf16",
    "L4": "L4, bf16/fp16",
    "T4": "T4, fp16: it has no bf16",
    "H200": "H200 SXM, bf16: the H100's compute",
}
NO_BF16 = ("T4",)  # Turing: autocast fp16 there
OTHER_TFLOPS = {"H200": 989.0}  # kinds a rows file may name, to scale the table's kinds from
EXAMPLE_PRICES = {"H100": 3.0, "A100": 1.5, "L4": 0.8, "T4": 0.35}  # USD per GPU-hour, on demand, examples
CPU_RATES = (  # docs/trackers.md, "AllTracker speed and memory": s/window every pixel, 2 cores
    ("256x256", "fp32", 5.7),
    ("256x256", "bf16", 4.2),
    ("360x640", "fp32", 35.0),
    ("360x640", "bf16", 21.4),
)
CPU_TRAIN = 16.8  # samples/s, lraspp_mobilenet_v3_large, one thread, 32x56 grid (docs/training.md, "Speed")
GRIDS = (  # name, (Hg, Wg), how the trajectories stage makes it from 256x256 crops
    ("every pixel", (256, 256), "grid_stride 1"),
    ("every 2 px", (128, 128), "grid_stride 2"),
    ("every 4 px (the default)", (64, 64), "grid_stride 4"),
    ("100x100", (100, 100), "resolution [400, 400], grid_stride 4"),
)


@dataclass(frozen=True)
class Rate:
    """Every-pixel tracking throughput of one kind of device, and where the figure comes from."""

    kind: str  # H100, A100, L4, T4, CPU ...
    windows_per_s: float
    source: str  # how it was had: measured, goal, scaled
    measured: bool
    precision: str = ""
    gpu: bool = True  # a GPU's figure (a rows file may come from a CPU run of gpu_check)


@dataclass(frozen=True)
class WindowSet:
    """A set of clips to track: its name, clips and windows (and the training partition's windows)."""

    name: str
    clips: int
    windows: int
    train_windows: int | None = None  # the metadata's train partition; None: not known
    longest_windows: int | None = None  # the longest clip's windows: the most a rank can be given


# ---- windows --------------------------------------------------------------------------------------


def count_windows(frames: int, window: int = WINDOW, stride: int | None = None) -> int:
    """Windows of a clip of ``frames`` frames: starts 0, stride, ... whose window fits
    (densemotion.tracking.grid.window_starts); ``stride`` None is ``window`` (non-overlapping)."""
    stride = window if stride is None else stride
    return 0 if frames < window else (frames - window) // stride + 1


def read_clips(path: str | Path) -> list[tuple[str, int, str]]:
    """(video_id, frames, partition) of each row of a TaiChi metadata CSV; frames = end - start."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["video_id"], int(r["end"]) - int(r["start"]), r["partition"]) for r in csv.DictReader(f)]


def public_set(clips: Sequence[tuple[str, int, str]], name: str = "TaiChi-HD") -> WindowSet:
    """The WindowSet of the metadata's clips (train_windows: the ``train`` partition's)."""
    counts = [count_windows(frames) for _, frames, _ in clips]
    train = sum(n for n, (_, _, part) in zip(counts, clips, strict=True) if part == "train")
    return WindowSet(name, len(clips), sum(counts), train, max(counts, default=0))


# ---- time, sessions, cost, bytes ------------------------------------------------------------------


def hours(windows: int, windows_per_s: float, gpus: int = 1) -> float:
    """Wall-clock hours for ``windows`` on ``gpus`` devices of ``windows_per_s`` each, the videos
    shared out perfectly (linear scaling: an assumption, bounded by the longest clip)."""
    return windows / (windows_per_s * gpus) / 3600.0


def sessions(total_hours: float, usable_hours: float = USABLE_HOURS) -> int:
    """Sessions of ``usable_hours`` of tracking each that ``total_hours`` of work needs."""
    return max(1, math.ceil(total_hours / usable_hours - 1e-9)) if total_hours > 0 else 0


def cost(gpu_hours: float, usd_per_hour: float) -> float:
    return gpu_hours * usd_per_hour


def store_bytes_per_window(grid_shape: tuple[int, int], window: int = WINDOW) -> int:
    """Array bytes a window adds to a schema-1 trajectory store (densemotion.trajectories.store):
    frames0 (Hg, Wg, 3) uint8 + disp (S, Hg, Wg, 2) float16 + vis (S, Hg, Wg) uint8 + starts int64."""
    hg, wg = grid_shape
    points = hg * wg
    return points * 3 + window * points * 2 * 2 + window * points + 8


def store_gb(windows: int, grid_shape: tuple[int, int], window: int = WINDOW) -> float:
    """GB (1e9 bytes) of the stores of ``windows`` windows (the .npy headers and meta.json, a few
    KB a video, left out)."""
    return windows * store_bytes_per_window(grid_shape, window) / 1e9


# ---- rates ---------------------------------------------------------------------------------------


def load_rows(path: str | Path | None) -> dict[str, Any] | None:
    """A gpu_check.json document, or None when there is no path, no file, or no readable JSON object."""
    if path is None:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _header(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    header = doc.get("header")
    return header if isinstance(header, dict) else {}


def is_dry(doc: Mapping[str, Any]) -> bool:
    """Rows of ``gpu_check.py --dry`` (tiny sizes, one call a row): code paths, no measurement."""
    return _header(doc).get("dry") is True


def on_gpu(doc: Mapping[str, Any]) -> bool:
    """The rows were measured on a CUDA device (a rows file may come from a CPU run)."""
    name = device_name(doc)
    return gpu_kind(name) is not None or "cuda" in {doc.get("device"), _header(doc).get("device")} or "NVIDIA" in name


def device_name(doc: Mapping[str, Any]) -> str:
    """What the rows were measured on: the header's name, else any device field."""
    header = _header(doc)
    for value in (header.get("name"), doc.get("name"), doc.get("device"), header.get("device")):
        if isinstance(value, str) and value:
            return value
    return "unknown device"


def gpu_kind(name: str) -> str | None:
    """The GPU kind a device name is of (``NVIDIA H100 80GB HBM3`` -> H100), None for a CPU or other."""
    for kind in (*SPEC_TFLOPS, *OTHER_TFLOPS):
        if re.search(rf"(?<![A-Za-z0-9]){kind}(?![0-9])", name, re.IGNORECASE):
            return kind
    return None


def _rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = doc.get("rows")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def _is(row: Mapping[str, Any], what: str) -> bool:
    return str(row.get("kind") or row.get("what") or "").strip().lower().startswith(what)


def measured_tracking(doc: Mapping[str, Any] | None, size: str = SIZE) -> Rate | None:
    """The fastest every-pixel alltracker row of ``size`` in windows/s of a rows document (rows that
    failed or whose tracks went non-finite left out), as a Rate of the device it names (kind: the
    GPU kind, else the device name); None without one."""
    if doc is None:
        return None
    best: tuple[float, str] | None = None
    for row in _rows(doc):
        rate = _number(row.get("throughput"))
        if not (_is(row, "alltracker") and str(row.get("size", "")).startswith(size)) or rate is None:
            continue
        vs = row.get("vs_fp32") if isinstance(row.get("vs_fp32"), dict) else {}
        if str(row.get("unit", "windows/s")) != "windows/s" or row.get("error") or (vs.get("nonfinite") or 0) > 0:
            continue  # a failed row, or a precision whose tracks went non-finite, is no rate
        if best is None or rate > best[0]:
            best = (rate, str(row.get("precision", "")))
    if best is None:
        return None
    name = device_name(doc)
    return Rate(gpu_kind(name) or name, best[0], f"measured on {name} (--rows)", True, best[1], on_gpu(doc))


def measured_training(doc: Mapping[str, Any] | None) -> tuple[float, str, bool] | None:
    """(samples/s, what, on a GPU) of the fastest training row of a rows document: steps/s x its batch."""
    if doc is None:
        return None
    best: tuple[float, str, bool] | None = None
    for row in _rows(doc):
        steps = _number(row.get("throughput"))
        if not _is(row, "train") or steps is None or str(row.get("unit", "steps/s")) != "steps/s":
            continue
        batch = int(row.get("batch") or 1)
        samples = steps * batch
        what = f"{row.get('what', 'train')}, {row.get('size', '')}, {row.get('precision', '')}".strip(", ")
        if best is None or samples > best[0]:
            best = (samples, f"{what}; measured on {device_name(doc)} (--rows)", on_gpu(doc))
    return best


def resolve_rates(
    measured: Rate | None = None,
    overrides: Mapping[str, float] | None = None,
    kinds: Iterable[str] = SPEC_TFLOPS,
) -> dict[str, Rate]:
    """A Rate per GPU kind: its own measurement where there is one (``--gpu-rate`` over ``--rows``),
    the others scaled by spec-sheet TFLOP/s from the reference: the rows' GPU, else the first
    ``--gpu-rate`` of a kind with a spec (H100 first), else the goal on an H100. A GPU of no known
    spec keeps a row of its own; rows measured on a CPU are left out (the CPU rows are docs')."""
    overrides = {k.upper(): v for k, v in (overrides or {}).items()}
    measured = measured if measured is not None and measured.gpu else None  # a CPU's rows: no GPU figure
    own: dict[str, Rate] = {}
    if measured is not None:
        own[measured.kind] = measured
    for kind, rate in overrides.items():
        own[kind] = Rate(kind, rate, "measured (--gpu-rate)", True)
    tflops = {**SPEC_TFLOPS, **OTHER_TFLOPS}
    with_spec = [k for k in own if k in tflops]
    if measured is not None and measured.kind in tflops and measured.kind not in overrides:
        ref = own[measured.kind]
    elif with_spec:
        ref = own[REFERENCE] if REFERENCE in own else own[with_spec[0]]
    else:
        ref = Rate(REFERENCE, GOAL_RATE, "goal, not measured", False, "bf16")
    table = [*kinds, *(k for k in own if k not in kinds)]
    out: dict[str, Rate] = {}
    for kind in table:
        if kind in own:
            out[kind] = own[kind]
        elif kind == ref.kind:
            out[kind] = ref
        elif kind in tflops and ref.kind in tflops:
            scaled = ref.windows_per_s * tflops[kind] / tflops[ref.kind]
            base = "the goal" if not ref.measured else f"{ref.kind}'s measured rate"
            precision = "fp16" if kind in NO_BF16 else ref.precision
            out[kind] = Rate(kind, scaled, f"scaled from {base} by spec sheets, not measured", False, precision)
    return out


def cpu_rates() -> list[Rate]:
    """The measured 2-core CPU rows (docs/trackers.md), one per size and precision."""
    return [
        Rate("CPU, 2 cores", 1.0 / s, f"measured on 2 CPU cores, {s} s/window ({size})", True, precision, False)
        for size, precision, s in CPU_RATES
    ]


# ---- markdown ------------------------------------------------------------------------------------


def fmt_hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min" if h * 60 >= 59.5 else f"{h * 60:.0f} min"
    text = f"{h:.1f} h" if h < 10 else f"{h:,.0f} h"
    return text + (f" ({h / 24:.1f} days)" if h >= 48 else "")


def fmt_gb(gb: float) -> str:
    return f"{gb:,.0f} GB" if gb >= 100 else f"{gb:.1f} GB" if gb >= 1 else f"{gb * 1000:.0f} MB"


def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def rates_table(rates: Mapping[str, Rate]) -> list[str]:
    rows = []
    for rate in rates.values():
        spec = SPEC_TFLOPS.get(rate.kind, OTHER_TFLOPS.get(rate.kind))
        spec_text = f"{spec:.0f} ({SPEC_NOTES.get(rate.kind, '')})" if spec else ""
        rows.append((rate.kind, SIZE, rate.precision, f"{rate.windows_per_s:.3g}", spec_text, rate.source))
    for (size, _, _), rate in zip(CPU_RATES, cpu_rates(), strict=True):
        rows.append((rate.kind, size, rate.precision, f"{rate.windows_per_s:.3g}", "", rate.source))
    return table(("device", "size", "precision", "windows/s", "dense TFLOP/s (spec sheet)", "figure"), rows)


def gpu_time_table(sets: Sequence[WindowSet], rates: Mapping[str, Rate]) -> list[str]:
    cpu = [rate for (size, _, _), rate in zip(CPU_RATES, cpu_rates(), strict=True) if size == SIZE]
    rows = []
    for rate in [*rates.values(), *cpu]:
        label = f"{rate.kind} ({rate.precision})" if rate in cpu else rate.kind
        rows.append((label, *(fmt_hours(hours(s.windows, rate.windows_per_s)) for s in sets), rate.source))
    return table(("device", *(f"{s.name} ({s.windows:,} windows)" for s in sets), "figure"), rows)


def torchrun_table(sets: Sequence[WindowSet], rates: Mapping[str, Rate]) -> list[str]:
    rows = []
    for s in sets:
        for rate in rates.values():
            cells = [fmt_hours(hours(s.windows, rate.windows_per_s, k)) for k in GPU_COUNTS]
            rows.append((s.name, rate.kind, *cells))
    return table(("set", "GPU", *(f"{k} GPU{'s' if k > 1 else ''}" for k in GPU_COUNTS)), rows)


def colab_table(sets: Sequence[WindowSet], rates: Mapping[str, Rate], usable: float) -> list[str]:
    rows = []
    for s in sets:
        for kind in COLAB_KINDS:
            if kind not in rates:
                continue
            h = hours(s.windows, rates[kind].windows_per_s)
            n = sessions(h, usable)
            per_session = rates[kind].windows_per_s * usable * 3600
            last = h - (n - 1) * usable
            rows.append(
                (s.name, kind, fmt_hours(h), n, f"{per_session:,.0f}", fmt_hours(last), rates[kind].source)
            )  # fmt: skip
    head = ("set", "Colab GPU", "tracking", f"sessions ({usable:g} h each)", "windows a session", "last session",
            "figure")  # fmt: skip
    return table(head, rows)


def cost_table(
    sets: Sequence[WindowSet], rates: Mapping[str, Rate], prices: Mapping[str, float], given: Iterable[str] = ()
) -> list[str]:
    """GPU-hours and their cost per kind with a price; ``given``: the kinds priced by --price."""
    given = set(given)
    rows = []
    for rate in rates.values():
        if rate.kind not in prices:
            continue
        gpu_h = [hours(s.windows, rate.windows_per_s) for s in sets]
        money = [f"{fmt_hours(h)}, ${cost(h, prices[rate.kind]):,.0f}" for h in gpu_h]
        price = f"${prices[rate.kind]:.2f} ({'--price' if rate.kind in given else 'example'})"
        rows.append((rate.kind, price, *money))
    return table(("GPU", "USD per GPU-hour", *(f"{s.name}: GPU-hours, cost" for s in sets)), rows)


def storage_table(sets: Sequence[WindowSet]) -> list[str]:
    rows = []
    for name, shape, how in GRIDS:
        per = store_bytes_per_window(shape)
        sizes = [fmt_gb(store_gb(s.windows, shape)) for s in sets]
        rows.append((name, f"{shape[0]}x{shape[1]}", how, f"{per:,}", *sizes))
    return table(("grid", "Hg x Wg", "params", "bytes a window", *(s.name for s in sets)), rows)


def frames_gb(s: WindowSet, users: WindowSet, user_gb: float) -> float:
    """Frames archives of ``s``, scaled by windows (frames) from the users' ``user_gb`` for ``users``."""
    return user_gb * s.windows / users.windows


def epoch_lines(sets: Sequence[WindowSet], train: tuple[float, str, bool] | None) -> list[str]:
    """An epoch's time per set: at the rows' training rate, else the 2-core CPU's (GPU unmeasured)."""
    lines = []
    for s in sets:
        n = s.train_windows if s.train_windows is not None else s.windows
        which = "its train partition" if s.train_windows is not None else "all of its windows, an upper bound"
        if train is not None:
            rate, where, _ = train
        else:
            rate = CPU_TRAIN
            where = "one CPU thread, lraspp_mobilenet_v3_large at the sample's 32x56 grid, docs/training.md"
        lines.append(f"- {s.name}: {n:,} samples ({which}): {fmt_hours(n / rate / 3600)} an epoch at {rate:,.1f} "
                     f"samples/s ({where}).")  # fmt: skip
    if train is None or not train[2]:
        lines.append("- On a GPU: not measured (no GPU lent; bench/gpu_check.py's train rows will give it).")
    return lines


def report(
    sets: Sequence[WindowSet],
    rates: Mapping[str, Rate],
    prices: Mapping[str, float],
    given_prices: Iterable[str],
    train: tuple[float, str, bool] | None,
    usable: float = USABLE_HOURS,
    session: float = SESSION_HOURS,
    user_frames_gb: float = USER_FRAMES_GB,
) -> str:
    """The whole markdown: inputs, then tables (i) to (v) and the epoch line."""
    measured = [r for r in rates.values() if r.measured and r.gpu]
    status = (
        "GPU figures measured: " + ", ".join(f"{r.kind} ({r.source})" for r in measured)
        if measured
        else "No GPU figure here is measured: the H100 row is the goal, the others are scaled from it by spec sheets."
    )
    out = [status, "", "### Inputs: every pixel of an 8-frame window", "", *rates_table(rates), ""]
    out += ["### (i) One device, every pixel at 256x256", "", *gpu_time_table(sets, rates), ""]
    out += ["### (ii) K GPUs under torchrun (videos sharded; scaling assumed linear in K)", ""]
    out += [*torchrun_table(sets, rates), ""]
    longest = [s for s in sets if s.longest_windows]
    if longest:
        ref = next(iter(rates.values()))
        out += ["; ".join(f"The longest clip of {s.name} is {s.longest_windows:,} windows "
                          f"({fmt_hours(hours(s.longest_windows, ref.windows_per_s))} on one {ref.kind})"
                          for s in longest) + ": no rank can finish sooner than that.", ""]  # fmt: skip
    out += [f"### (iii) Colab: a session is {session:g} h, {usable:g} h of it assumed left for tracking", ""]
    out += [*colab_table(sets, rates, usable), ""]
    out += ["### (iv) Cost, one GPU (example on-demand prices unless given by --price: check your provider)", ""]
    out += [*cost_table(sets, rates, prices, given_prices), ""]
    out += ["K GPUs cost the same GPU-hours under linear scaling.", ""]
    out += ["### (v) Storage in the remote, per grid (trajectory stores)", "", *storage_table(sets), ""]
    users = sets[0]
    frames = ", ".join(f"{s.name} {fmt_gb(frames_gb(s, users, user_frames_gb))}" for s in sets)
    out += [f"Frames archives (JPEG, 256x256): {frames} (the users' figure, scaled by windows for the others).", ""]
    out += ["### Training an epoch (every window is one sample)", "", *epoch_lines(sets, train)]
    return "\n".join(out) + "\n"


def parse_pairs(items: Sequence[str], what: str) -> dict[str, float]:
    """``NAME=NUMBER`` items -> {NAME (upper case): number}; a malformed item is an error naming it."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or not name.strip() or not math.isfinite(number) or number <= 0:
            raise argparse.ArgumentTypeError(f"{what} {item!r}: expected NAME=POSITIVE_NUMBER")
        out[name.strip().upper()] = number
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metadata", type=Path, help="taichi-metadata.csv (the 3,334 public clips)")
    ap.add_argument("--rows", type=Path, help="gpu_check.json of bench/gpu_check.py (measured rows)")
    ap.add_argument("--user-windows", type=int, default=USER_WINDOWS, help="windows of the users' 132 clips")
    ap.add_argument("--user-frames-gb", type=float, default=USER_FRAMES_GB, help="their frames archives, GB")
    ap.add_argument("--gpu-rate", action="append", default=[], metavar="NAME=WIN_PER_S", help="a measured rate")
    ap.add_argument("--price", action="append", default=[], metavar="NAME=USD_PER_H", help="a GPU-hour's price")
    ap.add_argument("--session-hours", type=float, default=SESSION_HOURS)
    ap.add_argument("--usable-hours", type=float, default=USABLE_HOURS)
    args = ap.parse_args(argv)
    try:
        overrides = parse_pairs(args.gpu_rate, "--gpu-rate")
        given_prices = parse_pairs(args.price, "--price")
    except argparse.ArgumentTypeError as err:
        ap.error(str(err))
    sets = [WindowSet(f"users' {USER_CLIPS} clips", USER_CLIPS, args.user_windows)]
    if args.metadata is not None:
        clips = read_clips(args.metadata)
        sets.append(public_set(clips, f"all {len(clips):,} TaiChi-HD clips"))
    doc = load_rows(args.rows)
    if args.rows is not None and doc is None:
        print(f"note: {args.rows} is missing or unreadable: assumptions only", file=sys.stderr)
    if doc is not None and is_dry(doc):
        print(f"note: {args.rows} holds a --dry run's rows (tiny sizes), no measurement: left out", file=sys.stderr)
        doc = None
    rates = resolve_rates(measured_tracking(doc), overrides)
    prices = {**EXAMPLE_PRICES, **given_prices}
    train = measured_training(doc)
    print(report(sets, rates, prices, given_prices, train, args.usable_hours, args.session_hours, args.user_frames_gb),
          end="")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
