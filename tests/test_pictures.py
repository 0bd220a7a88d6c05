"""The pictures a person looks at: evaluation pictures drawn from the frames archive, titled, at the
video's aspect, with a compact colour key; the visualize stage's contact sheet and its params."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import yaml

from densemotion.evaluation import evaluate
from densemotion.frames.store import FrameArchive, FrameArchiveWriter, encode_jpeg
from densemotion.heads import PointHead
from densemotion.imaging import fit_box, fit_image
from densemotion.params import EvaluateParams, ModelParams, ParamsError, parse_params
from densemotion.trajectories.store import TrajectoryStore, write_store
from densemotion.viz import (
    GAP,
    SCALE_PERCENTILE,
    SHEET_BOX,
    flow_legend,
    grid_frame,
    key_lines,
    motion_image,
    motion_picture,
    motion_scale,
    sheet_columns,
)

from conftest import REPO, moving_frames, sample_params_dict

WIDE, TALL = (272, 640), (480, 272)  # (H, W) of the frames archive
MOTION = (3.0, 4.0)  # every point's tracked displacement, tracking px: 5 px, 10 px at frame scale


class Constant(torch.nn.Module):
    """A stub motion net predicting (1, -2) px everywhere: a motion panel with no white cell."""

    head = PointHead()

    def forward(self, image):
        b, _, hg, wg = image.shape
        return {"out": torch.tensor([1.0, -2.0]).view(1, 1, 2, 1, 1).expand(b, 1, 2, hg, wg).clone()}


def _checkpoint(video: str) -> dict:
    """What evaluate reads of a checkpoint: ``video`` held out, 4-frame windows, endpoint target."""
    return {
        "split": {"train": ["x"], "val": [], "test": [video]},
        "model_params": ModelParams(input_scale=1).model_dump(),
        "window": 4,
        "epoch": 0,
        "stats": {"mean": [[0.0, 0.0]], "rms": 1.0},
    }


def _video(root, name: str, size: tuple[int, int], windows: int = 2, t: int = 4, g: int = 8, end=None, seen=None):
    """A frames archive ``root/frames/<name>.zip`` of ``size`` (H, W) and its store ``root/traj/<name>``,
    tracked at half that size: every point moves by MOTION, all seen; returns the store. ``end``
    (Hg, Wg, 2) tracking px: each point's motion instead (every window's), ``seen`` (Hg, Wg) bool:
    which are visible at the end."""
    h, w = size
    frames = moving_frames(windows * t, h, w, seed=len(name))
    (root / "frames").mkdir(parents=True, exist_ok=True)
    archive = root / "frames" / f"{name}.zip"
    writer = FrameArchiveWriter(archive)
    for f in frames:
        writer.add(encode_jpeg(f, 95))
    writer.close(
        {"video": name, "source": "test", "source_sha256": "0" * 64, "fps": 24.0, "width": w, "height": h,
         "source_width": w, "source_height": h, "source_fps": 24.0, "source_indices": list(range(len(frames))),
         "jpeg_quality": 95}
    )  # fmt: skip
    track = (h // 2, w // 2)
    hg, wg = track[0] // g, track[1] // g
    disp = np.zeros((windows, t, hg, wg, 2), np.float16)
    motion = np.array(MOTION)[None, None, None, None] if end is None else np.asarray(end)[None, None]
    disp[:, :] = motion * (np.arange(t) / (t - 1))[None, :, None, None, None]
    vis = np.full((windows, t, hg, wg), 255, np.uint8)
    if seen is not None:
        vis[:, -1] = np.where(seen, 255, 0)
    small = [cv2.resize(frames[k * t], (wg, hg), interpolation=cv2.INTER_AREA) for k in range(windows)]
    meta = {
        "video": name,
        "tracker": "dis",
        "tracker_params": {},
        "window": t,
        "window_stride": t,
        "grid_stride": g,
        "margin": 0,
        "tracking_size": [hg * g, wg * g],
        "frame_size": [h, w],
        "grid_shape": [hg, wg],
        "frames_sha256": FrameArchive(archive).sha256,
        "past_end": "skip",
    }
    write_store(
        root / "traj" / name,
        frames0=np.stack(small),
        disp=disp,
        vis=vis,
        starts=np.arange(windows, dtype=np.int64) * t,
        meta=meta,
    )
    return TrajectoryStore(root / "traj" / name)


def _pictures(tmp_path, name: str, size, side: int = 320, frames: bool = True) -> list[np.ndarray]:
    _video(tmp_path, name, size)
    evaluate(
        model=Constant(),
        checkpoint=_checkpoint(name),
        trajectories=tmp_path / "traj",
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=2, picture_side=side),
        device="cpu",
        frames_dir=tmp_path / "frames" if frames else None,
    )
    paths = sorted((tmp_path / "out" / "pictures").iterdir())
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@pytest.mark.parametrize("name, size", [("wide", WIDE), ("tall", TALL)])
def test_panels_have_the_video_aspect_and_a_title_each(tmp_path, name, size):
    h, w = size
    (image, _) = _pictures(tmp_path, name, size)
    ph, pw = fit_box(size, (320, 320))
    assert max(ph, pw) == 320 and abs(pw / ph - w / h) < 0.01
    top = image.shape[0] - ph  # the title strip
    assert 12 <= top <= 40
    # measured, not assumed: frame, tracker and model panels are the columns with colour (no white cell)
    panels = _runs((image[top:] != 255).any(axis=(0, 2)))[:3]
    assert panels == [(k * (pw + GAP), k * (pw + GAP) + pw) for k in range(3)]
    for x0, x1 in panels[1:]:  # the motion panels: one colour each, no white cell
        rows = np.flatnonzero((image[:, x0:x1] != 255).any(axis=-1).all(axis=1))
        assert rows.min() == top and rows.max() == image.shape[0] - 1  # ph high, under its title
        assert abs((x1 - x0) / rows.size - w / h) < 0.01
    for x0, x1 in [*panels, (3 * (pw + GAP), image.shape[1])]:  # frame, tracker, model, colour key
        strip = image[:top, x0:x1]
        assert (strip < 100).all(axis=-1).sum() > 20, (x0, x1)  # dark text
        assert (strip.min(axis=-1) >= 100).all(axis=-1).any()  # on white
    assert (image[:top, pw : pw + GAP] == 255).all()  # nothing drawn in the gaps


@pytest.mark.parametrize("name, size", [("wide", WIDE), ("tall", TALL)])
def test_frame_panel_is_the_archive_frame_and_the_key_reads_frame_pixels(tmp_path, name, size):
    pictures = _pictures(tmp_path, name, size)
    ph, pw = fit_box(size, (320, 320))
    store = TrajectoryStore(tmp_path / "traj" / name)
    with FrameArchive(tmp_path / "frames" / f"{name}.zip") as archive:
        for k, image in enumerate(pictures):
            top = image.shape[0] - ph
            frame = archive.read(int(store.starts[k]))  # the window's first frame, full resolution
            assert np.array_equal(image[top:, :pw], fit_image(frame, (ph, pw)))
            thumbnail = fit_image(grid_frame(store.info.grid, store.window(k)["frame0"]), (ph, pw))
            assert np.abs(image[top:, :pw].astype(int) - thumbnail).mean() > 10  # not the blown-up grid frame
            # the key: MOTION is 5 tracking px, 10 px at frame scale (archive frames are twice the tracking size)
            key = image[top:, 3 * (pw + GAP) :]
            assert np.array_equal(key, flow_legend(ph, pw, 10.0)) and not np.array_equal(key, flow_legend(ph, pw, 5.0))
            assert key.shape[1] <= max(ph, 120)  # no wider than the panel is high, or than its text
            wheel = np.flatnonzero((key.max(axis=-1).astype(int) - key.min(axis=-1) > 60).any(axis=1))
            assert wheel.size >= min(0.4 * ph, 0.8 * pw, 150)  # the wheel fills the height left by the text
            assert (key != 255).any(axis=-1).any(axis=0).mean() > 0.75  # no mostly-white quarter


def test_without_frames_the_frame_panel_is_the_grid_thumbnail(tmp_path):
    (image, _) = _pictures(tmp_path, "wide", WIDE, side=256, frames=False)
    ph, pw = fit_box(WIDE, (256, 256))
    store = TrajectoryStore(tmp_path / "traj" / "wide")
    expected = fit_image(grid_frame(store.info.grid, store.window(0)["frame0"]), (ph, pw))
    assert np.array_equal(image[image.shape[0] - ph :, :pw], expected)


def test_frames_of_another_video_are_refused(tmp_path):
    _video(tmp_path, "wide", WIDE)
    other = _video(tmp_path / "other", "wide", WIDE, windows=3)  # other frames under the same name
    (tmp_path / "frames" / "wide.zip").write_bytes((other.path.parents[1] / "frames" / "wide.zip").read_bytes())
    with pytest.raises(ValueError, match="made from other frames"):
        evaluate(
            model=Constant(),
            checkpoint=_checkpoint("wide"),
            trajectories=tmp_path / "traj",
            out_dir=tmp_path / "out",
            params=EvaluateParams(pictures=1),
            device="cpu",
            frames_dir=tmp_path / "frames",
        )


def test_contact_sheet_has_a_labelled_cell_per_video_in_a_grid(tmp_path):
    from densemotion.cli.visualize import main

    sizes = {"a_wide": (48, 112), "b_tall": (96, 48), "c_square": (64, 64), "d_wider": (40, 120)}
    for name, size in sizes.items():
        _video(tmp_path, name, size, g=4)
    params = tmp_path / "params.yaml"
    videos = {v: f"{v}.mp4" for v in sizes}
    params.write_text(yaml.safe_dump({"data": {"videos": videos}, "visualize": {"max_videos": 1}}))
    args = [str(tmp_path / "traj"), "--window", "0", "--frames-dir", str(tmp_path / "frames"), "--params", str(params)]
    assert main([*args, "--out-dir", str(tmp_path / "out")]) == 0
    drawn = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert drawn == ["a_wide_w000_flow.png", "a_wide_w000_tracks.gif", "a_wide_w000_tracks.png", "contact_sheet.png"]
    sheet = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "contact_sheet.png")), cv2.COLOR_BGR2RGB)
    count, _, stats, _ = cv2.connectedComponentsWithStats((sheet != 255).any(axis=-1).astype(np.uint8))
    thumbs = sorted((y, x, h, w) for x, y, w, h, area in stats[1:].tolist() if area > 1000)  # text is smaller
    assert len(thumbs) == len(sizes)
    columns = sheet_columns(len(sizes))
    assert columns == 3
    bottoms = sorted({y + h for y, _, h, _ in thumbs})
    assert len(bottoms) == 2  # two rows, bottom-aligned
    box_w = SHEET_BOX[1]
    for i, (name, size) in enumerate(sizes.items()):  # in name order, row by row
        row = [t for t in thumbs if t[0] + t[2] == bottoms[i // columns]]
        y, x, h, w = sorted(row, key=lambda t: t[1])[i % columns]
        assert (h, w) == fit_box(size, SHEET_BOX), name  # the video's aspect
        cell_x = x - (box_w - w) // 2
        assert cell_x == 12 + (i % columns) * (box_w + 12), name
        label = sheet[y + h : y + h + 36, cell_x : cell_x + box_w]
        assert (label < 100).all(axis=-1).sum() > 60, name  # name and size, in dark text
    assert (sheet[:16] < 100).all(axis=-1).any()  # a header says what the cells show


def test_visualize_params_are_read_and_validated():
    raw = sample_params_dict()
    assert parse_params(raw).visualize.max_videos == 2
    raw["visualize"] = {"max_videos": None}
    assert parse_params(raw).visualize.max_videos is None  # all videos
    for bad, message in [({"max_video": 3}, r"visualize\.max_video: unknown key"), ({"max_videos": 0}, "max_videos")]:
        raw["visualize"] = bad
        with pytest.raises(ParamsError, match=message):
            parse_params(raw)
    raw["visualize"] = {}
    raw["evaluate"] = {"picture_scale": 4}  # the old key: panels are now sized by picture_side
    with pytest.raises(ParamsError, match=r"evaluate\.picture_scale: unknown key"):
        parse_params(raw)


def test_the_visualize_stage_reads_its_params_section():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["visualize"]
    assert "visualize" in stage["params"] and "--max-videos" not in stage["cmd"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "max_videos" in params["visualize"]


class Steady(torch.nn.Module):
    """A stub motion net predicting (1.2, 0.9) tracking px everywhere: 3 px at frame scale."""

    head = PointHead()

    def forward(self, image):
        b, _, hg, wg = image.shape
        return {"out": torch.tensor([1.2, 0.9]).view(1, 1, 2, 1, 1).expand(b, 1, 2, hg, wg).clone()}


def _saturation(rgb: np.ndarray) -> float:
    """Mean HSV saturation in [0, 1]: 0 for a white (blank) panel, r for the flow wheel at radius r."""
    return float(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)[..., 1].mean() / 255)


@pytest.mark.parametrize("wild", [0.005, 0.03])
def test_a_few_wild_tracker_points_do_not_wash_the_model_panel_out(tmp_path, wild):
    """Real footage: a few tracker points far off (110 px at frame scale) among ~3 px of motion. The
    full colour is a high percentile of the tracker's visible motion, ~3 px, not 110 (the 99th
    percentile is 110 once they are 2 %), and the key says so; points hidden at the end count not."""
    g, (h, w) = 4, WIDE
    hg, wg = h // 2 // g, w // 2 // g
    rng = np.random.default_rng(7)
    angle = rng.uniform(0, 2 * np.pi, (hg, wg))
    mag = rng.normal(1.5, 0.15, (hg, wg))  # tracking px: 3 px at frame scale
    points = rng.permutation(hg * wg)
    n_wild, n_hidden = int(wild * hg * wg), int(0.05 * hg * wg)
    mag.flat[points[:n_wild]] = 55.0  # 110 px at frame scale
    mag.flat[points[n_wild : n_wild + n_hidden]] = 80.0  # hidden at the end: not the tracker's motion
    seen = np.ones((hg, wg), bool)
    seen.flat[points[n_wild : n_wild + n_hidden]] = False
    end = np.stack([mag * np.cos(angle), mag * np.sin(angle)], axis=-1)
    _video(tmp_path, "real", WIDE, windows=1, g=g, end=end, seen=seen)
    evaluate(
        model=Steady(),
        checkpoint=_checkpoint("real"),
        trajectories=tmp_path / "traj",
        out_dir=tmp_path / "out",
        params=EvaluateParams(pictures=1, picture_side=320),
        device="cpu",
        frames_dir=tmp_path / "frames",
    )
    (path,) = sorted((tmp_path / "out" / "pictures").iterdir())
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    ph, pw = fit_box(WIDE, (320, 320))
    top = image.shape[0] - ph
    tracker, model = (image[top:, k * (pw + GAP) : k * (pw + GAP) + pw] for k in (1, 2))

    stored = np.hypot(*np.moveaxis(TrajectoryStore(tmp_path / "traj" / "real").window(0)["disp"][-1], -1, 0))
    full = 2 * float(np.percentile(stored[seen], SCALE_PERCENTILE))  # frame px: frames are twice the tracking size
    assert 3.0 < full < 4.0  # ~3 px, not 110
    # the model's ~3 px is drawn in colour; at a 110 px scale the same panel is all but white
    assert _saturation(model) > 0.6, _saturation(model)
    assert _saturation(tracker) > 0.6, _saturation(tracker)
    washed = motion_image(np.full((hg, wg, 2), (1.2, 0.9)), np.ones((hg, wg), bool), 55.0)
    assert _saturation(washed) < 0.1  # the bound tells the two apart

    key = image[top:, 3 * (pw + GAP) :]
    assert np.array_equal(key, flow_legend(ph, pw, full)) and not np.array_equal(key, flow_legend(ph, pw, 110.0))
    assert key_lines(full) == ["full colour =", f"{full:.1f} px at frame", "scale (95th pct", "of tracker)"]


def test_a_still_window_is_drawn_pale_not_its_jitter_in_full_colour():
    jitter = np.random.default_rng(0).normal(0, 0.01, (10, 12, 2))  # px: nothing moves
    seen = np.ones((10, 12), bool)
    assert motion_scale(jitter, seen) < 0.05
    assert motion_scale(jitter, seen, floor=0.5) == 0.5
    assert motion_scale(np.zeros((4, 4, 2)), seen[:4, :4]) == 1.0  # no motion at all, no floor: 1 px
    picture = motion_picture(np.zeros((40, 48, 3), np.uint8), [(jitter, seen)], cell=4, px_scale=2.0)
    panel = picture[-40:, 48 + GAP : 2 * 48 + GAP]
    assert _saturation(panel) < 0.1  # floor 0.5 px at frame scale: 0.25 px here
