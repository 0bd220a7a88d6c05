"""Shot cuts: found by the frames stage, and windows spanning them skipped by the trajectories stage."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from densemotion.frames import cuts
from densemotion.frames.extract import extract
from densemotion.frames.store import FrameArchive, FrameArchiveError
from densemotion.params import FramesParams, SampleParams, TrajectoriesParams
from densemotion.sample import render_clip
from densemotion.trajectories.run import TrajectoriesError, make_plan, make_tracker, track_video
from densemotion.trajectories.store import TrajectoryStore
from densemotion.video import encode_video

from conftest import moving_frames
from test_trajectories_run import FailingTracker, MemoryFrames

CUT = 14  # the spliced clips' second shot starts at this frame


def panning(n: int, h: int, w: int, speed: int, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: the tests' texture panning ``speed`` px/frame (8 at w=96: a fast pan)."""
    wide = moving_frames(1, h, w + n * speed, seed)[0]
    return np.stack([wide[:, t * speed : t * speed + w] for t in range(n)])


def scene(seed: int, n: int) -> np.ndarray:
    """(n, 64, 112, 3) uint8: a sample clip (textured background, moving sprites) of its own seed."""
    return render_clip(SampleParams(seed=seed, num_frames=n, height=64, width=112, sprites=3), 0)[0]


def letterboxed(frames: np.ndarray) -> np.ndarray:
    """The frames between black bars, top and bottom, as films come: these cover 3/5 of the
    picture, so a cut changes under half of it, which only cutting the bars off shows."""
    bar = frames.shape[1] * 3 // 4
    out = np.zeros((frames.shape[0], frames.shape[1] + 2 * bar, *frames.shape[2:]), np.uint8)
    out[:, bar : bar + frames.shape[1]] = frames
    return out


SHOTS = {
    "textures": lambda: np.concatenate([moving_frames(CUT, 64, 96, 0), moving_frames(24 - CUT, 64, 96, 1)]),
    "scenes": lambda: np.concatenate([scene(0, CUT), scene(1, 24 - CUT)]),
    "letterboxed": lambda: letterboxed(np.concatenate([scene(3, CUT), scene(4, 24 - CUT)])),
}


@pytest.fixture(scope="module")
def spliced(tmp_path_factory):
    """kind -> an H.264 clip of two shots, the second starting at frame CUT."""
    folder = tmp_path_factory.mktemp("spliced")
    paths = {}
    for kind, make in SHOTS.items():
        paths[kind] = folder / f"{kind}.mp4"
        encode_video(paths[kind], make(), 24.0, crf=18)
    return paths


def _frames(archive_path) -> list[bytes]:
    with FrameArchive(archive_path) as a:
        return [a.read_bytes(i) for i in range(len(a))]


@pytest.mark.parametrize("kind", sorted(SHOTS))
@pytest.mark.parametrize("max_size", [None, 47])  # YUV planes as decoded; RGB resized to an odd size
def test_frames_stage_finds_exactly_the_cut(spliced, tmp_path, kind, max_size):
    meta = extract(str(spliced[kind]), tmp_path / "a.zip", FramesParams(max_size=max_size), progress=False)
    assert meta["cuts"] == [CUT] and meta["cut_threshold"] == FramesParams().cut_threshold


def test_detector_scores_as_cut_score_does():
    rng = np.random.default_rng(0)
    means = rng.integers(0, 256, (6, cuts.GRID, cuts.GRID, 3), dtype=np.uint8)
    means[3:, :8, :, 0] = 0  # a black bar appears: the compared region changes
    scores = [cuts.cut_score(means[i - 1], means[i]) for i in range(1, 6)]
    threshold = float(np.median(scores))
    detector = cuts.CutDetector(threshold)
    for m in means:
        detector.add(m)
    assert detector.cuts == [i for i in range(1, 6) if scores[i - 1] > threshold]


def test_cut_is_an_archive_index_and_image_sources_find_it(spliced, tmp_path):
    # every other frame kept: the cut at source frame 14 is archive frame 7
    meta = extract(str(spliced["textures"]), tmp_path / "half.zip", FramesParams(fps=12), progress=False)
    assert meta["source_indices"][7] == CUT and meta["cuts"] == [7]
    # a folder of JPEGs (stored as they are): the same cut from the decoded images
    folder = tmp_path / "jpegs"
    folder.mkdir()
    for i, data in enumerate(_frames(tmp_path / "half.zip")):
        (folder / f"{i:03d}.jpg").write_bytes(data)
    meta = extract(str(folder), tmp_path / "folder.zip", FramesParams(), progress=False)
    assert meta["passthrough"] and meta["cuts"] == [7]


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(lambda: moving_frames(24, 64, 96, 0), id="slow-1px"),
        pytest.param(lambda: panning(24, 64, 96, 8), id="fast-8px"),  # a twelfth of the width per frame
        pytest.param(lambda: scene(2, 24), id="sprites"),
    ],
)
def test_no_cut_within_one_shot(tmp_path, frames):
    encode_video(tmp_path / "one.mp4", frames(), 24.0, crf=18)
    assert extract(str(tmp_path / "one.mp4"), tmp_path / "a.zip", FramesParams(), progress=False)["cuts"] == []


