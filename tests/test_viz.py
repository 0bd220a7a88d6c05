import shutil

import numpy as np
import pytest

from densemotion.viz import color_wheel, flow_to_color, motion_scale, panel_titles


def test_flow_to_color_is_the_standard_wheel_scaled_by_max_mag():
    """The Middlebury wheel's colours (Baker et al.): +x red, -x cyan-blue, +y yellow, -y violet."""
    disp = np.array([[[0, 0], [1, 0], [-1, 0], [0, 1]], [[0.5, 0], [2, 0], [0, -1], [np.nan, 0]]], np.float32)
    img = flow_to_color(disp, max_mag=1.0)
    assert img.shape == (2, 4, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [255, 255, 255]  # no motion: white
    assert img[0, 1].tolist() == [255, 0, 0]  # +x: red, full saturation
    assert img[0, 2].tolist() == [0, 209, 255]  # -x
    assert img[0, 3].tolist() == [255, 229, 0]  # +y (down in the image)
    assert img[1, 2].tolist() == [88, 0, 255]  # -y
    assert img[1, 0].tolist() == [255, 127, 127]  # half magnitude: half saturation
    assert img[1, 1].tolist() == [255, 0, 0]  # beyond max_mag: saturates
    assert img[1, 3].tolist() == [255, 255, 255]  # non-finite: white


def test_flow_to_color_default_scale_is_the_largest_magnitude():
    disp = np.zeros((1, 2, 2), np.float32)
    disp[0, 1] = [0, 7]
    img = flow_to_color(disp)
    assert img[0, 1].min() == 0  # fully saturated


def test_flow_to_color_rejects_bad_shape():
    with pytest.raises(ValueError, match="H, W, 2"):
        flow_to_color(np.zeros((4, 4, 3)))


def test_color_wheel_legend():
    w = color_wheel(33)
    assert w.shape == (33, 33, 3) and w[16, 16].tolist() == [255, 255, 255]


def test_drawn_track_lies_on_its_path_with_older_segments_fainter():
    from densemotion.viz import draw_trajectories

    frame = np.zeros((12, 24, 3), np.uint8)
    tracks = np.array([[[2, 5]], [[6, 5]], [[10, 5]], [[14, 5]]], np.float32)  # (T, 1, 2): 4 px/frame to the right
    vis = np.ones((4, 1), np.float32)
    colour = np.array([[200, 0, 0]], np.uint8)
    img = draw_trajectories(frame, tracks, vis, 3, colour, tail=3, scale=4)
    assert img.shape == (48, 96, 3) and (img[..., 1:] == 0).all()  # drawn in the given colour only
    # at 4x, x -> 4x + 1.5: segments centred at x = 17.5, 33.5, 49.5 on row 21.5, alpha 1/3, 2/3, 1
    for x, level in ((17, 66), (33, 133), (49, 200)):
        assert img[21:24, x, 0].tolist() == [level] * 3, x
    assert img[:16, :, 0].max() == 0 and img[28:, :, 0].max() == 0  # nothing off the path
    assert img[21:23, 3:8, 0].max() == 0  # nothing before the first position (x = 9.5)
    assert (img[19:25, 55:61, 0] == 200).all()  # a filled dot where the point is now (57.5, 21.5)

    vis[3] = 0  # lost in the last frame: no segment into it, an open circle where it was last put
    img = draw_trajectories(frame, tracks, vis, 3, colour, tail=3, scale=4)
    assert img[21:24, 49, 0].max() == 0 and img[21:24, 33, 0].tolist() == [133] * 3
    assert img[20:24, 55:61, 0].max() == 0 and img[18, 56:61, 0].tolist() == [200] * 5


def _store(tmp_path):
    from densemotion.trajectories.store import TrajectoryStore, write_store

    nw, t, hg, wg, g = 2, 4, 6, 10, 4
    disp = np.zeros((nw, t, hg, wg, 2), np.float16)
    disp[:, :, :, :5, 0] = np.arange(t)[None, :, None, None] * 2.0  # left half moves right 2 px/frame
    vis = np.full((nw, t, hg, wg), 255, np.uint8)
    vis[:, 3, 5, 3] = 0  # hidden at the end
    meta = {
        "video": "clip",
        "tracker": "dis",
        "tracker_params": {},
        "window": t,
        "window_stride": t,
        "grid_stride": g,
        "margin": 0,
        "tracking_size": [hg * g, wg * g],
        "frame_size": [hg * g, wg * g],
        "grid_shape": [hg, wg],
        "frames_sha256": "0" * 64,
        "past_end": "skip",
    }
    frames0 = np.full((nw, hg, wg, 3), 90, np.uint8)
    write_store(tmp_path / "clip", frames0=frames0, disp=disp, vis=vis, starts=np.array([0, 4], np.int64), meta=meta)
    return TrajectoryStore(tmp_path / "clip")


def test_window_pictures_draw_moving_points_in_their_direction(tmp_path):
    from densemotion.viz import window_pictures

    store = _store(tmp_path)
    still, animation, flow = window_pictures(store, 1, max_tracks=1000)
    assert len(animation) == 4 and still.shape == animation[0].shape and still.shape[2] == 3
    scale = flow.shape[0] // 24
    width = 40 * scale  # the frame; the track legend follows it
    assert scale >= 2 and still.shape[0] == 24 * scale and still.shape[1] > width + 4
    picture, legend = still[:, :width].astype(int), still[:, width + 4 :]
    # moving half: reddish paths (direction +x); still quarter (beyond their reach): grey only
    left, right = picture[:, : width // 2], picture[:, 3 * width // 4 :]
    assert ((left[..., 0] - left[..., 2]) > 60).sum() > 50
    assert ((right[..., 0] - right[..., 2]) > 60).sum() == 0
    assert not np.array_equal(animation[0], animation[3])
    # the legend: the (darkened) wheel on top, its +x side red like the tracks, and text below it
    spread = legend.astype(int).max(axis=-1) - legend.astype(int).min(axis=-1)  # colour, not grey
    coloured = np.flatnonzero((spread > 60).any(axis=1))
    side = coloured.max() + 1  # the wheel's rows
    assert coloured.min() < 4 and side < legend.shape[0] // 2
    middle = legend[coloured.min() + side // 2 - 1]
    reds = np.flatnonzero((middle[:, 0] > 150) & (middle[:, 2] < 60))
    assert reds.size and reds.mean() > np.flatnonzero(spread[coloured.min() + side // 2 - 1] > 60).mean()  # +x: right
    assert (legend[side:] < 128).any()  # black text
    # flow picture: titles over frame | colour image of the motion | colour key, panels as large as
    # the still's frame. Every grid cell of the moving half is pure red (+x at full magnitude), of
    # the still half white; the point hidden at the end (5, 3) is red half-way to grey
    top = flow.shape[0] - still.shape[0]  # the title strip
    assert 0 < top <= 40 and flow.shape[1] > 2 * width + 8
    assert (flow[:top, :width] < 100).any() and (flow[:top, width + 4 : 2 * width + 4] < 100).any()  # titled
    right = flow[top:, width + 4 : 2 * width + 4]
    cell = 4 * scale  # grid_stride 4 at the picture's scale
    for i in range(6):
        for j in range(10):
            rgb = right[i * cell + cell // 2, j * cell + cell // 2].tolist()
            want = [191, 64, 64] if (i, j) == (5, 3) else [255, 0, 0] if j < 5 else [255, 255, 255]
            assert rgb == want, (i, j, rgb)
    flow_legend = flow[top:, 2 * width + 8 :]
    assert flow_legend[: flow_legend.shape[1] // 2].std() > 20  # the colour wheel is drawn there


def test_visualize_cli_writes_png_and_gif(tmp_path, capsys):
    from PIL import Image

    from densemotion.cli.visualize import main

    _store(tmp_path)
    assert main([str(tmp_path / "clip"), "--window", "0", "-1", "--out-dir", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    drawn = [f"clip_w00{k}_{s}" for k in (0, 1) for s in ("flow.png", "tracks.gif", "tracks.png")]
    assert names == [*drawn, "contact_sheet.png"]
    with Image.open(tmp_path / "out" / "clip_w001_tracks.gif") as gif:
        assert gif.n_frames == 4
    assert main([str(tmp_path / "clip"), "--window", "5", "--out-dir", str(tmp_path / "out")]) == 1
    assert "no window 5 (the store has 2 windows)" in capsys.readouterr().err
    # a folder of stores stands for the stores of data.videos; a store left from an earlier list
    # would enter the DVC stage's hash, so it is refused, naming it
    folder = tmp_path / "stores"
    folder.mkdir()
    shutil.copytree(tmp_path / "clip", folder / "clip")
    shutil.copytree(tmp_path / "clip", folder / "stale")
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  videos: {clip: x.mp4, other: y.mp4}\nvisualize:\n  max_videos: 1\n")
    args = ["--window", "1", "--params", str(params)]
    assert main([str(folder), *args, "--out-dir", str(tmp_path / "o2")]) == 1
    assert "stores/stale" in capsys.readouterr().err
    shutil.rmtree(folder / "stale")
    shutil.copytree(tmp_path / "clip", folder / "other")
    assert main([str(folder), *args, "--out-dir", str(tmp_path / "o2")]) == 0  # visualize.max_videos: 1
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == [
        *(f"clip_w001_{s}" for s in ("flow.png", "tracks.gif", "tracks.png")),
        "contact_sheet.png",  # of both videos
    ]
    shutil.rmtree(folder / "other")  # a listed video without its store: named, also past max_videos
    assert main([str(folder), *args, "--out-dir", str(tmp_path / "o3")]) == 1
    assert "stores/other" in capsys.readouterr().err
    shutil.rmtree(folder / "clip")
    assert main([str(folder), *args, "--out-dir", str(tmp_path / "o3")]) == 1
    assert "stores/clip" in capsys.readouterr().err


def _store_with_archive(tmp_path, starts=(0, 4)):
    """``_store``'s store made from a real 8-frame archive ``clip.zip``, its windows starting at ``starts``."""
    import json

    from densemotion.frames.store import FrameArchive, FrameArchiveWriter, encode_jpeg

    from conftest import moving_frames

    writer = FrameArchiveWriter(tmp_path / "clip.zip")
    for f in moving_frames(8, 24, 40):
        writer.add(encode_jpeg(f, 95))
    writer.close(
        {"video": "clip", "source": "test", "source_sha256": "0" * 64, "fps": 24.0, "width": 40, "height": 24,
         "source_width": 40, "source_height": 24, "source_fps": 24.0, "source_indices": list(range(8)),
         "jpeg_quality": 95}
    )  # fmt: skip
    store = _store(tmp_path).path
    meta = json.loads((store / "meta.json").read_text())
    meta["frames_sha256"] = FrameArchive(tmp_path / "clip.zip").sha256
    (store / "meta.json").write_text(json.dumps(meta))
    np.save(store / "starts.npy", np.array(starts, np.int64))
    return store


# a drawn window past the end or before the start; window 1 fine but the contact sheet's window 0 past the end
@pytest.mark.parametrize("starts, window", [((0, 100), "1"), ((-3, 4), "0"), ((100, 4), "1")])
def test_visualize_windows_past_the_archive_are_one_line(tmp_path, capsys, starts, window):
    from densemotion.cli.visualize import main

    store = _store_with_archive(tmp_path, starts)
    args = [str(store), "--window", window, "--out-dir", str(tmp_path / "out"), "--frames", str(tmp_path / "clip.zip")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert str(store) in err
    if min(starts) < 0:  # a damaged store whatever the frames: the store's reader refuses it
        assert "starting at frame -3" in err
    else:
        assert str(tmp_path / "clip.zip") in err and "8 frames" in err


def test_visualize_store_without_meta_names_it(tmp_path, capsys):
    """A store missing its meta.json is named as such, not taken for a folder of stores (blaming --frames)."""
    from densemotion.cli.visualize import main

    store = _store_with_archive(tmp_path)
    (store / "meta.json").unlink()
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  videos: {clip: x.mp4, other: y.mp4}\n")
    for extra in (["--frames", str(tmp_path / "clip.zip")], []):
        args = [str(store), "--window", "0", "--out-dir", str(tmp_path / "out"), "--params", str(params), *extra]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{store}: has no meta.json" in err and "--frames" not in err, err


def test_a_faint_motion_panel_says_so_in_its_title():
    """A model that predicts about zero draws a white panel at the tracker's scale: its title says
    so, with its own 95th percentile; a motion like the tracker's keeps its plain title."""
    rng = np.random.default_rng(0)
    tracker = rng.normal(0, 5, (8, 10, 2)).astype(np.float32)
    visible = np.ones((8, 10), bool)
    still, alike = tracker * 0.01, tracker * 0.9
    scale = motion_scale(tracker, visible)
    names = panel_titles(
        ["frame", "tracker", "model", "other"], [(tracker, visible), (still, visible), (alike, visible)], scale, 2.0
    )
    assert names[:2] == ["frame", "tracker"] and names[3] == "other" and names[4] == "colour key"
    own = motion_scale(still, visible) * 2.0
    assert names[2] == f"model: nearly no motion (95th pct {own:.2g} px)", names


@pytest.mark.parametrize(("dx", "dy"), [(5.0, 0.0), (0.0, -5.0), (-3.0, 3.0)])
def test_arrows_point_along_the_motion_and_are_scaled_up_to_read(dx, dy):
    """One grid point moves: the ink its arrow adds (against a still field) lies from that point
    along (dx, dy), lengthened by the gain, which makes the largest motion span most of the spacing."""
    from densemotion.viz import ARROW_SPACING, arrows_panel

    frame = np.full((112, 112, 3), 255, np.uint8)
    still = np.zeros((28, 28, 2), np.float32)  # a grid of 4 px cells; arrows every 7 cells from cell 3
    moving = still.copy()
    moving[10, 10] = (dx, dy)
    base, _ = arrows_panel(frame, still, (112, 112), 4, (0, 0), max_mag=5.0)
    panel, gain = arrows_panel(frame, moving, (112, 112), 4, (0, 0), max_mag=5.0)
    assert gain == pytest.approx(0.8 * ARROW_SPACING / 5.0)
    ink = np.argwhere(np.abs(panel.astype(int) - base).max(axis=2) > 40)  # (N, 2) y, x the arrow changed
    start = np.array([(10 + 0.5) * 4] * 2)  # the grid point's (y, x)
    direction = (ink - start).mean(axis=0)  # (y, x) of the ink's centre from the start
    want = np.array([dy, dx])
    assert np.dot(direction, want) > 0.9 * np.linalg.norm(want) * np.linalg.norm(direction)  # within ~25 deg
    assert np.linalg.norm(direction) > 0.3 * gain * np.linalg.norm(want)  # drawn at about the gained length


def test_hypotheses_pool_their_colour_scale():
    """scale_of=2: the two motions set the shared scale together, so the small one reads as small
    (pale) beside the large one, instead of both saturating at the small one's own scale."""
    from densemotion.viz import motion_picture

    frame = np.full((32, 32, 3), 128, np.uint8)
    small = np.full((8, 8, 2), [1.0, 0.0], np.float32)
    large = np.full((8, 8, 2), [6.0, 0.0], np.float32)
    seen = np.ones((8, 8), bool)
    pictures = [
        motion_picture(frame, [(small, seen), (large, seen)], cell=4, panel=(32, 32), scale_of=k) for k in (1, 2)
    ]

    def saturation(picture, panel):  # frame | small | large | key, 4 px gaps; the colours below the titles
        cells = picture[-32:, panel * (32 + 4) : panel * (32 + 4) + 32].astype(int)
        return float((cells.max(axis=2) - cells.min(axis=2)).mean())

    alone, pooled = pictures
    assert saturation(alone, 1) == saturation(alone, 2) == 255  # both past the small one's scale
    assert saturation(pooled, 2) == 255 and saturation(pooled, 1) < 100  # 1 px of 6: pale
