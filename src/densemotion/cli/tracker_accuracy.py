"""``densemotion tracker-accuracy``: score trajectory stores against the sample's ground truth.

    densemotion tracker-accuracy --trajectories data/trajectories --frames data/frames \\
        --truth data/sample/truth --out metrics/tracker.json --details-dir metrics/tracker [--params params.yaml]

The store ``TRAJECTORIES/<video>/`` of every video of ``data.videos`` that has a truth file
``TRUTH/<video>.npz`` is scored (videos without truth, e.g. real footage, are listed as
unscored). Scores, per video and pooled over all: end-point error (mean, median) on truly
visible points over frames 1..S-1 of every window, TAP-Vid's fractions within 1, 2, 4, 8, 16 px
and their mean (delta_avg), visibility accuracy, the same restricted to moving points and to
the last frame of the window, and the error of predicting no motion for context. Errors are
in pixels of the clip's own size.

Written: ``--out`` (the DVC metric, one ``dvc exp show`` column per number): ``{"tracker":
{...}}``, the pooled ``epe_mean``, ``epe_median``, ``moving_epe_median``, ``delta_avg`` and
``visibility_accuracy`` (null when nothing was scored). ``--details-dir``: ``details.json``
(``tracker``, ``moving_px``, the pooled ``overall`` scores, ``videos``: the same per video, and
``unscored``) and ``per_video.csv`` (one row per scored video, the nested scores flattened:
``moving_epe_median``, ``last_frame_within_1``, ...; the data of a DVC plot).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

from densemotion.atomic import atomic_path, finite_json, write_json
from densemotion.cli.common import StageError, add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.store import FrameArchive
from densemotion.outputs import check_no_leftovers
from densemotion.sample import load_truth
from densemotion.trajectories.accuracy import MOVING_PX, Errors, headline, per_video_table, score_store
from densemotion.trajectories.store import TrajectoryStore


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("tracker-accuracy", __doc__)
    p.add_argument("--trajectories", required=True, help="folder of trajectory stores (one per video)")
    p.add_argument("--frames", required=True, help="folder of frame archives <video>.zip")
    p.add_argument("--truth", required=True, help="folder of ground-truth files <video>.npz")
    p.add_argument("--out", required=True, help="the metric: a JSON of the pooled headline numbers")
    p.add_argument("--details-dir", required=True, help="folder for details.json and per_video.csv")
    add_params_argument(p)
    return p


def score_video(store_dir: Path, frames_dir: Path, truth_file: Path) -> Errors:
    store = TrajectoryStore(store_dir)
    archive_path = frames_dir / f"{store_dir.name}.zip"
    with FrameArchive(archive_path) as archive:
        store.check_frames(archive)
        source_indices = archive.meta["source_indices"]
    return score_store(store, load_truth(truth_file), source_indices)


def write_metric(dest: str | Path, overall: dict) -> None:
    """``{"tracker": headline}`` as strict JSON in the headline's order (write_json sorts keys)."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(finite_json({"tracker": headline(overall)}), indent=2, allow_nan=False) + "\n")


def write_per_video_csv(dest: Path, videos: dict[str, dict]) -> None:
    """One row per scored video; an undefined score (NaN, null) is an empty cell."""

    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.6g}" if math.isfinite(x) else ""
        return "" if x is None else str(x)

    header, rows = per_video_table(videos)
    with atomic_path(dest) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # quotes a video name holding a comma or quote
        writer.writerow(header)
        writer.writerows([cell(x) for x in row] for row in rows)


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
    details_dir = Path(args.details_dir)
    write_json(details_dir / "details.json", result)  # strict JSON: nothing to score reads as null
    write_per_video_csv(details_dir / "per_video.csv", videos)
    write_metric(args.out, overall)  # last: the metric exists only when the details do
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
