"""Leftovers of another video list: found, refused by the stages that read the folders, set aside."""

from __future__ import annotations

import time

import pytest
import yaml

from densemotion.outputs import LeftoverError, check_no_leftovers, leftovers, set_aside, tidy

from conftest import write_params

LOCK = {
    "schema": "2.0",
    "stages": {
        "frames@a": {"cmd": "x"},
        "frames@old": {"cmd": "x"},
        "trajectories@old": {"cmd": "x"},
        "sample@sample00": {"cmd": "x"},
        "train": {"cmd": "x"},
    },
}


def _repo(root):
    for rel in (
        "data/frames/a.zip",
        "data/frames/old.zip",
        "data/trajectories/a/meta.json",
        "data/trajectories/old/meta.json",
        "data/frames/.gitignore",
        "data/trajectories/.a.123.tmp/x",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)  # fmt: skip
    (root / "dvc.lock").write_text(yaml.safe_dump(LOCK, sort_keys=False))


def test_leftovers_are_outputs_of_unlisted_videos_only(tmp_path):
    _repo(tmp_path)
    assert [p.name for p in leftovers(tmp_path / "data/frames", ["a"])] == ["old.zip"]
    assert [p.name for p in leftovers(tmp_path / "data/trajectories", ["a"])] == ["old"]
    assert leftovers(tmp_path / "nowhere", ["a"]) == []
    with pytest.raises(LeftoverError, match=r"data/frames/old\.zip, .*data/trajectories/old.*densemotion tidy"):
        check_no_leftovers([tmp_path / "data/frames", tmp_path / "data/trajectories"], ["a"])
    check_no_leftovers([tmp_path / "data/frames"], ["a", "old"])


def test_tidy_moves_leftovers_aside_and_drops_their_lock_entries(tmp_path):
    _repo(tmp_path)
    moved_to, moved, dropped = tidy(["a"], tmp_path)
    assert sorted(p.name for p in moved) == ["old", "old.zip"]
    assert (moved_to / "data/frames/old.zip").read_text() == "data/frames/old.zip"  # nothing lost
    assert (moved_to / "data/trajectories/old/meta.json").is_file()
    assert moved_to.parent == tmp_path / "data/work/set-aside"
    assert (tmp_path / "data/frames/a.zip").is_file() and (tmp_path / "data/trajectories/a").is_dir()
    assert sorted(dropped) == ["frames@old", "trajectories@old"]
    assert list(yaml.safe_load((tmp_path / "dvc.lock").read_text())["stages"]) == [
        "frames@a",
        "sample@sample00",
        "train",
    ]
    assert tidy(["a"], tmp_path)[1:] == ([], [])  # a second tidy finds nothing


def test_use_videos_sets_aside_the_outputs_of_the_old_list(tmp_path, make_video, capsys):
    from densemotion.cli.tidy import main as tidy_main
    from densemotion.cli.use_videos import main as use_videos_main

    _repo(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    make_video("a.mp4", folder=raw)
    params = write_params(tmp_path / "params.yaml")
    assert use_videos_main([str(raw), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "set aside 2 outputs" in out and "dropped 2 dvc.lock entries" in out
    assert not (tmp_path / "data/frames/old.zip").exists() and (tmp_path / "data/frames/a.zip").exists()
    assert tidy_main(["--params", str(params)]) == 0
    assert "nothing to tidy" in capsys.readouterr().out


def test_two_set_asides_in_one_second_keep_both(tmp_path, monkeypatch):
    """The folder is named by UTC seconds: a second set-aside then must not land on the first."""
    import densemotion.outputs as outputs

    epoch = time.gmtime(0)
    monkeypatch.setattr(outputs.time, "gmtime", lambda *a: epoch)  # the same second, always
    first_dir = set_aside([_file(tmp_path / "data/frames/old.zip", "first")], tmp_path)
    second_dir = set_aside([_file(tmp_path / "data/frames/old.zip", "second")], tmp_path)
    assert first_dir != second_dir and second_dir.name == first_dir.name + "-2"
    assert (first_dir / "data/frames/old.zip").read_text() == "first"
    assert (second_dir / "data/frames/old.zip").read_text() == "second"


def _file(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
