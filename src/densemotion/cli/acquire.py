"""``densemotion acquire METADATA OUT_DIR``: the clips of a published clip list, with a manifest.

    densemotion acquire taichi-metadata.csv data/raw/taichi [--source-dir DIR] [--size 256] [--jobs 2]
    densemotion acquire --verify data/raw/taichi [--manifest OTHER/manifest.csv]

METADATA (a path or an http(s) URL) is TaiChi-HD's ``taichi-metadata.csv`` or a file of the same
columns. Each source video is fetched once (yt-dlp, ``pip install 'densemotion[acquire]'``; or
``--source-dir`` holding ``<video_id>.mp4``), its clips are cut, cropped to their box and resized
to ``--size`` squares, and written as ``OUT_DIR/{train,test}/VIDEOID#START#END.mp4``.
``OUT_DIR/manifest.csv`` records every row's outcome, size, frame rate and SHA-256; a rerun
skips the clips it lists as done (at the same ``--size``: a clip of another size is made again),
and ``OUT_DIR/manifest.json`` records the size, the metadata's SHA-256 and the source. Rows that
cannot be had are listed with the reason and the run goes on: also a source video that takes more
than ``--timeout`` seconds (download and clips) and one whose worker process dies. ``--verify``
re-hashes the clips against the manifest (exit 1 on any difference); a manifest path outside
OUT_DIR (symlinks resolved) is reported, never opened.

Downloads go into a fresh folder per video that the run makes in ``--download-dir`` and removes
when that video is done; nothing else there is ever deleted. With ``--keep-downloads`` a download
is kept there as ``<video_id>.<ext>`` and later runs with ``--keep-downloads`` use it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections import Counter
from pathlib import Path

from densemotion.acquire.clips import MAX_SIZE
from densemotion.acquire.manifest import MANIFEST, OK, Entry, printable, read_manifest, verify
from densemotion.acquire.metadata import decode, parse_metadata, read_bytes
from densemotion.acquire.run import DEFAULT_TIMEOUT, acquire, check_options
from densemotion.acquire.sources import LocalSource, Source, YtDlpSource
from densemotion.cli.common import StageError, clean_errors, stage_parser, whole_number

LISTED = 10  # problems printed per kind; the manifest has them all


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("acquire", __doc__)
    p.add_argument("metadata", nargs="?", help="clip list: path or http(s) URL (not needed with --verify)")
    p.add_argument("out_dir", help="where train/ and test/ clips and manifest.csv go (e.g. data/raw/taichi)")
    p.add_argument("--source-dir", help="take source videos from DIR/<video_id>.mp4 instead of downloading")
    p.add_argument(
        "--size",
        type=whole_number,
        default=256,
        help=f"side of the square clips in pixels: even, 2 to {MAX_SIZE} (default: %(default)s)",
    )
    p.add_argument(
        "--jobs", type=whole_number, default=2, help="source videos processed at once (default: %(default)s)"
    )
    p.add_argument(
        "--download-dir",
        default="data/work/acquire",
        help="where downloads go while their clips are cut (default: %(default)s, ignored by git and DVC)",
    )
    p.add_argument(
        "--keep-downloads",
        action="store_true",
        help="keep downloaded source videos in --download-dir as <video_id>.<ext>, and use those kept before",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds one source video may take, its download and its clips; then it is stopped and its rows "
        "are listed as failed (default: %(default)g)",
    )
    p.add_argument("--verify", action="store_true", help="re-hash OUT_DIR's clips against its manifest instead")
    p.add_argument("--manifest", help="with --verify: the manifest to check against (default: OUT_DIR/manifest.csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _source(args: argparse.Namespace) -> Source:
    if args.source_dir:
        folder = Path(args.source_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"--source-dir {folder}: not a folder")
        return LocalSource(folder)
    try:
        YtDlpSource.check_installed()
    except ImportError as err:
        raise StageError(str(err)) from None
    return YtDlpSource(keep=args.keep_downloads)


def report(entries: list[Entry], out_dir: Path) -> None:
    """Counts by status, then the problems (grouped by id where the id is the problem)."""
    counts = Counter(e.status for e in entries)
    print(f"{out_dir / MANIFEST}: {len(entries)} rows: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    problems = [e for e in entries if e.status != OK]
    by_reason: dict[tuple[str, str, str], list[Entry]] = {}
    for e in problems:
        by_reason.setdefault((e.status, e.video_id, e.reason), []).append(e)
    for (status, video_id, reason), same in list(by_reason.items())[:LISTED]:
        rows = ", ".join(str(e.row) for e in same[:5]) + (", ..." if len(same) > 5 else "")
        print(f"  {status}: {printable(video_id) or '?'} (row {rows}): {printable(reason)}")
    if len(by_reason) > LISTED:
        print(f"  ... and {len(by_reason) - LISTED} more: see the manifest")
    if problems:
        print(f"WARNING: {len(problems)} of {len(entries)} clips were not acquired (the manifest names each reason)")


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.verify:
        manifest = Path(args.manifest) if args.manifest else out_dir / MANIFEST
        entries = read_manifest(manifest)
        problems = verify(out_dir, entries)
        for line in problems:
            print(f"  {printable(line)}")
        ok = sum(e.status == OK for e in entries)
        print(
            f"{out_dir}: {ok} clips checked against {manifest}: "
            + (f"{len(problems)} problems" if problems else "all match")
        )
        return 1 if problems else 0
    if not args.metadata:
        raise StageError("give METADATA and OUT_DIR (or --verify OUT_DIR)")
    check_options(args.size, args.timeout)
    data = read_bytes(args.metadata)
    rows, bad = parse_metadata(decode(data, args.metadata), args.metadata)
    entries = acquire(
        rows,
        bad,
        _source(args),
        out_dir,
        size=args.size,
        jobs=max(1, min(args.jobs, os.cpu_count() or 1)),
        work_dir=Path(args.download_dir),
        progress=not args.no_progress,
        timeout=args.timeout,
        metadata_sha256=hashlib.sha256(data).hexdigest(),
    )
    report(entries, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
