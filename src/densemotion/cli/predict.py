"""``densemotion predict``: the motion a trained model sees in still images.

    densemotion predict models/motion.pt photo.jpg stills/ clip.mp4 --frame 30 --out predictions/

Each INPUT is an image file (JPEG, PNG, BMP), a folder of them (its images, sorted; not
recursive), a video or a frames archive of the frames stage (``data/frames/<video>.zip``), whose
frame ``--frame N`` (default 0, the first) is taken. Every image is
seen at the training videos' scale (``--scale training``, the default: resized so that its
longest side is their tracking size, which the checkpoint records; ``native``: its own size) with
a grid of ``--grid-stride`` px (default: the training stores' own, from the checkpoint; 4, the
params.yaml default, for a checkpoint that does not record it), and the motion comes back in its
own px: see :mod:`densemotion.predictor`. Images of one size go through the net
``--batch-size`` at a time. For each, in ``--out``, named after its file (a video's
``NAME_frameN``):

- ``NAME.npz``: ``motion`` (K, 2, H, W) float32, the x, y displacement of every pixel in the
  image's own px at each predicted step; ``steps`` (K,) int64, the frame offsets from the still
  those K steps stand for (an endpoint model: one, the window's last); ``grid_motion``
  (K, 2, Hg, Wg) float32, the net's own output at the grid cell centres (in the image's px);
  ``image_size`` (2,) int64 (H, W); ``seen_size`` (2,) int64 (h', w'), the size the net saw it
  at; ``grid_stride`` () int64, g in px of that size; for a distribution head, its
  :attr:`~densemotion.predictor.Prediction.extras` (``hypotheses``, ``probabilities`` or ``scale``).
- ``NAME.png``: the image | its motion at the last step in the standard flow colours (hue the
  direction, saturation the magnitude; white none) | arrows over the image (lengths scaled up, the
  factor in the title) | the colour key in px (:func:`densemotion.viz.motion_picture`).
- ``NAME_hypM.gif`` per hypothesis and ``NAME_scale.png`` (the Laplace scale as a heat map)
  where the head has them.
- ``NAME.gif``: an illustration, not a prediction of pixels: the still moved along its motion
  (:func:`densemotion.predictor.warp_frames`: a backward warp by ``cv2.remap``, a few frames from 0
  to the endpoint, or a trajectory model's own steps), at most 640 px on its longest side.

An input that fails (not an image, truncated, too many pixels, a video shorter than ``--frame``)
prints one line naming it, and the others go on; the exit status is then 1. A MODEL that is no
densemotion checkpoint is one line and exit 1 before anything is read.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from densemotion.atomic import atomic_path
from densemotion.cli.common import clean_errors, describe, stage_parser, whole_number
from densemotion.errors import DensemotionError
from densemotion.frames.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from densemotion.imaging import fit_box, fit_image
from densemotion.predictor import (
    DEFAULT_GRID_STRIDE,
    SCALES,
    MotionPredictor,
    PredictError,
    Prediction,
    as_image,
    warp_frames,
)
from densemotion.runtime import AUTOCASTS
from densemotion.stillmodel import upsample_field
from densemotion.viz import motion_picture, save_gif, save_png, scale_panel, side_by_side, with_titles

PANEL_SIDE = 480  # px: the longest side of each panel of NAME.png
GIF_SIDE = 640  # px: the longest side of NAME.gif
GIF_FRAMES = 8  # an endpoint model's frames, still to endpoint


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("predict", __doc__)
    p.add_argument("model", metavar="MODEL", help="checkpoint written by `densemotion train` (models/motion.pt)")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help="image file, folder of images, video or frames archive")
    p.add_argument("--out", required=True, help="folder for NAME.npz, NAME.png and NAME.gif")
    p.add_argument(
        "--grid-stride",
        type=whole_number,
        default=None,
        help=f"grid spacing g in px of the image (default: the training's, from the model; else {DEFAULT_GRID_STRIDE})",
    )
    p.add_argument(
        "--scale",
        choices=SCALES,
        default="training",
        help="training: resize each image to the training videos' tracking size (default); native: its own size",
    )
    p.add_argument("--frame", type=whole_number, default=0, help="a video's or archive's frame (default: 0)")
    p.add_argument("--device", default="auto", help="auto (a GPU where there is one), cpu or cuda (default: auto)")
    p.add_argument("--batch-size", type=whole_number, default=8, help="images of one size per net call (default: 8)")
    p.add_argument("--autocast", choices=AUTOCASTS, default="none", help="none (fp32, default), bf16, fp16 or auto")
    return p


def expand(inputs: list[str], frame: int) -> list[tuple[str, Path, int | None]]:
    """(output name, file, video frame or None) per image to predict: folders expanded to their
    images, names made unique. An input that does not exist is kept, to fail with its line."""
    found: list[tuple[Path, int | None]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            found.extend((p, None) for p in images or [path])
        else:
            found.append((path, frame if path.suffix.lower() in (*VIDEO_EXTENSIONS, ".zip") else None))
    named, taken = [], set()
    for path, index in found:
        base = path.stem if index is None else f"{path.stem}_frame{index}"
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        named.append((name, path, index))
    return named


def read_input(path: Path, frame: int | None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, or of frame ``frame`` of a video."""
    if path.is_dir():
        raise PredictError(f"{path}: a folder without images ({', '.join(IMAGE_EXTENSIONS)})")
    if not path.exists():
        raise PredictError(f"{path}: no such file or folder")
    if frame is None:
        return as_image(path)
    if path.suffix.lower() == ".zip":
        return archive_frame(path, frame)
    from densemotion.video import iter_frames

    count = 0
    for index, rgb in iter_frames(path):
        if index == frame:
            return as_image(np.asarray(rgb), f"{path} frame {frame}")
        count = index + 1
    raise PredictError(f"{path}: no frame {frame} (the video has {count} frames)")


