"""``densemotion use-videos FOLDER``: point the pipeline at a folder of real videos.

Scans FOLDER for videos, frame folders and zips of frames and rewrites the ``data.videos``
section of params.yaml (name -> path), which the per-video DVC stages iterate over. Then
``dvc repro`` (or ``dvc exp run``) runs on those videos. ``--sample`` switches back to the
built-in sample. Nothing else in params.yaml changes. The outputs of videos no longer listed are
set aside as ``densemotion tidy`` does (nothing is deleted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densemotion.cli.common import StageError, add_params_argument, clean_errors, stage_parser
from densemotion.outputs import report_tidy, tidy
from densemotion.videolist import sample_videos, scan_videos, set_videos


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("use-videos", __doc__)
    p.add_argument("folder", nargs="?", help="folder of videos / frame folders / zips (e.g. data/raw/taichi)")
    p.add_argument("--sample", action="store_true", help="use the built-in sample clips again")
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params_path = Path(args.params)
    skipped: list[str] = []
    if args.sample:
        videos = sample_videos(params_path)
    elif args.folder:
        videos, skipped = scan_videos(Path(args.folder))
    else:
        raise StageError("give a FOLDER of videos, or --sample")
    set_videos(params_path, videos)
    report_tidy(*tidy(videos, params_path.parent))  # the repository of that params.yaml
    if skipped:
        print(f"skipped {len(skipped)} entries: " + ", ".join(skipped[:10]) + (", ..." if len(skipped) > 10 else ""))
    print(f"{params_path}: data.videos now lists {len(videos)} videos; run `dvc repro` (or `dvc exp run`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
