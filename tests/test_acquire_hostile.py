"""`densemotion acquire` against hostile inputs: the user's own files in --download-dir, a
downloader that reports a path elsewhere or hangs, a worker killed mid-run, manifests naming
files outside the output folder, metadata rows no parser should trust, and options out of bounds.

The rules checked: a problem of outside data is a row of the manifest (one clear line), never
the end of the run; a run removes only what it wrote itself; no path a manifest names is opened
unless it lies (symlinks resolved) inside the output folder.
"""

from __future__ import annotations

import builtins
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from densemotion.__main__ import main as densemotion
from densemotion.acquire import clips as clips_module
from densemotion.acquire import manifest as manifest_module
from densemotion.acquire.manifest import (
    BAD_ROW,
    COLUMNS,
    FAILED,
    MANIFEST,
    OK,
    RUN_INFO,
    STATUSES,
    Entry,
    clip_path,
    read_manifest,
    render,
    verify,
)
from densemotion.acquire.metadata import ClipRow, parse_metadata, read_text
from densemotion.acquire.run import acquire
from densemotion.acquire.sources import LocalSource
from densemotion.video import encode_video, probe

from conftest import moving_frames

HEADER = "video_id,start,end,bbox,fps,width,height,partition"
SIZE = 16


def _frames(n: int = 20, h: int = 48, w: int = 64) -> np.ndarray:
    x = np.linspace(40, 215, w)[None, :, None].repeat(h, 0)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        out[t] = np.concatenate([x, x[::-1], np.full((h, w, 1), 6 * t)], axis=-1).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """a.mp4, b.mp4, c.mp4: 20 frames of 64x48 at 25 fps; junk.mp4: not a video."""
    folder = tmp_path_factory.mktemp("hostile_sources")
    encode_video(folder / "a.mp4", _frames(), 25, crf=8)
    for other in ("b", "c"):
        shutil.copy(folder / "a.mp4", folder / f"{other}.mp4")
    (folder / "junk.mp4").write_text("<html>This video is unavailable</html>")
    return folder


def _row(video_id: str, start: int = 0, end: int = 10) -> str:
    return f"{video_id},{start},{end},0-0-64-48,25.0,64,48,train"


