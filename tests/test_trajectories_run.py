import hashlib
import shutil

import numpy as np
import pytest

from densemotion.cli import trajectories as cli
from densemotion.frames.store import FrameArchive, FrameArchiveWriter, encode_jpeg
from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.sample import render_clip
from densemotion.tracking import grid
from densemotion.tracking.base import TrackerError
from densemotion.trajectories.run import TrajectoriesError, track_video
from densemotion.trajectories.store import TrajectoryStore

STORE_FILES = ["frames0.npy", "disp.npy", "vis.npy", "starts.npy", "meta.json"]


class MemoryFrames:
    """In-memory stand-in for a FrameArchive (with the frames stage's shot ``cuts`` when given)."""

    def __init__(self, frames: np.ndarray, video: str = "clip", cuts: list[int] | None = None):
        self.frames = frames
        self.meta = {
            "video": video,
            "height": frames.shape[1],
            "width": frames.shape[2],
            "frame_count": len(frames),
            "source_indices": list(range(len(frames))),
        }
        if cuts is not None:
            self.meta["cuts"] = cuts
        self.sha256 = hashlib.sha256(frames.tobytes()).hexdigest()

    def __len__(self):
        return len(self.frames)

    def read_range(self, start, count):
        if start + count > len(self.frames):
            raise IndexError(start + count)
        return self.frames[start : start + count]