def archive_frame(path: Path, frame: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of frame ``frame`` of a frames archive (``data/frames/<video>.zip``)."""
    from densemotion.frames.store import FrameArchive

    with FrameArchive(path) as archive:
        if frame >= len(archive):
            raise PredictError(f"{path}: no frame {frame} (the archive has {len(archive)} frames)")
        return as_image(archive.read(frame), f"{path} frame {frame}")


def write_outputs(out: Path, name: str, image: np.ndarray, pred: Prediction, model_name: str) -> None:
    """NAME.npz, NAME.png and NAME.gif of one prediction (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {
        "motion": pred.motion,
        "steps": np.asarray(pred.steps, np.int64),
        "grid_motion": pred.grid_motion,
        "image_size": np.asarray(pred.size, np.int64),
        "seen_size": np.asarray(pred.grid.size, np.int64),
        "grid_stride": np.int64(pred.grid.stride),
        **pred.extras,
    }
    with atomic_path(out / f"{name}.npz") as tmp:
        np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    h, w = pred.size
    seen_h, seen_w = pred.grid.size  # the grid's own px, as evaluate draws tracking px
    to_image = pred.to_image
    fields = [pred.grid_motion[-1]]  # (2, Hg, Wg) image px: the point estimate, then each hypothesis
    titles = [name, f"predicted motion to frame +{pred.steps[-1]} ({model_name})"]
    hyps, probs = pred.extras.get("hypotheses"), pred.extras.get("probabilities")
    if hyps is not None and probs is not None:
        fields += list(hyps[:, -1])
        titles[1] = f"mean of {len(hyps)} hypotheses ({model_name})"
        titles += [f"hypothesis {m + 1}: p = {float(probs[m].mean()):.2f}" for m in range(len(hyps))]
    seen = [f.transpose(1, 2, 0) / to_image for f in fields]  # (Hg, Wg, 2) px of the seen size
    picture = motion_picture(
        image,
        [(f, np.ones(f.shape[:2], bool)) for f in seen],
        titles=titles,
        cell=pred.grid.stride,
        extent=(seen_h, seen_w),
        px_scale=float(to_image[0]),
        panel=fit_box((h, w), (PANEL_SIDE, PANEL_SIDE)),
        scale_name="prediction",
        unit="px of the image",
        arrows=True,
        scale_of=len(seen),  # the mean and every hypothesis on one scale that none of them saturates
    )
    save_png(out / f"{name}.png", picture)
    if "scale" in pred.extras:
        save_png(out / f"{name}_scale.png", scale_picture(image, pred.extras["scale"][-1], name))
    size = fit_box((h, w), (min(GIF_SIDE, h), min(GIF_SIDE, w))) if max(h, w) > GIF_SIDE else (h, w)
    save_gif(out / f"{name}.gif", [fit_image(f, size) for f in warp_frames(image, pred, GIF_FRAMES)], fps=8.0)
    for m, hyp in enumerate(hyps if hyps is not None else []):  # each future, set in motion
        full = upsample_field(torch.from_numpy(hyp), pred.grid.stride, seen_h, seen_w, h, w).numpy()  # (K, 2, H, W)
        moved = warp_frames(image, replace(pred, motion=full), GIF_FRAMES)
        save_gif(out / f"{name}_hyp{m + 1}.gif", [fit_image(f, size) for f in moved], fps=8.0)


def scale_picture(image: np.ndarray, scale: np.ndarray, name: str) -> np.ndarray:
    """image | the Laplace head's scale b (Hg, Wg), px of the image, as a heat map (viz.scale_panel)."""
    h, w = image.shape[:2]
    framed = with_titles([fit_image(image, fit_box((h, w), (PANEL_SIDE, PANEL_SIDE)))], [name])[0]
    return side_by_side([framed, scale_panel(scale, framed.shape[0], PANEL_SIDE)])


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.frame < 0:
        raise PredictError(f"--frame must be 0 or more, got {args.frame}")
    if args.batch_size < 1:
        raise PredictError(f"--batch-size must be 1 or more, got {args.batch_size}")
    predictor = MotionPredictor.from_checkpoint(args.model, args.device, args.grid_stride, args.scale, args.autocast)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = expand(args.inputs, args.frame)
    failed = 0
    with tqdm(total=len(todo), desc="predict", unit="image", disable=None) as bar:
        for start in range(0, len(todo), args.batch_size):
            failed += predict_chunk(predictor, todo[start : start + args.batch_size], out, args.batch_size)
            bar.update(min(args.batch_size, len(todo) - start))
    done = len(todo) - failed
    print(f"predicted {done} of {len(todo)} images into {out}" + (f" ({failed} failed)" if failed else ""))
    return 1 if failed else 0


def predict_chunk(predictor: MotionPredictor, chunk: list[tuple[str, Path, int | None]], out: Path, batch: int) -> int:
    """Read, predict and write one chunk of inputs; one line per input that fails. -> how many failed."""
    read: list[tuple[str, Path, np.ndarray]] = []
    failed = 0
    for name, path, frame in chunk:
        try:
            read.append((name, path, read_input(path, frame)))
        except (DensemotionError, OSError) as err:
            failed += _report(path, err)
    preds: list[Prediction | None] = [None] * len(read)
    try:
        preds = list(predictor.predict_batch([image for _, _, image in read], batch))
    except (DensemotionError, OSError):  # one input's trouble (e.g. smaller than a block): each alone
        for i, (_, path, image) in enumerate(read):
            try:
                preds[i] = predictor.predict_one(image, str(path))
            except (DensemotionError, OSError) as err:
                failed += _report(path, err)
    for (name, path, image), pred in zip(read, preds, strict=True):
        if pred is None:
            continue
        try:
            write_outputs(out, name, image, pred, predictor.name)
        except (DensemotionError, OSError) as err:
            failed += _report(path, err)
    return failed


def _report(path: Path, err: Exception) -> int:
    """One line naming ``path`` on stderr (above the progress bar). -> 1, one more failure."""
    message = describe(err)
    tqdm.write(f"densemotion predict: {message if str(path) in message else f'{path}: {message}'}", sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
