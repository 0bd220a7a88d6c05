"""``densemotion tidy``: set aside the outputs of videos no longer in ``data.videos``.

Moves ``data/frames/<video>.zip`` and ``data/trajectories/<video>/`` of unlisted videos to
``data/work/set-aside/<time>/`` (nothing is deleted; they are also in the DVC cache) and drops
their ``frames@``/``trajectories@`` entries from dvc.lock, so the stages that read those folders
hash exactly the listed videos. ``densemotion use-videos`` does this itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.outputs import report_tidy, tidy


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("tidy", __doc__)
    add_params_argument(p)
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    moved_to, moved, dropped = tidy(params.data.videos, Path(args.params).parent)
    report_tidy(moved_to, moved, dropped)
    if not moved and not dropped:
        print("nothing to tidy: the output folders hold only the videos of data.videos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
