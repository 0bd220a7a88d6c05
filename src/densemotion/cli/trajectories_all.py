"""``densemotion trajectories-all``: track every video of ``data.videos``, alone or under torchrun.

    densemotion trajectories-all [--frames-dir data/frames] [--out-dir data/trajectories]
        [--work-dir data/work/trajectories] [--weights-dir models/<tracker>] [--params params.yaml]
    torchrun --nproc-per-node=K -m densemotion trajectories-all ...

Each rank tracks its share of the videos (largest first, balanced by frame count, the same split
on every rank: :mod:`densemotion.trajectories.shard`) on its own GPU (LOCAL_RANK) and writes only
those videos' stores, byte-identical to ``densemotion trajectories`` run video by video: the
stores the per-video DVC stages would write, so ``dvc commit trajectories`` records them
(docs/scale-out.md). A store already finished with the current frames and params is skipped; a
rank that dies leaves its finished stores and chunks, and a rerun continues. Ranks without a
video (more ranks than videos) wait and exit cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.store import FrameArchive
from densemotion.runtime import agree, barrier, distributed, resolve_device
from densemotion.tracking import registry
from densemotion.trajectories.run import store_is_current, track_video
from densemotion.trajectories.shard import balanced_shards


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("trajectories-all", __doc__)
    p.add_argument("--frames-dir", default="data/frames", help="folder of <video>.zip (default: %(default)s)")
    p.add_argument("--out-dir", default="data/trajectories", help="folder of stores to write (default: %(default)s)")
    p.add_argument("--work-dir", default="data/work/trajectories", help="resumable chunks (default: %(default)s)")
    p.add_argument("--weights-dir", help="folder holding the tracker's weights file (default: models/<tracker>)")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    registry.section(params.trajectories)  # the tracker's own params, checked before any work
    videos = sorted(params.data.videos)
    frames_dir, out_dir, work_dir = Path(args.frames_dir), Path(args.out_dir), Path(args.work_dir)
    missing = [v for v in videos if not (frames_dir / f"{v}.zip").is_file()]
    if missing:
        raise FileNotFoundError(f"no frames archive for {', '.join(missing)} in {frames_dir} (run the frames stage)")
    with distributed(resolve_device(params.trajectories.device)) as rank:
        digest = hashlib.sha256(params.trajectories.model_dump_json().encode() + repr(videos).encode()).hexdigest()
        agree(digest, "the trajectories params or data.videos")
        counts = {}
        for video in videos:
            with FrameArchive(frames_dir / f"{video}.zip") as archive:
                counts[video] = len(archive)
        mine = balanced_shards(counts, rank.world_size)[rank.rank]
        who = f"rank {rank.rank}/{rank.world_size}: " if rank.world_size > 1 else ""
        if not mine:
            print(f"{who}no video to track (more ranks than videos)")
        for video in mine:
            with FrameArchive(frames_dir / f"{video}.zip") as archive:
                if store_is_current(out_dir / video, archive, params.trajectories):
                    print(f"{who}{out_dir / video}: up to date")
                    continue
                meta = track_video(
                    archive, out_dir / video, params.trajectories, work_dir / video, weights_dir=args.weights_dir
                )
            print(f"{who}{out_dir / video}: {meta['num_windows']} windows, tracker {meta['tracker']}")
        barrier()
        if rank.is_main:
            print(f"{len(videos)} videos tracked into {out_dir} by {rank.world_size} process(es)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
