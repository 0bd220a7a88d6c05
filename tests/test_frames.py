"""The frames stage: sources -> per-video archives, and every bad input it must refuse."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from densemotion.frames import extract as extract_mod
from densemotion.frames.extract import TooShortError, extract
from densemotion.frames.sources import SourceError
from densemotion.frames.store import FrameArchive, FrameArchiveError
from densemotion.params import FramesParams
from densemotion.video import VideoError

from conftest import moving_frames


def test_video_to_archive_roundtrip(make_video, tmp_path):
    src = make_video(n=12, h=64, w=96)
    meta = extract(str(src), tmp_path / "out" / "clip.zip", FramesParams(), progress=False)
    assert meta["frame_count"] == 12 and (meta["width"], meta["height"]) == (96, 64)
    assert meta["source_indices"] == list(range(12)) and meta["fps"] == 24.0
    with FrameArchive(tmp_path / "out" / "clip.zip") as a:
        assert len(a) == 12
        frames = a.read_range(0, 12)
        truth = moving_frames(12, 64, 96)
        # JPEG of an H.264 decode of the texture: close to the original frame, in order
        err = [[np.abs(frames[i].astype(int) - truth[j]).mean() for j in range(12)] for i in range(12)]
        assert [int(np.argmin(row)) for row in err] == list(range(12))
        assert max(err[i][i] for i in range(12)) < 10
        assert np.array_equal(a.read(5), frames[5])
        with pytest.raises(IndexError):
            a.read(12)
    # standard tools read it: an uncompressed zip whose members are JPEGs
    with zipfile.ZipFile(tmp_path / "out" / "clip.zip") as z:
        infos = [i for i in z.infolist() if i.filename.startswith("frames/")]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert z.read(infos[0].filename)[:3] == b"\xff\xd8\xff"


def test_resize_keeps_aspect_and_fps_subsampling(make_video, tmp_path):
    src = make_video(n=24, h=64, w=96, fps=24)
    meta = extract(str(src), tmp_path / "a.zip", FramesParams(max_size=48, fps=12), progress=False)
    assert (meta["width"], meta["height"]) == (48, 32)
    assert meta["source_indices"] == list(range(0, 24, 2)) and meta["fps"] == 12
    assert FrameArchive(tmp_path / "a.zip").read(0).shape == (32, 48, 3)


def test_output_independent_of_worker_count(make_video, tmp_path):
    src = make_video(n=16)
    extract(str(src), tmp_path / "w1.zip", FramesParams(workers=1), name="clip", progress=False)
    extract(str(src), tmp_path / "w3.zip", FramesParams(workers=3), name="clip", progress=False)
    assert (tmp_path / "w1.zip").read_bytes() == (tmp_path / "w3.zip").read_bytes()


def test_folder_and_zip_sources(tmp_path, make_video):
    src = make_video(n=10)
    extract(str(src), tmp_path / "v.zip", FramesParams(), progress=False)
    archive = FrameArchive(tmp_path / "v.zip")
    folder = tmp_path / "frames_dir"
    folder.mkdir()
    for i in range(10):  # names that sort wrongly as text: natural order must be used
        (folder / f"f{i}.jpg").write_bytes(archive.read_bytes(i))
    meta = extract(str(folder), tmp_path / "from_folder.zip", FramesParams(), progress=False)
    assert meta["passthrough"] and meta["source_kind"] == "folder"
    from_folder = FrameArchive(tmp_path / "from_folder.zip")
    assert [from_folder.read_bytes(i) for i in range(10)] == [archive.read_bytes(i) for i in range(10)]
    # one big zip holding several videos as frames/<video>/frames/*.jpg (the Drive layout)
    big = tmp_path / "drive.zip"
    with zipfile.ZipFile(big, "w") as z:
        for video in ("a", "b"):
            for i in range(10):
                z.writestr(f"frames/{video}/frames/{i:05d}.jpg", archive.read_bytes(i))
        z.writestr("__MACOSX/frames/a/frames/._00000.jpg", b"resource fork")  # macOS zips carry these
    meta = extract(f"{big}::frames/b/frames", tmp_path / "b.zip", FramesParams(max_size=48), progress=False)
    assert meta["frame_count"] == 10 and meta["width"] == 48 and not meta["passthrough"]
    # the same frames in a folder and in a folder of a zip have the same checksum
    folder_b = tmp_path / "b_dir"
    folder_b.mkdir()
    for i in range(10):
        (folder_b / f"{i:05d}.jpg").write_bytes(archive.read_bytes(i))
    assert (
        extract(str(folder_b), tmp_path / "b2.zip", FramesParams(), progress=False)["source_sha256"]
        == meta["source_sha256"]
    )
    # the whole zip is not one video: refused instead of mixing the videos' frames
    with pytest.raises(SourceError, match="several videos"):
        extract(str(big), tmp_path / "mixed.zip", FramesParams(), progress=False)
    assert not (tmp_path / "mixed.zip").exists()


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("empty.mp4", b"", VideoError),  # zero-byte file
        ("notes.txt", b"this is not a video at all\n" * 50, SourceError),  # FFmpeg would "decode" it
        ("garbage.mp4", bytes(range(256)) * 40, VideoError),  # a video suffix, no video
    ],
)
def test_empty_and_non_video_files(tmp_path, name, content, error):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=path.name):
        extract(str(path), tmp_path / "out.zip", FramesParams(), progress=False)
    assert not (tmp_path / "out.zip").exists()


def test_corrupt_video_is_refused_and_nothing_written(make_video, tmp_path):
    src = make_video(n=30)
    data = bytearray(src.read_bytes())
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data[: len(data) // 3]))  # truncated mid-stream: moov atom lost
    with pytest.raises((VideoError, SourceError), match="corrupt.mp4"):
        extract(str(bad), tmp_path / "out.zip", FramesParams(), progress=False)
    assert list(tmp_path.glob("out.zip*")) == [] and not list(tmp_path.glob(".out.zip*"))


def test_video_shorter_than_window(make_video, tmp_path):
    src = make_video(n=5)
    with pytest.raises(TooShortError, match="5 frames.*min_frames=8"):
        extract(str(src), tmp_path / "short.zip", FramesParams(), progress=False)
    assert not (tmp_path / "short.zip").exists()


def test_interrupted_run_leaves_no_archive(make_video, tmp_path, monkeypatch):
    src = make_video(n=16)
    real = extract_mod._to_jpeg
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt  # as if the Colab session were killed mid-video
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "_to_jpeg", dying)
    with pytest.raises(KeyboardInterrupt):
        extract(str(src), tmp_path / "clip.zip", FramesParams(workers=1), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_truncated_or_foreign_archive_is_refused(make_video, tmp_path):
    src = make_video(n=10)
    extract(str(src), tmp_path / "v.zip", FramesParams(), progress=False)
    data = (tmp_path / "v.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameArchiveError, match="cut.zip"):
        FrameArchive(tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "nometa.zip", "w") as z:
        z.writestr("frames/000000.jpg", b"x")
    with pytest.raises(FrameArchiveError, match="no meta.json"):
        FrameArchive(tmp_path / "nometa.zip")


def test_odd_output_size_and_colour_fidelity(make_video, tmp_path):
    """The YUV fast path (even sizes) and the RGB fallback (odd sizes) give the same picture."""
    src = make_video(n=10, h=64, w=96)
    even = extract(str(src), tmp_path / "even.zip", FramesParams(max_size=48), progress=False)
    odd = extract(str(src), tmp_path / "odd.zip", FramesParams(max_size=47), progress=False)
    assert (even["width"], even["height"]) == (48, 32) and (odd["width"], odd["height"]) == (47, 31)
    import cv2

    a = FrameArchive(tmp_path / "even.zip").read(4).astype(float)
    b = cv2.resize(FrameArchive(tmp_path / "odd.zip").read(4), (48, 32), interpolation=cv2.INTER_AREA)
    # same colours: no per-channel bias (a wrong YUV matrix or range shifts them by several levels)
    assert np.abs((a - b).mean(axis=(0, 1))).max() < 1.5 and np.abs(a - b).mean() < 10
    truth = cv2.resize(moving_frames(10, 64, 96)[4], (48, 32), interpolation=cv2.INTER_AREA)
    # JPEG's 4:2:0 chroma blurs this very colourful texture, so compare brightness pixel by pixel
    assert np.abs((a - truth).mean(axis=(0, 1))).max() < 1.5 and np.abs((a - truth).mean(-1)).mean() < 8


def test_cli_all_videos_in_parallel_matches_one_by_one(tmp_path, make_video, sample_params):
    from densemotion.cli import frames as frames_cli

    from conftest import write_params

    videos = {f"v{i}": str(make_video(f"v{i}.mp4", n=10, seed=i)) for i in range(3)}
    sample_params["data"]["videos"] = videos
    p = str(write_params(tmp_path / "params.yaml", sample_params))
    assert frames_cli.main(["--all", str(tmp_path / "par"), "--jobs", "2", "--params", p]) == 0
    for name, src in videos.items():
        assert frames_cli.main([src, str(tmp_path / "seq" / f"{name}.zip"), "--params", p]) == 0
        assert (tmp_path / "par" / f"{name}.zip").read_bytes() == (tmp_path / "seq" / f"{name}.zip").read_bytes()
    # a bad param file is one clear line, not a traceback
    write_params(tmp_path / "bad.yaml", {**sample_params, "frames": {"jpeg_quality": "high"}})
    assert frames_cli.main([src, str(tmp_path / "x.zip"), "--params", str(tmp_path / "bad.yaml")]) == 1
