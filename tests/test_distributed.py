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


# `densemotion train` with every batch norm held in eval mode: torch's SyncBatchNorm has no CPU
# kernels, so two CPU ranks would normalise over half batches; with fixed statistics the ranks'
# arithmetic is one process's, and what is left to compare is exactly the distributed mechanics
FIXED_BN = """
import sys

import torch

import densemotion.training as training
from densemotion.cli.train import main

_build = training.build_model


def _fixed_bn(*args, **kwargs):
    model = _build(*args, **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.train = lambda mode=True, m=module: m
    return model


training.build_model = _fixed_bn
raise SystemExit(main(sys.argv[1:]))
"""


def _training_project(root: Path) -> Path:
    from test_dataset import write_motion_store

    names = [f"vid{i}" for i in range(4)]
    for i, name in enumerate(names):
        write_motion_store(root / "traj", name, seed=i, hg=8, wg=12, nw=8, t=3)
    (root / "params.yaml").write_text(
        "data:\n  videos:\n"
        + "".join(f"    {v}: raw/{v}.mp4\n" for v in names)
        + "model:\n  input_scale: 1\ntrain:\n  device: cpu\n  epochs: 2\n  batch_size: 4\n"
    )
    (root / "fixed_bn.py").write_text(FIXED_BN)
    return root


def _train(root: Path, out: str, *extra: str, ranks: int | None = None, fixed_bn: bool = True):
    args = ["--trajectories", "traj", "--out", out, "--params", "params.yaml", *extra]
    script = ["fixed_bn.py"] if fixed_bn else ["-m", "densemotion", "train"]
    launcher = [str(TORCHRUN), "--standalone", f"--nproc-per-node={ranks}"] if ranks else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([*launcher, *script, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _relative_difference(a: dict, b: dict, statistics: bool = True) -> float:
    """|a - b| / |a| over the floating-point tensors of two state dicts (L2 over all of them;
    without batch norm's running statistics when ``statistics`` is False)."""
    keys = [k for k in a if a[k].is_floating_point() and (statistics or "running_" not in k)]
    num = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in keys)
    return (num / sum(float(a[k].double().norm() ** 2) for k in keys)) ** 0.5


@pytest.mark.slow
def test_two_ranks_train_the_weights_of_one_process(tmp_path):
    """Same global batches, the ranks' losses weighted to one process's mean, gradients averaged,
    validation sums reduced: with batch norm fixed, the weights agree to float rounding."""
    from densemotion.checkpoint import load_checkpoint

    root = _training_project(tmp_path)
    _train(root, "one.pt")
    two = _train(root, "two.pt", ranks=2)
    assert two.stdout.count("two.pt: lraspp_mobilenet_v3_large after 2 epochs") == 1  # rank 0 alone speaks
    one_state, two_state = load_checkpoint(root / "one.pt"), load_checkpoint(root / "two.pt")
    assert _relative_difference(one_state["last_model"], two_state["last_model"]) < 1e-5  # measured 6e-8
    for a, b in zip(one_state["history"], two_state["history"], strict=True):
        assert a["val/epe_px"] == pytest.approx(b["val/epe_px"], rel=1e-5)
        assert a["train/epe_px"] == pytest.approx(b["train/epe_px"], rel=1e-5)
    # batch norm training on CPU: each rank normalises over its half of a batch (no SyncBatchNorm
    # on CPU), so the weights differ, but far less than another seed's (measured 0.08 against 1.1)
    _train(root, "bn.pt", ranks=2, fixed_bn=False)
    _train(root, "bn_one.pt", fixed_bn=False)
    bn = _relative_difference(
        load_checkpoint(root / "bn_one.pt")["last_model"], load_checkpoint(root / "bn.pt")["last_model"], False
    )
    assert bn < 0.2, bn  # the learned weights; the running statistics are each rank 0's own


@pytest.mark.slow
def test_a_run_resumes_under_torchrun_and_its_checkpoint_loads_alone(tmp_path, monkeypatch):
    """Killed after epoch 1 in one process, resumed by two ranks: one process's uninterrupted
    weights; the checkpoint they write is the unwrapped model, which one process loads."""
    from test_training import _killed_in_second_epoch

    import densemotion.training as training
    from densemotion.checkpoint import load_checkpoint, model_from_checkpoint
    from densemotion.params import load_params

    root = _training_project(tmp_path)
    _train(root, "whole.pt")
    namespace: dict = {"__name__": "fixed"}
    exec(FIXED_BN.replace("raise SystemExit(main(sys.argv[1:]))", ""), namespace)  # the same fixed batch norm here
    monkeypatch.setattr(training, "build_model", namespace["_fixed_bn"])
    _killed_in_second_epoch(monkeypatch)
    params = load_params(root / "params.yaml")
    with pytest.raises(KeyboardInterrupt):
        training.train(trajectories=root / "traj", videos=sorted(params.data.videos), model_params=params.model,
                       train_params=params.train, out=root / "resumed.pt")  # fmt: skip
    assert load_checkpoint(root / "resumed.pt")["epoch"] == 1
    resumed = _train(root, "resumed.pt", "--resume", ranks=2)
    assert "resuming from resumed.pt after epoch 1" in resumed.stderr
    whole, again = load_checkpoint(root / "whole.pt"), load_checkpoint(root / "resumed.pt")
    assert again["epoch"] == 2
    assert _relative_difference(whole["last_model"], again["last_model"]) < 1e-5
    model_from_checkpoint(again, root / "resumed.pt")  # plain keys: no DDP "module." prefix
