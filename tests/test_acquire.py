"""`densemotion acquire`: a published clip list -> cut, cropped, resized clips with a manifest.

Offline: the tests write the metadata and encode the source videos themselves, with known
content (red ramps along x, green along y, blue = 4 x the frame index), so every written clip is
checked against the region and the frames it must hold. The real TaiChi-HD metadata is parsed
where ``../shared/taichi/`` has it.
"""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml

from densemotion.__main__ import main as densemotion
from densemotion.acquire import clips as clips_module
from densemotion.acquire.clips import frame_range, inside, scaled_box
from densemotion.acquire.manifest import (
    BAD_ROW,
    BAD_VIDEO,
    COLUMNS,
    FAILED,
    MANIFEST,
    OK,
    PAST_END,
    RUN_INFO,
    UNAVAILABLE,
    read_manifest,
)
from densemotion.acquire.metadata import ClipRow, by_video, parse_metadata, read_text
from densemotion.acquire.run import acquire
from densemotion.acquire.sources import LocalSource, SourceUnavailable, YtDlpSource
from densemotion.atomic import DiskFullError
from densemotion.dataset import DatasetError, split_videos
from densemotion.imaging import fit_image
from densemotion.params import DataParams, load_params
from densemotion.video import encode_video, iter_frames, probe
from densemotion.videolist import scan_videos, stage_name

from conftest import REPO, moving_frames, sample_params_dict, write_params
from test_e2e_dvc import BIN, built_repo, repo, run  # noqa: F401 (the e2e fixtures, shared)

REAL_METADATA = REPO.parent / "shared" / "taichi" / "taichi-metadata.csv"
HEADER = "video_id,start,end,bbox,fps,width,height,partition"
SIZE = 32  # side of the acquired clips in these tests


