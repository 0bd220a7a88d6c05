"""``densemotion export``: a trained model as one file that runs without densemotion.

    densemotion export models/motion.pt --format torchscript --out motion.torchscript.pt
    densemotion export models/motion.pt --format onnx --out motion.onnx      # pip install -e '.[export]'

The file takes an image (B, 3, H, W) RGB 0 .. 255 of any size and returns its motion in its own
px, with everything the predictor does inside (:mod:`densemotion.export`; docs/predict.md shows
how to run each). ``--grid-stride`` and ``--scale`` are predict's. An existing ``--out`` is
replaced only when it is an earlier export.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import clean_errors, stage_parser, whole_number
from densemotion.export import FORMATS, export_model
from densemotion.predictor import SCALES, MotionPredictor


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("export", __doc__)
    p.add_argument("model", metavar="MODEL", help="checkpoint written by `densemotion train` (models/motion.pt)")
    p.add_argument("--format", required=True, choices=FORMATS, help="torchscript (torch) or onnx (onnxruntime)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--grid-stride", type=whole_number, default=None, help="as predict's (default: the training's)")
    p.add_argument("--scale", choices=SCALES, default="training", help="as predict's (default: training)")
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    predictor = MotionPredictor.from_checkpoint(args.model, "cpu", args.grid_stride, args.scale)
    out = export_model(predictor, args.format, args.out)
    side = f"seen at {predictor.side} px on its longest side" if predictor.side else "seen at its own size"
    print(f"exported {args.model} as {args.format} to {out}: any image, {side}, grid {predictor.grid_stride} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