class FailingTracker:
    """Wraps a tracker and raises after ``fail_after`` windows (a killed run)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.calls, self.name = inner, fail_after, 0, inner.name

    def track(self, frames, queries):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return self.inner.track(frames, queries)


@pytest.fixture(scope="module")
def clip():
    frames, truth = render_clip(SampleParams(seed=1, num_frames=21, height=48, width=80, sprites=3), 0)
    return frames, truth


def _params(**kw):
    base = {"device": "cpu", "window": 4, "grid_stride": 4, "margin": 2, "chunk_windows": 2}
    return TrajectoriesParams(**{**base, **kw})


def _dis(params):
    from densemotion.trajectories.run import make_tracker

    return make_tracker(params)


def test_store_layout_and_values(clip, tmp_path):
    frames, truth = clip
    params = _params()
    meta = track_video(MemoryFrames(frames), tmp_path / "out", params, tmp_path / "work")
    store = TrajectoryStore(tmp_path / "out")
    hg, wg = grid.grid_shape((48, 80), 4, 2)
    assert store.meta["grid_shape"] == [hg, wg] == meta["grid_shape"]
    assert store.starts.tolist() == [0, 4, 8, 12, 16] and meta["skipped_starts"] == [20]
    assert store.disp.shape == (5, 4, hg, wg, 2) and (np.asarray(store.disp[:, 0]) == 0).all()
    assert meta["past_end"] == "skip" and meta["tracker"] == "dis" and meta["frame_count"] == 21
    assert meta["tracker_params"]["preset"] == "medium"
    k = 2
    assert np.array_equal(store.frames0[k], grid.downsize_to_grid(frames[8], (hg, wg), 4, 2))
    # the stored displacement is the tracker's, relative to the grid point, float16
    q = store.grid_points()
    tracks, vis = _dis(params).track(frames[8:12], q)
    want = (tracks - q).reshape(4, hg, wg, 2)
    assert np.abs(store.disp[k].astype(np.float32) - want).max() < 0.02
    assert np.array_equal(store.vis[k], (vis.reshape(4, hg, wg) * 255).astype(np.uint8))
    # and it is right: against the sample's ground truth
    true, visible = truth.tracks(8, 4, q)
    err = np.linalg.norm(store.disp[k].reshape(4, -1, 2) + q - true, axis=-1)[visible]
    assert np.median(err) < 0.5
    assert not (tmp_path / "work").exists()


def test_interrupted_run_resumes_to_identical_bytes(clip, tmp_path):
    frames, _ = clip
    params = _params()
    source = MemoryFrames(frames)
    track_video(source, tmp_path / "clean", params, tmp_path / "work_clean")

    killer = FailingTracker(_dis(params), fail_after=3)  # dies inside the 2nd of 3 chunks
    with pytest.raises(KeyboardInterrupt):
        track_video(source, tmp_path / "resumed", params, tmp_path / "work", tracker=killer)
    assert not (tmp_path / "resumed").exists()
    assert len(list((tmp_path / "work").rglob("chunk-*.npz"))) == 1
    again = FailingTracker(_dis(params))
    track_video(source, tmp_path / "resumed", params, tmp_path / "work", tracker=again)
    assert again.calls == 3  # windows 2..4 only: chunk 0 was reused
    for name in STORE_FILES:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert not (tmp_path / "work").exists()


def test_chunks_from_other_params_or_frames_are_not_reused(clip, tmp_path):
    frames, _ = clip
    params = _params()
    with pytest.raises(KeyboardInterrupt):
        track_video(
            MemoryFrames(frames),
            tmp_path / "o",
            params,
            tmp_path / "w",
            tracker=FailingTracker(_dis(params), fail_after=2),
        )
    changed = _params(dis={"fb_threshold": 2.0})
    counter = FailingTracker(_dis(changed))
    track_video(MemoryFrames(frames), tmp_path / "o", changed, tmp_path / "w", tracker=counter)
    assert counter.calls == 5
    other_frames = frames.copy()
    other_frames[0, 0, 0] ^= 1
    with pytest.raises(KeyboardInterrupt):
        track_video(
            MemoryFrames(other_frames),
            tmp_path / "o2",
            params,
            tmp_path / "w2",
            tracker=FailingTracker(_dis(params), fail_after=2),
        )
    counter = FailingTracker(_dis(params))
    track_video(MemoryFrames(frames), tmp_path / "o2", params, tmp_path / "w2", tracker=counter)
    assert counter.calls == 5


def test_overlapping_windows_and_tracking_resolution(clip, tmp_path):
    frames, _ = clip
    params = _params(window_stride=2, resolution=(24, 40), grid_stride=2, margin=0)
    meta = track_video(MemoryFrames(frames), tmp_path / "out", params, tmp_path / "work")
    store = TrajectoryStore(tmp_path / "out")
    assert store.starts.tolist() == list(range(0, 18, 2)) and meta["skipped_starts"] == [18, 20]
    assert meta["tracking_size"] == [24, 40] and meta["frame_size"] == [48, 80]
    assert store.frames0.shape == (9, 12, 20, 3)


def test_bad_input_errors_name_the_video(clip, tmp_path):
    frames, _ = clip
    with pytest.raises(TrajectoriesError, match="'clip'.*fewer than one window"):
        track_video(MemoryFrames(frames[:3]), tmp_path / "o", _params(window=4), tmp_path / "w")
    with pytest.raises(TrajectoriesError, match="'clip'.*too small"):
        track_video(MemoryFrames(frames), tmp_path / "o", _params(margin=30), tmp_path / "w")
    with pytest.raises(ValueError, match="unknown tracker 'nope' \\(trackers: alltracker, dis, pips, raft"):
        _params(tracker="nope")  # refused when the params load, before any work
    assert not (tmp_path / "o").exists()


def _write_archive(path, frames, video="clip"):
    writer = FrameArchiveWriter(path)
    for f in frames:
        writer.add(encode_jpeg(f, 95))
    h, w = frames.shape[1:3]
    writer.close(
        {
            "video": video,
            "source": "test",
            "source_sha256": "0" * 64,
            "fps": 24.0,
            "width": w,
            "height": h,
            "source_width": w,
            "source_height": h,
            "source_fps": 24.0,
            "source_indices": list(range(len(frames))),
            "jpeg_quality": 95,
        }
    )


def _write_params(path, **traj):
    import yaml

    body = {
        "data": {"videos": {"clip": "x.mp4"}},
        "frames": {"min_frames": 4},
        "trajectories": {"device": "cpu", "window": 4, "grid_stride": 8, "chunk_windows": 2, **traj},
    }
    path.write_text(yaml.safe_dump(body))


def test_cli_on_a_frames_archive(clip, tmp_path, capsys):
    frames, _ = clip
    _write_archive(tmp_path / "clip.zip", frames[:9])
    _write_params(tmp_path / "params.yaml")
    rc = cli.main(
        [
            str(tmp_path / "clip.zip"),
            str(tmp_path / "traj" / "clip"),
            "--work-dir",
            str(tmp_path / "work" / "clip"),
            "--params",
            str(tmp_path / "params.yaml"),
        ]
    )
    assert rc == 0
    store = TrajectoryStore(tmp_path / "traj" / "clip")
    assert len(store) == 2 and store.meta["frames_sha256"] == FrameArchive(tmp_path / "clip.zip").sha256
    assert "2 windows" in capsys.readouterr().out
    assert not (tmp_path / "work" / "clip").exists()


def test_cli_refuses_a_truncated_archive(clip, tmp_path, capsys):
    frames, _ = clip
    _write_archive(tmp_path / "clip.zip", frames[:9])
    data = (tmp_path / "clip.zip").read_bytes()
    (tmp_path / "clip.zip").write_bytes(data[: len(data) // 2])
    _write_params(tmp_path / "params.yaml")
    rc = cli.main([str(tmp_path / "clip.zip"), str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "densemotion trajectories: error:" in err and "clip.zip" in err
    assert not (tmp_path / "out").exists()


def test_cli_window_longer_than_video(clip, tmp_path, capsys):
    frames, _ = clip
    _write_archive(tmp_path / "clip.zip", frames[:5])
    _write_params(tmp_path / "params.yaml", window=8)
    (tmp_path / "params.yaml").write_text(
        (tmp_path / "params.yaml").read_text().replace("min_frames: 4", "min_frames: 8")
    )
    rc = cli.main([str(tmp_path / "clip.zip"), str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")])
    assert rc == 1 and "video 'clip': the video has 5 frames" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _pipeline(tmp_path, frames_fps=None, resolution=None):
    """sample clip -> frames archive -> trajectories store, as the DVC stages run them."""
    from densemotion.frames.extract import extract
    from densemotion.params import FramesParams
    from densemotion.sample import generate_clip

    sp = SampleParams(seed=2, clips=["clipa"], num_frames=17, height=64, width=112, sprites=3)
    generate_clip(sp, "clipa", tmp_path / "videos" / "clipa.mp4", tmp_path / "truth" / "clipa.npz")
    extract(
        str(tmp_path / "videos" / "clipa.mp4"),
        tmp_path / "frames" / "clipa.zip",
        FramesParams(fps=frames_fps, min_frames=4),
        progress=False,
    )
    params = _params(grid_stride=4, margin=0, resolution=resolution)
    with FrameArchive(tmp_path / "frames" / "clipa.zip") as archive:
        track_video(archive, tmp_path / "traj" / "clipa", params, tmp_path / "work")


def _accuracy(tmp_path):
    import json

    from densemotion.cli import tracker_accuracy

    (tmp_path / "params.yaml").write_text(
        "data:\n  videos: {clipa: x}\nframes: {min_frames: 4}\ntrajectories: {window: 4}\n"
    )
    rc = tracker_accuracy.main(
        [
            "--trajectories",
            str(tmp_path / "traj"),
            "--frames",
            str(tmp_path / "frames"),
            "--truth",
            str(tmp_path / "truth"),
            "--out",
            str(tmp_path / "m.json"),
            "--details-dir",
            str(tmp_path / "details"),
            "--params",
            str(tmp_path / "params.yaml"),
        ]
    )
    assert rc == 0
    return json.loads((tmp_path / "details" / "details.json").read_text())  # the metric: test_reports.py


def test_tracker_accuracy_against_ground_truth(tmp_path, capsys):
    _pipeline(tmp_path)
    result = _accuracy(tmp_path)
    overall = result["overall"]
    assert set(result["videos"]) == {"clipa"} and result["unscored"] == []
    assert overall["epe_median"] < 1.0 and overall["delta_avg"] > 0.9
    assert overall["moving"]["epe_median"] < 1.0 and overall["moving"]["points"] > 100
    assert overall["moving"]["epe_mean"] < 0.5 * overall["moving"]["zero_motion_epe_mean"]
    assert overall["visibility_accuracy"] > 0.85
    for key in ("within_1", "within_2", "within_4", "within_8", "within_16", "epe_mean"):
        assert key in overall and key in overall["last_frame"]
    # the score can fail: trajectories replaced by "no motion" score far worse on moving points
    # a store left from an earlier data.videos would enter the stage's hash: refused, naming it
    shutil.copytree(tmp_path / "traj" / "clipa", tmp_path / "traj" / "stale")
    shutil.copy(tmp_path / "truth" / "clipa.npz", tmp_path / "truth" / "stale.npz")
    capsys.readouterr()
    with pytest.raises(AssertionError):
        _accuracy(tmp_path)  # exits 1
    err = capsys.readouterr().err
    assert "traj/stale" in err and "densemotion tidy" in err
    shutil.rmtree(tmp_path / "traj" / "stale")
    disp = tmp_path / "traj" / "clipa" / "disp.npy"
    np.save(disp, np.zeros_like(np.load(disp)))
    broken = _accuracy(tmp_path)["overall"]["moving"]
    assert (
        broken["epe_mean"] > 2 * overall["moving"]["epe_mean"] and broken["delta_avg"] < overall["moving"]["delta_avg"]
    )


def test_tracker_accuracy_maps_subsampled_frames_and_tracking_size(tmp_path):
    _pipeline(tmp_path, frames_fps=12.0, resolution=(32, 56))  # every other frame, half size
    overall = _accuracy(tmp_path)["overall"]
    assert overall["moving"]["epe_median"] < 1.5 and overall["moving"]["points"] > 50
    assert overall["moving"]["epe_mean"] < 0.5 * overall["moving"]["zero_motion_epe_mean"]


@pytest.mark.slow
def test_killed_cli_resumes_to_identical_bytes(tmp_path):
    """SIGKILL the real command after its first finished chunk, rerun, compare with a clean run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    frames, _ = render_clip(SampleParams(seed=4, num_frames=40, height=96, width=160, sprites=4), 0)
    _write_archive(tmp_path / "clip.zip", frames)
    _write_params(tmp_path / "params.yaml", grid_stride=1, chunk_windows=1)

    def command(out, work):
        return [
            sys.executable,
            "-m",
            "densemotion",
            "trajectories",
            str(tmp_path / "clip.zip"),
            str(out),
            "--work-dir",
            str(work),
            "--params",
            str(tmp_path / "params.yaml"),
        ]

    subprocess.run(command(tmp_path / "clean", tmp_path / "wc"), check=True, capture_output=True)
    proc = subprocess.Popen(command(tmp_path / "out", tmp_path / "work"), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "work").rglob("chunk-*.npz")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((tmp_path / "work").rglob("chunk-*.npz")))
    assert 1 <= finished < 10 and not (tmp_path / "out").exists()
    subprocess.run(command(tmp_path / "out", tmp_path / "work"), check=True, capture_output=True)
    for name in STORE_FILES:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_every_pixel_of_360x640_in_bounded_memory(tmp_path):
    """The densest grid the issue asks for: 230,400 points per window, memory stays small."""
    import resource

    frames, truth = render_clip(SampleParams(seed=5, num_frames=9, height=360, width=640, sprites=5), 0)
    params = _params(window=8, grid_stride=1, margin=0, chunk_windows=1)
    tracker = _dis(params)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    track_video(MemoryFrames(frames), tmp_path / "out", params, tmp_path / "work", tracker=tracker)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    store = TrajectoryStore(tmp_path / "out")
    assert store.disp.shape == (1, 8, 360, 640, 2) and store.meta["skipped_starts"] == [8]
    assert grown_mib < 300, grown_mib  # outputs alone: 22 MiB per window
    q = store.grid_points()[::97]
    true, visible = truth.tracks(0, 8, q)
    err = np.linalg.norm(store.disp[0].reshape(8, -1, 2)[:, ::97] + q - true, axis=-1)[visible]
    assert np.median(err) < 0.5


