"""Atomic outputs: complete or absent, never half-written; a full disk is named as such."""

from __future__ import annotations

import errno

import pytest

from densemotion.atomic import DiskFullError, atomic_path, write_json


def test_file_appears_only_when_complete(tmp_path):
    dest = tmp_path / "out" / "x.bin"

    def killed_midway() -> None:
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            assert not dest.exists()
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed_midway()
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"whole")
    assert dest.read_bytes() == b"whole" and sorted(p.name for p in dest.parent.iterdir()) == ["x.bin"]


def test_folder_replaces_the_old_one_whole(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old.npy").write_bytes(b"old")
    with atomic_path(dest, is_dir=True) as tmp:
        (tmp / "new.npy").write_bytes(b"new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.npy"]


def test_full_disk_is_reported_and_nothing_kept(tmp_path, monkeypatch):
    dest = tmp_path / "metrics.json"

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_text", no_space)
    with pytest.raises(DiskFullError, match="disk full while writing .*metrics.json"):
        write_json(dest, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_name_near_the_file_system_limit_is_written(tmp_path):
    """A temporary carries its destination's name: cut, so a 250-byte name still fits 255."""
    dest = tmp_path / ("é" * 120 + ".bin")  # 244 bytes
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"x")
    assert dest.read_bytes() == b"x" and [p.name for p in tmp_path.iterdir()] == [dest.name]
