"""Predicting from stills: the pixel mapping to evaluate's predictions, sizes, bounds, the CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from densemotion import predictor as predictor_module
from densemotion.checkpoint import CheckpointError, new_state, save_checkpoint
from densemotion.dataset import Split
from densemotion.evaluation import predict
from densemotion.model import build_model
from densemotion.params import ModelParams, TrainParams
from densemotion.predictor import MotionPredictor, PredictError
from densemotion.stillmodel import StillMotionModel
from densemotion.tracking.grid import Grid

WINDOW = 4


def make_checkpoint(path, grid: dict | None = None, input_scale: int = 1, head: str = "point"):
    """A checkpoint of the repo's own kind whose zero-initialised motion convs are made random, so
    that it predicts motion that varies over the image. ``grid``: what training records."""
    torch.manual_seed(0)
    mp = ModelParams(input_scale=input_scale, head=head, hypotheses=3)
    model = build_model(mp, WINDOW, load_pretrained=False)
    for name, p in model.net.classifier.named_parameters():
        if "classifier" in name:
            torch.nn.init.normal_(p, std=0.5)
    stats = {"mean": [[0.0, 0.0]]}
    state = new_state(mp, TrainParams(device="cpu"), Split(("a",), (), ()), WINDOW, {}, stats, grid)
    state["model"] = model.state_dict()
    save_checkpoint(path, state)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint that records no grid (as those from before it did): every image at its own size."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "motion.pt")


@pytest.fixture(scope="module")
def scaled_checkpoint(tmp_path_factory):
    """A checkpoint trained (so it says) on 128 x 224 stores with a grid of 4: the training side is 224."""
    grid = {"stride": 4, "margin": 0, "tracking_sizes": [[128, 224], [128, 224], [96, 160]]}
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "scaled.pt", grid, input_scale=2)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth blobs, so that motion differs over the image."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 32, 2), max(w // 32, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("stride", [1, 3, 5])
def test_motion_at_the_grid_points_is_evaluates_prediction(checkpoint, stride):
    """With g odd the grid points are pixel centres, x = (j + 0.5) g - 0.5: the full-resolution
    field there is evaluate's prediction on the grid image (the stores' frames0 kind)."""
    p = MotionPredictor.from_checkpoint(checkpoint, device="cpu", grid_stride=stride)
    image = _image(90, 128)
    pred = p(image)
    grid = Grid.of((90, 128), stride, 0)
    want = predict(p.model, grid.downsize(image)[None], "cpu")[0].transpose(0, 3, 1, 2)  # (K, 2, Hg, Wg)
    assert np.abs(want).max() > 0.1  # a field that varies, not zero motion
    c = stride // 2  # pixel (i g + c, j g + c) is grid point (i, j)
    at_points = pred.motion[:, :, c : grid.shape[0] * stride : stride, c : grid.shape[1] * stride : stride]
    np.testing.assert_allclose(at_points, want, atol=1e-4)
    np.testing.assert_allclose(pred.grid_motion, want, atol=1e-4)
    assert pred.steps == (WINDOW - 1,)


def test_even_stride_grid_field_and_upsampling(checkpoint, monkeypatch):
    """g = 4 (the default): the grid field is evaluate's; a linear field upsamples exactly (the
    grid points, half-way between pixels, are the mean of their four neighbours)."""
    p = MotionPredictor.from_checkpoint(checkpoint, device="cpu")
    image = _image(64, 96)
    grid = Grid.of((64, 96), 4, 0)
    want = predict(p.model, grid.downsize(image)[None], "cpu")[0].transpose(0, 3, 1, 2)
    np.testing.assert_allclose(p(image).grid_motion, want, atol=1e-4)
    i, j = np.mgrid[0:16, 0:24].astype(np.float32)
    linear = np.stack([0.5 * j - 3, 2 - 0.25 * i])[None]  # (1, 2, Hg, Wg)
    monkeypatch.setattr(StillMotionModel, "net_motion", lambda self, cells: torch.from_numpy(linear)[None])
    full = p(image).motion  # (1, 2, 64, 96)
    assert full.shape == (1, 2, 64, 96)
    rows, cols = 4 * np.arange(1, 15) + 1, 4 * np.arange(1, 23) + 1  # the pixels up-left of grid points 1..
    four = sum(full[:, :, rows + di][:, :, :, cols + dj] for di in (0, 1) for dj in (0, 1)) / 4
    np.testing.assert_allclose(four, linear[:, :, 1:15, 1:23], atol=1e-5)  # not (0, 0): the border is clamped


@pytest.mark.parametrize("stride", range(1, 11))
def test_the_grid_image_is_the_stores_frames0_to_the_level(stride):
    """The module's block means, rounded as OpenCV's area resize rounds them, are Grid.downsize's
    uint8 frames0 exactly (g = 2 rounds halves up, the others to even: both are tested here)."""
    rng = np.random.default_rng(stride)
    image = rng.integers(0, 256, (120, 240, 3), dtype=np.uint8)
    model = build_model(ModelParams(input_scale=1), WINDOW, load_pretrained=False)
    still = StillMotionModel(model, stride)
    cells = torch.nn.functional.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1)[None].float(), stride)
    got = still.round_levels(cells)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, Grid.of((120, 240), stride, 0).downsize(image))


def test_images_are_seen_at_the_training_scale_and_motion_comes_back_in_their_px(scaled_checkpoint):
    """Training side 224 (the median longest side recorded): a 128 x 224 frame is seen as it is
    (evaluate's numbers), a 2x enlargement of it is seen at 128 x 224 again and gets about twice
    the motion, in its own px; ``native`` sees the enlargement at its own size."""
    p = MotionPredictor.from_checkpoint(scaled_checkpoint, device="cpu")
    assert p.side == 224 and p.seen_size((256, 448)) == (128, 224) and p.seen_size((640, 360)) == (224, 126)
    frame = _image(128, 224, seed=3)
    grid = Grid.of((128, 224), 4, 0)
    want = predict(p.model, grid.downsize(frame)[None], "cpu")[0].transpose(0, 3, 1, 2)  # (K, 2, Hg, Wg)
    at_frame = p(frame)
    np.testing.assert_allclose(at_frame.grid_motion, want, atol=1e-4)
    big = cv2.resize(frame, (448, 256), interpolation=cv2.INTER_CUBIC)
    at_big = p(big)
    assert at_big.motion.shape == (1, 2, 256, 448) and at_big.grid.size == (128, 224)
    err = np.abs(at_big.grid_motion - 2 * want).mean() / np.abs(2 * want).mean()
    assert err < 0.1, err  # the same motion, twice as many px (not the same px: err would be 0.5)
    native = MotionPredictor.from_checkpoint(scaled_checkpoint, device="cpu", scale="native")(big)
    assert native.grid.size == (256, 448) and native.grid_motion.shape == (1, 2, 64, 112)


def test_a_batch_is_the_images_one_by_one(scaled_checkpoint):
    p = MotionPredictor.from_checkpoint(scaled_checkpoint, device="cpu")
    images = [_image(128, 224, seed=1), _image(300, 200, seed=2), _image(128, 224, seed=4)]
    together = p(images, batch_size=2)
    for image, pred in zip(images, together, strict=True):
        alone = p(image)
        np.testing.assert_allclose(pred.motion, alone.motion, atol=1e-5)
        assert pred.grid == alone.grid


@pytest.mark.parametrize(("h", "w"), [(720, 1280), (640, 480), (67, 101)])
def test_the_motion_has_the_images_size(checkpoint, h, w):
    """1280x720, a portrait 480x640 and a size no multiple of g: (K, 2, H, W), finite."""
    pred = MotionPredictor.from_checkpoint(checkpoint, device="cpu")(_image(h, w))
    assert pred.motion.shape == (1, 2, h, w) and pred.motion.dtype == np.float32
    assert pred.size == (h, w) and pred.grid_motion.shape == (1, 2, h // 4, w // 4)
    assert np.isfinite(pred.motion).all()


def test_lists_paths_and_bounds(checkpoint, tmp_path, monkeypatch):
    p = MotionPredictor.from_checkpoint(checkpoint, device="cpu")
    image = _image(40, 60)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    from_path, from_array = p([tmp_path / "a.png", image])
    np.testing.assert_array_equal(from_path.motion, from_array.motion)
    with pytest.raises(PredictError, match="uint8"):
        p(image.astype(np.float32))
    monkeypatch.setattr(predictor_module, "MAX_PIXELS", 1000)
    with pytest.raises(PredictError, match=r"a\.png: 60x40 is 2400 pixels, more than the 1000"):
        p(tmp_path / "a.png")
    with pytest.raises(PredictError, match="more than the 1000"):
        p(image)


def test_a_foreign_checkpoint_is_refused(tmp_path):
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a densemotion motion-model checkpoint"):
        MotionPredictor.from_checkpoint(tmp_path / "foreign.pt", device="cpu")


def huge_png(path, width: int, height: int) -> None:
    """A valid grey PNG of width x height black pixels, written row by row (never held whole)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pack = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the row
    body = b"".join(pack.compress(row) for _ in range(height)) + pack.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_cli_writes_each_good_input_and_one_line_per_bad_one(checkpoint, tmp_path, capsys):
    from densemotion.__main__ import main

    stills = tmp_path / "stills"
    stills.mkdir()
    cv2.imwrite(str(stills / "wide.png"), _image(48, 80))
    cv2.imwrite(str(tmp_path / "tall.jpg"), _image(80, 48, seed=1))
    (stills / "text.jpg").write_text("not an image\n")
    ok, png = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (stills / "cut.png").write_bytes(png.tobytes()[: len(png) // 2])
    huge_png(stills / "huge.png", 10_000, 10_000)  # 100 megapixels, a few hundred kB
    out = tmp_path / "out"
    rc = main(["predict", str(checkpoint), str(stills), str(tmp_path / "tall.jpg"), "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3, err
    assert any("text.jpg" in line for line in err) and any("cut.png" in line and "truncated" in line for line in err)
    assert any("huge.png: 10000x10000 is 100000000 pixels, more than the" in line for line in err), err
    for name, (h, w) in (("wide", (48, 80)), ("tall", (80, 48))):
        with np.load(out / f"{name}.npz") as saved:
            assert saved["motion"].shape == (1, 2, h, w) and saved["steps"].tolist() == [WINDOW - 1]
            assert saved["image_size"].tolist() == [h, w] and int(saved["grid_stride"]) == 4
        assert (out / f"{name}.png").stat().st_size > 0
        from PIL import Image

        with Image.open(out / f"{name}.gif") as gif:
            assert gif.n_frames > 1
    want = sorted(f"{n}.{e}" for n in ("wide", "tall") for e in ("npz", "png", "gif"))
    assert sorted(p.name for p in out.iterdir()) == want
    assert main(["predict", str(checkpoint), str(tmp_path / "tall.jpg"), "--out", str(out)]) == 0


def test_cli_refuses_a_foreign_checkpoint_in_one_line(tmp_path, capsys):
    from densemotion.__main__ import main

    torch.save({"model": {}}, tmp_path / "foreign.pt")
    cv2.imwrite(str(tmp_path / "a.png"), _image(32, 32))
    assert main(["predict", str(tmp_path / "foreign.pt"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("densemotion predict: error:") and "foreign.pt" in err[0]


def test_the_checkpoint_records_the_training_grid_and_the_predictor_uses_it(tmp_path):
    """densemotion train writes the training stores' grid stride, margin and tracking sizes; predict
    takes that stride and scale unless told otherwise (an older checkpoint without them: 4, native)."""
    from densemotion.training import train
    from densemotion.trajectories.store import TrajectoryStore

    from test_dataset import write_motion_store

    root = tmp_path / "traj"
    videos = [write_motion_store(root, f"v{i}", seed=i).name for i in range(3)]
    info = TrajectoryStore(root / "v0").info
    out = tmp_path / "m.pt"
    state = train(
        trajectories=root, videos=videos, model_params=ModelParams(input_scale=1),
        train_params=TrainParams(device="cpu", epochs=1, batch_size=2, val_videos=1, test_videos=1), out=out,
    )  # fmt: skip
    sizes = [list(TrajectoryStore(root / v).info.tracking_size) for v in state["split"]["train"]]
    assert state["grid"] == {"stride": info.grid_stride, "margin": info.margin, "tracking_sizes": sizes}
    assert MotionPredictor.from_checkpoint(out, device="cpu").side == max(sizes[0])
    assert MotionPredictor.from_checkpoint(out, device="cpu").grid_stride == info.grid_stride
    assert MotionPredictor.from_checkpoint(out, device="cpu", grid_stride=3).grid_stride == 3


@pytest.mark.parametrize("head", ["laplace", "hypotheses"])
def test_a_distribution_heads_extras_reach_the_npz_the_pictures_and_the_gifs(head, tmp_path):
    from densemotion.__main__ import main

    grid = {"stride": 4, "margin": 0, "tracking_sizes": [[64, 96]]}
    ckpt = make_checkpoint(tmp_path / "m.pt", grid, head=head)
    p = MotionPredictor.from_checkpoint(ckpt, device="cpu")
    image = _image(128, 192)  # seen at 64 x 96: the extras come back in the image's px
    pred = p(image)
    if head == "hypotheses":
        hyps, probs = pred.extras["hypotheses"], pred.extras["probabilities"]
        assert hyps.shape == (3, 1, 2, 16, 24) and probs.shape == (3, 16, 24)
        np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
        mean = (hyps * probs[:, None, None]).sum(axis=0)
        np.testing.assert_allclose(mean, pred.grid_motion, atol=1e-4)  # the point estimate is their mean
    else:
        assert pred.extras["scale"].shape == (1, 16, 24) and (pred.extras["scale"] > 0).all()
    cv2.imwrite(str(tmp_path / "still.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert main(["predict", str(ckpt), str(tmp_path / "still.png"), "--out", str(tmp_path / "out")]) == 0
    names = sorted(f.name for f in (tmp_path / "out").iterdir())
    with np.load(tmp_path / "out" / "still.npz") as saved:
        if head == "hypotheses":
            assert names == ["still.gif", "still.npz", "still.png", *[f"still_hyp{m}.gif" for m in (1, 2, 3)]]
            np.testing.assert_allclose(saved["hypotheses"], pred.extras["hypotheses"], atol=1e-5)
        else:
            assert names == ["still.gif", "still.npz", "still.png", "still_scale.png"]
            np.testing.assert_allclose(saved["scale"], pred.extras["scale"], rtol=1e-5)