# --- frames too large to track, and what a failed run leaves ------------------------------------


class _Unreadable(MemoryFrames):
    """Frames whose meta states another size; any read fails the test (the check comes first)."""

    def __init__(self, frames, height, width):
        super().__init__(frames)
        self.meta.update(height=height, width=width)

    def read_range(self, start, count):
        raise AssertionError("frames were read before their size was checked")


def test_frames_too_large_to_track_are_refused_before_any_work(clip, tmp_path):
    from pydantic import ValidationError

    from densemotion.params import MAX_TRACKING_PIXELS

    frames, _ = clip
    with pytest.raises(
        TrajectoriesError, match=r"'clip': frames of 8000x8000 .*trajectories\.resolution.*frames\.max_size"
    ):
        track_video(_Unreadable(frames, 8000, 8000), tmp_path / "out", _params(), tmp_path / "work")
    assert 3840 * 2160 <= MAX_TRACKING_PIXELS < 8000 * 8000  # 4K UHD is tracked
    with pytest.raises(ValidationError, match=r"8192x8192 is 67108864 pixels, more than .*smaller"):
        _params(resolution=(8192, 8192))  # refused at load, before any stage starts
    unchecked = _params().model_copy(update={"resolution": (8192, 8192)})  # and by the run, for any caller
    with pytest.raises(TrajectoriesError, match=r"trajectories\.resolution 8192x8192 .*smaller"):
        track_video(MemoryFrames(frames), tmp_path / "out", unchecked, tmp_path / "work")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


