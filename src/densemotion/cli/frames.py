"""``densemotion frames``: decode sources into per-video frame archives.

One video (what each DVC ``frames@NAME`` stage runs)::

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

from densemotion.cli.common import add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.extract import extract
from densemotion.videolist import resolve_source


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("frames", __doc__)
    p.add_argument("source", nargs="?", help="video file, frame folder, zip, or ZIP::INNER/FOLDER")
    p.add_argument("dest", nargs="?", help="output archive (.zip)")
    p.add_argument("--name", help="video name stored in the archive (default: DEST's stem)")
    p.add_argument("--all", metavar="OUT_DIR", help="process every video of data.videos into OUT_DIR")
    p.add_argument("--jobs", type=int, default=1, help="videos processed in parallel with --all")
    add_params_argument(p)
    return p


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
    if not (args.source and args.dest):
        raise ValueError("give SOURCE and DEST, or --all OUT_DIR")
    name = args.name or Path(args.dest).stem
    meta = extract(
        resolve_source(args.source, name), args.dest, params.frames, name=name, image_fps=params.frames.image_fps
    )
    print(
        f"{args.dest}: {meta['frame_count']} frames {meta['width']}x{meta['height']} at {meta['fps'] or 'unknown'} fps"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
