"""``densemotion tracker-accuracy``: score trajectory stores against the sample's ground truth.

    densemotion tracker-accuracy --trajectories data/trajectories --frames data/frames \\
        --truth data/sample/truth --out metrics/tracker.json [--params params.yaml]

The store ``TRAJECTORIES/<video>/`` of every video of ``data.videos`` that has a truth file
``TRUTH/<video>.npz`` is scored (videos without truth, e.g. real footage, are listed as
unscored). Reports, per video and pooled over all: end-point error (mean, median) on truly
visible points over frames 1..S-1 of every window, TAP-Vid's fractions within 1, 2, 4, 8, 16 px
and their mean (delta_avg), visibility accuracy, the same restricted to moving points and to
the last frame of the window, and the error of predicting no motion for context. Errors are
in pixels of the clip's own size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densemotion.atomic import write_json
from densemotion.cli.common import StageError, add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.store import FrameArchive
from densemotion.outputs import check_no_leftovers
from densemotion.sample import load_truth
from densemotion.trajectories.accuracy import MOVING_PX, Errors, score_store
from densemotion.trajectories.store import TrajectoryStore


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("tracker-accuracy", __doc__)
    p.add_argument("--trajectories", required=True, help="folder of trajectory stores (one per video)")
    p.add_argument("--frames", required=True, help="folder of frame archives <video>.zip")
    p.add_argument("--truth", required=True, help="folder of ground-truth files <video>.npz")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    add_params_argument(p)
    return p


def score_video(store_dir: Path, frames_dir: Path, truth_file: Path) -> Errors:
    store = TrajectoryStore(store_dir)
    archive_path = frames_dir / f"{store_dir.name}.zip"
    with FrameArchive(archive_path) as archive:
        if archive.sha256 != store.meta["frames_sha256"]:
            raise StageError(f"{store_dir}: made from other frames than {archive_path}; re-run trajectories")
        source_indices = archive.meta["source_indices"]
    return score_store(store, load_truth(truth_file), source_indices)


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    traj_dir, frames_dir, truth_dir = Path(args.trajectories), Path(args.frames), Path(args.truth)
    if not traj_dir.is_dir():
        raise StageError(f"{traj_dir}: no such folder of trajectory stores")
    check_no_leftovers([traj_dir, frames_dir], params.data.videos)  # they would enter the stage's hash
    stores = [traj_dir / v for v in sorted(params.data.videos)]
    videos, pooled, unscored = {}, Errors(), []
    for store_dir in stores:
        truth_file = truth_dir / f"{store_dir.name}.npz"
        if not truth_file.is_file():
            unscored.append(store_dir.name)
            continue
        errors = score_video(store_dir, frames_dir, truth_file)
        videos[store_dir.name] = errors.summary()
        pooled.extend(errors)
    overall = pooled.summary()
    result = {
        "tracker": params.trajectories.tracker,
        "moving_px": MOVING_PX,
        "overall": overall,
        "videos": videos,
        "unscored": unscored,
    }
    write_json(args.out, result)  # strict JSON: nothing to score reads as null
    if overall:
        print(
            f"{args.out}: {len(videos)} videos; median EPE {overall['epe_median']:.3f} px "
            f"(moving points {overall['moving']['epe_median']:.3f} px), delta_avg {overall['delta_avg']:.3f}, "
            f"visibility accuracy {overall['visibility_accuracy']:.3f}"
        )
    else:
        print(f"{args.out}: no video has ground truth in {truth_dir}; nothing scored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
