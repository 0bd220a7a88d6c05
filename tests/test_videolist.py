"""Scanning a folder of real videos into data.videos, keeping the rest of params.yaml."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from densemotion.params import load_params
from densemotion.videolist import scan_videos, set_videos

from conftest import REPO


def test_scan_finds_videos_folders_and_zips(tmp_path, make_video):
    raw = tmp_path / "raw"
    raw.mkdir()
    make_video("b#000001#000050.mp4", folder=raw)  # TaiChi naming: '#' is not stage-safe
    (raw / "notes.txt").write_text("not a video")  # skipped by the scan
    folder = raw / "clip_frames"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"\xff\xd8\xff")
    with zipfile.ZipFile(raw / "drive.zip", "w") as z:
        for v in ("x", "y"):
            z.writestr(f"frames/{v}/frames/00001.jpg", b"\xff\xd8\xff")
    videos = scan_videos(raw)
    assert videos == {
        "b_000001_000050": str(raw / "b#000001#000050.mp4"),
        "clip_frames": str(folder),
        "x": f"{raw / 'drive.zip'}::frames/x/frames",
        "y": f"{raw / 'drive.zip'}::frames/y/frames",
    }


def test_set_videos_keeps_comments_and_validates(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    set_videos(params, {"real1": "data/raw/r/real1.mp4"})
    text = params.read_text()
    assert "# densemotion parameters" in text and "jpeg_quality: 95" in text
    assert load_params(params).data.videos == {"real1": "data/raw/r/real1.mp4"}
    with pytest.raises(ValueError, match="empty"):
        set_videos(params, {})
    assert load_params(params).data.videos == {"real1": "data/raw/r/real1.mp4"}


def test_scan_of_folder_without_videos(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no videos"):
        scan_videos(tmp_path)
