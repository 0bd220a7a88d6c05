"""The dense PIPs engine and tracker: chunking, padding, chaining, bad input, fetch-pips.

The network runs with the fixture weights of docs/pips.md (random, so accuracy is meaningless):
these tests check the mechanics. Sizes are small (64 x 96 frames, 2 iterations).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from densemotion.params import SampleParams, TrajectoriesParams
from densemotion.tracking.base import TrackerError
from densemotion.tracking.pips import CHECKPOINT
from densemotion.tracking.pips.engine import PipsEngine, restart_offsets
from densemotion.trajectories.run import make_tracker

H, W = 64, 96


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return CHECKPOINT.save_fixture(tmp_path_factory.mktemp("pips") / CHECKPOINT.file_name)


def tracker_params(**pips) -> TrajectoriesParams:
    return TrajectoriesParams(tracker="pips", device="cpu", pips={"stride": 4, "iters": 2, **pips})


def make(params: TrajectoriesParams, checkpoint: Path):
    """The pips tracker of ``params`` with the checkpoint file at ``checkpoint``."""
    assert checkpoint.name == CHECKPOINT.file_name
    return make_tracker(params, checkpoint.parent)


@pytest.fixture(scope="module")
def tracker(checkpoint):
    return make(tracker_params(), checkpoint)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """(24, 64, 96, 3) uint8 frames of a built-in sample clip."""
    from densemotion.sample import render_clip

    frames, _ = render_clip(SampleParams(height=H, width=W, num_frames=24, sprites=3), 0)
    return frames


def grid(n: int = 4, m: int = 5) -> np.ndarray:
    ys, xs = np.meshgrid(np.linspace(2, H - 3, n), np.linspace(2, W - 3, m), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)  # (n * m, 2)


# ---- the tracker on one window ----------------------------------------------------------------


def test_tracks_one_window(tracker, clip):
    queries = grid()
    tracks, vis = tracker.track(clip[:8], queries)
    assert tracks.shape == (8, 20, 2) and tracks.dtype == np.float32
    assert vis.shape == (8, 20) and vis.dtype == np.float32
    assert np.array_equal(tracks[0], queries)
    assert np.isfinite(tracks).all() and ((vis >= 0) & (vis <= 1)).all()
    assert tracker.last_info.windows == 1 and tracker.last_info.padded_frames == 0


def test_chunk_size_does_not_change_results(tracker, clip):
    queries = grid()
    tracks, vis = tracker.track(clip[:8], queries)
    small = PipsEngine(tracker.engine.net, "cpu", iters=2, chunk_size=3)
    tracks3, vis3, _ = small.track(clip[:8], queries)
    assert np.allclose(tracks, tracks3, atol=1e-3) and np.allclose(vis, vis3, atol=1e-4)


def test_dense_engine_matches_naive_forward(tracker, clip):
    """Same numbers as the published-style forward pass (full volumes + score maps)."""
    queries = grid()
    tracks, _ = tracker.track(clip[:8], queries)
    with torch.inference_mode():
        rgbs = torch.from_numpy(clip[:8]).permute(0, 3, 1, 2).float()
        out = tracker.engine.net(rgbs, torch.from_numpy(queries), iters=2, naive=True)
    assert len(out.score_maps) == 2
    assert np.allclose(tracks, out.trajs[-1].numpy(), atol=1e-3)


def test_short_clip_is_padded_with_its_last_frame(tracker, clip, checkpoint):
    queries = grid()
    fresh = make(tracker_params(), checkpoint)
    with pytest.warns(UserWarning, match="padded to 8"):
        tracks, vis = fresh.track(clip[:5], queries)
    assert tracks.shape == (5, 20, 2) and vis.shape == (5, 20)
    assert fresh.last_info.padded_frames == 3 and fresh.last_info.windows == 1
    padded = np.concatenate([clip[:5], np.repeat(clip[4:5], 3, axis=0)])
    full, full_vis = tracker.track(padded, queries)
    assert np.allclose(tracks, full[:5], atol=1e-4) and np.allclose(vis, full_vis[:5], atol=1e-5)


def test_no_points(tracker, clip):
    tracks, vis = tracker.track(clip[:8], np.zeros((0, 2), np.float32))
    assert tracks.shape == (8, 0, 2) and vis.shape == (8, 0)


# ---- bad input ----------------------------------------------------------------------------------


def test_frames_below_the_minimum_size(tracker, checkpoint):
    with pytest.raises(TrackerError, match="at least 64 px"):
        tracker.track(np.zeros((8, 60, 96, 3), np.uint8), grid())
    stride8 = make(tracker_params(stride=8), checkpoint)
    with pytest.raises(TrackerError, match="at least 128 px"):
        stride8.track(np.zeros((8, 64, 160, 3), np.uint8), grid())


@pytest.mark.parametrize("point", [(-0.6, 10.0), (10.0, H - 0.4), (W - 0.5 + 1e-3, 5.0), (np.nan, 3.0)])
def test_query_points_outside_the_frame(tracker, clip, point):
    queries = np.array([[5.0, 5.0], point], np.float32)
    with pytest.raises(TrackerError, match="outside the 96x64 frame"):
        tracker.track(clip[:8], queries)


def test_malformed_frames_and_queries(tracker, clip):
    with pytest.raises(TrackerError, match="uint8"):
        tracker.track(clip[:8].astype(np.float32), grid())
    with pytest.raises(TrackerError, match="at least 2 frames"):
        tracker.track(clip[:1], grid())
    with pytest.raises(TrackerError, match=r"\(N, 2\)"):
        tracker.track(clip[:8], np.zeros((4, 3), np.float32))


def test_missing_checkpoint_fails_at_once_with_the_fetch_command(tmp_path):
    with pytest.raises(TrackerError) as err:
        make(tracker_params(), tmp_path / "models" / "pips" / CHECKPOINT.file_name)
    msg = str(err.value)
    assert "dvc import-url" in msg and "reference_model.tar.gz" in msg
    assert f"densemotion fetch-pips {tmp_path}/models/pips/reference_model.tar.gz {tmp_path}/models/pips/" in msg


# ---- chaining -----------------------------------------------------------------------------------


def published_restart(vis: np.ndarray) -> int:
    """The published chain demo's choice for one point, written as its loop."""
    thr, si = 0.9, 7
    while True:
        if vis[si] > np.float32(thr):
            return si
        si -= 1
        if si == 1:
            thr -= 0.02
            si = 7


