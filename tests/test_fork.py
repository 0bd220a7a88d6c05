"""The suite tests the code, not the current experiment: it passes on a fork set to its own videos.

A user forks the repository, runs ``use-videos`` on their TaiChi folder (DVC-tracked, so a fresh
CI clone does not have it), switches to PIPs, and pushes: their CI runs this same suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, moving_frames

pytestmark = pytest.mark.slow


def _fork(dest) -> None:
    """The repository's tracked and new files, as a clone has them (no outputs)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "metrics/", "dvc_plots/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_quick_suite_passes_on_a_fork_set_to_other_videos_and_pips(tmp_path):
    from densemotion.params import load_params
    from densemotion.video import encode_video

    fork = tmp_path / "fork"
    _fork(fork)
    raw = fork / "data" / "raw" / "taichi"
    raw.mkdir(parents=True)
    for i in range(3):
        encode_video(raw / f"clip{i}.mp4", moving_frames(10, 64, 96, seed=i), 24)
    env = {**os.environ, "PYTHONPATH": str(fork / "src")}
    subprocess.run([sys.executable, "-m", "densemotion", "use-videos", "data/raw/taichi"], cwd=fork, env=env,
                   check=True, capture_output=True)  # fmt: skip
    shutil.rmtree(raw)  # DVC-tracked: not in a fresh clone until `dvc pull`
    raw_params = yaml.safe_load((fork / "params.yaml").read_text())
    raw_params["trajectories"].update(tracker="pips", resolution=[96, 160], window=4)
    raw_params["frames"]["min_frames"] = 4
    raw_params["train"]["split_group"] = r"^(clip)\d"
    (fork / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    fork_params = load_params(fork / "params.yaml")
    assert set(fork_params.data.videos) == {"clip0", "clip1", "clip2"}
    assert fork_params.trajectories.tracker == "pips"

    # the suite's params fixture, run inside the fork, is still the sample's
    probe = subprocess.run(
        [sys.executable, "-c", "from conftest import sample_params_dict as s; p = s(); "
         "print(sorted(p['data']['videos']), p['trajectories']['tracker'])"],
        cwd=fork / "tests", env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.split("]")[1].strip() == "dis"
    assert "'sample00'" in probe.stdout and "clip0" not in probe.stdout

    # and the quick suite passes there
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", "tests"],
        cwd=fork, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
