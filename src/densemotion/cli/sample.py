"""``densemotion sample``: render one built-in synthetic clip, encode it and save its truth."""

from __future__ import annotations

import argparse

from densemotion.cli.common import StageError, add_params_argument, clean_errors, params_from
from densemotion.sample import generate_clip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="densemotion sample",
        description="Render clip NAME of sample.clips as an H.264 MP4 plus its ground-truth .npz.",
    )
    parser.add_argument("--name", required=True, help="clip name, one of sample.clips")
    parser.add_argument("--video", required=True, help="output .mp4 path")
    parser.add_argument("--truth", required=True, help="output ground-truth .npz path")
    add_params_argument(parser)
    return parser


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args).sample
    if args.name not in params.clips:
        raise StageError(f"clip {args.name!r} is not in sample.clips ({', '.join(params.clips)}) of {args.params}")
    truth = generate_clip(params, args.name, args.video, args.truth)
    print(
        f"{args.name}: {truth.num_frames} frames {truth.width}x{truth.height}, "
        f"{truth.num_layers - 1} sprites -> {args.video}, {args.truth}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