def test_restart_frame_selection_on_hand_made_visibility():
    cols = {
        "all visible": ([1.0] * 8, 7),
        "latest visible": ([1, 1, 0.95, 0.2, 0.2, 0.95, 0.3, 0.1], 5),
        "only early": ([1, 1, 0.95, 0.5, 0.5, 0.5, 0.5, 0.5], 2),
        "index 1 is never taken": ([1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], 7),
        "threshold lowered, first found wins": ([1, 1, 0, 0, 0.85, 0, 0.83, 0], 4),
        "nothing visible at all": ([1, 1, 0, 0, 0, 0, 0.0, 0], 7),
    }
    vis = np.array([c for c, _ in cols.values()], np.float32).T  # (8, N)
    assert restart_offsets(vis).tolist() == [want for _, want in cols.values()]
    rng = np.random.default_rng(0)
    vis = (rng.random((8, 300)) ** rng.uniform(0.2, 6, 300)).astype(np.float32)
    assert restart_offsets(vis).tolist() == [published_restart(v) for v in vis.T]
    nan = np.full((8, 1), np.nan, np.float32)
    assert restart_offsets(nan).tolist() == [7]  # stops instead of looping forever


class ScriptedEngine(PipsEngine):
    """The engine with its network replaced by a script: visibility from a table, y += frames."""

    def __init__(self, net, vis_table: np.ndarray) -> None:
        super().__init__(net, "cpu")
        self.vis_table = vis_table  # (N, L + 8) by point (x = point id) and window position
        self.calls: list[tuple[list[int], list[int], object]] = []

    def encode(self, frames):
        return None

    def run_window(self, pyramid, frame_ids, xy, feat_init=None, keep_feats=False):
        ids = xy[:, 0].round().long()  # point ids ride in x
        c = frame_ids[0]
        self.calls.append((list(frame_ids), ids.tolist(), None if feat_init is None else feat_init[:, 0].tolist()))
        steps = torch.arange(8, dtype=torch.float32)
        tracks = xy.unsqueeze(0).repeat(8, 1, 1)
        tracks[..., 1] += steps[:, None]
        vis = torch.from_numpy(self.vis_table[ids.numpy()][:, c : c + 8].T.copy())
        logits = torch.logit(vis.clamp(1e-6, 1 - 1e-6))
        feats = (ids.float() * 10 + c)[:, None].repeat(1, 128)  # the first pass's features are id * 10
        return tracks, logits, feats


