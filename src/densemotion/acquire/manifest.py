"""``manifest.csv``: what became of every clip row of an acquisition (the one writer and reader).

One line per metadata row, in row order: the clip's path under the output folder, its source id,
frame range and partition as the metadata gives them, the outcome (``status``, with ``reason``
when not ok), the decoded source's size and frame rate, the clip's frame count, size, byte count
and SHA-256. The header is the schema: a file with other columns is refused. Written atomically,
and only when its content changes (a rerun that does no work leaves it untouched).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from densemotion.acquire.metadata import ClipRow, RowProblem
from densemotion.atomic import atomic_path, sha256_file

MANIFEST = "manifest.csv"

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


def _text(value: object) -> object:
    """A cell: empty for None, floats exactly (repr round-trips)."""
    return "" if value is None else repr(value) if isinstance(value, float) else value


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
    reader = csv.DictReader(io.StringIO(path.read_text()))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{path}: not a densemotion acquire manifest (expected the columns {','.join(COLUMNS)})")
    try:
        return [Entry(**{k: _value(k, v) for k, v in line.items()}) for line in reader]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: line {reader.line_num}: {err}") from None


def _value(column: str, text: str | None) -> Any:
    kind = _TYPES[column]
    if text is None:
        raise ValueError(f"missing {column}")
    if kind == "int":
        return int(text)
    if kind.startswith(("int ", "float ")):
        return None if text == "" else (float(text) if kind.startswith("float") else int(text))
    return text


def verify(out_dir: Path, entries: list[Entry]) -> list[str]:
    """Re-hash every ``ok`` clip under ``out_dir`` against the manifest; one sentence per problem
    (missing, changed, or a clip file the manifest does not list as ok). [] when all match."""
    problems: list[str] = []
    listed = {e.clip for e in entries if e.status == OK}
    for entry in entries:
        if entry.status != OK:
            continue
        path = out_dir / entry.clip
        if not path.is_file():
            problems.append(f"{entry.clip}: missing")
        elif (digest := sha256_file(path)) != entry.sha256:
            problems.append(f"{entry.clip}: sha256 {digest}, the manifest has {entry.sha256}")
    for path in sorted(out_dir.glob("*/*.mp4")):
        clip = path.relative_to(out_dir).as_posix()
        if clip not in listed:
            problems.append(f"{clip}: not an ok clip of the manifest")
    return problems
