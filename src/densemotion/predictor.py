"""Predict dense motion from one still image with a trained model (``models/motion.pt``).

    predictor = MotionPredictor.from_checkpoint("models/motion.pt")
    pred = predictor(image)          # (H, W, 3) uint8 RGB array or an image path; a list gives a list
    pred.motion                      # (K, 2, H, W) float32: x, y displacement in the image's px
    pred.steps                       # (K,) the frame offsets from the still that K stands for

How an image is seen (the way the trajectories stage saw the training videos): the image is
taken at its own size as the *tracking* size, with a grid of stride ``g`` (``grid_stride``; by
default the training stores' own, which the checkpoint records, else 4 as
``trajectories.grid_stride`` in params.yaml) and no margin. The net sees the (H // g, W // g) grid
image, each cell the mean colour of its g x g block (:meth:`~densemotion.tracking.grid.Grid.downsize`,
as a store's ``frames0``), and predicts the displacement of each cell's centre, x = (j + 0.5) g - 0.5,
y = (i + 0.5) g - 0.5, in tracking px = the image's own px (:func:`densemotion.evaluation.predict`).
That grid field is upsampled to (H, W) bilinearly (pixel centres: exact at the grid points when
they fall on pixel centres, i.e. g odd), beyond the last cell (H or W not a multiple of g) the
border cells' values are repeated. The net learnt motion at the training videos' tracking
resolution: an image of about that size (and the training's ``g``) gives the motion it learnt.

Bounds: an image has at most :data:`MAX_PIXELS` pixels (the trajectories stage's bound on a
tracking size, :data:`~densemotion.params.MAX_TRACKING_PIXELS`, 4096 x 4096) and, as a file, at
most :data:`~densemotion.frames.store.MAX_IMAGE_BYTES`; more is a :class:`PredictError` (checked
on the header, before decoding). The full-resolution field is K * 2 * H * W float32 (128 MiB per
step at the bound).

Letters: K predicted steps, H x W image, Hg x Wg grid (H // g, W // g).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from densemotion.checkpoint import load_checkpoint, model_from_checkpoint
from densemotion.errors import DensemotionError
from densemotion.evaluation import predict
from densemotion.frames.store import MAX_IMAGE_BYTES, decode_jpeg, image_size
from densemotion.model import MotionNet, predicted_steps
from densemotion.params import MAX_TRACKING_PIXELS
from densemotion.runtime import resolve_device
from densemotion.tracking.grid import Grid

MAX_PIXELS = MAX_TRACKING_PIXELS  # per image: the largest tracking size the trajectories stage takes
DEFAULT_GRID_STRIDE = 4  # params.yaml trajectories.grid_stride

ImageLike = np.ndarray | str | os.PathLike


class PredictError(DensemotionError):
    """An input that is no usable image (unreadable, truncated, too many pixels, of another shape)."""


@dataclass(frozen=True)
class Prediction:
    """The motion predicted from one still (see the module docstring for the pixel mapping)."""

    motion: np.ndarray  # (K, 2, H, W) float32: x, y displacement of each pixel, the image's px
    steps: tuple[int, ...]  # (K,) frame offsets from the still (endpoint target: one, window - 1)
    grid_motion: np.ndarray  # (K, 2, Hg, Wg) float32: the net's own output at the grid points, image px
    grid: Grid  # the grid the net saw: stride g, margin 0, size (H, W)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.motion.shape[2]), int(self.motion.shape[3])


def check_pixels(h: int, w: int, where: str) -> None:
    """Refuse an image of more than :data:`MAX_PIXELS` pixels, naming ``where``."""
    if h * w > MAX_PIXELS:
        raise PredictError(
            f"{where}: {w}x{h} is {h * w} pixels, more than the {MAX_PIXELS} (4096x4096) a prediction takes; "
            "resize it first"
        )


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (what OpenCV decodes: JPEG, PNG, BMP, ...); a
    :class:`PredictError` naming ``path`` for a file that is no image, truncated or too large
    (bytes or pixels, the latter from the header before decoding)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise PredictError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_IMAGE_BYTES} of one image")
        data = path.read_bytes()
    except OSError as err:
        raise PredictError(f"{path}: cannot read it ({err.strerror or err})") from None
    try:
        w, h = image_size(data)
    except ValueError as err:
        raise PredictError(f"{path}: {err}") from None
    check_pixels(h, w, str(path))
    _check_whole(data, str(path))
    image = decode_jpeg(data, str(path), PredictError)
    check_pixels(image.shape[0], image.shape[1], str(path))  # the header may lie
    return image


def _check_whole(data: bytes, where: str) -> None:
    """Refuse a truncated image: OpenCV decodes a cut JPEG with a grey rest (a warning on stderr
    only) and a cut PNG with a libpng line on stderr; PIL's full decode says so instead."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, EOFError, zlib.error, ... on broken data
        raise PredictError(f"{where}: not a decodable image, truncated or corrupt ({err})") from None


