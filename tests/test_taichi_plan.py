"""bench/taichi_plan.py: the arithmetic of docs/gpu-scale.md (windows, store bytes, hours, sessions,
cost) and which figures it calls measured."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densemotion.trajectories.store import TrajectoryStore, write_store

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "taichi_plan.py"
SHARED_METADATA = (Path("/work/shared/taichi/taichi-metadata.csv"), REPO.parent / "shared/taichi/taichi-metadata.csv")
HEADER = "video_id,start,end,bbox,fps,width,height,partition\n"


def _load():
    spec = importlib.util.spec_from_file_location("taichi_plan", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["taichi_plan"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


plan = _load()


def _metadata(path: Path) -> Path:
    """Five clips: 7, 8, 15, 16 and 100 frames -> 0, 1, 1, 2 and 12 windows of 8 frames."""
    rows = [
        ("a", 10, 17, "train"),  # 7 frames: no window
        ("a", 100, 108, "train"),  # 8: one
        ("b", 0, 15, "test"),  # 15: one (frames 8-14 are no window)
        ("b", 20, 36, "test"),  # 16: two
        ("c", 1000, 1100, "train"),  # 100: twelve (96 frames), the last 4 frames left
    ]
    lines = [f"{v},{s},{e},1-2-30-40,29.97,640,480,{p}\n" for v, s, e, p in rows]
    path.write_text(HEADER + "".join(lines))
    return path


def test_windows_of_a_small_metadata_file(tmp_path):
    clips = plan.read_clips(_metadata(tmp_path / "meta.csv"))
    assert [frames for _, frames, _ in clips] == [7, 8, 15, 16, 100]
    got = plan.public_set(clips, "tiny")
    assert (got.clips, got.windows, got.train_windows, got.longest_windows) == (5, 16, 13, 12)
    assert [plan.count_windows(n) for n in (0, 7, 8, 9, 63, 64, 65)] == [0, 0, 1, 1, 7, 8, 8]
    assert plan.count_windows(16, window=8, stride=4) == 3  # overlapping: starts 0, 4, 8


def test_store_bytes_per_window_match_the_repos_writer(tmp_path):
    """The formula against a store the repository's own writer made: the .npy data bytes (file
    size less the header) over its windows, for a grid whose dimensions differ."""
    nw, s, hg, wg, g = 3, 8, 5, 7, 2
    rng = np.random.default_rng(0)
    meta = {
        "video": "clip", "tracker": "dis", "tracker_params": {}, "window": s, "window_stride": s,
        "grid_stride": g, "margin": 0, "tracking_size": [hg * g, wg * g], "frame_size": [hg * g, wg * g],
        "grid_shape": [hg, wg], "frames_sha256": "0" * 64, "past_end": "skip",
    }  # fmt: skip
    disp = rng.uniform(-8, 8, (nw, s, hg, wg, 2)).astype(np.float16)
    disp[:, 0] = 0
    write_store(
        tmp_path / "clip",
        meta=meta,
        frames0=rng.integers(0, 256, (nw, hg, wg, 3), dtype=np.uint8),
        disp=disp,
        vis=rng.integers(0, 256, (nw, s, hg, wg), dtype=np.uint8),
        starts=np.arange(nw, dtype=np.int64) * s,
    )
    assert len(TrajectoryStore(tmp_path / "clip")) == nw
    data = 0
    for f in sorted((tmp_path / "clip").glob("*.npy")):
        with open(f, "rb") as fh:
            np.lib.format.read_magic(fh)
            np.lib.format.read_array_header_1_0(fh)
            data += f.stat().st_size - fh.tell()
    assert {f.stem for f in (tmp_path / "clip").glob("*.npy")} == {"frames0", "disp", "vis", "starts"}
    assert data == nw * plan.store_bytes_per_window((hg, wg), window=s)
    assert plan.store_bytes_per_window((hg, wg)) == 35 * 3 + 8 * 35 * 4 + 8 * 35 + 8  # 1,513
    assert plan.store_bytes_per_window((256, 256)) == 65536 * 43 + 8
    assert plan.store_gb(1000, (64, 64)) == pytest.approx(1000 * 176_136 / 1e9)


def test_hours_sessions_and_cost_by_hand():
    assert plan.hours(16_500, 4.6) == pytest.approx(16_500 / 4.6 / 3600)  # 0.996 h: the goal
    assert plan.hours(36_000, 2.0, gpus=4) == pytest.approx(1.25)
    assert [plan.sessions(h, 11) for h in (0, 0.5, 11, 11.01, 22, 117)] == [0, 1, 1, 2, 2, 11]
    assert plan.cost(7.5, 3.0) == pytest.approx(22.5)
    shown = ["4 s", "30 min", "59.8 min", "3.2 h", "50 h (2.1 days)"]
    assert [plan.fmt_hours(h) for h in (0.001, 0.5, 0.996, 3.25, 50)] == shown


def test_without_measurements_the_goal_and_spec_sheets_are_labelled_as_assumptions():
    rates = plan.resolve_rates()
    assert list(rates) == ["H100", "A100", "L4", "T4"]
    assert not any(r.measured for r in rates.values())
    assert rates["H100"].windows_per_s == 4.6 and rates["H100"].source == "goal, not measured"
    assert rates["A100"].windows_per_s == pytest.approx(4.6 * 312 / 989)
    assert rates["T4"].windows_per_s == pytest.approx(4.6 * 65 / 989) and rates["T4"].precision == "fp16"
    assert all("not measured" in r.source for r in rates.values())


def test_gpu_kind_of_device_names():
    names = {
        "NVIDIA H100 80GB HBM3 (80 GiB, sm_90)": "H100", "NVIDIA A100-SXM4-40GB": "A100", "Tesla T4": "T4",
        "NVIDIA L4": "L4", "NVIDIA L40S": None, "NVIDIA H200 (139 GiB, sm_90)": "H200", "CPU x86_64, 2 threads": None,
    }  # fmt: skip
    assert {name: plan.gpu_kind(name) for name in names} == names


def _rows_file(path: Path, name: str, device: str = "cuda") -> Path:
    """A gpu_check.json as bench/gpu_check.py writes it: header + rows (one failed, one of another size)."""
    row = {"kind": "alltracker", "what": "alltracker, every pixel", "size": "256x256, 8 frames", "unit": "windows/s"}
    rows = [
        {**row, "precision": "fp32", "throughput": 1.0},
        {**row, "precision": "bf16", "throughput": 2.0},
        {**row, "precision": "fp16", "throughput": None, "error": "RuntimeError: boom"},
        {**row, "precision": "fp16", "throughput": 3.0, "vs_fp32": {"median_px": 0.1, "nonfinite": 12.0}},
        {**row, "size": "360x640, 8 frames", "precision": "bf16", "throughput": 9.0},
        {"kind": "raft_small", "what": "raft_small, every pixel", "size": "256x256, 8 frames", "precision": "fp32",
         "unit": "windows/s", "throughput": 50.0},
        {"kind": "train", "what": "train lraspp_mobilenet_v3_large", "size": "batch 8 of 64x64 grids",
         "precision": "bf16 autocast", "unit": "steps/s", "batch": 8, "throughput": 5.0},
    ]  # fmt: skip
    path.write_text(json.dumps({"header": {"device": device, "name": name}, "tests": None, "rows": rows}))
    return path


def test_measured_rows_override_the_assumptions(tmp_path):
    doc = plan.load_rows(_rows_file(tmp_path / "gpu_check.json", "NVIDIA A100-SXM4-40GB (40 GiB, sm_80)"))
    measured = plan.measured_tracking(doc)
    assert (measured.kind, measured.windows_per_s, measured.precision, measured.measured) == ("A100", 2.0, "bf16", True)
    rates = plan.resolve_rates(measured)
    assert rates["A100"].source.startswith("measured on NVIDIA A100")
    assert rates["H100"].windows_per_s == pytest.approx(2.0 * 989 / 312)  # scaled from the measurement, not the goal
    assert "A100's measured rate" in rates["H100"].source and not rates["H100"].measured
    samples, what, gpu = plan.measured_training(doc)
    assert samples == 40.0 and "measured on NVIDIA A100" in what and gpu
    given = plan.resolve_rates(measured, {"l4": 0.25})  # --gpu-rate wins for its kind
    assert given["L4"].windows_per_s == 0.25 and given["L4"].measured and given["H100"].windows_per_s > 6
    assert plan.measured_tracking(plan.load_rows(tmp_path / "absent.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert plan.load_rows(tmp_path / "bad.json") is None
    assert plan.measured_tracking({"rows": "not a list"}) is None


def test_rows_from_a_cpu_run_do_not_count_as_a_gpu(tmp_path):
    doc = plan.load_rows(_rows_file(tmp_path / "cpu.json", "CPU x86_64, 2 threads", device="cpu"))
    measured = plan.measured_tracking(doc)
    assert measured.measured and not measured.gpu
    rates = plan.resolve_rates(measured)
    assert list(rates) == ["H100", "A100", "L4", "T4"] and rates["H100"].source == "goal, not measured"
    text = plan.report(
        [plan.WindowSet("users", 132, 16_500)], rates, plan.EXAMPLE_PRICES, (), plan.measured_training(doc)
    )
    assert text.startswith("No GPU figure here is measured")
    assert "measured on CPU x86_64, 2 threads (--rows)" in text and "- On a GPU: not measured" in text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_cli_prints_every_table(tmp_path):
    meta = _metadata(tmp_path / "meta.csv")
    out = _cli("--metadata", str(meta), "--rows", str(tmp_path / "missing.json"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "missing.json is missing or unreadable" in out.stderr
    assert text.startswith("No GPU figure here is measured")
    for heading in ("### Inputs", "### (i) ", "### (ii) ", "### (iii) Colab", "### (iv) Cost", "### (v) Storage",
                    "### Training an epoch"):  # fmt: skip
        assert heading in text
    assert "| H100 | 256x256 | bf16 | 4.6 | 989 (H100 SXM, bf16) | goal, not measured |" in text
    assert "| users' 132 clips | T4 | 15 h | 2 | 11,972 | 4.2 h |" in text  # 16,500 / (4.6 * 65 / 989) s
    assert "| every pixel | 256x256 | grid_stride 1 | 2,818,056 | 46.5 GB | 45 MB |" in text  # 5 clips, 16 windows
    assert "| all 5 TaiChi-HD clips | H100 | 3 s | 2 s | 1 s | 0 s |" in text
    assert "$3.00 (example)" in text and "measured on 2 CPU cores, 4.2 s/window (256x256)" in text
    assert "- On a GPU: not measured" in text
    tables = [line for line in text.splitlines() if line.startswith("|---")]
    assert len(tables) == 6


def test_cli_with_rows_and_rates_says_measured(tmp_path):
    rows = _rows_file(tmp_path / "gpu_check.json", "NVIDIA H100 80GB HBM3 (80 GiB, sm_90)")
    out = _cli("--rows", str(rows), "--gpu-rate", "T4=0.5", "--price", "h100=2.4", "--user-windows", "7200")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("GPU figures measured: H100 (measured on NVIDIA H100")
    assert "| H100 | 256x256 | bf16 | 2 | 989 (H100 SXM, bf16) | measured on NVIDIA H100" in text
    assert "| T4 | 256x256 |  | 0.5 | 65 (T4, fp16: it has no bf16) | measured (--gpu-rate) |" in text
    assert "| H100 | $2.40 (--price) | 1.0 h, $2 |" in text  # 7,200 windows at 2/s: 1 h
    assert "40.0 samples/s (train lraspp_mobilenet_v3_large" in text
    assert "- On a GPU: not measured" not in text
    assert _cli("--gpu-rate", "T4").returncode == 2
    doc = json.loads(rows.read_text())
    doc["header"]["dry"] = True  # gpu_check.py --dry: tiny sizes, not a measurement
    rows.write_text(json.dumps(doc))
    dry = _cli("--rows", str(rows))
    assert dry.stdout.startswith("No GPU figure here is measured") and "--dry run's rows" in dry.stderr


def test_the_published_metadata_when_present():
    path = next((p for p in SHARED_METADATA if p.is_file()), None)
    if path is None:
        pytest.skip("taichi-metadata.csv is not in ../shared/taichi/ (a data file kept outside the repository)")
    got = plan.public_set(plan.read_clips(path))
    assert (got.clips, got.windows) == (3334, 127_744)