def test_chaining_bookkeeping_follows_the_published_loop(tracker):
    L, N = 19, 6
    rng = np.random.default_rng(3)
    vis_table = rng.choice([0.05, 0.51, 0.87, 0.97], size=(N, L + 8), p=[0.3, 0.2, 0.2, 0.3]).astype(np.float32)
    engine = ScriptedEngine(tracker.engine.net, vis_table)
    queries = np.stack([np.arange(N), np.full(N, 3.0)], axis=1).astype(np.float32)
    tracks, vis, info = engine.track(np.zeros((L, 64, 64, 3), np.uint8), queries)

    want_tracks = np.zeros((L, N, 2), np.float32)
    want_tracks[:, :, 0] = np.arange(N)
    starts = {}
    for n in range(N):  # the published chain demo, one point at a time
        cur, y = 0, 3.0
        while cur < L:
            starts.setdefault(cur, []).append(n)
            real = min(8, L - cur)
            want_tracks[cur : cur + real, n, 1] = y + np.arange(real)
            si = published_restart(vis_table[n, cur : cur + 8])
            y += si
            cur += si
    assert np.array_equal(tracks, want_tracks)
    assert sorted((call[0][0], call[1]) for call in engine.calls) == sorted(starts.items())
    assert info.windows == len(starts) and info.chained
    for frame_ids, ids, feat in engine.calls:
        c = frame_ids[0]
        assert frame_ids == [min(c + s, L - 1) for s in range(8)]  # past the end: last frame repeated
        assert feat is None if c == 0 else feat == [10.0 * i for i in ids]  # frame-0 features passed on
    assert vis.shape == (L, N) and np.isfinite(vis).all()


def test_chaining_on_sample_ground_truth(tracker, clip):
    """24 frames of a sample clip: shapes, queries kept, the first window is the unchained one."""
    from densemotion.sample import render_clip

    _, truth = render_clip(SampleParams(height=H, width=W, num_frames=24, sprites=3), 0)
    queries = grid(3, 4)
    true_tracks, true_vis = truth.tracks(0, 24, queries)
    tracks, vis = tracker.track(clip, queries)
    info = tracker.last_info
    assert tracks.shape == true_tracks.shape == (24, 12, 2) and vis.shape == true_vis.shape
    assert np.array_equal(tracks[0], queries) and np.isfinite(tracks).all()
    assert ((vis >= 0) & (vis <= 1)).all()
    assert info.chained and info.windows >= 4  # each window advances at most 7 frames
    single, _ = tracker.track(clip[:8], queries)
    assert np.allclose(tracks[:3], single[:3], atol=1e-4)  # restarts are at window index >= 2


# ---- fetch-pips ---------------------------------------------------------------------------------


def make_archive(path: Path, members: dict[str, bytes | str]) -> Path:
    """A .tar.gz with regular files (bytes) and symlinks (str targets)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


@pytest.fixture(scope="module")
def small_checkpoint_bytes(tmp_path_factory) -> bytes:
    """A checkpoint with the published keys and shapes whose tensors take one element each."""
    path = tmp_path_factory.mktemp("ckpt") / CHECKPOINT.file_name
    CHECKPOINT.save(
        {k: torch.zeros(1).expand(s) if s else torch.zeros(()) for k, s in CHECKPOINT.expected_shapes().items()}, path
    )
    return path.read_bytes()


def fetch(argv: list[str]) -> int:
    from densemotion.cli.fetch_pips import main

    return main(argv)


def test_fetch_pips_unpacks_only_the_checkpoint(tmp_path, small_checkpoint_bytes, capsys):
    archive = make_archive(
        tmp_path / "reference_model.tar.gz",
        {"reference_model/README.txt": b"hi", f"reference_model/{CHECKPOINT.file_name}": small_checkpoint_bytes},
    )
    out = tmp_path / "models" / "pips"
    assert fetch([str(archive), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT.file_name]
    assert set(CHECKPOINT.read_state_dict(out / CHECKPOINT.file_name)) == set(CHECKPOINT.expected_shapes())
    assert "sha256" in capsys.readouterr().out


@pytest.mark.parametrize(
    "members, message",
    [
        ({"reference_model/other.pth": b"x"}, "expected one member named"),
        ({f"reference_model/{CHECKPOINT.file_name}": "/etc/passwd"}, CHECKPOINT.file_name),
        ({f"../../{CHECKPOINT.file_name}": b"x"}, CHECKPOINT.file_name),
        ({f"reference_model/{CHECKPOINT.file_name}": b"not a checkpoint"}, "not a readable PyTorch checkpoint"),
    ],
    ids=["no-checkpoint", "symlink", "path-traversal", "foreign-file"],
)
def test_fetch_pips_rejects_bad_archives(tmp_path, members, message, capsys):
    archive = make_archive(tmp_path / "reference_model.tar.gz", members)
    out = tmp_path / "sub" / "out"
    assert fetch([str(archive), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("densemotion fetch-pips: error:") and message in err
    assert not (out / CHECKPOINT.file_name).exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["reference_model.tar.gz"]


def test_fetch_pips_corrupt_or_missing_archive(tmp_path, capsys):
    archive = tmp_path / "reference_model.tar.gz"
    archive.write_bytes(np.random.default_rng(0).bytes(3000))
    assert fetch([str(archive), str(tmp_path / "out")]) == 1
    assert "not a readable .tar.gz archive" in capsys.readouterr().err
    assert fetch([str(tmp_path / "missing.tar.gz"), str(tmp_path / "out")]) == 1
    assert "dvc import-url" in capsys.readouterr().err
