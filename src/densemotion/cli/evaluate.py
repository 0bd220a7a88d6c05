"""``densemotion evaluate``: score the motion network on its held-out videos.

    densemotion evaluate --model models/motion.pt --trajectories data/trajectories \\
        --out-dir metrics/evaluate [--truth data/sample/truth] [--frames data/frames] [--params params.yaml]

The test videos are the checkpoint's own test split. End-point errors are in pixels of the
frames archive. ``--truth`` adds scores against ground truth for videos that have a
``<video>.npz`` there; ``--frames`` maps archive frames to the clip's frames through each
archive's ``source_indices`` (needed when ``frames.fps`` subsampled the clips).

Prints ``summary.json`` (strict JSON), its ``headline`` first: the model's EPE against zero
motion's and the training-set mean's; what was scored (the model, its epochs, the counts) is in
``details.json``. A model that does not beat zero motion gets a
``WARNING`` line on stderr (and ``beats_zero_motion: false``); the exit status stays 0.
"""

from __future__ import annotations

import argparse
import json

from densemotion.atomic import finite_json
from densemotion.checkpoint import load_checkpoint, model_from_checkpoint
from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.evaluation import evaluate
from densemotion.outputs import check_no_leftovers
from densemotion.runtime import resolve_device


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("evaluate", __doc__)
    p.add_argument("--model", required=True, help="checkpoint written by `densemotion train`")
    p.add_argument("--trajectories", required=True, help="folder of per-video trajectory stores")
    p.add_argument("--out-dir", required=True, help="folder for metrics, plot data and pictures")
    p.add_argument("--truth", help="folder of ground-truth <video>.npz (the sample's)")
    p.add_argument("--frames", help="folder of frame archives <video>.zip (frame index mapping for --truth)")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    check_no_leftovers([args.trajectories, *([args.frames] if args.frames else [])], params.data.videos)
    device = resolve_device(params.evaluate.device)
    ckpt = load_checkpoint(args.model)
    model = model_from_checkpoint(ckpt, args.model).to(device)
    summary = evaluate(
        model=model,
        checkpoint=ckpt,
        trajectories=args.trajectories,
        out_dir=args.out_dir,
        params=params.evaluate,
        device=device,
        truth_dir=args.truth,
        frames_dir=args.frames,
    )
    brief = {k: summary[k] for k in ("headline", "vs_truth") if k in summary}  # summary.json's: the headline first
    print(json.dumps(finite_json(brief), indent=2, allow_nan=False))  # strict JSON: undefined scores are null
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
