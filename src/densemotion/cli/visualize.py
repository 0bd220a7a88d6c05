"""``densemotion visualize``: draw the trajectories of a few windows as PNG and animated GIF.

    densemotion visualize TRAJ_DIR [TRAJ_DIR ...] --window K [K ...] --out-dir DIR
        [--frames FRAMES.zip | --frames-dir DIR] [--max-videos N] [--max-tracks N] [--tail T]

A TRAJ_DIR that is a folder of stores (``data/trajectories``) stands for the stores of the
first ``--max-videos`` videos of ``data.videos`` by name (``--params``), so a DVC stage keeps
working whatever videos are configured, and never draws a store left from an earlier list.

For each store and window K it writes, into DIR:

- ``<video>_w<K>_tracks.png``: the window's last frame with every drawn point's whole path,
  coloured by its direction on the colour wheel;
- ``<video>_w<K>_tracks.gif``: the window frame by frame with fading tails;
- ``<video>_w<K>_flow.png``: frame 0 beside the colour-wheel image of the end-point displacement
  (legend top left; points hidden at the end drawn half grey).

Frames come from the archive (``--frames`` for one store, or ``--frames-dir`` holding
``<video>.zip``); without one, the paths are drawn over the stored low-resolution frame 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from densemotion.cli.common import StageError, add_params_argument, clean_errors, params_from, stage_parser
from densemotion.frames.store import FrameArchive
from densemotion.outputs import check_no_leftovers
from densemotion.tracking.grid import resize_frames
from densemotion.trajectories.store import TrajectoryStore
from densemotion.viz import save_gif, save_png, window_pictures


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("visualize", __doc__)
    p.add_argument("stores", nargs="+", metavar="TRAJ_DIR", help="trajectory store folder(s)")
    p.add_argument(
        "--window",
        type=int,
        nargs="+",
        required=True,
        metavar="K",
        help="window index(es) to draw (negative counts from the end)",
    )
    p.add_argument("--out-dir", required=True, help="folder for the PNG and GIF files")
    frames = p.add_mutually_exclusive_group()
    frames.add_argument("--frames", help="frames archive of the (single) store")
    frames.add_argument("--frames-dir", help="folder of frames archives <video>.zip")
    p.add_argument(
        "--max-videos", type=int, default=None, help="from a folder of stores, draw only the first N (by name)"
    )
    p.add_argument("--max-tracks", type=int, default=600, help="about this many paths are drawn")
    p.add_argument("--tail", type=int, default=4, help="frames of fading tail in the GIF")
    add_params_argument(p)
    return p


def _window_frames(archive: FrameArchive | None, store: TrajectoryStore, k: int) -> np.ndarray | None:
    if archive is None:
        return None
    if archive.sha256 != store.meta["frames_sha256"]:
        raise StageError(f"{store.path} was made from other frames than {archive.path}")
    frames = archive.read_range(int(store.starts[k]), int(store.meta["window"]))
    return resize_frames(frames, tuple(store.meta["tracking_size"]))


def _archive_for(args: argparse.Namespace, store_dir: Path) -> FrameArchive | None:
    if args.frames:
        return FrameArchive(args.frames)
    if args.frames_dir:
        return FrameArchive(Path(args.frames_dir) / f"{store_dir.name}.zip")
    return None


def _store_dirs(args: argparse.Namespace) -> list[Path]:
    """Expand folders of stores into the stores of data.videos (first ``--max-videos`` by name)."""
    out: list[Path] = []
    for path in map(Path, args.stores):
        if (path / "meta.json").is_file() or not path.is_dir():
            out.append(path)  # a store (or a missing path: TrajectoryStore names it)
            continue
        listed = params_from(args).data.videos
        check_no_leftovers([path, *([args.frames_dir] if args.frames_dir else [])], listed)
        out.extend(path / v for v in sorted(listed)[: args.max_videos])  # a missing one: TrajectoryStore names it
    return out


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stores = _store_dirs(args)
    if args.frames and len(stores) > 1:
        raise StageError("--frames goes with one store; use --frames-dir for several")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for store_dir in stores:
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