class _CountingFrames(MemoryFrames):
    def __init__(self, frames):
        super().__init__(frames)
        self.reads = []

    def read_range(self, start, count):
        self.reads.append(count)
        return super().read_range(start, count)


def test_frames_are_read_a_window_at_a_time_and_resized_one_by_one(clip, tmp_path):
    """Large frames tracked at a smaller resolution: never a chunk of full-size frames in memory."""
    frames, _ = clip
    source = _CountingFrames(frames)
    track_video(source, tmp_path / "a", _params(chunk_windows=3), tmp_path / "wa")
    assert max(source.reads) == 4  # one window: windows that only touch are read one by one
    source = _CountingFrames(frames)
    params = _params(resolution=(24, 40), window_stride=2, margin=0, chunk_windows=3)
    track_video(source, tmp_path / "b", params, tmp_path / "wb")
    assert set(source.reads) == {1}  # resized as read
    plain = _params(resolution=(24, 40), window_stride=2, margin=0, chunk_windows=3)
    track_video(MemoryFrames(grid.resize_frames(frames, (24, 40))), tmp_path / "c", plain, tmp_path / "wc")
    for name in ["disp.npy", "vis.npy", "frames0.npy", "starts.npy"]:  # the same as resizing whole windows
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


def test_cli_refuses_frames_too_large_to_track(clip, tmp_path, capsys):
    """An archive whose meta.json states 8000x8000 frames: refused from the meta, one line, nothing left."""
    import json
    import zipfile

    frames, _ = clip
    _write_archive(tmp_path / "small.zip", frames[:9])
    with zipfile.ZipFile(tmp_path / "small.zip") as src, zipfile.ZipFile(tmp_path / "clip.zip", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "meta.json":
                data = json.dumps({**json.loads(data), "width": 8000, "height": 8000}).encode()
            dst.writestr(info, data)
    _write_params(tmp_path / "params.yaml")
    rc = cli.main([str(tmp_path / "clip.zip"), str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "8000x8000" in err and "trajectories.resolution" in err and "frames.max_size" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()


def test_cli_failing_before_any_chunk_leaves_no_work_folder(clip, tmp_path, capsys):
    """PIPs without its weights: the default OUT.work this run would have made is not left behind."""
    frames, _ = clip
    _write_archive(tmp_path / "clip.zip", frames[:9])
    _write_params(tmp_path / "params.yaml", tracker="pips")
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "clip.zip"), str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")]
    assert cli.main([*args, "--weights-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint" in err and "not found" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.zip", "empty", "params.yaml"]


def test_failed_run_removes_only_what_it_made_and_keeps_finished_chunks(clip, tmp_path, capsys):
    frames, _ = clip
    params = _params()
    source = MemoryFrames(frames)
    # dies in the first chunk: nothing finished, so the work folders it made go (and nothing else)
    with pytest.raises(KeyboardInterrupt):
        track_video(source, tmp_path / "o", params, tmp_path / "a" / "w", tracker=FailingTracker(_dis(params), 1))
    assert not (tmp_path / "a").exists() and not (tmp_path / "o").exists()
    assert "kept" not in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("not the run's")
    with pytest.raises(KeyboardInterrupt):
        track_video(source, tmp_path / "o", params, mine, tracker=FailingTracker(_dis(params), 0))
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # a folder it did not make stays
    # dies after a finished chunk: that chunk is resumable state, kept, and the line says where
    with pytest.raises(KeyboardInterrupt):
        track_video(source, tmp_path / "o", params, tmp_path / "w", tracker=FailingTracker(_dis(params), 3))
    err = capsys.readouterr().err
    assert len(list((tmp_path / "w").rglob("chunk-*.npz"))) == 1
    assert f"1 of 3 chunks finished stay in {tmp_path / 'w'}: the same command resumes" in err
    # an error (one line from the CLI) says so in its own message
    with pytest.raises(
        TrackerError, match=r"gave up at window 1; 1 of 3 chunks finished stay in .*: the same command resumes"
    ):
        track_video(source, tmp_path / "o", params, tmp_path / "w", tracker=_BrokenTracker(_dis(params), 1))
    assert len(list((tmp_path / "w").rglob("chunk-*.npz"))) == 1
    again = FailingTracker(_dis(params))
    track_video(source, tmp_path / "o", params, tmp_path / "w", tracker=again)
    assert again.calls == 3 and not (tmp_path / "w").exists()


class _BrokenTracker(FailingTracker):
    """Raises a TrackerError (bad input to the tracker) at window ``fail_after``."""

    def track(self, frames, queries):
        if self.calls >= self.fail_after:
            raise TrackerError(f"tracker gave up at window {self.calls}")
        self.calls += 1
        return self.inner.track(frames, queries)
