"""Past one machine: torchrun's environment, the split of videos across ranks, and tracking under
`torchrun --nproc-per-node=2` on the CPU (gloo), byte-identical to one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from densemotion.runtime import DeviceError, Rank, rank_from_env
from densemotion.trajectories.shard import balanced_shards

from conftest import moving_frames, sample_params_dict
from test_trajectories_run import _write_archive

TORCHRUN = Path(sys.executable).parent / "torchrun"


def test_rank_comes_from_torchruns_environment():
    assert rank_from_env({}) == Rank(0, 1, 0)
    assert rank_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Rank(3, 4, 1)
    assert not rank_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}).is_main
    with pytest.raises(DeviceError, match="must be integers"):
        rank_from_env({"RANK": "x"})
    with pytest.raises(DeviceError, match="inconsistent"):
        rank_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_shards_are_balanced_largest_first_and_the_same_everywhere():
    counts = {"a": 100, "b": 90, "c": 50, "d": 40, "e": 10}
    shards = balanced_shards(counts, 2)
    assert shards == [["a", "d", "e"], ["b", "c"]]  # 150 and 140 frames
    assert balanced_shards(dict(reversed(counts.items())), 2) == shards  # order of the mapping is irrelevant
    assert sorted(sum(balanced_shards(counts, 3), [])) == sorted(counts)  # every video exactly once
    assert balanced_shards({"a": 5}, 3) == [["a"], [], []]  # more ranks than videos: idle ranks
    assert balanced_shards({"b": 5, "a": 5}, 2) == [["a"], ["b"]]  # ties by name, then by rank
    with pytest.raises(ValueError, match="world_size"):
        balanced_shards(counts, 0)


def _project(root: Path, sizes: dict[str, int]) -> Path:
    """A folder with params.yaml (dis, CPU) and one frames archive per video (different lengths)."""
    raw = sample_params_dict()
    raw["data"]["videos"] = {v: f"x/{v}.mp4" for v in sizes}
    raw["frames"]["min_frames"] = 4
    raw["trajectories"].update({"device": "cpu", "window": 4, "grid_stride": 8, "chunk_windows": 2, "tracker": "dis"})
    (root / "data" / "frames").mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    for seed, (video, n) in enumerate(sorted(sizes.items())):
        _write_archive(root / "data" / "frames" / f"{video}.zip", moving_frames(n, 48, 64, seed=seed), video)
    return root


def _run(cwd: Path, *args: str, ranks: int | None = None) -> subprocess.CompletedProcess:
    launcher = [str(TORCHRUN), "--standalone", f"--nproc-per-node={ranks}"] if ranks else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*launcher, "-m", "densemotion", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_ranks_track_the_same_bytes_as_one_process_and_a_rerun_does_nothing(tmp_path):
    sizes = {"long": 16, "mid": 12, "short": 8}
    alone = _project(tmp_path / "alone", sizes)
    pair = _project(tmp_path / "pair", sizes)
    one = _run(alone, "trajectories-all")
    assert one.returncode == 0, one.stderr
    two = _run(pair, "trajectories-all", ranks=2)
    assert two.returncode == 0, two.stdout + two.stderr
    assert "rank 0/2: data/trajectories/long" in two.stdout and "rank 1/2: data/trajectories/mid" in two.stdout
    stores = _files(pair / "data" / "trajectories")
    assert stores == _files(alone / "data" / "trajectories")
    assert {Path(name).parts[0] for name in stores} == set(sizes)
    assert not (pair / "data" / "work" / "trajectories").exists() or not any(
        (pair / "data" / "work" / "trajectories").rglob("*.npz")
    )  # finished chunks removed
    again = _run(pair, "trajectories-all", ranks=2)
    assert again.returncode == 0 and again.stdout.count("up to date") == 3, again.stdout
    assert _files(pair / "data" / "trajectories") == stores


@pytest.mark.slow
def test_more_ranks_than_videos_and_a_missing_archive(tmp_path):
    project = _project(tmp_path, {"only": 8})
    three = _run(project, "trajectories-all", ranks=3)
    assert three.returncode == 0, three.stdout + three.stderr
    assert three.stdout.count("no video to track (more ranks than videos)") == 2
    shutil.rmtree(project / "data" / "trajectories")
    (project / "data" / "frames" / "only.zip").unlink()
    gone = _run(project, "trajectories-all")
    assert gone.returncode != 0 and "no frames archive for only" in gone.stderr


@pytest.mark.slow
def test_ranks_that_disagree_are_refused(tmp_path):
    script = tmp_path / "disagree.py"
    script.write_text(
        "import os\n"
        "from densemotion.runtime import agree, distributed\n"
        "with distributed('cpu') as rank:\n"
        "    agree('params-' + os.environ['RANK'], 'the params')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node=2", str(script)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode != 0 and "disagree on the params (ranks [1] differ from rank 0)" in out.stderr


def test_alone_the_command_tracks_every_listed_video_and_skips_finished_stores(tmp_path, monkeypatch, capsys):
    """Without torchrun (rank 0 of 1, no process group), in this process."""
    from densemotion.cli import trajectories_all

    project = _project(tmp_path, {"a": 8, "b": 12})
    monkeypatch.chdir(project)
    assert trajectories_all.main([]) == 0
    assert "2 videos tracked into data/trajectories by 1 process(es)" in capsys.readouterr().out
    first = _files(project / "data" / "trajectories")
    assert {Path(name).parts[0] for name in first} == {"a", "b"}
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["trajectories"]["grid_stride"] = 16  # other params: b's store is no longer current
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert trajectories_all.main([]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert _files(project / "data" / "trajectories") != first
    assert trajectories_all.main([]) == 0
    assert capsys.readouterr().out.count("up to date") == 2


def test_agree_and_barrier_in_a_group_of_one(monkeypatch):
    """The collectives' own code, in this process: a one-rank gloo group agrees with itself."""
    import socket

    import torch.distributed as dist

    from densemotion.runtime import agree, barrier

    agree("anything", "the params")  # no group: nothing to check
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        agree("same", "the params")
        barrier()
    finally:
        dist.destroy_process_group()
