"""Scanning a folder of real videos into data.videos, keeping the rest of params.yaml."""

from __future__ import annotations

import zipfile

import pytest

from densemotion.cli.frames import main as frames_main
from densemotion.cli.use_videos import main as use_videos_main
from densemotion.frames.sources import SourceError
from densemotion.frames.store import FrameArchive, encode_jpeg
from densemotion.params import load_params
from densemotion.videolist import resolve_source, scan_videos, set_videos

from conftest import moving_frames, write_params


def _drive_zip(path, videos=("x", "y"), frames=1, data=b"\xff\xd8\xff"):
    """A zip in the layout kept on Google Drive: frames/<video>/frames/*.jpg."""
    with zipfile.ZipFile(path, "w") as z:
        for v in videos:
            for i in range(frames):
                z.writestr(f"frames/{v}/frames/{i:05d}.jpg", data if isinstance(data, bytes) else data[i])
        z.writestr(f"__MACOSX/frames/{videos[0]}/frames/._00000.jpg", b"macOS metadata, not a frame")


def test_scan_finds_videos_folders_and_zips(tmp_path, make_video):
    raw = tmp_path / "raw"
    raw.mkdir()
    make_video("b#000001#000050.mp4", folder=raw)  # TaiChi naming: '#' is not stage-safe
    (raw / "notes.txt").write_text("not a video")  # skipped by the scan, and said so
    folder = raw / "clip_frames"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"\xff\xd8\xff")
    _drive_zip(raw / "drive.zip")
    videos, skipped = scan_videos(raw)
    # every video of the big zip names the zip itself: a real path, which DVC can depend on
    assert videos == {
        "b_000001_000050": str(raw / "b#000001#000050.mp4"),
        "clip_frames": str(folder),
        "x": str(raw / "drive.zip"),
        "y": str(raw / "drive.zip"),
    }
    assert skipped == ["notes.txt (not a video)"]
    assert resolve_source(str(raw / "drive.zip"), "y") == f"{raw / 'drive.zip'}::frames/y/frames"
    assert resolve_source(str(folder), "clip_frames") == str(folder)
    with pytest.raises(SourceError, match=r"none is named 'z' \(its videos: x, y\)"):
        resolve_source(str(raw / "drive.zip"), "z")


def test_names_of_zip_videos_win_over_loose_files(tmp_path, make_video):
    make_video("x.mp4", folder=tmp_path)  # the same name as a video inside the zip
    _drive_zip(tmp_path / "drive.zip")
    videos, _ = scan_videos(tmp_path)
    assert videos == {
        "x": str(tmp_path / "drive.zip"),
        "x_2": str(tmp_path / "x.mp4"),
        "y": str(tmp_path / "drive.zip"),
    }
    _drive_zip(tmp_path / "drive2.zip", videos=("y", "w"))
    with pytest.raises(ValueError, match="two zips hold a video named 'y'"):
        scan_videos(tmp_path)


def test_use_videos_then_frames_of_one_video_of_a_big_zip(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml")
    raw = tmp_path / "raw"
    raw.mkdir()
    jpegs = [encode_jpeg(f, 90) for f in moving_frames(8, 32, 48)]
    _drive_zip(raw / "frames.zip", videos=("id#1#9", "id#2#9"), frames=8, data=jpegs)
    (raw / "readme.txt").write_text("how we got these")
    assert use_videos_main([str(raw), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "skipped 1" in out and "readme.txt" in out
    loaded = load_params(params)
    assert loaded.data.videos == {"id_1_9": str(raw / "frames.zip"), "id_2_9": str(raw / "frames.zip")}
    assert "fps: null" in params.read_text()  # the rest of the file is kept as written
    dest = tmp_path / "id_2_9.zip"
    assert frames_main([str(raw / "frames.zip"), str(dest), "--params", str(params)]) == 0
    with FrameArchive(dest) as archive:
        assert archive.meta["frame_count"] == 8
        assert archive.meta["source"] == f"{raw / 'frames.zip'}::frames/id#2#9/frames"
        assert archive.read_bytes(3) == jpegs[3]  # JPEGs needing no resize are kept as they are


def test_set_videos_keeps_comments_and_validates(tmp_path):
    params = write_params(tmp_path / "params.yaml")
    set_videos(params, {"real1": "data/raw/r/real1.mp4"})
    text = params.read_text()
    assert "# densemotion parameters (written by the tests)" in text and "jpeg_quality: 95" in text
    assert load_params(params).data.videos == {"real1": "data/raw/r/real1.mp4"}
    with pytest.raises(ValueError, match="empty"):
        set_videos(params, {})
    assert load_params(params).data.videos == {"real1": "data/raw/r/real1.mp4"}


def test_set_videos_changes_only_the_list_lines(tmp_path):
    """The blank line and comment after the list, before the next section, stay (twice over)."""
    params = tmp_path / "params.yaml"
    before = "data:\n  videos:  # name -> source\n    a: a.mp4\n    b: b.mp4\n\n# the sample\nsample:\n  seed: 0\n"
    params.write_text(before)
    for videos in ({"c": "c.mp4"}, {"a": "a.mp4", "b": "b.mp4"}):
        set_videos(params, videos)
    assert params.read_text() == before


def test_scan_of_folder_without_videos(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no videos"):
        scan_videos(tmp_path)