def known_frames(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8: red = x ramp, green = y ramp (40..215: no colour near the gamut's edge,
    where YUV round trips err most), blue = 6 x frame index (which frame it is)."""
    x = np.linspace(40, 215, w)[None, :].repeat(h, 0)
    y = np.linspace(40, 215, h)[:, None].repeat(w, 1)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        out[t] = np.stack([x, y, np.full((h, w), blue(t))], axis=-1).round().astype(np.uint8)
    return out


def blue(t: int | np.ndarray) -> int | np.ndarray:
    return 6 * t


LAND = known_frames(40, 96, 160)  # encoded at 30 fps; the metadata says 640x384 at 25
PORTRAIT = known_frames(40, 160, 96)  # 25 fps; the metadata says 192x320

ROWS = [  # (line of the metadata, what it tests)
    "land,10,30,40-20-360-340,25.0,640,384,train",  # 1: fps 25 -> 30: frames 12..35; box /4 -> (10,5,90,85)
    "land,0,10,322-64-640-384,25.0,640,384,train",  # 2: frames 0..11; box (80,16,160,96) (322/4 floored)
    "land,30,40,0-0-100-100,25.0,640,384,train",  # 3: frames 36..47 of 40: past the end
    "portrait,5,25,20-40-180-200,25.0,192,320,test",  # 4: portrait, box /2 -> (10,20,90,100)
    "edge,0,12,120-60-200-140,30.0,160,96,train",  # 5: box past the right and bottom edges
    "edge,12,24,-20--10-40-50,30.0,160,96,train",  # 6: box past the left and top edges
    "edge,24,36,500-500-600-600,30.0,160,96,train",  # 7: box wholly outside
    "junk,0,10,0-0-10-10,30.0,160,96,train",  # 8: the 'video' is text
    "gone,0,10,0-0-10-10,30.0,160,96,test",  # 9: no such source
    "land,10,,40-20-360-340,25.0,640,384,train",  # 10: missing end
    "land,10,30,360-20-40-340,25.0,640,384,train",  # 11: right < left
    "land,30,30,40-20-360-340,25.0,640,384,train",  # 12: end <= start
    "land,10,30,40-20-360-340,25.0,640,384,train",  # 13: a repeat of row 1
    "land,10,30,40-20-360-340,25.0,640,384,valid",  # 14: unknown partition
    "land,10,30,40-20-360,25.0,640,384,train",  # 15: three numbers in the box
    "land,10,30,40-20-360-340,fast,640,384,train",  # 16: fps not a number
    "land,10,30,40-20-360-340,25.0,640,384,train,extra",  # 17: a field too many
    "b@d,10,30,40-20-360-340,25.0,640,384,train",  # 18: not a YouTube id
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    encode_video(folder / "land.mp4", LAND, 30, crf=8)
    encode_video(folder / "portrait.mp4", PORTRAIT, 25, crf=8)
    shutil.copy(folder / "land.mp4", folder / "edge.mp4")
    (folder / "junk.mp4").write_text("<html>This video is unavailable</html>")
    return folder


def write_metadata(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def decoded(path: Path) -> np.ndarray:
    return np.stack([frame for _, frame in iter_frames(path)])


def expected(frames: np.ndarray, indices: range, box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return np.stack([fit_image(frames[i, top:bottom, left:right], (SIZE, SIZE)) for i in indices])


def assert_clip(path: Path, frames: np.ndarray, indices: range, box: tuple[int, int, int, int]) -> None:
    """The clip holds exactly ``indices`` of ``frames``, cut to ``box`` and resized: closer to that
    than to the box moved by 8 px, frame by frame identified by its blue level."""
    got = decoded(path).astype(float)
    assert got.shape == (len(indices), SIZE, SIZE, 3)
    levels = got[..., 2].mean(axis=(1, 2))  # blue: which frame each is
    offsets = [np.abs(levels - blue(np.array(indices) + k)).mean() for k in (-2, -1, 0, 1, 2)]
    assert int(np.argmin(offsets)) == 2 and np.abs(levels - blue(np.array(indices))).max() < 4.5, levels
    error = np.abs(got - expected(frames, indices, box)).mean()
    assert error < 4.0, error  # two lossy generations and colour conversions: ~3 levels
    step = -8 if min(box[:2]) >= 8 else 8  # the box moved 8 px, staying inside the frame
    shifted = (box[0] + step, box[1] + step, box[2] + step, box[3] + step)
    assert np.abs(got - expected(frames, indices, shifted)).mean() > error + 3.0


def _row(**kw) -> ClipRow:
    base = {
        "row": 1,
        "video_id": "x",
        "start": 0,
        "end": 10,
        "box": (0, 0, 10, 10),
        "fps": Fraction(25),
        "width": 640,
        "height": 480,
        "partition": "train",
    }
    return ClipRow(**{**base, **kw})


# --- the rules -----------------------------------------------------------------------------


def test_frame_range_maps_through_both_rates():
    assert frame_range(_row(start=25, end=50), Fraction(30)) == range(30, 60)  # seconds 1..2 at 30 fps
    assert frame_range(_row(start=30, end=60, fps=Fraction(30)), Fraction(25)) == range(25, 50)
    # 29.97 in the metadata is NTSC's 30000/1001: the same rate, frames unchanged (not shifted by one)
    ntsc = _row(start=80, end=300, fps=Fraction("29.97"))
    assert frame_range(ntsc, Fraction(30000, 1001)) == range(80, 300)
    assert frame_range(_row(start=80, end=300, fps=Fraction(30)), Fraction(30000, 1001)) == range(80, 300)


def test_box_is_scaled_floored_and_cut_to_the_frame():
    row = _row(box=(322, 64, 640, 384), width=640, height=384)
    assert scaled_box(row, 160, 96) == (80, 16, 160, 96)
    assert inside((120, 60, 200, 140), 160, 96) == (120, 60, 160, 96)
    assert inside((-5, -2, 40, 50), 160, 96) == (0, 0, 40, 50)
    assert inside((500, 500, 600, 600), 160, 96) is None


def test_names_are_the_published_ones():
    assert _row(video_id="-aB_9", start=80, end=300).path == "train/-aB_9#000080#000300.mp4"


def test_malformed_rows_are_named_and_the_rest_parsed():
    rows, problems = parse_metadata("\n".join([HEADER, *ROWS]))
    assert [r.row for r in rows] == list(range(1, 10))
    reasons = {p.row: p.reason for p in problems}
    assert reasons[10] == "missing end"
    assert "right > left" in reasons[11]
    assert "needs 0 <= start < end" in reasons[12]
    assert reasons[13].startswith("duplicate of row 1")
    assert "neither train nor test" in reasons[14]
    assert "left-top-right-bottom" in reasons[15]
    assert "not a number" in reasons[16]
    assert "9 fields, the header has 8" in reasons[17]
    assert "not a YouTube id" in reasons[18]
    assert rows[5].box == (-20, -10, 40, 50)
    assert list(by_video(rows)) == ["land", "portrait", "edge", "junk", "gone"]
    with pytest.raises(ValueError, match="no column partition"):
        parse_metadata("video_id,start,end,bbox,fps,width,height\n")


def test_the_real_taichi_metadata_parses():
    if not REAL_METADATA.is_file():
        pytest.skip(f"the real TaiChi-HD metadata is not at {REAL_METADATA} (a checkout without ../shared/taichi)")
    rows, problems = parse_metadata(read_text(REAL_METADATA), str(REAL_METADATA))
    assert problems == []
    assert len(rows) == 3334 and len(by_video(rows)) == 280
    parts = {p: sum(r.partition == p for r in rows) for p in ("train", "test")}
    assert parts == {"train": 3049, "test": 285}
    assert all(len({r.partition for r in clips}) == 1 for clips in by_video(rows).values())  # ids never span both
    assert rows[0].path == "train/u6rJiF-gPx8#000080#000300.mp4"
    names = [stage_name(Path(r.path).stem) for r in rows]
    assert len(set(names)) == len(names)  # use-videos names are distinct
    DataParams(videos={n: f"data/raw/taichi/{r.path}" for n, r in zip(names, rows, strict=True)})  # stage-safe
    portrait = [r for r in rows if r.height > r.width]
    assert portrait and all((r.width, r.height) == (810, 1440) for r in portrait)


# --- a whole acquisition ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def acquired(sources, tmp_path_factory) -> Path:
    """The rows above acquired with the CLI, in two worker processes."""
    root = tmp_path_factory.mktemp("acquired")
    meta = write_metadata(root / "meta.csv", ROWS)
    out = root / "taichi"
    argv = ["acquire", str(meta), str(out), "--source-dir", str(sources), "--size", str(SIZE), "--jobs", "2"]
    assert densemotion([*argv, "--no-progress", "--download-dir", str(root / "work")]) == 0
    return out


def test_clips_hold_the_mapped_frames_of_the_scaled_box(acquired):
    assert_clip(acquired / "train/land#000010#000030.mp4", LAND, range(12, 36), (10, 5, 90, 85))
    assert_clip(acquired / "train/land#000000#000010.mp4", LAND, range(0, 12), (80, 16, 160, 96))
    assert_clip(acquired / "test/portrait#000005#000025.mp4", PORTRAIT, range(5, 25), (10, 20, 90, 100))
    assert_clip(acquired / "train/edge#000000#000012.mp4", LAND, range(0, 12), (120, 60, 160, 96))
    assert_clip(acquired / "train/edge#000012#000024.mp4", LAND, range(12, 24), (0, 0, 40, 50))
    info = probe(acquired / "train/land#000010#000030.mp4")
    assert (info.width, info.height, round(info.fps)) == (SIZE, SIZE, 30)  # the decoded rate


def test_manifest_records_every_row_and_its_reason(acquired, capsys):
    entries = {e.row: e for e in read_manifest(acquired / MANIFEST)}
    assert sorted(entries) == list(range(1, len(ROWS) + 1))
    status = {row: e.status for row, e in entries.items()}
    assert [status[r] for r in (1, 2, 4, 5, 6)] == [OK] * 5
    assert (status[3], status[7], status[8], status[9]) == (PAST_END, BAD_ROW, BAD_VIDEO, UNAVAILABLE)
    assert all(status[r] == BAD_ROW for r in range(10, 19))
    assert "needs frames 36..47" in entries[3].reason and "40 frames" in entries[3].reason
    assert "lies outside the 160x96 frame" in entries[7].reason
    assert "junk.mp4" in entries[8].reason and "no gone.mp4" in entries[9].reason
    assert "cut to the 160x96 frame" in entries[5].reason and entries[1].reason == ""
    first = entries[1]
    assert (first.clip, first.video_id, first.partition, first.start, first.end) == (
        "train/land#000010#000030.mp4",
        "land",
        "train",
        "10",
        "30",
    )
    assert (first.source_width, first.source_height, first.source_fps) == (160, 96, 30.0)
    assert (first.frames, first.width, first.height) == (24, SIZE, SIZE)
    assert first.bytes == (acquired / first.clip).stat().st_size and len(first.sha256) == 64
    with open(acquired / MANIFEST) as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    assert sorted(p.relative_to(acquired).as_posix() for p in acquired.rglob("*") if p.is_file()) == sorted(
        [MANIFEST, RUN_INFO, *(entries[r].clip for r in (1, 2, 4, 5, 6))]
    )  # nothing else: no temporaries, no half clips


def test_rerun_does_no_work_and_leaves_the_manifest_alone(acquired, sources, tmp_path, monkeypatch, capsys):
    out = tmp_path / "again"
    shutil.copytree(acquired, out)
    manifest = out / MANIFEST
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    fetched: list[str] = []

    class Counting(LocalSource):
        def fetch(self, video_id, work_dir):
            fetched.append(video_id)
            return super().fetch(video_id, work_dir)

    rows, problems = parse_metadata("\n".join([HEADER, *ROWS]))
    entries = acquire(rows, problems, Counting(sources), out, size=SIZE, jobs=1, work_dir=tmp_path, progress=False)
    assert sorted(fetched) == ["gone", "junk"]  # only the ids worth retrying (unavailable, not a video)
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before
    assert [e.status for e in entries] == [e.status for e in read_manifest(acquired / MANIFEST)]
    fetched.clear()
    done = [r for r in rows if r.video_id in ("land", "portrait", "edge")]
    acquire(done, [], Counting(sources), out, size=SIZE, jobs=1, work_dir=tmp_path, progress=False)
    assert fetched == []  # every row of those ids is done: no source fetched, nothing cut
    assert [e.row for e in read_manifest(manifest)] == [r.row for r in done]  # the manifest follows the metadata


def test_a_lost_clip_is_redone_and_the_result_is_the_same_bytes(acquired, sources, tmp_path):
    out = tmp_path / "lost"
    shutil.copytree(acquired, out)
    (out / "train/land#000000#000010.mp4").unlink()
    (out / "test/.portrait#000005#000025.mp4.x1.tmp").write_bytes(b"a killed run's temporary")
    rows, problems = parse_metadata("\n".join([HEADER, *ROWS]))
    acquire(rows, problems, LocalSource(sources), out, size=SIZE, jobs=1, work_dir=tmp_path, progress=False)
    assert (out / MANIFEST).read_bytes() == (acquired / MANIFEST).read_bytes()  # deterministic clips
    assert densemotion(["acquire", "--verify", str(out)]) == 0


def test_verify_names_changed_missing_and_unlisted_clips(acquired, tmp_path, capsys):
    out = tmp_path / "v"
    shutil.copytree(acquired, out)
    assert densemotion(["acquire", "--verify", str(out)]) == 0
    assert "5 clips checked" in capsys.readouterr().out
    with open(out / "train/land#000010#000030.mp4", "r+b") as f:
        f.seek(100)
        f.write(b"\0")
    (out / "test/portrait#000005#000025.mp4").rename(out / "test/stray#000000#000001.mp4")
    assert densemotion(["acquire", "--verify", str(out), "--manifest", str(acquired / MANIFEST)]) == 1
    said = capsys.readouterr().out
    assert "train/land#000010#000030.mp4: sha256" in said
    assert "test/portrait#000005#000025.mp4: missing" in said
    assert "test/stray#000000#000001.mp4: not an ok clip of the manifest" in said
    (out / MANIFEST).write_text("clip,sha\n")
    assert densemotion(["acquire", "--verify", str(out)]) == 1
    assert "not a densemotion acquire manifest" in capsys.readouterr().err


def test_a_full_disk_fails_its_clip_only_and_leaves_nothing_half_written(sources, tmp_path, monkeypatch, capsys):
    real = clips_module.encode_video

    def full(path, frames, fps, **kw):
        if "land#000000" in str(path):
            raise DiskFullError(28, f"disk full while writing {path}; nothing was kept")
        return real(path, frames, fps, **kw)

    monkeypatch.setattr(clips_module, "encode_video", full)
    meta = write_metadata(tmp_path / "meta.csv", ROWS[:4])
    out = tmp_path / "out"
    assert densemotion(["acquire", str(meta), str(out), "--source-dir", str(sources), "--size", str(SIZE),
                        "--jobs", "1", "--no-progress"]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert "1 failed, 2 ok, 1 past_end" in said and "WARNING: 2 of 4 clips were not acquired" in said
    entries = {e.row: e for e in read_manifest(out / MANIFEST)}
    assert entries[2].status == FAILED and "disk full" in entries[2].reason
    assert entries[1].status == OK and entries[4].status == OK  # the clips before and after it
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mp4"))
    assert written == sorted([entries[1].clip, entries[4].clip])


def test_a_killed_run_lists_the_rows_it_had_not_reached(sources, tmp_path, monkeypatch):
    def killed(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("densemotion.acquire.run.cut_clips", killed)
    rows, problems = parse_metadata("\n".join([HEADER, *ROWS[:4]]))
    with pytest.raises(KeyboardInterrupt):
        acquire(rows, problems, LocalSource(sources), tmp_path, size=SIZE, jobs=1, work_dir=tmp_path, progress=False)
    entries = read_manifest(tmp_path / MANIFEST)
    assert [(e.row, e.status, e.reason) for e in entries] == [
        (r, FAILED, "not reached (the run stopped first)") for r in range(1, 5)
    ]


def test_sources_and_command_line_errors(sources, tmp_path, monkeypatch, capsys):
    with pytest.raises(SourceUnavailable, match="no nope.mp4"):
        LocalSource(sources).fetch("nope", tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "yt_dlp", None)  # as if not installed
    meta = write_metadata(tmp_path / "m.csv", ROWS[:1])
    assert densemotion(["acquire", str(meta), str(tmp_path / "o")]) == 1
    assert "pip install 'densemotion[acquire]'" in capsys.readouterr().err
    with pytest.raises(ImportError):
        YtDlpSource.check_installed()
    assert densemotion(["acquire", str(meta), str(tmp_path / "o"), "--source-dir", str(tmp_path / "none")]) == 1
    assert densemotion(["acquire", str(meta), str(tmp_path / "o"), "--source-dir", str(sources), "--size", "31"]) == 1
    assert densemotion(["acquire", str(tmp_path / "o")]) == 1
    assert "give METADATA and OUT_DIR" in capsys.readouterr().err


# --- into the pipeline: use-videos and the partition split ------------------------------------


def test_use_videos_reads_train_and_test_folders_and_the_split_honours_them(acquired, tmp_path):
    videos, skipped = scan_videos(acquired)
    assert videos == {
        "edge_000000_000012": str(acquired / "train/edge#000000#000012.mp4"),
        "edge_000012_000024": str(acquired / "train/edge#000012#000024.mp4"),
        "land_000000_000010": str(acquired / "train/land#000000#000010.mp4"),
        "land_000010_000030": str(acquired / "train/land#000010#000030.mp4"),
        "portrait_000005_000025": str(acquired / "test/portrait#000005#000025.mp4"),
    }
    assert [entry.split(" ")[0] for entry in skipped] == [MANIFEST, RUN_INFO]  # "NAME (why)"
    params = write_params(tmp_path / "params.yaml")
    assert densemotion(["use-videos", str(acquired), "--params", str(params)]) == 0
    data = load_params(params).data
    partition = data.partitions()
    assert partition["portrait_000005_000025"] == "test" and partition["land_000010_000030"] == "train"
    group = r"^(.*)_\d{6}_\d{6}$"
    split = split_videos(list(data.videos), val=1, test=3, seed=0, group=group, partition=partition)
    assert split.test == ("portrait_000005_000025",)  # the metadata's test set; test=3 is not used
    assert len({name.split("_")[0] for name in split.val}) == 1 and len(split.val) == 2  # one id, whole
    assert set(split.train) | set(split.val) == set(videos) - {"portrait_000005_000025"}
    with pytest.raises(DatasetError, match="neither a train/ nor a test/ folder"):
        split_videos(["a", "b"], val=0, test=0, seed=0, partition={"a": "train"})
    with pytest.raises(DatasetError, match="no video has its source in a test/ folder"):
        split_videos(["a", "b"], val=0, test=0, seed=0, partition={"a": "train", "b": "train"})


def test_names_never_start_with_a_dash():
    assert stage_name("-K57q5o3dn4#000080#000300") == "K57q5o3dn4_000080_000300"  # six TaiChi ids do
    with pytest.raises(ValueError, match="nor start with '-'|starting with a letter or digit"):
        DataParams(videos={"-x": "a.mp4"})


# --- end to end: acquire -> dvc add -> use-videos -> dvc repro ---------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_acquire_then_use_videos_then_repro_runs_the_pipeline(repo, tmp_path):  # noqa: F811 (the fixture)
    src = tmp_path / "youtube"
    src.mkdir()
    ids = {"-aB3_x": "train", "cc": "train", "dd": "test"}  # one id starts with '-', as six of TaiChi's do
    for seed, video_id in enumerate(ids):
        encode_video(src / f"{video_id}.mp4", moving_frames(40, 96, 128, seed=seed), 30)
    rows = [f"-aB3_x,{s},{s + 16},16-8-112-88,30.0,128,96,train" for s in (0, 20)]
    rows += ["cc,4,20,0-0-96-96,30.0,128,96,train", "dd,0,16,32-0-128-96,30.0,128,96,test"]
    meta = write_metadata(tmp_path / "meta.csv", rows)
    acquire_cmd = [BIN / "python", "-m", "densemotion", "acquire", str(meta), "data/raw/taichi"]
    acquire_cmd += ["--source-dir", str(src), "--size", "64", "--no-progress"]
    run(repo, *acquire_cmd)
    assert (repo / "data/raw/taichi/train/-aB3_x#000020#000036.mp4").is_file()
    run(repo, "dvc", "add", "data/raw/taichi")
    run(repo, BIN / "python", "-m", "densemotion", "use-videos", "data/raw/taichi")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(split_partition=True, split_group=r"^(.*)_\d{6}_\d{6}$")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(repo, "dvc", "repro")
    assert "frames@aB3_x_000000_000016" in out.stdout and "evaluate" in out.stdout
    split = json.loads((repo / "metrics/train/split.json").read_text())
    assert split["test"] == ["dd_000000_000016"]
    assert sorted(split["train"] + split["val"]) == ["aB3_x_000000_000016", "aB3_x_000020_000036", "cc_000004_000020"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    deps = [d["path"] for d in lock["frames@aB3_x_000020_000036"]["deps"]]
    assert "data/raw/taichi/train/-aB3_x#000020#000036.mp4" in deps
    manifest = repo / "data/raw/taichi" / MANIFEST
    before = (manifest.read_bytes(), manifest.stat().st_mtime_ns)
    again = run(repo, *acquire_cmd)
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before  # a rerun does no work
    assert "4 ok" in again.stdout
    assert run(repo, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    sample = sample_params_dict()["train"]
    assert sample["split_partition"] is False  # the sample keeps the random split


def test_yt_dlp_source_downloads_into_its_folder_and_names_what_is_gone(tmp_path, monkeypatch, sources):
    """yt-dlp's own API, stood in for offline: a download lands in the folder the run gave it."""
    import types

    class DownloadError(Exception):
        pass

    calls: list[str] = []

    class YoutubeDL:
        def __init__(self, options):
            self.options = options

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def extract_info(self, url, download):
            calls.append(url)
            if url.endswith("=gone"):
                raise DownloadError("ERROR: [youtube] gone: Video unavailable.  This video has been removed")
            return {"ext": "mp4", "url": url}

        def prepare_filename(self, info):
            path = Path(self.options["outtmpl"].replace("%(ext)s", info["ext"]))
            shutil.copy(sources / "land.mp4", path)
            return str(path)

    fake = types.SimpleNamespace(YoutubeDL=YoutubeDL, utils=types.SimpleNamespace(DownloadError=DownloadError))
    monkeypatch.setitem(__import__("sys").modules, "yt_dlp", fake)
    YtDlpSource.check_installed()
    assert YtDlpSource().identity() == "yt-dlp (version unknown)"
    source = YtDlpSource()
    folder = tmp_path / "dl" / ".acquire-land.x"
    folder.mkdir(parents=True)
    path = source.fetch("land", folder)
    assert path == folder / "land.mp4" and calls == ["https://www.youtube.com/watch?v=land"]
    source.release("land", path, folder)
    assert path.is_file()  # the run removes the folder, not the source
    with pytest.raises(SourceUnavailable, match=r"^\[youtube\] gone: Video unavailable. This video has been removed$"):
        source.fetch("gone", folder)
    kept = YtDlpSource(keep=True)
    kept.release("land", path, folder)
    assert (tmp_path / "dl" / "land.mp4").is_file() and not path.exists()  # kept beside the folder
    assert kept.fetch("land", tmp_path / "dl" / ".acquire-land.y") == tmp_path / "dl" / "land.mp4"
    assert len(calls) == 2  # the kept download was used
    assert source.fetch("land", folder) == folder / "land.mp4" and len(calls) == 3  # without keep: downloads


def test_metadata_from_a_url(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    body = "\n".join([HEADER, *ROWS[:2]]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rows, problems = parse_metadata(read_text(f"http://127.0.0.1:{server.server_port}/taichi-metadata.csv"))
    finally:
        server.shutdown()
    assert [r.path for r in rows] == ["train/land#000010#000030.mp4", "train/land#000000#000010.mp4"] and not problems
