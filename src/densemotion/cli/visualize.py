"""``densemotion visualize``: draw the trajectories of a few windows as PNG and animated GIF.

    densemotion visualize TRAJ_DIR [TRAJ_DIR ...] --window K [K ...] --out-dir DIR
        [--frames FRAMES.zip | --frames-dir DIR] [--max-tracks N] [--tail T] [--params params.yaml]

A TRAJ_DIR that is a folder of stores (``data/trajectories``) stands for the stores of the
videos of ``data.videos`` (``--params``), so a DVC stage keeps working whatever videos are
configured, and never draws a store left from an earlier list; the first
``visualize.max_videos`` of them by name (null: all) are drawn window by window.

For each store drawn window by window and each window K it writes, into DIR:

- ``<video>_w<K>_tracks.png``: the window's last frame with every drawn point's whole path,
  coloured by its direction on the colour wheel;
- ``<video>_w<K>_tracks.gif``: the window frame by frame with fading tails;
- ``<video>_w<K>_flow.png``: frame 0 beside the colour-wheel image of the end-point displacement,
  titled, with the colour key (points hidden at the end drawn half grey);

and ``contact_sheet.png``: window 0's tracks over its last frame for every store (every video of
``data.videos`` for a folder), labelled with the video's name and frame size, in a grid.

Frames come from the archive (``--frames`` for one store, or ``--frames-dir`` holding
``<video>.zip``); without one, the paths are drawn over the stored low-resolution frame 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from densemotion.cli.common import (
    StageError,
    add_params_argument,
    clean_errors,
    params_from,
    stage_parser,
    whole_number,
)
from densemotion.frames.store import FrameArchive
from densemotion.imaging import fit_box
from densemotion.outputs import check_no_leftovers
from densemotion.tracking.grid import resize_frames
from densemotion.trajectories.store import TrajectoryStore, looks_like_store
from densemotion.viz import SHEET_BOX, contact_sheet, save_gif, save_png, tracks_thumbnail, window_pictures


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("visualize", __doc__)
    p.add_argument("stores", nargs="+", metavar="TRAJ_DIR", help="trajectory store folder(s)")
    p.add_argument(
        "--window",
        type=whole_number,
        nargs="+",
        required=True,
        metavar="K",
        help="window index(es) to draw (negative counts from the end)",
    )
    p.add_argument("--out-dir", required=True, help="folder for the PNG and GIF files")
    frames = p.add_mutually_exclusive_group()
    frames.add_argument("--frames", help="frames archive of the (single) store")
    frames.add_argument("--frames-dir", help="folder of frames archives <video>.zip")
    p.add_argument("--max-tracks", type=whole_number, default=600, help="about this many paths are drawn")
    p.add_argument("--tail", type=whole_number, default=4, help="frames of fading tail in the GIF")
    add_params_argument(p)
    return p


def _check_in_archive(archive: FrameArchive, store: TrajectoryStore, k: int) -> int:
    """Window ``k``'s start, refused (naming the store and the archive) unless its frames are all there."""
    start, window = int(store.starts[k]), store.info.window
    if start < 0 or start + window > len(archive):
        raise StageError(
            f"{store.path}: window {k} covers frames {start}..{start + window - 1}, outside {archive.path} "
            f"({len(archive)} frames): the store was not made from these frames"
        )
    return start


def _window_frames(archive: FrameArchive | None, store: TrajectoryStore, k: int) -> np.ndarray | None:
    if archive is None:
        return None
    store.check_frames(archive)
    frames = archive.read_range(_check_in_archive(archive, store, k), store.info.window)
    return resize_frames(frames, store.info.tracking_size)


def _archive_for(args: argparse.Namespace, store_dir: Path) -> FrameArchive | None:
    if args.frames:
        return FrameArchive(args.frames)
    if args.frames_dir:
        return FrameArchive(Path(args.frames_dir) / f"{store_dir.name}.zip")
    return None


def _store_dirs(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """(stores drawn window by window, stores on the contact sheet): a folder of stores stands for
    the stores of data.videos by name, the first ``visualize.max_videos`` of them drawn in full."""
    drawn: list[Path] = []
    listed: list[Path] = []
    for path in map(Path, args.stores):
        if not path.is_dir() or looks_like_store(path):
            drawn.append(path)  # a store, perhaps without its meta.json (or a missing path): TrajectoryStore names it
            listed.append(path)
            continue
        params = params_from(args)
        videos = sorted(params.data.videos)
        check_no_leftovers([path, *([args.frames_dir] if args.frames_dir else [])], params.data.videos)
        drawn.extend(path / v for v in videos[: params.visualize.max_videos])  # a missing one: TrajectoryStore names it
        listed.extend(path / v for v in videos)
    return drawn, listed


def _thumbnail(args: argparse.Namespace, store_dir: Path) -> tuple[np.ndarray, list[str]]:
    """A contact sheet's cell: window 0's tracks over its last frame, and its label lines.

    The archive's frame size is checked against the store (its checksum only for stores drawn in
    full: hashing every video's frames for one thumbnail each would take long).
    """
    store = TrajectoryStore(store_dir)
    h, w = store.info.frame_size
    size = fit_box((h, w), SHEET_BOX)
    label = [store.video, f"{w} x {h} px, {len(store)} windows"]
    if len(store) == 0:
        return np.full((*size, 3), 200, np.uint8), label
    archive = _archive_for(args, store_dir)
    frame = None
    if archive is not None:
        with archive:
            if archive.size != (h, w):
                raise StageError(f"{store_dir} was made from frames of another size than {archive.path}")
            frame = archive.read(_check_in_archive(archive, store, 0) + store.info.window - 1)
    return tracks_thumbnail(store, 0, frame, size), label


def _draw_windows(args: argparse.Namespace, store_dir: Path, out_dir: Path) -> None:
    """The tracks PNG, the tracks GIF and the flow PNG of each ``--window`` of one store."""
    store = TrajectoryStore(store_dir)
    archive = _archive_for(args, store_dir)
    for k in args.window:
        if not -len(store) <= k < len(store):
            raise StageError(f"{store_dir}: no window {k} (the store has {len(store)} windows)")
        k = k % len(store)
        still, animation, flow = window_pictures(
            store, k, _window_frames(archive, store, k), max_tracks=args.max_tracks, tail=args.tail
        )
        stem = out_dir / f"{store.video}_w{k:03d}"
        save_png(f"{stem}_tracks.png", still)
        save_gif(f"{stem}_tracks.gif", animation, fps=4.0)
        save_png(f"{stem}_flow.png", flow)
        print(f"{stem}_{{tracks.png,tracks.gif,flow.png}}")
    if archive is not None:
        archive.close()


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    drawn, listed = _store_dirs(args)
    if args.frames and len(listed) > 1:
        raise StageError("--frames goes with one store; use --frames-dir for several")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for store_dir in drawn:
        _draw_windows(args, store_dir, out_dir)
    title = "window 0 of every video: tracks coloured by direction, over the window's last frame"
    save_png(out_dir / "contact_sheet.png", contact_sheet([_thumbnail(args, d) for d in listed], title))
    print(f"{out_dir / 'contact_sheet.png'}: {len(listed)} videos")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