def _meta(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _rows(*video_ids: str) -> tuple[list[ClipRow], list]:
    return parse_metadata("\n".join([HEADER, *(_row(v) for v in video_ids)]))


def _by_id(entries: list[Entry]) -> dict[str, Entry]:
    return {e.video_id: e for e in entries}


# --- picklable fake sources (worker processes get them) ---------------------------------------


@dataclass(frozen=True)
class KillsItsWorker(LocalSource):
    """Fetching ``doomed`` kills the process doing it (as the kernel's OOM killer would)."""

    doomed: str = "b"

    def fetch(self, video_id: str, folder: Path) -> Path:
        if video_id == self.doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fetch(video_id, folder)


@dataclass(frozen=True)
class Hangs(LocalSource):
    """Fetching ``stuck`` never returns (a downloader stalled on a dead connection)."""

    stuck: str = "b"

    def fetch(self, video_id: str, folder: Path) -> Path:
        if video_id == self.stuck:
            time.sleep(120)
        return super().fetch(video_id, folder)


# --- a fake yt-dlp (in this process: --jobs 1) -------------------------------------------------


def fake_yt_dlp(monkeypatch, video: Path, calls: list[str], report: dict[str, Path] | None = None) -> None:
    """yt_dlp as the module's API is used: each download is a copy of ``video`` written where the
    output template says; ``report`` makes it name another path for some ids (a hostile build)."""

    class DownloadError(Exception):
        pass

    class YoutubeDL:
        def __init__(self, options):
            self.options = options

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def extract_info(self, url, download):
            calls.append(url)
            return {"ext": "mp4", "id": url.rsplit("=", 1)[1]}

        def prepare_filename(self, info):
            assert self.options["socket_timeout"] > 0  # a stalled connection ends
            path = Path(self.options["outtmpl"].replace("%(ext)s", info["ext"]))
            shutil.copy(video, path)
            return str((report or {}).get(info["id"], path))

    fake = types.SimpleNamespace(
        YoutubeDL=YoutubeDL,
        utils=types.SimpleNamespace(DownloadError=DownloadError),
        version=types.SimpleNamespace(__version__="2099.01.01"),
    )
    monkeypatch.setitem(sys.modules, "yt_dlp", fake)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. downloads: only what the run itself downloaded is ever removed -------------------------


def test_the_users_files_in_the_download_dir_are_never_taken_nor_deleted(sources, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vidA.mp4").write_bytes(b"my own video A, not a download")
    (mine / "vidB.mp4").write_bytes(b"my own video B")
    (mine / "notes.txt").write_text("mine too")
    before = _files(mine)
    calls: list[str] = []
    fake_yt_dlp(monkeypatch, sources / "a.mp4", calls)
    meta = _meta(tmp_path / "m.csv", [_row("vidA"), _row("vidB")])
    out = tmp_path / "out"
    argv = ["acquire", str(meta), str(out), "--download-dir", str(mine), "--jobs", "1", "--size", str(SIZE)]
    assert densemotion([*argv, "--no-progress"]) == 0
    assert _files(mine) == before  # untouched, and nothing of the run's own left behind
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "vidA.mp4", "vidB.mp4"]
    assert len(calls) == 2  # downloaded, not taken from the user's files
    assert [e.status for e in read_manifest(out / MANIFEST)] == [OK, OK]


def test_a_download_reported_outside_its_folder_is_failed_never_read_nor_removed(
    sources, tmp_path, monkeypatch, capsys
):
    victim = tmp_path / "elsewhere" / "victim.mp4"
    victim.parent.mkdir()
    shutil.copy(sources / "a.mp4", victim)  # a real video: read, it would make a clip
    before = victim.read_bytes()
    fake_yt_dlp(monkeypatch, sources / "a.mp4", [], report={"vidA": victim})
    meta = _meta(tmp_path / "m.csv", [_row("vidA"), _row("vidB")])
    out = tmp_path / "out"
    work = tmp_path / "work"
    argv = ["acquire", str(meta), str(out), "--download-dir", str(work), "--jobs", "1", "--size", str(SIZE)]
    assert densemotion([*argv, "--no-progress"]) == 0
    entries = _by_id(read_manifest(out / MANIFEST))
    assert entries["vidA"].status == FAILED and "outside its download folder" in entries["vidA"].reason
    assert str(tmp_path) not in entries["vidA"].reason  # the manifest holds no machine path
    assert entries["vidB"].status == OK
    assert victim.read_bytes() == before
    assert not (out / "train/vidA#000000#000010.mp4").exists()
    assert list(work.iterdir()) == []  # the run's own download folders are gone
    assert "failed: vidA" in capsys.readouterr().out


def test_kept_downloads_are_reused_and_never_deleted_by_a_later_run(sources, tmp_path, monkeypatch):
    calls: list[str] = []
    fake_yt_dlp(monkeypatch, sources / "a.mp4", calls)
    meta = _meta(tmp_path / "m.csv", [_row("vidA")])
    work = tmp_path / "work"
    options = ["--download-dir", str(work), "--jobs", "1", "--size", str(SIZE), "--no-progress"]
    assert densemotion(["acquire", str(meta), str(tmp_path / "o1"), *options, "--keep-downloads"]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["vidA.mp4"] and len(calls) == 1
    kept = (work / "vidA.mp4").read_bytes()
    assert densemotion(["acquire", str(meta), str(tmp_path / "o2"), *options, "--keep-downloads"]) == 0
    assert len(calls) == 1  # the kept download was used
    assert densemotion(["acquire", str(meta), str(tmp_path / "o3"), *options]) == 0  # without: downloads anew
    assert len(calls) == 2 and (work / "vidA.mp4").read_bytes() == kept  # and leaves the kept one be
    assert sorted(p.name for p in work.iterdir()) == ["vidA.mp4"]


# --- 2. manifest paths: inside the output folder, or never opened -------------------------------


def _ok_entry(row: int, clip: str) -> Entry:
    return Entry(row, clip, "a", "train", "0", "10", OK, sha256="0" * 64, bytes=5, width=SIZE, height=SIZE)


def test_verify_never_opens_a_path_outside_the_output_folder(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "secret.mp4"
    secret.write_text("not yours")
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train/link#000000#000010.mp4").symlink_to(secret)
    (out / "escape").symlink_to(tmp_path)  # a folder link out
    clips = [
        str(secret),  # absolute
        "../secret.mp4",
        "train/../../secret.mp4",
        "train/link#000000#000010.mp4",  # inside by name, outside once resolved
        "escape/secret.mp4",
        "/etc/hostname",
        "../../etc/passwd",
    ]
    (out / MANIFEST).write_text(render([_ok_entry(i, c) for i, c in enumerate(clips, start=1)]))
    opened: list[Path] = []
    real_open = builtins.open

    def spying_open(file, *args, **kw):
        if isinstance(file, str | Path):
            opened.append(Path(file).resolve())
        return real_open(file, *args, **kw)

    monkeypatch.setattr(builtins, "open", spying_open)
    monkeypatch.setattr(io, "open", spying_open)  # pathlib's reads go through io.open
    assert densemotion(["acquire", "--verify", str(out)]) == 1
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_open)
    said = capsys.readouterr()
    for row in range(1, len(clips) + 1):
        assert f"row {row}: " in said.out and "outside" in said.out
    assert hashlib.sha256(b"not yours").hexdigest() not in said.out
    assert secret.resolve() not in opened and Path("/etc/passwd") not in opened
    assert all(p.is_relative_to(out.resolve()) for p in opened), opened
    assert "Traceback" not in said.err


def test_a_resumed_run_never_trusts_nor_overwrites_a_clip_outside_the_output_folder(sources, tmp_path):
    out = tmp_path / "out"
    rows, problems = _rows("a")
    acquire(rows, problems, LocalSource(sources), out, size=SIZE, jobs=1, work_dir=tmp_path / "w", progress=False)
    clip = out / rows[0].path
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(clip.read_bytes())  # the very size the manifest records
    clip.unlink()
    clip.symlink_to(outside)
    os.utime(outside, (0, 0))
    before = (outside.read_bytes(), outside.stat().st_mtime_ns)
    entries = acquire(
        rows, problems, LocalSource(sources), out, size=SIZE, jobs=1, work_dir=tmp_path / "w", progress=False
    )
    assert entries[0].status == FAILED and "outside" in entries[0].reason
    assert (outside.read_bytes(), outside.stat().st_mtime_ns) == before
    assert clip.is_symlink()  # left as it was: not this run's to replace


def test_a_manifest_entry_naming_a_path_outside_is_never_trusted(sources, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "train" / "a#000000#000010.mp4"  # where ../train/... points
    target.parent.mkdir()
    target.write_bytes(b"x" * 5)
    (out / MANIFEST).write_text(render([_ok_entry(1, "../train/a#000000#000010.mp4")]))
    rows, problems = _rows("a")
    entries = acquire(
        rows, problems, LocalSource(sources), out, size=SIZE, jobs=1, work_dir=tmp_path / "w", progress=False
    )
    assert entries[0].status == OK and entries[0].clip == "train/a#000000#000010.mp4"
    assert target.read_bytes() == b"x" * 5


def test_clip_path_is_inside_or_none(tmp_path):
    (tmp_path / "train").mkdir()
    assert clip_path(tmp_path, "train/a#000000#000010.mp4") == tmp_path / "train/a#000000#000010.mp4"
    for bad in ("", "/etc/passwd", "../x.mp4", "train/../../x.mp4", "train/a.mp4/..", "train\\..\\x.mp4", "a\0b"):
        assert clip_path(tmp_path, bad) is None, bad


# --- 3. one bad row or one dead worker never ends the run -----------------------------------------


HOSTILE_VALUES = {
    "fps": ["1/0", "0/0", "-5", "nan", "inf", "-inf", "1e999999999", "1_0", "١٢", "0", "1/-2", " ", "9" * 5000],
    "start": ["1_0", "١٢", "-5", "+3", "1e3", "nan", "0x10", "9" * 5000, "1.5", "½"],
    "width": ["1_0", "١٢", "0", "-640", "6.4e2", "inf"],
    "bbox": ["0-0-1_0-10", "0-0-١٢-10", "0-0-10-10-", "--1-0-10-10", "0-0-" + "9" * 5000 + "-10"],
}


def test_every_hostile_value_is_a_bad_row_naming_it_and_the_rest_parse():
    lines, expect = [_row("ok")], []
    good = dict(zip(HEADER.split(","), _row("x").split(","), strict=True))
    for column, values in HOSTILE_VALUES.items():
        for value in values:
            fields = {**good, column: value}
            lines.append(",".join(fields[c] for c in HEADER.split(",")))
            expect.append(column)
    start = time.monotonic()
    rows, problems = parse_metadata("\n".join([HEADER, *lines]))
    assert time.monotonic() - start < 5  # no 10**999999999 computed
    assert [r.video_id for r in rows] == ["ok"]
    assert [p.row for p in problems] == list(range(2, len(lines) + 1))
    for problem, column in zip(problems, expect, strict=True):
        assert column in problem.reason, (problem.row, problem.reason)
        assert len(problem.reason) < 200 and all(len(v) <= 100 for v in problem.fields.values())
    assert any("1/0" in p.reason for p in problems)


def test_integers_are_plain_ascii_digits():
    rows, problems = parse_metadata("\n".join([HEADER, "a,1_0,20,0-0-64-48,25,64,48,train"]))
    assert rows == [] and "plain digits" in problems[0].reason
    rows, problems = parse_metadata("\n".join([HEADER, "a,١٢,20,0-0-64-48,25,64,48,train"]))
    assert rows == [] and "plain digits" in problems[0].reason
    rows, _ = parse_metadata("\n".join([HEADER, "a,012,20,0--4-64-48,29.97,64,48,train"]))
    assert rows[0].start == 12 and rows[0].box == (0, -4, 64, 48)


def test_a_field_beyond_the_csv_limit_is_a_bad_row_not_the_end(tmp_path):
    huge = "x" * 300_000
    rows, problems = parse_metadata("\n".join([HEADER, _row("a"), f"b,0,10,{huge},25,64,48,train", _row("c")]))
    assert [r.video_id for r in rows] == ["a", "c"]
    assert [p.row for p in problems] == [2] and "field larger than field limit" in problems[0].reason


def test_fps_1_over_0_is_a_bad_row_of_the_run_not_a_traceback(sources, tmp_path, capsys):
    meta = _meta(tmp_path / "m.csv", [_row("a"), "b,0,10,0-0-64-48,1/0,64,48,train"])
    out = tmp_path / "out"
    argv = ["acquire", str(meta), str(out), "--source-dir", str(sources), "--size", str(SIZE), "--no-progress"]
    assert densemotion(argv) == 0
    entries = read_manifest(out / MANIFEST)
    assert [e.status for e in entries] == [OK, BAD_ROW] and "fps" in entries[1].reason
    assert "bad_row: b (row 2): fps" in capsys.readouterr().out


def test_a_killed_worker_fails_its_own_id_and_the_run_goes_on(sources, tmp_path):
    rows, problems = _rows("a", "b", "c", "junk")
    entries = acquire(
        rows, problems, KillsItsWorker(sources), tmp_path / "out", size=SIZE, jobs=2, work_dir=tmp_path / "w",
        progress=False, timeout=60,
    )  # fmt: skip
    by_id = _by_id(entries)
    assert by_id["b"].status == FAILED and "worker process died" in by_id["b"].reason
    assert "SIGKILL" in by_id["b"].reason and "out of memory" in by_id["b"].reason
    assert by_id["a"].status == OK and by_id["c"].status == OK and by_id["junk"].status == "bad_video"
    assert [e.status for e in read_manifest(tmp_path / "out" / MANIFEST)] == [e.status for e in entries]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_hung_source_times_out_as_a_failed_row_and_the_run_goes_on(sources, tmp_path, jobs):
    rows, problems = _rows("a", "b", "c")
    start = time.monotonic()
    entries = acquire(
        rows, problems, Hangs(sources), tmp_path / "out", size=SIZE, jobs=jobs, work_dir=tmp_path / "w",
        progress=False, timeout=2.5 if jobs > 1 else 1.0,
    )  # fmt: skip
    assert time.monotonic() - start < 30
    by_id = _by_id(entries)
    assert by_id["b"].status == FAILED and "timed out after" in by_id["b"].reason and "--timeout" in by_id["b"].reason
    assert by_id["a"].status == OK and by_id["c"].status == OK


# --- 4. options out of bounds: one line, exit 1 -----------------------------------------------------


def test_size_and_timeout_are_bounded(sources, tmp_path, capsys):
    meta = _meta(tmp_path / "m.csv", [_row("a")])
    base = ["acquire", str(meta), str(tmp_path / "o"), "--source-dir", str(sources)]
    for option in (["--size", "60000"], ["--size", "4098"], ["--size", "0"], ["--size", "31"]):
        assert densemotion([*base, *option]) == 1
        err = capsys.readouterr().err
        assert "4096" in err and err.count("\n") == 1, err
    for timeout in ("0", "-1", "nan", "inf"):
        assert densemotion([*base, "--timeout", timeout]) == 1
        assert "--timeout" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        densemotion(["acquire", "--help"])
    said = capsys.readouterr().out
    assert "4096" in said and "--timeout" in said


def test_a_clip_too_big_for_memory_is_failed_before_decoding(sources, tmp_path, monkeypatch):
    monkeypatch.setattr(clips_module, "MAX_CLIP_BYTES", 10 * SIZE * SIZE * 3 - 1)
    rows, problems = _rows("a")
    entries = acquire(
        rows, problems, LocalSource(sources), tmp_path, size=SIZE, jobs=1, work_dir=tmp_path, progress=False
    )
    assert entries[0].status == FAILED and "--size" in entries[0].reason


# --- 6. metadata text ----------------------------------------------------------------------------


def test_metadata_that_is_not_utf8_is_one_line_naming_the_file(tmp_path, capsys):
    meta = tmp_path / "latin.csv"
    meta.write_bytes((HEADER + "\ncaf\xe9,0,10,0-0-64-48,25,64,48,train\n").encode("latin-1"))
    assert densemotion(["acquire", str(meta), str(tmp_path / "o"), "--source-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(meta) in err and "not UTF-8 text" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_text(meta)


# --- 7. a rerun with other options; what the run records ----------------------------------------


def test_a_rerun_with_another_size_remakes_the_clips_and_records_its_options(sources, tmp_path, capsys):
    meta = _meta(tmp_path / "m.csv", [_row("a"), _row("junk"), _row("gone")])
    out = tmp_path / "out"
    base = ["acquire", str(meta), str(out), "--source-dir", str(sources), "--no-progress"]
    assert densemotion([*base, "--size", str(SIZE)]) == 0
    clip = out / "train/a#000000#000010.mp4"
    assert probe(clip).width == SIZE
    info = json.loads((out / RUN_INFO).read_text())
    assert info["size"] == SIZE and info["metadata_sha256"] == hashlib.sha256(meta.read_bytes()).hexdigest()
    assert "local" in info["source"]
    text = (out / MANIFEST).read_text() + (out / RUN_INFO).read_text()
    assert str(sources) not in text and str(tmp_path) not in text  # no machine paths
    assert densemotion([*base, "--size", str(2 * SIZE)]) == 0
    assert probe(clip).width == 2 * SIZE
    entries = read_manifest(out / MANIFEST)
    assert (entries[0].width, entries[0].height) == (2 * SIZE, 2 * SIZE)
    assert json.loads((out / RUN_INFO).read_text())["size"] == 2 * SIZE
    assert densemotion(["acquire", "--verify", str(out)]) == 0
    before = {p: p.stat().st_mtime_ns for p in (out / MANIFEST, out / RUN_INFO, clip)}
    assert densemotion([*base, "--size", str(2 * SIZE)]) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the same options: no work, nothing rewritten


# --- property-based: metadata rows and manifests from anywhere ---------------------------------------

_NUMBERS = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["1/0", "0/0", "-5", "nan", "inf", "1_0", "١٢", "", " ", "1e400", "25.0", "29.97", "30000/1001"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=30),
    st.text(alphabet="0123456789-_/.e+", max_size=40),
    st.just("9" * 10_000),
)
_FIELDS = {
    "video_id": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True), st.text(max_size=80)),
    "start": _NUMBERS,
    "end": _NUMBERS,
    "bbox": st.one_of(
        st.tuples(*[st.integers(-(10**12), 10**12)] * 4).map(lambda b: "-".join(map(str, b))),
        st.text(alphabet="0123456789-_١", max_size=40),
        st.text(max_size=40),
    ),
    "fps": _NUMBERS,
    "width": _NUMBERS,
    "height": _NUMBERS,
    "partition": st.one_of(st.sampled_from(["train", "test", "valid", ""]), st.text(max_size=10)),
}


@given(st.lists(st.fixed_dictionaries(_FIELDS), min_size=1, max_size=8))
def test_any_metadata_row_is_a_clip_or_a_problem_naming_its_row(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER.split(","))
    for fields in rows:
        writer.writerow([fields[c] for c in HEADER.split(",")])
    clips, problems = parse_metadata(out.getvalue())
    numbers = sorted([c.row for c in clips] + [p.row for p in problems])
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) <= len(rows)
    for clip in clips:
        assert 0 <= clip.start < clip.end and clip.fps > 0 and clip.width > 0 and clip.height > 0
        assert clip_path(Path("/out"), clip.path) == Path("/out") / clip.path
    for problem in problems:
        assert problem.reason and len(problem.reason) < 300


@given(st.text(max_size=400))
def test_any_text_after_the_header_parses_to_rows_and_problems(body):
    clips, problems = parse_metadata(HEADER + "\n" + body)
    assert all(isinstance(c, ClipRow) for c in clips) and all(p.reason for p in problems)


_CLIPS = st.one_of(
    st.sampled_from(
        ["train/a#000000#000010.mp4", "train/link#000000#000010.mp4", "../secret.mp4", "/etc/hostname"]
        + ["train/../../secret.mp4", "escape/secret.mp4", "", "train/", "test/a#000000#000010.mp4/.."]
    ),
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "train", "escape", "secret.mp4", "/", "a#000000#000010.mp4"]), max_size=5).map(
        "/".join
    ),
)
_CELLS = st.one_of(st.text(max_size=12), st.integers(-5, 10**20).map(str), st.just(""))


