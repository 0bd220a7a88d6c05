"""The list of videos the pipeline runs on: ``data.videos`` in params.yaml (name -> source).

DVC expands one ``frames@NAME`` (and ``trajectories@NAME``) stage per entry, so adding or
changing one video re-runs that video's work only. This module scans a folder into such a list
and rewrites that one section of params.yaml, keeping the file's comments and order.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from ruamel.yaml import YAML

from densemotion.frames.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ZIP_SEPARATOR

SAMPLE_VIDEO_DIR = "data/sample/videos"  # where the sample stage writes its clips (dvc.yaml outs)


def stage_name(raw: str) -> str:
    """A name usable as a DVC stage suffix and file name ('#', '@', ':', '/' and spaces -> '_')."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", raw).strip("._") or "video"
    return name


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _zip_videos(path: Path) -> list[tuple[str, str]]:
    """(name, spec) per folder of images inside a zip; one entry when the zip is one video."""
    with zipfile.ZipFile(path) as zf:
        parents = sorted({str(PurePosixPath(n).parent) for n in zf.namelist()
                          if n.lower().endswith(IMAGE_EXTENSIONS)})
    if len(parents) <= 1:
        return [(path.stem, str(path))]
    # names: the parts that differ between folders (frames/<video>/frames -> <video>)
    split = [p.split("/") for p in parents]
    head = 0
    while all(len(s) > head + 1 and s[head] == split[0][head] for s in split):
        head += 1
    tail = 0
    while all(len(s) > head + tail + 1 and s[-1 - tail] == split[0][-1 - tail] for s in split):
        tail += 1
    return [("_".join(s[head:len(s) - tail]), f"{path}{ZIP_SEPARATOR}{p}") for s, p in zip(split, parents)]


def scan_videos(folder: Path) -> dict[str, str]:
    """Every video file, frame folder and zip of frames directly under ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    found: list[tuple[str, str]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        suffix = entry.suffix.lower()
        if entry.is_dir():
            if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entry.iterdir()):
                found.append((entry.name, str(entry)))
        elif suffix == ".zip":
            found.extend(_zip_videos(entry))
        elif suffix in VIDEO_EXTENSIONS:
            found.append((entry.stem, str(entry)))
    if not found:
        raise ValueError(f"{folder}: no videos ({', '.join(VIDEO_EXTENSIONS)}), frame folders or zips found")
    taken: set[str] = set()
    return {_unique(stage_name(name), taken): spec for name, spec in found}


def sample_videos(params_path: Path) -> dict[str, str]:
    """The built-in sample clips of ``sample.clips`` (the default ``data.videos``)."""
    clips = _yaml().load(params_path.read_text())["sample"]["clips"]
    return {clip: f"{SAMPLE_VIDEO_DIR}/{clip}.mp4" for clip in clips}


def _yaml() -> YAML:
    y = YAML()  # round-trip mode: keeps comments, key order and quoting
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def set_videos(params_path: Path, videos: dict[str, str]) -> None:
    """Replace ``data.videos`` in params.yaml, leaving the rest of the file as it was."""
    from densemotion.atomic import atomic_path
    from densemotion.params import parse_params

    y = _yaml()
    doc = y.load(params_path.read_text())
    doc.setdefault("data", {})["videos"] = dict(videos)
    parse_params(_plain(doc), str(params_path))  # refuse to write a params file that would not load
    with atomic_path(params_path) as tmp, open(tmp, "w") as f:
        y.dump(doc, f)


def _plain(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj
