"""``densemotion frames``: decode sources into per-video frame archives.

One video of ``data.videos``, by its name (what each DVC ``frames@NAME`` stage runs: the source
path is read from params.yaml, so no file name ever reaches the shell that DVC runs commands in)::

    densemotion frames --video NAME DEST.zip

Any source, by its path::

    densemotion frames SOURCE DEST.zip [--name NAME]

A zip holding the frames of several videos (``frames/<video>/frames/*.jpg``) gives the video
that ``densemotion use-videos`` names NAME (default: DEST's stem), or name its folder as
``BIG.zip::frames/<video>/frames``.

Every video of ``data.videos`` at once, several in parallel (outside DVC, e.g. a first pass on
a big machine)::

    densemotion frames --all OUT_DIR --jobs 4
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from densemotion.cli.common import (
    StageError,
    add_params_argument,
    clean_errors,
    params_from,
    stage_parser,
    whole_number,
)
from densemotion.frames.extract import extract
from densemotion.videolist import resolve_source


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("frames", __doc__)
    p.add_argument("source", nargs="?", help="video file, frame folder, zip, or ZIP::INNER/FOLDER")
    p.add_argument("dest", nargs="?", help="output archive (.zip)")
    p.add_argument("--video", metavar="NAME", help="the video NAME of data.videos (then give only DEST)")
    p.add_argument("--name", help="video name stored in the archive (default: DEST's stem)")
    p.add_argument("--all", metavar="OUT_DIR", help="process every video of data.videos into OUT_DIR")
    p.add_argument("--jobs", type=whole_number, default=1, help="videos processed in parallel with --all")
    add_params_argument(p)
    return p


def _listed_video(args: argparse.Namespace, videos: dict[str, str]) -> tuple[str, str, str]:
    """(source, dest, name) of ``--video NAME DEST``: the source is data.videos' entry NAME."""
    if args.dest is not None or args.source is None:
        raise StageError("with --video NAME give only DEST (the source is data.videos' entry NAME)")
    if args.name is not None and args.name != args.video:
        raise StageError("--video NAME is also the archive's video name: drop --name")
    if args.video not in videos:
        listed = ", ".join(list(videos)[:6]) + (", ..." if len(videos) > 6 else "")
        raise StageError(f"--video {args.video!r}: not in data.videos (its videos: {listed})")
    return videos[args.video], args.source, args.video


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    if args.all:
        jobs = [
            (resolve_source(src, name), str(Path(args.all) / f"{name}.zip"), name)
            for name, src in params.data.videos.items()
        ]
        with ProcessPoolExecutor(max(1, args.jobs)) as pool:
            futures = [
                pool.submit(
                    extract, src, dest, params.frames, name=name, image_fps=params.frames.image_fps, progress=False
                )
                for src, dest, name in jobs
            ]
            for fut in tqdm(futures, desc="videos", unit="video", disable=None):
                fut.result()
        return 0
    if args.video is not None:
        source, dest, name = _listed_video(args, params.data.videos)
    elif args.source and args.dest:
        source, dest, name = args.source, args.dest, args.name or Path(args.dest).stem
    else:
        raise StageError("give --video NAME DEST, SOURCE DEST, or --all OUT_DIR")
    meta = extract(resolve_source(source, name), dest, params.frames, name=name, image_fps=params.frames.image_fps)
    print(f"{dest}: {meta['frame_count']} frames {meta['width']}x{meta['height']} at {meta['fps'] or 'unknown'} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
