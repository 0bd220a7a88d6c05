"""Bad destinations, kills, full disks and bad params: a clear line, nothing lost, nothing half-written.

Each test reproduces a defect found by attacking the CLI (issue "Nothing lost, nothing silently
wrong") and fails on the code before its fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from densemotion.atomic import DestinationError, atomic_path, write_json
from densemotion.tracking import registry

from conftest import REPO, fsize_limit, moving_frames, small_disk, write_params


def _cli(*args: str, cwd: Path, preexec_fn=None) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run([sys.executable, "-m", "densemotion", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, preexec_fn=preexec_fn)  # fmt: skip


def _frames(tmp_path: Path, name: str = "clip", n: int = 12) -> Path:
    from densemotion.frames.extract import extract
    from densemotion.params import FramesParams
    from densemotion.video import encode_video

    encode_video(tmp_path / f"{name}.mp4", moving_frames(n, 64, 96), 24)
    extract(str(tmp_path / f"{name}.mp4"), tmp_path / "data/frames" / f"{name}.zip", FramesParams(), progress=False)
    return tmp_path / "data/frames" / f"{name}.zip"


# --- 1. data loss: a destination of another kind is never replaced ------------------------------


def test_a_store_path_missing_its_video_name_deletes_nothing(tmp_path):
    archive = _frames(tmp_path)
    stores = tmp_path / "data/trajectories"
    (stores / "other").mkdir(parents=True)
    (stores / "other" / "meta.json").write_text("{}")
    (stores / ".gitignore").write_text("/other\n")
    params = write_params(tmp_path / "params.yaml")
    out = _cli("trajectories", str(archive), str(stores), "--params", str(params), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "data/trajectories exists and is a folder that is not a trajectory store" in out.stderr
    assert sorted(p.name for p in stores.iterdir()) == [".gitignore", "other"]  # nothing lost


def test_frames_into_a_folder_of_other_files_is_refused(tmp_path, make_video):
    video = make_video("clip.mp4")
    folder = tmp_path / "some" / "folder"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    out = _cli("frames", str(video), str(folder), "--params", str(write_params(tmp_path / "p.yaml")), cwd=tmp_path)
    assert out.returncode == 1 and "is a folder that is not a frame archive" in out.stderr
    assert (folder / "notes.txt").read_text() == "mine"


def test_atomic_path_replaces_only_its_own_kind(tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(DestinationError, match="is a file that is not a folder"):
        atomic_path(tmp_path / "f", is_dir=True).__enter__()
    (tmp_path / "zip").write_text("not a zip")
    with pytest.raises(DestinationError, match="not an archive"):
        atomic_path(tmp_path / "zip", same_kind=lambda p: False, kind="an archive").__enter__()
    assert (tmp_path / "f").read_text() == "a file" and (tmp_path / "zip").read_text() == "not a zip"


# --- 3 and 9. full disk and unwritable outputs: one line, nothing kept -------------------------


def test_full_disk_while_writing_a_store_is_one_line_and_leaves_nothing(tmp_path):
    archive = _frames(tmp_path, n=24)
    params = write_params(tmp_path / "params.yaml")
    with small_disk(tmp_path / "disk", 8) as disk:
        out_dir = (disk or tmp_path) / "traj" / "clip"
        args = ("trajectories", str(archive), str(out_dir), "--work-dir", str(tmp_path / "work"),
                "--params", str(params), "--debug")  # fmt: skip
        preexec = None if disk else fsize_limit(8_000)  # no tmpfs here: a file size limit instead
        out = _cli(*args[:-1], cwd=tmp_path, preexec_fn=preexec)
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "while writing" in out.stderr and "nothing was kept" in out.stderr
        assert not out_dir.exists() and list(out_dir.parent.iterdir()) == []  # no temporaries either


def test_read_only_output_is_one_line(tmp_path):
    archive = _frames(tmp_path)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")  # fails for root too, unlike chmod
    params = write_params(tmp_path / "params.yaml")
    out = _cli("trajectories", str(archive), str(blocker / "clip"), "--params", str(params), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "not_a_folder" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


# --- 4. temporaries of a killed run: out of DVC's hash, removed by the next write ---------------


def test_temporaries_of_a_killed_write_are_ignored_by_dvc_and_swept(tmp_path):
    dest = tmp_path / "data/frames/clip.zip"
    stale = dest.parent / ".clip.zip.k1ll3d.tmp"
    stale.mkdir(parents=True)
    (stale / "clip.zip").write_bytes(b"half")
    patterns = (REPO / ".dvcignore").read_text().split()
    assert ".*.tmp" in patterns  # DVC never hashes them
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["clip.zip"]


# --- 7 (metrics). strict JSON ------------------------------------------------------------------


def test_metrics_json_is_strict(tmp_path):
    write_json(tmp_path / "m.json", {"epe": float("nan"), "ok": 1.5, "all": [float("inf"), 2.0]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"all": [None, 2.0], "epe": None, "ok": 1.5}


# --- 8 and 10. params that cannot be right are refused at load ---------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  epochs: 3\ntrain:\n  epochs: 5\n", r"duplicate key 'train' \(first on line 3\)"),
        ("train:\n  lr: .inf\n", r"train\.lr: Input should be a finite number"),
        ("train:\n  lr: .nan\n", r"train\.lr: Input should be a finite number"),
        ("trajectories:\n  resolution: [100000, 360]\n", r"trajectories\.resolution\.0: .*less than or equal to 8192"),
    ],
)
def test_params_that_cannot_be_right_fail_at_load(tmp_path, text, message):
    from densemotion.params import ParamsError, load_params

    (tmp_path / "p.yaml").write_text("data:\n  videos: {a: x.mp4}\n" + text)
    with pytest.raises(ParamsError, match=message):
        load_params(tmp_path / "p.yaml")


def test_use_videos_on_a_params_file_with_a_repeated_key_is_one_line(tmp_path, make_video):
    make_video("a.mp4", folder=tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  videos: {x: y.mp4}\ndata:\n  videos: {x: y.mp4}\n")
    out = _cli("use-videos", str(tmp_path), "--params", str(params), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "not valid YAML" in out.stderr
    assert "duplicate" in out.stderr.lower()


def test_tracker_section_with_a_bad_key_is_named(tmp_path):
    from densemotion.params import ParamsError, parse_params

    params = parse_params({"data": {"videos": {"a": "x"}}, "trajectories": {"tracker": "dis", "dis": {"presset": 1}}})
    with pytest.raises(ParamsError, match=r"trajectories\.dis\.presset: unknown key"):
        registry.section(params.trajectories)
    with pytest.raises(ParamsError, match=r"trajectories\.nope: unknown tracker section 'nope'"):
        parse_params({"data": {"videos": {"a": "x"}}, "trajectories": {"nope": {}}})


@pytest.mark.parametrize(
    "key, value",
    [("grid_shape", "12x16"), ("window", 4.5), ("tracking_size", [0, 16]), ("num_windows", None), ("margin", -1)],
)
def test_a_store_meta_of_the_wrong_types_is_a_clear_error(tmp_path, key, value):
    from densemotion.trajectories.store import TrajectoryStore, TrajectoryStoreError

    from test_dataset import write_motion_store

    store = write_motion_store(tmp_path, "v")
    meta = json.loads((store / "meta.json").read_text())
    (store / "meta.json").write_text(json.dumps({**meta, key: value}))
    with pytest.raises(TrajectoryStoreError, match=rf"{store}: meta {key} must be"):
        TrajectoryStore(store)


def test_counts_on_the_command_line_are_plain_digits():
    """Python's int() reads '1_0' as 10 and '١٢' as 12: a typo must not become a number."""
    import argparse

    from densemotion.cli.common import whole_number

    assert whole_number("12") == 12 and whole_number("-1") == -1
    for text in ("1_0", "١٢", "1.5", "", "0x10"):
        with pytest.raises(argparse.ArgumentTypeError, match="not a whole number"):
            whole_number(text)


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    from densemotion.cli.common import clean_errors

    @clean_errors
    def main(argv=None) -> int:
        raise KeyboardInterrupt

    assert main([]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_only_expected_failures_are_one_line_a_bug_keeps_its_traceback(capsys):
    """An error of densemotion's own (bad input) is one line and exit 1, as is an OSError; any other
    exception (a bug: a plain ValueError from library code) propagates with its traceback."""
    from densemotion.cli.common import clean_errors
    from densemotion.errors import DensemotionError
    from densemotion.params import ParamsError

    def command(error: BaseException):
        @clean_errors
        def main(argv=None) -> int:
            raise error

        return main

    for expected in (DensemotionError("bad input"), ParamsError("params.yaml: x"), FileNotFoundError(2, "gone", "f")):
        assert command(expected)([]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err, err
    for bug in (ValueError("a bug"), KeyError("k"), TypeError("t")):
        with pytest.raises(type(bug)):
            command(bug)([])
