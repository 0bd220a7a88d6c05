"""What the pipeline's outputs weigh on a DVC remote, and how fast they move: push and pull of this
workspace's outputs to a local folder remote (and an SSH one when given), side by side with
copying the same cache folder (the baseline: what the bytes alone cost).

    .venv/bin/python bench/remote_speed.py [--ssh-url ssh://user@127.0.0.1:2222/tmp/store --ssh-key KEY]

Run it in a repository whose pipeline has run (`dvc repro`). It works on a copy (the workspace
and its remote settings are not touched). Prints objects and bytes on the remote, objects per
video (frames zip + trajectory store), the object count for the 132 TaiChi videos, and seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

TAICHI_VIDEOS = 132


def dvc(repo: Path, *args: str) -> str:
    return subprocess.run(["dvc", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def census(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def measure(repo: Path, remote: str, folder: Path | None) -> dict:
    push = timed(lambda: dvc(repo, "push", "-r", remote))
    shutil.rmtree(repo / ".dvc" / "cache")
    pull = timed(lambda: dvc(repo, "pull", "-r", remote))
    out = {"push_s": round(push, 2), "pull_s": round(pull, 2)}
    if folder is not None:
        out["objects"], out["bytes"] = census(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="a repository whose pipeline has run")
    parser.add_argument("--ssh-url", help="an SSH remote URL to measure too (its folder is created)")
    parser.add_argument("--ssh-key", help="the key file for --ssh-url")
    args = parser.parse_args()
    source = Path(args.repo).resolve()
    videos = yaml.safe_load((source / "params.yaml").read_text())["data"]["videos"]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns(".venv", "data/work"))
        cache_objects, cache_bytes = census(repo / ".dvc" / "cache")
        baseline = timed(lambda: shutil.copytree(repo / ".dvc" / "cache", Path(tmp) / "copy"))
        folder = Path(tmp) / "remote"
        dvc(repo, "remote", "add", "--local", "-f", "bench", str(folder))
        results = {"local folder": measure(repo, "bench", folder)}
        if args.ssh_url:
            dvc(repo, "remote", "add", "--local", "-f", "benchssh", args.ssh_url)
            if args.ssh_key:
                dvc(repo, "remote", "modify", "--local", "benchssh", "keyfile", args.ssh_key)
            results["ssh"] = measure(repo, "benchssh", None)
        per_video = [
            census_of(repo, f"data/frames/{v}.zip") + census_of(repo, f"data/trajectories/{v}") for v in videos
        ]
    report = {
        "cache": {"objects": cache_objects, "bytes": cache_bytes, "copy_s": round(baseline, 3)},
        "remotes": results,
        "objects_per_video": max(per_video),
        f"objects_for_{TAICHI_VIDEOS}_videos": max(per_video) * TAICHI_VIDEOS,
    }
    for r in results.values():
        r["push_vs_copy"] = round(r["push_s"] / max(baseline, 1e-6), 1)
    print(json.dumps(report, indent=1))


def census_of(repo: Path, rel: str) -> int:
    """Cache objects behind one output: a file is one, a folder its files plus its .dir manifest."""
    path = repo / rel
    return 1 if path.is_file() else sum(1 for p in path.rglob("*") if p.is_file()) + 1


if __name__ == "__main__":
    main()
