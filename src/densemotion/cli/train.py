"""``densemotion train``: train the motion network on the trajectory stores of ``data.videos``.

    densemotion train --trajectories data/trajectories --out models/motion.pt \\
        --live-dir metrics/train [--work-dir data/work/train | --resume] \\
        [--pretrained-dir models/pretrained/coco] [--params params.yaml]

Videos are split by name (``train.val_videos``, ``train.test_videos``, ``train.split_seed``), or
by their sources' train/ and test/ folders (``train.split_partition``).
A complete checkpoint is written after every epoch: to ``--work-dir``/checkpoint.pt when given
(``dvc repro`` does: DVC deletes ``--out`` before the stage runs), where a rerun after a kill
finds it and resumes if params, split and data are unchanged, and ``--out`` only at the end;
without ``--work-dir``, to ``--out`` every epoch, which ``--resume`` continues from (same params
required). Pretrained weights (``model.pretrained``) come from ``--pretrained-dir``. dvclive logs per-epoch
metrics (px at frame scale) and the params to ``--live-dir``, with ``split.json`` (the videos of each part).

The split is printed first, with a warning for a part of few videos. ``--out`` holds the weights
of the best epoch (lowest validation EPE; the last epoch without validation videos); the line
printed at the end names it, and warns when it does not beat zero motion on validation.

Under ``torchrun --nproc-per-node=K -m densemotion train ...`` the K ranks train one model
(DistributedDataParallel, each global batch cut across them); only rank 0 writes and prints.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.outputs import check_no_leftovers
from densemotion.runtime import distributed, resolve_device
from densemotion.training import train


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("train", __doc__)
    p.add_argument("--trajectories", required=True, help="folder of per-video trajectory stores")
    p.add_argument(
        "--out",
        required=True,
        help="the trained model's checkpoint (.pt): at the end with --work-dir, else every epoch",
    )
    p.add_argument("--live-dir", help="dvclive folder for per-epoch metrics and plots (default: no logging)")
    p.add_argument("--resume", action="store_true", help="continue from --out when it exists")
    p.add_argument("--work-dir", help="folder for the checkpoint of the run in progress; a rerun resumes from it")
    p.add_argument("--pretrained-dir", help="folder of model.pretrained's weights (default: models/pretrained/<it>)")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    check_no_leftovers([args.trajectories], params.data.videos)  # they would enter the stage's hash
    with distributed(resolve_device(params.train.device)) as rank:  # alone: rank 0 of 1, no group
        state = train(
            trajectories=args.trajectories,
            videos=sorted(params.data.videos),
            model_params=params.model,
            train_params=params.train,
            out=args.out,
            live_dir=args.live_dir,
            resume=args.resume,
            work_dir=args.work_dir,
            pretrained_dir=args.pretrained_dir,
            partition=params.data.partitions(),
            rank=rank,
        )
    if not rank.is_main:
        return 0
    best: dict = next((r for r in state["history"] if r["epoch"] == state["best_epoch"]), {})
    print(
        f"{args.out}: {params.model.name} after {state['epoch']} epochs, the weights of epoch {state['best_epoch']}"
        + ("".join(f", {k} {v:.4g}" for k, v in best.items() if k not in ("epoch", "lr")) if best else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
