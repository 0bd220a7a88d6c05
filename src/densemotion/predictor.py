"""Predict dense motion from one still image with a trained model (``models/motion.pt``).

    predictor = MotionPredictor.from_checkpoint("models/motion.pt")
    pred = predictor(image)          # (H, W, 3) uint8 RGB array or an image path; a list gives a list
    pred.motion                      # (K, 2, H, W) float32: x, y displacement in the image's px
    pred.steps                       # (K,) the frame offsets from the still that K stands for

How an image is seen (the way the trajectories stage saw the training videos; the computation is
:class:`~densemotion.stillmodel.StillMotionModel`, which ``densemotion export`` writes too):

- **scale** ``"training"`` (the default): resized so that its longest side is the training
  videos' tracking size (the median longest side of the training stores, which the checkpoint
  records), so that a 4K photo and a 256 x 256 frame both get the motion the net learnt, in their
  own px. ``"native"``: at its own size (a checkpoint that records no size is always seen so).
- **grid**: stride ``g`` (``grid_stride``; by default the training stores' own, which the
  checkpoint records, else 4 as ``trajectories.grid_stride`` in params.yaml) and no margin. The
  net sees the (h' // g, w' // g) grid image, each cell the mean colour of its g x g block, as a
  store's ``frames0``, and predicts the displacement of each cell's centre
  (:func:`densemotion.evaluation.predict`); that field is upsampled to the image's pixels
  bilinearly (pixel centres: exact at the grid points when they fall on pixel centres, i.e. g odd
  and no resizing), the border cells repeated past the last whole block.

Bounds: an image has at most :data:`MAX_PIXELS` pixels (the trajectories stage's bound on a
tracking size, :data:`~densemotion.params.MAX_TRACKING_PIXELS`, 4096 x 4096) and, as a file, at
most :data:`~densemotion.frames.store.MAX_IMAGE_BYTES`; more is a :class:`PredictError` (checked
on the header, before decoding). The full-resolution field is K * 2 * H * W float32 (128 MiB per
step at the bound).

Letters: K predicted steps, H x W image, h' x w' the size it is seen at, Hg x Wg grid (h' // g, w' // g).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from densemotion.checkpoint import load_checkpoint, model_from_checkpoint
from densemotion.errors import DensemotionError
from densemotion.frames.store import MAX_IMAGE_BYTES, decode_jpeg, image_size
from densemotion.heads import PointHead
from densemotion.model import MotionNet, predicted_steps
from densemotion.params import MAX_TRACKING_PIXELS
from densemotion.runtime import Autocast, autocast_dtype, autocast_to, resolve_device
from densemotion.stillmodel import StillMotionModel
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
    grid: Grid  # the grid the net saw: stride g, margin 0, size (h', w') the image was seen at
    # the head's outputs beyond its point estimate, at the grid points in the image's px (empty for
    # a point head): hypotheses (M, K, 2, Hg, Wg) and probabilities (M, Hg, Wg); scale (K, Hg, Wg)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.motion.shape[2]), int(self.motion.shape[3])

    @property
    def to_image(self) -> np.ndarray:
        """(2,) float32 x, y: px of the image per px of the size it was seen at (:func:`seen_to_image`)."""
        return seen_to_image(self.size, self.grid.size)


def seen_to_image(size_hw: tuple[int, int], seen_hw: tuple[int, int]) -> np.ndarray:
    """(2,) float32 x, y: px of an (H, W) image per px of its seen size (h', w'): W / w', H / h'."""
    return np.array([size_hw[1] / seen_hw[1], size_hw[0] / seen_hw[0]], np.float32)


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


def training_side(ckpt: dict) -> int:
    """The median longest side of the training stores' tracking sizes, which the checkpoint
    records (``grid.tracking_sizes``); 0 for a checkpoint from before it did."""
    sizes = ckpt.get("grid", {}).get("tracking_sizes") or []
    return int(np.median([max(int(h), int(w)) for h, w in sizes])) if sizes else 0


SCALES = ("training", "native")


class MotionPredictor:
    """A trained motion model ready to predict from stills: ``predictor(image)`` -> :class:`Prediction`."""

    def __init__(
        self,
        model: MotionNet,
        steps: Sequence[int],
        device: str = "cpu",
        grid_stride: int = DEFAULT_GRID_STRIDE,
        side: int = 0,
        autocast: Autocast = "none",
    ) -> None:
        if int(grid_stride) < 1:
            raise PredictError(f"grid_stride must be at least 1, got {grid_stride}")
        self.device = device
        self.model = model.to(device).eval()
        self.steps = tuple(int(s) for s in steps)
        self.grid_stride = int(grid_stride)
        self.side = max(int(side), self.grid_stride) if side else 0  # 0: every image at its own size
        self.still = StillMotionModel(self.model, self.grid_stride, self.side).to(device)
        self.autocast_dtype = autocast_dtype(autocast, device, "autocast")
        self.name = "model"

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "auto",
        grid_stride: int | None = None,
        scale: str = "training",
        autocast: Autocast = "none",
    ) -> MotionPredictor:
        """The model of a checkpoint written by ``densemotion train`` (a
        :class:`~densemotion.checkpoint.CheckpointError` for any other file) on ``device``
        ("auto": a GPU where there is one). ``grid_stride`` and ``scale``: see the module
        docstring (None: the training stores' stride, recorded in the checkpoint;
        :data:`DEFAULT_GRID_STRIDE` for one written before it was recorded). ``autocast``: none,
        bf16, fp16 (GPU) or auto, as ``train.autocast``."""
        if scale not in SCALES:
            raise PredictError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        ckpt = load_checkpoint(Path(path))
        if grid_stride is None:
            grid_stride = int(ckpt.get("grid", {}).get("stride", DEFAULT_GRID_STRIDE))
        model = model_from_checkpoint(ckpt, Path(path))
        steps = predicted_steps(ckpt["model_params"]["target"], int(ckpt["window"]))
        side = training_side(ckpt) if scale == "training" else 0
        predictor = cls(model, steps, resolve_device(device), grid_stride, side, autocast)
        predictor.name = str(ckpt["model_params"].get("name", "model"))
        return predictor

    def seen_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(h', w'): the size an (H, W) image is seen at (its own at the native scale)."""
        return self.still.resized_size(int(size_hw[0]), int(size_hw[1]))

    def grid_for(self, size_hw: tuple[int, int]) -> Grid:
        """The grid an (H, W) image is seen through, at its seen size (GridError: smaller than one block)."""
        return Grid.of(self.seen_size(size_hw), self.grid_stride, 0)

    def __call__(self, image: ImageLike | list[ImageLike], batch_size: int = 8) -> Prediction | list[Prediction]:
        """The prediction of one image (array or path), or a list of them for a list (images of
        one size go through the net ``batch_size`` at a time)."""
        if isinstance(image, list):
            return self.predict_batch([as_image(im, f"image {i}") for i, im in enumerate(image)], batch_size)
        return self.predict_one(image)

    def predict_one(self, image: ImageLike, where: str = "image") -> Prediction:
        return self.predict_batch([as_image(image, where)])[0]

    def predict_batch(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Prediction]:
        """Predictions of (H, W, 3) uint8 images, in order; those of one size share net calls."""
        found: dict[int, Prediction] = {}
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(images):
            by_size.setdefault((int(rgb.shape[0]), int(rgb.shape[1])), []).append(i)
        for size, indices in by_size.items():
            grid = self.grid_for(size)
            for start in range(0, len(indices), max(1, batch_size)):
                chunk = indices[start : start + max(1, batch_size)]
                batch = np.stack([images[i] for i in chunk])
                motion, grid_motion = self._run(batch)
                extras = self._extras(batch) if not isinstance(self.model.head, PointHead) else {}
                for n, i in enumerate(chunk):
                    found[i] = Prediction(
                        motion[n], self.steps, grid_motion[n], grid, {k: v[n] for k, v in extras.items()}
                    )
        return [found[i] for i in range(len(images))]

    def _extras(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The head's hypotheses and probabilities, or scale, of (B, H, W, 3) uint8 images at the grid
        points, in the images' px (B first): the eager net on the grid image the predictor sees."""
        image = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        size = (int(batch.shape[1]), int(batch.shape[2]))
        to_image = torch.from_numpy(seen_to_image(size, self.seen_size(size)))
        with torch.inference_mode(), autocast_to(self.device, self.autocast_dtype):
            out = self.model(self.still.grid_image(image))["out"]
        head = self.model.head
        found: dict[str, np.ndarray] = {}
        hyps, probs = head.hypotheses(out)
        if hyps.shape[1] > 1:
            found["hypotheses"] = (hyps.float().cpu() * to_image.view(1, 1, 1, 2, 1, 1)).numpy()
            found["probabilities"] = probs.float().cpu().numpy()
        if isinstance(out, dict) and "scale" in out:  # one scale for both axes: their mean factor
            found["scale"] = (out["scale"].float().cpu() * float(to_image.mean())).numpy()
        return found

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) uint8 -> motion (B, K, 2, H, W), grid_motion (B, K, 2, Hg, Wg) float32, image px."""
        image = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)  # (B, 3, H, W) uint8
        with torch.inference_mode(), autocast_to(self.device, self.autocast_dtype):
            motion, grid_motion = self.still(image)
        return motion.float().cpu().numpy(), grid_motion.float().cpu().numpy()


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