def test_null_threshold_disables_detection_and_never_changes_the_jpegs(spliced, tmp_path):
    off = extract(
        str(spliced["textures"]), tmp_path / "off.zip", FramesParams(cut_threshold=None), name="c", progress=False
    )
    on = extract(str(spliced["textures"]), tmp_path / "on.zip", FramesParams(workers=3), name="c", progress=False)
    assert off["cuts"] == [] and off["cut_threshold"] is None and on["cuts"] == [CUT]
    assert _frames(tmp_path / "off.zip") == _frames(tmp_path / "on.zip")
    strip = ("cuts", "cut_threshold")
    assert {k: v for k, v in off.items() if k not in strip} == {k: v for k, v in on.items() if k not in strip}


def _rewrite_meta(path, **changes):
    """Copy of archive ``path`` with meta keys changed (None: removed), as an old or forged archive."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(members["meta.json"])
    for key, value in changes.items():
        meta.pop(key) if value is None else meta.__setitem__(key, value)
    out = path.with_name(f"edited-{path.name}")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, json.dumps(meta) if name == "meta.json" else data)
    return out


def test_old_archives_read_as_without_cuts_and_forged_cuts_are_refused(spliced, tmp_path):
    extract(str(spliced["textures"]), tmp_path / "a.zip", FramesParams(), progress=False)
    old = _rewrite_meta(tmp_path / "a.zip", cuts=None, cut_threshold=None)
    with FrameArchive(old) as archive:
        assert "cuts" not in archive.meta
        plan = make_plan(archive, _params(window=4))
    assert plan.cuts == [] and plan.cut_starts == [] and len(plan.starts) == 6
    for bad in ([0], [24], [9, 9], [12, 5], ["3"], [True], 7):
        with pytest.raises(FrameArchiveError, match="cuts must list increasing"):
            FrameArchive(_rewrite_meta(tmp_path / "a.zip", cuts=bad))


def _params(**kw) -> TrajectoriesParams:
    base = {"device": "cpu", "window": 4, "grid_stride": 8, "margin": 0, "chunk_windows": 1}
    return TrajectoriesParams(**{**base, **kw})


def test_plan_skips_exactly_the_windows_spanning_a_cut():
    frames = np.zeros((24, 16, 16, 3), np.uint8)
    plan = make_plan(MemoryFrames(frames, cuts=[CUT]), _params(window=4, window_stride=1))
    # 10..13 ends on the frame before the cut and 14..17 starts at it: both kept
    assert plan.cut_starts == [11, 12, 13] and plan.skipped == [21, 22, 23]
    assert plan.starts.tolist() == [*range(0, 11), *range(14, 21)]
    plan = make_plan(MemoryFrames(frames, cuts=[1, CUT, 23]), _params(window=4, window_stride=1))
    assert plan.cut_starts == [0, 11, 12, 13, 20]
    with pytest.raises(TrajectoriesError, match=r"'clip'.*span a shot cut.*\[2, 6\].*fewer than one window"):
        make_plan(MemoryFrames(frames[:8], cuts=[2, 6]), _params(window=4))


def test_trajectories_stage_skips_windows_spanning_the_found_cut(spliced, tmp_path):
    extract(str(spliced["textures"]), tmp_path / "a.zip", FramesParams(), progress=False)
    params = _params(window=4, window_stride=2, chunk_windows=4)
    with FrameArchive(tmp_path / "a.zip") as archive:
        meta = track_video(archive, tmp_path / "out", params, tmp_path / "work")
    store = TrajectoryStore(tmp_path / "out")
    assert store.starts.tolist() == [0, 2, 4, 6, 8, 10, 14, 16, 18, 20]  # 10: ends at 13; 14: starts at the cut
    assert meta["cuts"] == [CUT] and meta["cut_starts"] == [12] and meta["skipped_starts"] == [22]
    assert store.meta["cut_starts"] == [12] and meta["num_windows"] == 10
    from densemotion.cli.trajectories import skipped_note

    assert skipped_note(meta) == ", skipped 1 past the end and 1 spanning shot cuts"  # the stage's line says both
    assert skipped_note({**meta, "skipped_starts": [], "cut_starts": []}) == ""


def test_chunks_of_other_cuts_are_not_reused(tmp_path):
    frames = moving_frames(16, 32, 48, 0)
    params = _params(window=4, window_stride=2)  # one window per chunk: starts 0, 2, .., 12
    tracker = make_tracker(params)
    track_video(MemoryFrames(frames, cuts=[6]), tmp_path / "clean", params, tmp_path / "wc")

    with pytest.raises(KeyboardInterrupt):  # chunks 0..2 (starts 0, 2, 4) finished without cuts
        track_video(MemoryFrames(frames), tmp_path / "out", params, tmp_path / "w", FailingTracker(tracker, 3))
    counter = FailingTracker(tracker)  # with a cut at 6, chunk 2 holds start 6: none may be reused
    meta = track_video(MemoryFrames(frames, cuts=[6]), tmp_path / "out", params, tmp_path / "w", counter)
    assert counter.calls == meta["num_windows"] == 6 and meta["cut_starts"] == [4]
    for name in ("starts.npy", "disp.npy", "vis.npy", "meta.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name

    with pytest.raises(KeyboardInterrupt):  # the same cuts: finished chunks are reused
        track_video(
            MemoryFrames(frames, cuts=[6]), tmp_path / "again", params, tmp_path / "w2", FailingTracker(tracker, 3)
        )
    counter = FailingTracker(tracker)
    track_video(MemoryFrames(frames, cuts=[6]), tmp_path / "again", params, tmp_path / "w2", counter)
    assert counter.calls == 3