def as_image(image: ImageLike, where: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8 RGB array from an array of that kind or an image path."""
    if isinstance(image, str | os.PathLike):
        return read_image(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise PredictError(f"{where}: expected an (H, W, 3) uint8 RGB image, got {array.dtype}{list(array.shape)}")
    check_pixels(array.shape[0], array.shape[1], where)
    return np.ascontiguousarray(array)


def upsample_grid(field: np.ndarray, grid: Grid) -> np.ndarray:
    """(K, 2, Hg, Wg) grid field -> (K, 2, H, W) at the grid's size: bilinear over pixel centres
    (cell (i, j) lands on x = (j + 0.5) g - 0.5, y = (i + 0.5) g - 0.5), the border repeated."""
    k, c, hg, wg = field.shape
    g, (h, w) = grid.stride, grid.size
    x = torch.from_numpy(np.ascontiguousarray(field, np.float32)).reshape(1, k * c, hg, wg)
    x = F.interpolate(x, size=(hg * g, wg * g), mode="bilinear", align_corners=False)  # (1, 2K, Hg g, Wg g)
    if (hg * g, wg * g) != (h, w):  # the rows and columns past the last whole block
        x = F.pad(x, (0, w - wg * g, 0, h - hg * g), mode="replicate")
    return x.reshape(k, c, h, w).numpy()


class MotionPredictor:
    """A trained motion model ready to predict from stills: ``predictor(image)`` -> :class:`Prediction`."""

    def __init__(
        self, model: MotionNet, steps: Sequence[int], device: str = "cpu", grid_stride: int = DEFAULT_GRID_STRIDE
    ) -> None:
        if int(grid_stride) < 1:
            raise PredictError(f"grid_stride must be at least 1, got {grid_stride}")
        self.device = device
        self.model = model.to(device).eval()
        self.steps = tuple(int(s) for s in steps)
        self.grid_stride = int(grid_stride)
        self.name = "model"

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str = "auto", grid_stride: int | None = None
    ) -> MotionPredictor:
        """The model of a checkpoint written by ``densemotion train`` (a
        :class:`~densemotion.checkpoint.CheckpointError` for any other file) on ``device``
        ("auto": a GPU where there is one). ``grid_stride``: see the module docstring (None: the
        training stores' own, recorded in the checkpoint; :data:`DEFAULT_GRID_STRIDE` for one
        written before it was recorded)."""
        ckpt = load_checkpoint(Path(path))
        if grid_stride is None:
            grid_stride = int(ckpt.get("grid", {}).get("stride", DEFAULT_GRID_STRIDE))
        model = model_from_checkpoint(ckpt, Path(path))
        steps = predicted_steps(ckpt["model_params"]["target"], int(ckpt["window"]))
        predictor = cls(model, steps, resolve_device(device), grid_stride)
        predictor.name = str(ckpt["model_params"].get("name", "model"))
        return predictor

    def grid_for(self, size_hw: tuple[int, int]) -> Grid:
        """The grid an (H, W) image is seen through (GridError: smaller than one block)."""
        return Grid.of(size_hw, self.grid_stride, 0)

    def __call__(self, image: ImageLike | list[ImageLike]) -> Prediction | list[Prediction]:
        """The prediction of one image (array or path), or a list of them for a list."""
        if isinstance(image, list):
            return [self.predict_one(im, f"image {i}") for i, im in enumerate(image)]
        return self.predict_one(image)

    def predict_one(self, image: ImageLike, where: str = "image") -> Prediction:
        rgb = as_image(image, where)  # (H, W, 3) uint8
        grid = self.grid_for(rgb.shape[:2])
        frame0 = grid.downsize(rgb)  # (Hg, Wg, 3) uint8: each block's mean colour
        field = predict(self.model, frame0[None], self.device)[0]  # (K, Hg, Wg, 2) tracking = image px
        grid_motion = np.ascontiguousarray(field.transpose(0, 3, 1, 2), np.float32)  # (K, 2, Hg, Wg)
        return Prediction(upsample_grid(grid_motion, grid), self.steps, grid_motion, grid)


def warp_frames(image: np.ndarray, pred: Prediction, frames: int = 8) -> list[np.ndarray]:
    """An illustration, not a prediction of pixels: ``image`` (H, W, 3) moved along the motion, as
    (H, W, 3) uint8 frames from the still on. A trajectory model's frames are its K steps; an
    endpoint model's ``frames`` evenly spaced fractions 0 .. 1 of its one displacement. Each frame
    is a backward warp (:func:`cv2.remap`): pixel x takes the still's colour at x - t * motion(x),
    which matches moving each pixel forward where the motion is smooth."""
    h, w = image.shape[:2]
    if len(pred.steps) > 1:
        fields = [np.zeros((2, h, w), np.float32), *pred.motion]
    else:
        fields = [t * pred.motion[-1] for t in np.linspace(0.0, 1.0, max(frames, 2), dtype=np.float32)]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # (H, W) each
    return [cv2.remap(image, xx - d[0], yy - d[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for d in fields]
