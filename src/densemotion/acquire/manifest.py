"""``manifest.csv``: what became of every clip row of an acquisition (the one writer and reader).

One line per metadata row, in row order: the clip's path under the output folder, its source id,
frame range and partition as the metadata gives them, the outcome (``status``, with ``reason``
when not ok), the decoded source's size and frame rate, the clip's frame count, size, byte count
and SHA-256. The header is the schema: a file with other columns is refused. Written atomically,
and only when its content changes (a rerun that does no work leaves it untouched). Beside it,
``manifest.json`` records how the clips were made (the options, the metadata's SHA-256, the source).

A clip path is ``partition/VIDEOID#START#END.mp4`` and nothing else: :func:`clip_path` refuses any
other (absolute, ``..``, another shape) and any whose file, symlinks resolved, lies outside the
output folder, so a manifest can never make a run or ``--verify`` open, trust or replace a file
elsewhere.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from densemotion.acquire.metadata import MAX_ID, ClipRow, RowProblem, shown
from densemotion.atomic import atomic_path, sha256_file
from densemotion.errors import DensemotionError
from densemotion.params import PARTITIONS


class ManifestError(DensemotionError):
    """A file that is not a densemotion acquire manifest (or a row of one that is broken)."""


MANIFEST = "manifest.csv"
RUN_INFO = "manifest.json"  # how the clips were made: options, the metadata's SHA-256, the source
MAX_BYTES = 64 << 20  # a manifest of TaiChi-HD's 3334 rows is 1 MB
_PARTITION = "|".join(map(re.escape, PARTITIONS))
_CLIP = re.compile(rf"(?:{_PARTITION})/[A-Za-z0-9_-]{{1,{MAX_ID}}}#[0-9]{{6,9}}#[0-9]{{6,9}}\.mp4")  # clip_name's
_INT = re.compile(r"-?[0-9]{1,18}")

OK = "ok"  # written, hashed
BAD_ROW = "bad_row"  # the metadata row is malformed, repeated, or its box misses the frame
UNAVAILABLE = "unavailable"  # the source video cannot be had (gone, private, not in --source-dir)
BAD_VIDEO = "bad_video"  # the source is not a decodable video, or breaks off
PAST_END = "past_end"  # the clip's frame range goes past the source's last frame
FAILED = "failed"  # the clip could not be written (disk full, ...)
STATUSES = (OK, BAD_ROW, UNAVAILABLE, BAD_VIDEO, PAST_END, FAILED)


@dataclass(frozen=True)
class Entry:
    """One manifest line. ``start``/``end`` as the metadata has them; sizes in pixels."""

    row: int  # data row of the metadata, from 1
    clip: str  # partition/VIDEOID#START#END.mp4 ("" for a row too malformed to name)
    video_id: str
    partition: str
    start: str
    end: str
    status: str
    reason: str = ""
    source_width: int | None = None  # the decoded source video
    source_height: int | None = None
    source_fps: float | None = None
    frames: int | None = None  # the clip
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    sha256: str = ""

    @classmethod
    def of(cls, clip: ClipRow, status: str, reason: str = "", **values: Any) -> Entry:
        """The entry of a parsed row; ``values``: the outcome's columns (sizes, hash)."""
        return cls(
            clip.row, clip.path, clip.video_id, clip.partition, str(clip.start), str(clip.end), status, reason, **values
        )

    @classmethod
    def of_problem(cls, problem: RowProblem) -> Entry:
        """The entry of a row that could not be parsed: its fields as given, and why."""
        f = problem.fields
        return cls(problem.row, "", f["video_id"], f["partition"], f["start"], f["end"], BAD_ROW, problem.reason)

    def moved_to(self, row: int) -> Entry:
        return replace(self, row=row)


COLUMNS = tuple(f.name for f in fields(Entry))
_TYPES = {f.name: f.type for f in fields(Entry)}


