"""``densemotion train``: train the motion network on the trajectory stores of ``data.videos``.

    densemotion train --trajectories data/trajectories --out models/motion.pt \\
        --live-dir metrics/train [--resume] [--params params.yaml]

Videos are split by name (``train.val_videos``, ``train.test_videos``, ``train.split_seed``);
``--out`` receives a complete checkpoint after every epoch (the evaluate stage reads it), and
``--resume`` continues from it when it exists (same params required). dvclive logs per-epoch
metrics and the params to ``--live-dir``.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.training import train


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("train", __doc__)
    p.add_argument("--trajectories", required=True, help="folder of per-video trajectory stores")
    p.add_argument("--out", required=True, help="checkpoint file written after every epoch (.pt)")
    p.add_argument("--live-dir", help="dvclive folder for per-epoch metrics and plots (default: no logging)")
    p.add_argument("--resume", action="store_true", help="continue from --out when it exists")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    state = train(
        trajectories=args.trajectories,
        videos=sorted(params.data.videos),
        model_params=params.model,
        train_params=params.train,
        out=args.out,
        live_dir=args.live_dir,
        resume=args.resume,
    )
    last = state["history"][-1] if state["history"] else {}
    print(f"{args.out}: {params.model.name} after {state['epoch']} epochs; "
          + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch"))
    return 0
