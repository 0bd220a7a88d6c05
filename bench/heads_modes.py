"""How a trained head sees an ambiguous future: on the moving points of held-out videos, the
point estimate against zero motion, the best-of-M EPE, and the probability each true mode gets.

    .venv/bin/python bench/heads_modes.py [--model models/motion.pt] [--trajectories data/trajectories]
        [--moving 3.0] [--modes 2]

For every window of the checkpoint's test videos: the points the tracker saw move more than
``--moving`` px (frame px) by the last step are the "moving points". Their displacements are
clustered into ``--modes`` k-means modes (on ``sample.ambiguous: 2``, the two directions). Per
point, each hypothesis is assigned to its nearest mode and the mode's probability is the sum of
its hypotheses' probabilities: a head that knows the future is one of two gives each about 0.5,
whichever way this point went. Printed: EPE of the point estimate and of zero motion on the
moving points, the best-of-M EPE there, and the mean probability per mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/motion.pt")
    ap.add_argument("--trajectories", default="data/trajectories")
    ap.add_argument("--moving", type=float, default=3.0)
    ap.add_argument("--modes", type=int, default=2)
    args = ap.parse_args()

    from densemotion.checkpoint import load_checkpoint, model_from_checkpoint
    from densemotion.evaluation import batches, predict_all
    from densemotion.metrics import kmeans
    from densemotion.model import predicted_steps
    from densemotion.trajectories.store import TrajectoryStore

    ckpt = load_checkpoint(Path(args.model))
    model = model_from_checkpoint(ckpt, args.model).eval()
    steps = predicted_steps(ckpt["model_params"]["target"], int(ckpt["window"]))
    found: dict[str, list] = {"point": [], "zero": [], "best": [], "true": [], "hyps": [], "probs": []}
    for video in ckpt["split"]["test"]:
        store = TrajectoryStore(Path(args.trajectories) / video)
        scale = np.array(store.info.frame_scale, np.float32)
        for _, batch in batches(store, steps, 16):
            point, full = predict_all(model, batch["frame0"], "cpu")  # (B, K, Hg, Wg, 2)
            hyps, probs = model.head.hypotheses(full)  # (B, M, K, 2, Hg, Wg), (B, M, Hg, Wg)
            true = batch["disp"][:, -1] * scale  # (B, Hg, Wg, 2) frame px
            moving = batch["visible"][:, -1] & (np.hypot(true[..., 0], true[..., 1]) > args.moving)
            h = hyps[:, :, -1].permute(0, 1, 3, 4, 2).numpy() * scale  # (B, M, Hg, Wg, 2)
            found["true"].append(true[moving])
            found["point"].append(np.hypot(*(point[:, -1] * scale - true)[moving].T))
            found["zero"].append(np.hypot(*true[moving].T))
            found["best"].append(np.hypot(*(h - true[:, None]).transpose(0, 2, 3, 1, 4)[moving].T).min(axis=0))
            found["hyps"].append(h.transpose(0, 2, 3, 1, 4)[moving])  # (n, M, 2)
            found["probs"].append(probs.numpy().transpose(0, 2, 3, 1)[moving])  # (n, M)
    data = {k: np.concatenate(v) for k, v in found.items()}
    if not len(data["true"]):
        print("no moving points in the test videos")
        return 1
    modes = kmeans(data["true"], args.modes)  # (modes, 2)
    nearest = ((data["hyps"][:, :, None] - modes[None, None]) ** 2).sum(-1).argmin(-1)  # (n, M) mode per hypothesis
    mass = np.stack([(data["probs"] * (nearest == j)).sum(1) for j in range(args.modes)], 1)  # (n, modes)
    head = ckpt["model_params"]["head"]
    print(f"{args.model}: head {head}, {len(data['true'])} moving points (> {args.moving} px) of the test videos")
    print(f"  point estimate EPE {data['point'].mean():.3f} px, zero motion {data['zero'].mean():.3f} px, "
          f"best-of-M {data['best'].mean():.3f} px")  # fmt: skip
    for j, mode in enumerate(modes):
        print(f"  mode {j + 1} at ({mode[0]:+.1f}, {mode[1]:+.1f}) px: mean probability {mass[:, j].mean():.3f}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