@pytest.fixture(scope="module")
def walled(tmp_path_factory) -> tuple[Path, Path]:
    """(out_dir, a secret file outside it), out_dir holding a link to the secret and one out of it."""
    root = tmp_path_factory.mktemp("walled")
    secret = root / "secret.mp4"
    secret.write_text("secret")
    out = root / "out"
    (out / "train").mkdir(parents=True)
    (out / "train/a#000000#000010.mp4").write_bytes(b"a clip")
    (out / "train/link#000000#000010.mp4").symlink_to(secret)
    (out / "escape").symlink_to(root)
    return out, secret


@given(st.lists(st.tuples(_CLIPS, st.sampled_from(STATUSES), _CELLS, _CELLS), max_size=6))
def test_verify_of_any_manifest_opens_nothing_outside(walled, lines):
    out, secret = walled
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row, (clip, status, cell, sha) in enumerate(lines, start=1):
        values = {c: "" for c in COLUMNS} | {"row": str(row), "clip": clip, "status": status, "bytes": cell}
        writer.writerow([values[c] if c != "sha256" else sha for c in COLUMNS])
    (out / MANIFEST).write_text(text.getvalue())
    hashed: list[Path] = []
    real = manifest_module.sha256_file

    def spy(path, *args, **kw):
        hashed.append(Path(path).resolve())
        return real(path, *args, **kw)

    manifest_module.sha256_file = spy
    try:
        try:
            entries = read_manifest(out / MANIFEST)
        except ValueError:
            return  # refused as a whole, with the reason: nothing opened
        problems = verify(out, entries)
    finally:
        manifest_module.sha256_file = real
    assert secret.resolve() not in hashed and all(p.is_relative_to(out.resolve()) for p in hashed)
    assert all("secret" not in p or "outside" in p or "not an ok clip" in p for p in problems), problems


def test_a_source_cut_short_is_a_failed_row_to_retry_not_past_its_end(tmp_path):
    """A download cut at half is no end of the video: its clips past the cut are failed (a rerun
    fetches again), naming the decoded and stated lengths; clips within it are made."""
    folder = tmp_path / "src"
    folder.mkdir()
    encode_video(folder / "t.mp4", moving_frames(48, 64, 96), 25, muxer="mpegts")  # as test_frames_hostile's
    data = (folder / "t.mp4").read_bytes()
    (folder / "t.mp4").write_bytes(data[: len(data) // 2])
    rows, problems = parse_metadata("\n".join([HEADER, _row("t", 0, 4), _row("t", 36, 44)]))
    entries = acquire(
        rows, problems, LocalSource(folder), tmp_path / "out", size=SIZE, jobs=1, work_dir=tmp_path, progress=False
    )
    assert [e.status for e in entries] == [OK, FAILED], entries
    assert "container states" in entries[1].reason and str(tmp_path) not in entries[1].reason