def render(entries: list[Entry]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in sorted(entries, key=lambda e: e.row):
        writer.writerow(
            {k: "" if v is None else (repr(v) if isinstance(v, float) else v) for k, v in asdict(entry).items()}
        )
    return out.getvalue()


def write_manifest(path: Path, entries: list[Entry]) -> bool:
    """Write the manifest atomically unless it already holds exactly this; True when written."""
    text = render(entries)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def read_manifest(path: Path) -> list[Entry]:
    """The entries of a manifest; ValueError naming the file when it is not one."""
    if path.exists() and not path.is_file():  # a folder, a FIFO, a device: never read
        raise ManifestError(f"{path}: not a file, so not a densemotion acquire manifest")
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_BYTES >> 20} MiB: not a densemotion acquire manifest")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text, so not a densemotion acquire manifest") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ManifestError(
                f"{path}: not a densemotion acquire manifest (expected the columns {','.join(COLUMNS)})"
            )
        return [Entry(**{k: _value(k, v) for k, v in line.items()}) for line in reader]
    except (TypeError, ValueError, csv.Error) as err:
        if str(err).startswith(str(path)):
            raise
        raise ManifestError(f"{path}: line {reader.line_num}: {err}") from None


def _value(column: str | None, text: str | None) -> Any:
    if column is None:  # csv's key for values beyond the header
        raise ManifestError("more fields than the header")
    if text is None:
        raise ManifestError(f"missing {column}")
    kind = _TYPES[column]
    if kind == "int" or (kind.startswith("int ") and text != ""):
        if not _INT.fullmatch(text):
            raise ManifestError(f"{column} {shown(text)} is not a whole number")
        return int(text)
    if kind.startswith("float ") and text != "":
        value = float(text)
        if not math.isfinite(value):
            raise ManifestError(f"{column} {shown(text)} is not a finite number")
        return value
    return None if kind.startswith(("int ", "float ")) else text


def clip_path(out_dir: Path, clip: str) -> Path | None:
    """``out_dir / clip`` when ``clip`` is a clip path (``partition/VIDEOID#START#END.mp4``) whose
    file, every symlink resolved, lies inside ``out_dir``; else None: such a path is never opened,
    trusted or replaced."""
    if not _CLIP.fullmatch(clip):
        return None
    path = out_dir / clip
    try:
        root = out_dir.resolve()
        real = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if real.is_relative_to(root) and real != root else None


def outside(out_dir: Path, clip: str) -> str:
    """Why :func:`clip_path` refused ``clip``: one sentence for the manifest or --verify."""
    if _CLIP.fullmatch(clip):
        return f"{clip} resolves outside the output folder (a symlink out of it?): not opened, not replaced"
    return f"{shown(clip)} is outside the output folder or no clip path (partition/VIDEOID#START#END.mp4): not opened"


def verify(out_dir: Path, entries: list[Entry]) -> list[str]:
    """Re-hash every ``ok`` clip under ``out_dir`` against the manifest; one sentence per problem
    (missing, changed, outside ``out_dir``, or a clip file the manifest does not list as ok). []
    when all match. A path that is not inside ``out_dir`` (symlinks resolved) is never opened."""
    problems: list[str] = []
    listed = {e.clip for e in entries if e.status == OK}
    for entry in entries:
        if entry.status != OK:
            continue
        path = clip_path(out_dir, entry.clip)
        if path is None:
            problems.append(f"row {entry.row}: {outside(out_dir, entry.clip)}")
        elif not path.is_file():
            problems.append(f"{entry.clip}: missing")
        elif (digest := sha256_file(path)) != entry.sha256:
            problems.append(f"{entry.clip}: sha256 {digest}, the manifest has {printable(entry.sha256[:80])}")
    for path in sorted(out_dir.glob("*/*.mp4")):
        clip = path.relative_to(out_dir).as_posix()
        if clip not in listed:
            problems.append(f"{printable(clip)}: not an ok clip of the manifest")
    return problems


def printable(text: str) -> str:
    """``text`` as a terminal may print it: control characters (and undecodable bytes) escaped."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def write_run_info(out_dir: Path, info: dict[str, Any]) -> bool:
    """Write ``out_dir/manifest.json`` (how the clips were made) unless it already says this."""
    path = out_dir / RUN_INFO
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    if path.is_file() and not path.is_symlink():
        try:
            if path.read_text() == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True
