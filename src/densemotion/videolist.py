"""The list of videos the pipeline runs on: ``data.videos`` in params.yaml (name -> source).

DVC expands one ``frames@NAME`` (and ``trajectories@NAME``) stage per entry, so adding or
changing one video re-runs that video's work only. This module scans a folder into such a list
and rewrites that one section of params.yaml, keeping the file's comments and order.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path, PurePosixPath

from ruamel.yaml import YAML

from densemotion.errors import DensemotionError
from densemotion.frames.sources import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ZIP_SEPARATOR,
    SourceError,
    zip_image_names,
)
from densemotion.params import MAX_NAME, PARTITIONS


class VideoListError(DensemotionError):
    """A folder of videos or a params.yaml that use-videos cannot list or rewrite."""


SAMPLE_VIDEO_DIR = "data/sample/videos"  # where the sample stage writes its clips (dvc.yaml outs)


def stage_name(raw: str) -> str:
    """A name usable as a DVC stage suffix, file name and shell word, from any file name: every
    character but ``[A-Za-z0-9._+-]`` becomes '_' (so '#', '@', ':', '/', spaces, quotes, ``$()``,
    ';' and non-ASCII letters), it starts with a letter or digit (YouTube ids may start with '-'),
    and a name past :data:`MAX_NAME` is cut, with a hash of the whole name kept unique."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", raw)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name).rstrip("._") or "video"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('._')}_{digest}"
    return name


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... if taken; compared ignoring case (macOS, Windows
    file systems), never longer than :data:`MAX_NAME`. ``taken`` holds lower-cased names."""
    out, k = name, 2
    while out.lower() in taken:
        suffix = f"_{k}"
        out, k = name[: MAX_NAME - len(suffix)] + suffix, k + 1
    taken.add(out.lower())
    return out


def printable(name: str) -> str:
    """A file name as a message can print it: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _utf8(entry: Path) -> bool:
    """True when the name can be written to params.yaml (UTF-8): a name of other bytes cannot."""
    try:
        str(entry).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def zip_videos(path: Path) -> dict[str, str]:
    """Stage-safe name -> folder inside the zip, one per folder that directly holds images.

    Names are the parts of the folder paths that differ (``frames/<video>/frames`` -> ``<video>``).
    A zip whose images all sit in one folder is one video: ``{stage_name(path.stem): ""}``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            parents = sorted({str(PurePosixPath(n).parent) for n in zip_image_names(zf.namelist())})
    except (zipfile.BadZipFile, OSError) as err:
        raise SourceError(f"{path}: not a readable zip ({err})") from None
    if len(parents) <= 1:
        return {stage_name(path.stem): ""}
    taken: set[str] = set()
    middles = differing_parts(parents)
    return {_unique(stage_name("_".join(m)), taken): p for m, p in zip(middles, parents, strict=True)}


def differing_parts(paths: list[str]) -> list[list[str]]:
    """Each ``/``-separated path without the leading and trailing components all of them share
    (at least one component of each is kept): ``frames/a/frames``, ``frames/b/frames`` -> [a], [b]."""
    split = [p.split("/") for p in paths]
    head = 0
    while all(len(s) > head + 1 and s[head] == split[0][head] for s in split):
        head += 1
    tail = 0
    while all(len(s) > head + tail + 1 and s[-1 - tail] == split[0][-1 - tail] for s in split):
        tail += 1
    return [s[head : len(s) - tail] for s in split]


def resolve_source(spec: str, name: str) -> str:
    """The source spec of video ``name``: for a zip that holds several videos, ``ZIP::FOLDER`` of
    the one :func:`zip_videos` calls ``name``; any other spec unchanged.

    data.videos gives such a zip's own path for each of its videos (a path DVC can depend on);
    the entry's name picks the folder.
    """
    path = Path(spec)
    if ZIP_SEPARATOR in spec or path.suffix.lower() != ".zip" or not path.is_file():
        return spec
    videos = zip_videos(path)
    if len(videos) == 1:
        return spec
    if name in videos:
        return f"{spec}{ZIP_SEPARATOR}{videos[name]}"
    listed = ", ".join(list(videos)[:6]) + (", ..." if len(videos) > 6 else "")
    raise SourceError(
        f"{spec} holds the frames of {len(videos)} videos and none is named {name!r} "
        f"(its videos: {listed}); name the data.videos entry after one of them "
        f"(`densemotion use-videos` does), or give {spec}{ZIP_SEPARATOR}FOLDER"
    )


def _is_frame_folder(entry: Path) -> bool:
    return entry.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entry.iterdir())


def _entries(folder: Path) -> list[Path]:
    """The entries of ``folder``, with those of its ``train/`` and ``test/`` sub-folders (a data
    set's own partition, as ``densemotion acquire`` writes it) in place of those folders."""
    out: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name in PARTITIONS and entry.is_dir() and not _is_frame_folder(entry):
            out.extend(e for e in sorted(entry.iterdir()) if not e.name.startswith("."))
        else:
            out.append(entry)
    return out


def scan_videos(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Every video file, frame folder and zip of frames directly under ``folder`` or under its
    ``train/`` and ``test/`` sub-folders (whose names ``train.split_partition`` reads back).

    Returns (name -> source path, the entries skipped, each as ``name (why)``). Every video of a
    zip that holds several gets its own entry whose path is the zip (see :func:`resolve_source`).
    Any file name is accepted (its entry's name is :func:`stage_name` of it; the path itself never
    reaches a shell), but one that is not UTF-8, which params.yaml cannot hold.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    pinned: dict[str, str] = {}  # videos inside multi-video zips: their name picks their folder
    loose: list[tuple[str, str]] = []
    skipped: list[str] = []
    for entry in _entries(folder):
        suffix = entry.suffix.lower()
        if not _utf8(entry):
            skipped.append(f"{printable(str(entry.relative_to(folder)))} (its name is not UTF-8: rename it)")
        elif ZIP_SEPARATOR in str(entry):  # ZIP::FOLDER names a folder inside a zip
            skipped.append(f"{printable(str(entry.relative_to(folder)))} (its path holds '{ZIP_SEPARATOR}': rename it)")
        elif _is_frame_folder(entry):
            loose.append((entry.name, str(entry)))
        elif entry.is_file() and suffix == ".zip":
            inner = zip_videos(entry)
            if len(inner) == 1:
                loose.append((entry.stem, str(entry)))
                continue
            for name in inner:
                if name in pinned:
                    raise VideoListError(
                        f"{folder}: two zips hold a video named {name!r} ({pinned[name]} and {entry}); keep one of them"
                    )
                pinned[name] = str(entry)
        elif entry.is_file() and suffix in VIDEO_EXTENSIONS:
            loose.append((entry.stem, str(entry)))
        else:
            skipped.append(
                printable(str(entry.relative_to(folder))) + ("/" if entry.is_dir() else "") + " (not a video)"
            )
    if not pinned and not loose:
        raise VideoListError(f"{folder}: no videos ({', '.join(VIDEO_EXTENSIONS)}), frame folders or zips found")
    taken = set(pinned)
    videos = dict(pinned)
    for name, spec in loose:
        videos[_unique(stage_name(name), taken)] = spec
    return dict(sorted(videos.items())), skipped


def sample_videos(params_path: Path) -> dict[str, str]:
    """The built-in sample clips of ``sample.clips`` (the default ``data.videos``)."""
    clips = _load(params_path)["sample"]["clips"]
    return {clip: f"{SAMPLE_VIDEO_DIR}/{clip}.mp4" for clip in clips}


def _yaml() -> YAML:
    y = YAML()  # round-trip mode: keeps comments, key order and quoting
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    # write None as "null", as the file has it (ruamel would leave the value empty)
    y.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def _load(params_path: Path, y: YAML | None = None):  # -> the round-trip document
    """params.yaml as a comment-keeping document; ValueError naming the file on bad YAML (a repeated
    or non-plain key, deep nesting, non-UTF-8 text: what DVC and our params loader refuse too)."""
    import yaml as pyyaml

    from densemotion.params import read_text, read_yaml, yaml_problem

    text = read_text(params_path)
    try:
        read_yaml(text)  # the loader's own checks first: one set of rules, one set of messages
    except pyyaml.YAMLError as err:
        raise VideoListError(f"{params_path} is not valid YAML: {yaml_problem(err)}") from None
    return (y or _yaml()).load(text)


def set_videos(params_path: Path, videos: dict[str, str]) -> None:
    """Replace ``data.videos`` in params.yaml, leaving the rest of the file as it was."""
    from densemotion.atomic import atomic_path
    from densemotion.params import parse_params

    y = _yaml()
    doc = _load(params_path, y)
    if not isinstance(doc, dict):
        raise VideoListError(f"{params_path}: expected a mapping of sections, got {type(doc).__name__}")
    data = doc.setdefault("data", {})
    if not isinstance(data, dict):
        raise VideoListError(f"{params_path}: data must be a mapping (with videos: NAME: PATH), got {data!r}")
    data["videos"] = _keeping_trailer(data.get("videos"), videos)
    parse_params(_plain(doc), str(params_path))  # refuse to write a params file that would not load
    with atomic_path(params_path) as tmp, open(tmp, "w") as f:
        y.dump(doc, f)


def _keeping_trailer(old: object, videos: dict[str, str]) -> dict[str, str]:
    """The new list, carrying what followed the old one (the blank line and comments before the
    next section, which the YAML round trip keeps with the old list's last entry)."""
    from ruamel.yaml.comments import CommentedMap

    new = CommentedMap((_string(k), _string(v)) for k, v in videos.items())
    if isinstance(old, CommentedMap) and old and new and (trailer := old.ca.items.get(list(old)[-1])):
        new.ca.items[list(new)[-1]] = trailer
    return new


def _string(text: str) -> str:
    """``text`` as a YAML string scalar that every reader reads back as that string: quoted where
    a YAML 1.1 reader (PyYAML: our params loader, DVC) would take it for something else (a video
    named ``Yes``, ``on`` or ``1e3``), which ruamel, writing YAML 1.2, would leave plain."""
    import yaml as pyyaml
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    try:
        plain = pyyaml.safe_load(text) == text
    except pyyaml.YAMLError:
        plain = False
    return text if plain else DoubleQuotedScalarString(text)  # double: non-printables escaped


def _plain(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj
