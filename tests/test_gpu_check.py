"""bench/gpu_check.py, the one prepared GPU check, in its dry mode on the CPU (tiny sizes, no
reference tests): every row is made, timed and written to its markdown and JSON reports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

EXPECTED = {  # (kind, variant) of every row of a dry run
    ("alltracker", "fp32"),
    ("alltracker", "bf16"),
    ("raft_small", "fp32"),
    ("pips", "fp32"),
    ("train", "fp32"),
    ("train", "amp"),
    ("train", "channels_last"),
}


def finite_positive(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_dry_run_writes_every_row(tmp_path):
    path = [str(REPO / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    env.pop("OUT", None)
    cmd = [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry", "--device", "cpu", "--skip-tests"]
    proc = subprocess.run([*cmd, "--out", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md, data = (tmp_path / "gpu_check.md").read_text(), json.loads((tmp_path / "gpu_check.json").read_text())
    rows = {(r["kind"], r["variant"]): r for r in data["rows"]}
    assert set(rows) == EXPECTED and len(data["rows"]) == len(EXPECTED)
    for key, row in rows.items():
        assert row["error"] is None, (key, row["error"])
        assert finite_positive(row["throughput"]) and finite_positive(row["seconds_per_call"]), key
        assert row["peak_memory_mb"] is None and row["calls"] >= 1, key  # a CPU: no CUDA peak
    bf16 = rows["alltracker", "bf16"]["vs_fp32"]
    assert math.isfinite(bf16["median_px"]) and math.isfinite(bf16["p99_px"]) and bf16["nonfinite"] == 0
    assert 0 <= bf16["median_px"] <= bf16["p99_px"]
    assert finite_positive(rows["train", "amp"]["vs_fp32"]["speedup"])
    assert rows["alltracker", "fp32"]["batch"] == 2 and rows["pips", "fp32"]["unit"] == "points/s"
    assert data["header"]["dry"] is True and data["header"]["device"] == "cpu" and data["tests"] is None
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0] == "| what | size | precision | throughput | vs fp32 | peak memory |"
    assert len(table) == 2 + len(EXPECTED) and all(line.endswith("| n/a |") for line in table[2:])
    assert "windows/s" in md and "points/s" in md and "steps/s" in md and "dry run" in md
    assert table[0] in proc.stdout  # printed too


def test_the_shell_wrapper_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")]).returncode == 0
