"""The per-video outputs of the pipeline, and the leftovers of other video lists.

``data/frames/<video>.zip`` and ``data/trajectories/<video>/`` belong to the videos of
``data.videos``. After switching to another list (``densemotion use-videos``), the outputs of
the old list would stay in those folders: no stage owns them any more, so ``dvc push`` skips
them and a fresh clone never has them, yet the stages that depend on the whole folders (train,
evaluate, tracker_accuracy, visualize) would hash them, and a clone after ``dvc pull`` would
see those stages as changed. So leftovers are set aside (moved to ``data/work/set-aside/``,
which DVC ignores; nothing is deleted) and their ``dvc.lock`` entries dropped, and the stages
that read the folders refuse to run while any are there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from densemotion.errors import DensemotionError

FRAMES_DIR = Path("data/frames")
TRAJECTORIES_DIR = Path("data/trajectories")
SET_ASIDE_DIR = Path("data/work/set-aside")
PER_VIDEO_STAGES = ("frames", "trajectories")  # dvc.yaml's foreach stages over data.videos


class LeftoverError(DensemotionError):
    """A folder a stage reads holds outputs of videos that are not in data.videos."""


def leftovers(folder: str | Path, videos: Iterable[str]) -> list[Path]:
    """Entries of an output folder (``<video>.zip`` or ``<video>/``) whose video is not listed.

    Hidden entries and git's ``.gitignore`` are not outputs and never count.
    """
    folder, names = Path(folder), set(videos)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        name = entry.stem if entry.is_file() and entry.suffix == ".zip" else entry.name
        if (entry.is_dir() or entry.suffix == ".zip") and name not in names:
            found.append(entry)
    return found


def check_no_leftovers(folders: Iterable[str | Path], videos: Iterable[str]) -> None:
    """LeftoverError naming the outputs of unlisted videos in ``folders`` and the fix."""
    videos = list(videos)
    found = [p for folder in folders for p in leftovers(folder, videos)]
    if found:
        shown = ", ".join(str(p) for p in found[:6]) + (f", ... ({len(found)} in all)" if len(found) > 6 else "")
        raise LeftoverError(
            f"outputs of videos that are not in data.videos: {shown}. They would enter this stage's "
            "DVC hash (and a fresh clone would not have them): run `densemotion tidy` to set them aside"
        )


def set_aside(paths: Iterable[Path], root: str | Path) -> Path | None:
    """Move ``paths`` (inside the repository ``root``) to a new folder
    ``root/data/work/set-aside/<UTC time>[-N]/``, keeping their paths relative to ``root``;
    returns that folder.

    The folder is made anew by this call (a second set-aside in the same second gets ``-2``), and a
    move never lands on an existing path, so nothing set aside before is ever replaced.
    """
    paths, root = list(paths), Path(root)
    if not paths:
        return None
    dest_root = _new_folder(root / SET_ASIDE_DIR, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    for path in paths:
        dest = dest_root / Path(path).resolve().relative_to(root.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):  # cannot be, in a folder made here; never replace if it is
            raise FileExistsError(f"{dest}: exists; refusing to set {path} aside onto it")
        shutil.move(str(path), str(dest))  # a rename; a copy, then removal, where data/work is elsewhere
    return dest_root


def _new_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-2``, ``-3``... : the first that this call creates itself."""
    parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, 10_000):
        folder = parent / (name if k == 1 else f"{name}-{k}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{parent}: 10,000 set-aside folders named {name}*; move some away")


def drop_lock_entries(lock_path: str | Path, videos: Iterable[str]) -> list[str]:
    """Remove the ``frames@X`` / ``trajectories@X`` entries of unlisted videos from dvc.lock."""
    from ruamel.yaml import YAML

    from densemotion.atomic import atomic_path

    lock_path, names = Path(lock_path), set(videos)
    if not lock_path.is_file():
        return []
    yaml = YAML()
    yaml.width = 4096
    doc = yaml.load(lock_path.read_text())
    stages = doc.get("stages", {}) if doc else {}
    stale = [s for s in stages if s.partition("@")[0] in PER_VIDEO_STAGES and s.partition("@")[2] not in names]
    if stale:
        for name in stale:
            del stages[name]
        with atomic_path(lock_path) as tmp, open(tmp, "w") as f:
            yaml.dump(doc, f)
    return stale


def tidy(videos: Iterable[str], root: str | Path) -> tuple[Path | None, list[Path], list[str]]:
    """In the repository at ``root``: set aside the leftovers of unlisted videos and drop their
    dvc.lock entries. Returns (where they went, what was moved, the dropped stage names)."""
    videos, root = list(videos), Path(root)
    found = leftovers(root / FRAMES_DIR, videos) + leftovers(root / TRAJECTORIES_DIR, videos)
    return set_aside(found, root), found, drop_lock_entries(root / "dvc.lock", videos)


def report_tidy(moved_to: Path | None, moved: list[Path], dropped: list[str]) -> None:
    """What :func:`tidy` did, on stdout (``densemotion tidy`` and ``use-videos`` say it alike)."""
    if moved:
        print(f"set aside {len(moved)} outputs of videos not in data.videos: {moved_to}")
    if dropped:
        print(f"dropped {len(dropped)} dvc.lock entries of those videos: {', '.join(dropped[:6])}")
