"""The built-in synthetic sample: determinism, exact ground truth, occlusion, appearance -> motion
(or, with sample.ambiguous, appearance -> only the set of motions)."""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
import yaml

from densemotion import sample as sample_module
from densemotion.cli.sample import main as sample_main
from densemotion.params import ParamsError, SampleParams, parse_params
from densemotion.sample import (
    AMBIGUOUS_FAMILY,
    AMBIGUOUS_SPEED,
    FAMILIES,
    SampleTruth,
    SampleTruthError,
    generate_clip,
    load_truth,
    render_clip,
    save_truth,
)
from densemotion.video import iter_frames

SMALL = dict(clips=["a", "b", "c"], num_frames=10, height=64, width=96, sprites=4)


def small(**over) -> SampleParams:
    return SampleParams(**{**SMALL, **over})


def grid(h: int, w: int, step: int) -> np.ndarray:
    """(N, 2) float64 xy of integer pixel centres every ``step`` pixels."""
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def sample_bilinear(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(N, 3) float colours of an (H, W, 3) frame at float xy (OpenCV, independent of the renderer)."""
    pts = xy.astype(np.float32)
    return cv2.remap(
        frame.astype(np.float32), pts[:, 0][None], pts[:, 1][None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )[0]


@pytest.fixture(scope="module")
def default_clip():
    """Clip 0 of the default params, 16 frames (pre-encoding frames and truth)."""
    return render_clip(SampleParams(num_frames=16), 0)


# ---------------------------------------------------------------- determinism and files


def test_render_is_deterministic_and_seeded():
    f1, t1 = render_clip(small(), 1)
    f2, t2 = render_clip(small(), 1)
    assert f1.shape == (10, 64, 96, 3) and f1.dtype == np.uint8
    assert np.array_equal(f1, f2) and np.array_equal(t1.layers, t2.layers)
    assert np.array_equal(t1.tex_from_frame, t2.tex_from_frame)
    f3, _ = render_clip(small(seed=1), 1)
    f4, _ = render_clip(small(), 2)
    assert not np.array_equal(f1, f3) and not np.array_equal(f1, f4)


def test_files_are_byte_identical_for_same_params(tmp_path):
    paths = {}
    for run, seed in (("one", 0), ("two", 0), ("other", 3)):
        video, truth = tmp_path / run / "b.mp4", tmp_path / run / "b.npz"
        generate_clip(small(seed=seed), "b", video, truth)
        paths[run] = (video.read_bytes(), truth.read_bytes())
    assert paths["one"] == paths["two"]
    assert paths["one"][0] != paths["other"][0] and paths["one"][1] != paths["other"][1]
    assert not list(tmp_path.glob("*/.*.tmp"))  # no temporary leftovers


def test_encoded_video_decodes_to_all_frames(tmp_path):
    params = small()
    generate_clip(params, "a", tmp_path / "a.mp4", tmp_path / "a.npz")
    frames = [f for _, f in iter_frames(tmp_path / "a.mp4")]
    assert len(frames) == params.num_frames
    assert {f.shape for f in frames} == {(params.height, params.width, 3)}
    rendered, _ = render_clip(params, 0)
    # the same pictures, up to H.264 and yuv420p chroma subsampling (~1.7 grey levels measured)
    grey = np.array([0.299, 0.587, 0.114])
    assert np.abs((np.stack(frames) - rendered.astype(float)) @ grey).mean() < 3


def test_truth_round_trip(tmp_path):
    _, truth = render_clip(small(), 0)
    save_truth(tmp_path / "t.npz", truth)
    with np.load(tmp_path / "t.npz", allow_pickle=False) as npz:  # plain arrays, no pickles
        assert int(npz["schema_version"]) == 1 and list(npz["size"]) == [64, 96]
    back = load_truth(tmp_path / "t.npz")
    assert (back.num_frames, back.height, back.width, back.clip) == (10, 64, 96, "a")
    assert np.array_equal(back.layers, truth.layers)
    assert np.array_equal(back.tex_from_frame, truth.tex_from_frame)
    q = grid(64, 96, 7)
    for a, b in zip(back.tracks(2, 5, q), truth.tracks(2, 5, q), strict=True):
        assert np.array_equal(a, b)


def test_load_truth_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_truth(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(SampleTruthError, match="junk.npz"):
        load_truth(junk)
    old = tmp_path / "old.npz"
    np.savez(old, schema_version=np.array(0))
    with pytest.raises(SampleTruthError, match="old.npz.*schema_version 0"):
        load_truth(old)
    partial = tmp_path / "partial.npz"
    np.savez(partial, schema_version=np.array(1), layers=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(SampleTruthError, match="partial.npz: missing arrays.*tex_from_frame"):
        load_truth(partial)
    _, truth = render_clip(small(num_frames=3), 0)
    save_truth(tmp_path / "t.npz", truth)
    with np.load(tmp_path / "t.npz") as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "bad.npz", **{**arrays, "layers": arrays["layers"][:2]})
    with pytest.raises(SampleTruthError, match="bad.npz: inconsistent shapes"):
        load_truth(tmp_path / "bad.npz")


# ---------------------------------------------------------------- tracks semantics


def _two_layer_truth() -> SampleTruth:
    """12x10 frames, 6 frames; layer 1 = pixels with u = x + 1.5 t >= 6 (moving left 1.5 px/frame)."""
    n, h, w = 6, 10, 12
    layers = np.zeros((n, h, w), np.uint8)
    tex_from_frame = np.zeros((n, 2, 2, 3))
    tex_from_frame[:, :, 0, 0] = tex_from_frame[:, :, 1, 1] = 1.0
    for t in range(n):
        tex_from_frame[t, 1, 0, 2] = 1.5 * t
        layers[t, :, max(int(np.ceil(6 - 1.5 * t)), 0) :] = 1
    return SampleTruth(
        tex_from_frame=tex_from_frame, layers=layers, fps=24.0, layer_family=np.array([-1, 0]), family_names=("f",)
    )


def test_tracks_follow_layer_and_round_half_up():
    truth = _two_layer_truth()
    q = np.array([[2.0, 3.0], [8.0, 5.0], [6.5, 1.0], [5.49, 1.0], [5.5, 2.0]])
    tracks, vis = truth.tracks(0, 6, q)
    assert tracks.shape == (6, 5, 2) and vis.shape == (6, 5) and tracks.dtype == np.float64
    left = -1.5 * np.arange(6)
    np.testing.assert_allclose(tracks[:, 0], [[2, 3]] * 6)  # background: static
    np.testing.assert_allclose(tracks[:, 1, 0], 8 + left)  # sprite: -1.5 px/frame
    np.testing.assert_allclose(tracks[:, :, 1], np.broadcast_to(q[:, 1], (6, 5)))
    np.testing.assert_allclose(tracks[:, 3, 0], 5.49)  # x=5.49 rounds to pixel 5: background
    np.testing.assert_allclose(tracks[:, 4, 0], 5.5 + left)  # x=5.5 rounds to pixel 6: sprite
    assert vis[:, 0].tolist() == [True, True, True, False, False, False]  # covered by the sprite
    assert vis[:, 1].all()
    assert vis[:, 2].tolist() == [True] * 5 + [False]  # x=-1 rounds to pixel -1: left the frame
    assert vis[:, 3].tolist() == [True] + [False] * 5  # the sprite's edge reaches pixel 5 at t=1


def test_tracks_rejects_bad_queries():
    truth = _two_layer_truth()
    with pytest.raises(ValueError, match="outside the 12x10 frame"):
        truth.tracks(0, 2, np.array([[11.6, 0.0]]))
    with pytest.raises(ValueError, match="outside the clip's 6 frames"):
        truth.tracks(4, 3, np.array([[1.0, 1.0]]))


def test_tracks_chain_consistently(default_clip):
    """Tracking 0 -> 6 directly equals tracking 0 -> 3, then 3 -> 6 from the visible points."""
    _, truth = default_clip
    q = grid(truth.height, truth.width, 3)
    direct, vis = truth.tracks(0, 7, q)
    mid = vis[3]
    second, vis2 = truth.tracks(3, 4, direct[3, mid])
    np.testing.assert_allclose(second, direct[3:, mid], atol=1e-9)
    assert np.array_equal(vis2, vis[3:, mid])


# ---------------------------------------------------------------- truth matches the pictures


def _colour_errors(frames: np.ndarray, truth: SampleTruth, start: int, moved: bool) -> np.ndarray:
    """Max-channel colour difference between frame start and later frames at visible sprite points."""
    q = grid(truth.height, truth.width, 2)
    tracks, vis = truth.tracks(start, 8, q)
    layer = truth.layers[start][q[:, 1].astype(int), q[:, 0].astype(int)]
    first = frames[start][q[:, 1].astype(int), q[:, 0].astype(int)].astype(np.float32)
    errs = []
    for k in range(1, 8):
        keep = vis[k] & (layer > 0)
        pos = tracks[k, keep] if moved else q[keep]
        errs.append(np.abs(sample_bilinear(frames[start + k], pos) - first[keep]).max(axis=1))
    return np.concatenate(errs)


def test_true_positions_keep_their_colour(default_clip):
    frames, truth = default_clip
    for start in (0, 8):
        true = _colour_errors(frames, truth, start, moved=True)
        zero = _colour_errors(frames, truth, start, moved=False)
        assert len(true) > 1000
        assert np.median(true) < 6 and np.mean(true < 12) > 0.75, (np.median(true), np.mean(true < 12))
        # the zero-motion hypothesis fails the same check: the sprites really move
        assert np.median(zero) > 20 and np.mean(zero < 12) < 0.3, (np.median(zero), np.mean(zero < 12))


def test_default_clip_has_occlusions(default_clip):
    frames, truth = default_clip
    q = grid(truth.height, truth.width, 2)
    tracks, vis = truth.tracks(0, 16, q)
    layer = truth.layers[0][q[:, 1].astype(int), q[:, 0].astype(int)]
    in_frame = ((tracks >= -0.5) & (tracks < [truth.width - 0.5, truth.height - 0.5])).all(-1)
    hidden = ~vis & in_frame  # (16, N): inside the frame but owned by another layer
    assert hidden[:, layer == 0].any(axis=0).mean() > 0.02  # sprites sweep over the background
    assert hidden[:, layer > 0].any(axis=0).sum() > 20  # and over each other
    assert frames.shape[0] == truth.num_frames == 16
    assert set(np.unique(truth.layers)) == set(range(truth.num_layers))  # every sprite shows


# ---------------------------------------------------------------- appearance sets motion


def _motion(truth: SampleTruth, k: int) -> tuple[np.ndarray, float, float]:
    """Layer k's per-frame translation (2,), rotation (rad) and log-scale step."""
    f = truth.frame_from_tex[:, k]  # (T, 2, 3)
    step = np.diff(f[:, :, 2], axis=0)
    angle = np.unwrap(np.arctan2(f[:, 1, 0], f[:, 0, 0]))
    log_scale = 0.5 * np.log(np.abs(np.linalg.det(f[:, :, :2])))
    assert np.allclose(step, step[0]) and np.allclose(np.diff(angle), np.diff(angle)[0])
    return step[0], float(np.diff(angle)[0]), float(np.diff(log_scale)[0])


def test_motion_depends_only_on_family():
    params = small(sprites=6)
    by_family: dict[int, list] = {}
    for index in range(len(params.clips)):
        _, truth = render_clip(params, index)
        assert truth.layer_family[0] == -1
        np.testing.assert_array_equal(truth.tex_from_frame[:, 0], truth.tex_from_frame[:1, 0].repeat(10, 0))
        for k in range(1, truth.num_layers):
            by_family.setdefault(int(truth.layer_family[k]), []).append(_motion(truth, k))
    assert len(by_family) >= 3 and max(map(len, by_family.values())) >= 2
    velocities = []
    for fam, motions in by_family.items():
        v0, rot0, sc0 = motions[0]
        for v, rot, sc in motions[1:]:  # same family, any clip: same motion
            np.testing.assert_allclose(v, v0, atol=1e-9)
            assert rot == pytest.approx(rot0) and sc == pytest.approx(sc0, abs=1e-12)
        np.testing.assert_allclose(v0, FAMILIES[fam].velocity, atol=1e-9)
        assert 0.5 <= np.linalg.norm(v0) <= 2.0
        velocities.append(v0)
    gaps = [np.linalg.norm(a - b) for i, a in enumerate(velocities) for b in velocities[i + 1 :]]
    assert min(gaps) > 0.5  # families are told apart by their motion


def test_families_look_different():
    """Each family's palette is distinct: mean sprite colours are far apart."""
    params = small(sprites=8, num_frames=2)
    colours: dict[int, list] = {}
    for index in range(len(params.clips)):
        frames, truth = render_clip(params, index)
        for k in range(1, truth.num_layers):
            mask = truth.layers[0] == k
            if mask.sum() > 30:
                colours.setdefault(int(truth.layer_family[k]), []).append(frames[0][mask].mean(0))
        bg = frames[0][truth.layers[0] == 0].astype(float)
        assert bg.std(0).min() > 8  # the background is textured, not flat
    means = [np.mean(c, axis=0) for c in colours.values()]
    assert len(means) >= 3
    assert min(np.linalg.norm(a - b) for i, a in enumerate(means) for b in means[i + 1 :]) > 40


# ---------------------------------------------------------------- sample.ambiguous: the look tells no direction


def _segment_steps(frame_from_tex: np.ndarray, segment: int) -> list[tuple[float, float]]:
    """A sprite's (T, 2, 3) per-frame translation per segment (frames t0 .. t0 + segment - 1),
    asserting it is constant in each, exactly; the jumps between segments are not steps."""
    step = np.diff(frame_from_tex[:, :, 2], axis=0)  # (T-1, 2): the step from frame t to t + 1
    steps = []
    for t0 in range(0, len(step) + 1, segment):
        part = step[t0 : t0 + segment - 1]
        if len(part):  # a last segment of one frame has no step
            assert (part == part[0]).all(), part
            steps.append((float(part[0, 0]), float(part[0, 1])))
    return steps


@pytest.mark.parametrize("ambiguous", [2, 4])
def test_ambiguous_sprites_share_one_look_and_translate_at_one_speed_per_segment(tmp_path, ambiguous):
    s = AMBIGUOUS_SPEED
    want = {(s, 0.0), (-s, 0.0)} | ({(0.0, s), (0.0, -s)} if ambiguous == 4 else set())
    n, seg = 11, 3  # segments of frames 0-2, 3-5, 6-8 and 9-10 (the last one step long)
    params = small(ambiguous=ambiguous, ambiguous_segment=seg, sprites=6, num_frames=n)
    q = grid(params.height, params.width, 3)
    seen: set[tuple[float, float]] = set()
    turned = tracked = jumped = 0
    for index in range(len(params.clips)):
        _, truth = render_clip(params, index)
        save_truth(tmp_path / "t.npz", truth)  # the same schema, read back unchanged
        truth = load_truth(tmp_path / "t.npz")
        assert truth.layer_family.tolist() == [-1] + [AMBIGUOUS_FAMILY] * 6  # one look for all
        assert truth.family_names == tuple(f.name for f in FAMILIES)
        upright = np.broadcast_to(np.eye(2), (n, truth.num_layers, 2, 2))
        assert np.array_equal(truth.frame_from_tex[..., :2], upright)  # no rotation, no scale change
        assert np.array_equal(truth.frame_from_tex[:, 0, :, 2], np.zeros((n, 2)))  # a static background
        tracks, _ = truth.tracks(0, n, q)
        layer = truth.layers[0][q[:, 1].astype(int), q[:, 0].astype(int)]
        for k in range(1, truth.num_layers):
            xy = truth.frame_from_tex[:, k, :, 2]  # (T, 2) the sprite's centre
            steps = _segment_steps(truth.frame_from_tex[:, k], seg)  # one step all through each segment
            assert len(steps) == 4 and set(steps) <= want  # one allowed direction x the one speed
            seen |= set(steps)
            turned += len(set(steps)) > 1
            jumped += sum(abs(float(np.abs(xy[t] - xy[t - 1]).sum()) - s) > 1e-9 for t in range(seg, n, seg))
            # the tracks of a sprite's points move with its centre, exactly, while visible or not
            on = layer == k  # none if the sprite starts wholly hidden
            assert np.array_equal(tracks[:, on], q[on] + (xy - xy[0])[:, None])
            tracked += bool(on.any())
    assert seen == want  # every direction occurs
    assert turned >= 6  # sprites change direction between segments
    assert jumped >= 12  # ... and place (the steps between segments are not the speed's)
    assert tracked >= 8  # (small frames: some sprites sit a segment out)


def _window_start_leak(params: SampleParams, sprites: int) -> tuple[float, float]:
    """How far from 1 / N the share of sprites moving +x is, split by which half of the frame they
    start a window in (windows of 8 frames from frames 0, 8, 16, ...: trajectories.window's).

    Returns the largest deviation (a) per window start, (b) pooled over all starts and places.
    """
    rng = np.random.default_rng(7)
    window, cx = 8, (params.width - 1) / 2
    starts = list(range(0, params.num_frames - window + 1, window))
    rows = []  # (window start, x, moves +x)
    for _ in range(sprites):
        sprite = sample_module._make_ambiguous_sprite(rng, params)
        xy = sprite.frame_from_tex[:, :, 2]  # (T, 2)
        if params.ambiguous_segment == window:  # the centre stays 0.6 of the radius inside the frame
            lo = 0.6 * sprite.half[0] * np.ones(2)
            assert (xy >= lo).all() and (xy <= np.array([params.width - 1, params.height - 1]) - lo).all()
        for t0 in starts:
            rows.append((t0, xy[t0, 0], xy[t0 + 1, 0] > xy[t0, 0]))
    t0s, x, right = (np.array(c) for c in zip(*rows, strict=True))
    share = 1 / params.ambiguous
    per_start = max(
        abs(right[m].mean() - share) for t0 in starts for half in (x < cx, x >= cx) if (m := (t0s == t0) & half).any()
    )
    pooled = max(abs(right[half].mean() - share) for half in (x < cx, x >= cx))
    return per_start, pooled


def _clip_sprites(params: SampleParams, index: int) -> list:
    """The sprites of clip ``index`` as render_clip draws them (same generator, same order)."""
    rng = np.random.default_rng([params.seed, zlib.crc32(params.clips[index].encode())])
    sample_module._background(rng, params.height, params.width)
    sprites: list = []
    for _ in range(params.sprites):
        sprites.append(sample_module._make_sprite(rng, params, sprites))
    return sprites


@pytest.mark.parametrize("ambiguous", [2, 4])
def test_ambiguous_sprites_never_cover_each_other_and_neighbours_tell_no_way(monkeypatch, ambiguous):
    """No sprite ever overlaps another (so no point leaves view by being covered), and the way a
    sprite goes is not towards or away from its nearest neighbour more than 1 / N of the time."""
    monkeypatch.setattr(sample_module, "_pattern", lambda name, rng, size: np.zeros((size, size)))
    params = SampleParams(ambiguous=ambiguous, sprites=5)
    seg, toward, pairs, out, segments = params.ambiguous_segment, [], 0, 0, 0
    for clip in range(60):
        sprites = _clip_sprites(params.model_copy(update={"clips": [f"c{clip}"]}), 0)
        for t0 in range(0, params.num_frames, seg):
            frames = range(t0, min(t0 + seg, params.num_frames))
            shown = [s for s in sprites if s.frame_from_tex[t0, 0, 2] >= 0]  # the others sit it out
            out, segments = out + len(sprites) - len(shown), segments + len(sprites)
            for i, a in enumerate(shown):
                for b in shown[i + 1 :]:
                    gap = [np.hypot(*(a.frame_from_tex[t, :, 2] - b.frame_from_tex[t, :, 2])) for t in frames]
                    assert min(gap) >= a.half[0] + b.half[0]  # discs apart all through the segment
                    pairs += 1
                others = [b for b in shown if b is not a]
                if others and t0 + 1 < params.num_frames:
                    c = a.frame_from_tex[t0, :, 2]
                    near = min(others, key=lambda b: np.hypot(*(b.frame_from_tex[t0, :, 2] - c)))
                    way = a.frame_from_tex[t0 + 1, :, 2] - c
                    toward.append(float(np.dot(way, near.frame_from_tex[t0, :, 2] - c)) > 0)
    assert pairs > 1000 and out / segments < 0.2  # most sprites find a place
    assert abs(np.mean(toward) - 1 / 2) < 0.04  # towards its neighbour as often as away (x or y alike)


@pytest.mark.parametrize("ambiguous", [2, 4])
def test_a_window_start_does_not_tell_the_direction(monkeypatch, ambiguous):
    """Where a sprite is when a window starts tells nothing of the way it moves in that window;
    the same test fails for a direction kept all clip long (``ambiguous_segment`` = the clip)."""
    # the look does not matter here, and flat textures make 3000 sprites quick (other draws, same laws)
    monkeypatch.setattr(sample_module, "_pattern", lambda name, rng, size: np.zeros((size, size)))
    params = SampleParams(ambiguous=ambiguous)  # the default 224 x 128, 48 frames, segments of 8
    per_start, pooled = _window_start_leak(params, 3000)
    assert per_start < 0.06  # sampling noise alone (a half of one start holds ~1500 sprites: sd ~0.013)
    assert pooled < 0.03
    whole_clip, _ = _window_start_leak(params.model_copy(update={"ambiguous_segment": params.num_frames}), 300)
    assert whole_clip > 0.2  # placed only at the clip's start, its later place tells the way


@pytest.mark.parametrize("value", [1, 3, -1, 8])
def test_bad_ambiguous_is_rejected(value):
    with pytest.raises(ParamsError, match=rf"sample\.ambiguous: .*must be 0 \(off\), 2 .* or 4 .*\(got {value}\)"):
        parse_params({"data": {"videos": {"x": "y"}}, "sample": {"ambiguous": value}})


@pytest.mark.parametrize("value", [1, 0, -8])
def test_bad_ambiguous_segment_is_rejected(value):
    with pytest.raises(ParamsError, match=r"sample\.ambiguous_segment: .*greater than or equal to 2"):
        parse_params({"data": {"videos": {"x": "y"}}, "sample": {"ambiguous": 2, "ambiguous_segment": value}})


# ---------------------------------------------------------------- params and CLI


def _write_params(path, **sample) -> None:
    path.write_text(yaml.safe_dump({"data": {"videos": {"x": "data/raw/x.mp4"}}, "sample": sample}))


def test_cli_writes_video_and_truth(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    _write_params(params, **SMALL)
    video, truth = tmp_path / "out" / "c.mp4", tmp_path / "out" / "c.npz"
    rc = sample_main(["--name", "c", "--video", str(video), "--truth", str(truth), "--params", str(params)])
    assert rc == 0, capsys.readouterr().err
    loaded = load_truth(truth)
    assert (loaded.num_frames, loaded.height, loaded.width, loaded.clip) == (10, 64, 96, "c")
    assert len(list(iter_frames(video))) == 10


def test_cli_rejects_unknown_clip(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    _write_params(params, **SMALL)
    rc = sample_main(
        [
            "--name",
            "zz",
            "--video",
            str(tmp_path / "v.mp4"),
            "--truth",
            str(tmp_path / "t.npz"),
            "--params",
            str(params),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "'zz' is not in sample.clips" in err and "densemotion sample: error" in err
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "t.npz").exists()


@pytest.mark.parametrize("key", ["height", "width"])
def test_odd_sizes_are_rejected(tmp_path, capsys, key):
    params = tmp_path / "params.yaml"
    _write_params(params, **{**SMALL, key: 65})
    rc = sample_main(
        ["--name", "a", "--video", str(tmp_path / "v.mp4"), "--truth", str(tmp_path / "t.npz"), "--params", str(params)]
    )
    err = capsys.readouterr().err
    assert rc == 1 and f"sample.{key}" in err and "must be even" in err


@pytest.mark.parametrize("clips", [[], ["a", "a"], ["a/b"]])
def test_bad_clip_lists_are_rejected(clips):
    with pytest.raises(ParamsError, match="sample.clips"):
        parse_params({"data": {"videos": {"x": "y"}}, "sample": {"clips": clips}})
