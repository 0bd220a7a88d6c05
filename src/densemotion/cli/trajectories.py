"""``densemotion trajectories``: track a dense grid over every window of one video.

    densemotion trajectories FRAMES.zip OUT_DIR [--work-dir DIR] [--weights-dir DIR] [--params params.yaml]

Reads the frames archive, tracks every window with ``trajectories.tracker`` (its weights file
from ``--weights-dir``, default ``models/<tracker>``) and writes the
trajectory store (schema 1) to OUT_DIR atomically. Finished chunks of windows are kept in
``--work-dir`` (default: OUT_DIR + ``.work``; keep it outside DVC outputs, which DVC deletes
before a stage runs) so an interrupted run continues where it stopped; it is removed on success.
A run that fails keeps the chunks it finished there (its error line says how many, and that the
same command resumes after them); one that fails before finishing any leaves no work folder.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.store import FrameArchive
from densemotion.tracking import registry
from densemotion.trajectories.run import track_video


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("trajectories", __doc__)
    p.add_argument("frames", help="the video's frames archive (.zip, from the frames stage)")
    p.add_argument("out_dir", help="trajectory store folder to write")
    p.add_argument("--work-dir", help="folder for resumable chunks (default: OUT_DIR.work)")
    p.add_argument("--weights-dir", help="folder holding the tracker's weights file (default: models/<tracker>)")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    registry.section(params.trajectories)  # the tracker's own params, checked before any work
    work_dir = args.work_dir or f"{args.out_dir.rstrip('/')}.work"
    archive = FrameArchive(args.frames)
    try:
        meta = track_video(archive, args.out_dir, params.trajectories, work_dir, weights_dir=args.weights_dir)
    finally:
        archive.close()
    hg, wg = meta["grid_shape"]
    print(
        f"{args.out_dir}: {meta['num_windows']} windows of {meta['window']} frames, "
        f"{hg}x{wg} grid, tracker {meta['tracker']}" + skipped_note(meta)
    )
    return 0


def skipped_note(meta: dict) -> str:
    """``', skipped 1 past the end and 5 spanning shot cuts'`` (or ''): the windows a store lacks."""
    parts = [
        f"{n} {why}"
        for n, why in (
            (len(meta["skipped_starts"]), "past the end"),
            (len(meta.get("cut_starts", [])), "spanning shot cuts"),
        )
        if n
    ]
    return f", skipped {' and '.join(parts)}" if parts else ""


if __name__ == "__main__":
    raise SystemExit(main())
