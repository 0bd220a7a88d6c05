"""The published clip list: one row per clip of a source video (TaiChi-HD's ``taichi-metadata.csv``).

Columns ``video_id,start,end,bbox,fps,width,height,partition``: ``start`` and ``end`` are frame
indices counted at the row's ``fps``; ``bbox`` is ``left-top-right-bottom`` in pixels of a
``width`` x ``height`` source; ``partition`` is ``train`` or ``test``. A malformed row is kept as
a :class:`RowProblem` naming what is wrong, so the run goes on and the manifest says why.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.request
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from densemotion.params import PARTITIONS  # the metadata's own split; also the output's sub-folders

COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition")
_ID = re.compile(r"[A-Za-z0-9_-]+")  # YouTube ids; safe as a file name
_BOX = re.compile(r"(-?\d+)-(-?\d+)-(-?\d+)-(-?\d+)")  # left-top-right-bottom, signs allowed


@dataclass(frozen=True)
class ClipRow:
    """One clip: frames [start, end) at ``fps`` of ``video_id``, box (left, top, right, bottom)
    in pixels of a ``width`` x ``height`` source. ``row`` counts data rows from 1."""

    row: int
    video_id: str
    start: int
    end: int
    box: tuple[int, int, int, int]
    fps: Fraction
    width: int
    height: int
    partition: str

    @property
    def name(self) -> str:
        """The published file name's stem: ``VIDEOID#START#END``, frames zero-padded to 6 digits."""
        return clip_name(self.video_id, self.start, self.end)

    @property
    def path(self) -> str:
        """Where the clip goes under the output folder: ``partition/VIDEOID#START#END.mp4``."""
        return f"{self.partition}/{self.name}.mp4"


@dataclass(frozen=True)
class RowProblem:
    """A row that cannot be acquired: what it holds (for the manifest) and why."""

    row: int
    fields: dict[str, str]
    reason: str


def clip_name(video_id: str, start: int, end: int) -> str:
    return f"{video_id}#{start:06d}#{end:06d}"


def read_text(source: str | Path) -> str:
    """The metadata's text from a path or an http(s) URL."""
    text = str(source)
    if re.match(r"https?://", text):
        with urllib.request.urlopen(text, timeout=60) as response:
            return response.read().decode("utf-8-sig")
    return Path(source).read_text(encoding="utf-8-sig")


def parse_metadata(text: str, where: str = "metadata") -> tuple[list[ClipRow], list[RowProblem]]:
    """The clip rows of a metadata CSV, and the rows that cannot be used (with the reason).

    A missing column is an error for the whole file (ValueError); a bad value spoils its row only.
    A clip listed twice is a problem the second time.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{where}: no column {', '.join(missing)} (expected the header {','.join(COLUMNS)})")
    rows: list[ClipRow] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(reader, start=1):
        fields = {c: (raw.get(c) or "").strip() for c in COLUMNS}
        try:
            clip = _parse_row(number, fields, raw)
        except ValueError as err:
            problems.append(RowProblem(number, fields, str(err)))
            continue
        if clip.path in seen:
            problems.append(RowProblem(number, fields, f"duplicate of row {seen[clip.path]} ({clip.path})"))
            continue
        seen[clip.path] = number
        rows.append(clip)
    return rows, problems


def _parse_row(number: int, fields: dict[str, str], raw: dict) -> ClipRow:
    if None in raw:  # csv's key for values beyond the header
        raise ValueError(f"{len(COLUMNS) + len(raw[None])} fields, the header has {len(COLUMNS)}")
    empty = [c for c in COLUMNS if not fields[c]]
    if empty:
        raise ValueError(f"missing {', '.join(empty)}")
    video_id = fields["video_id"]
    if not _ID.fullmatch(video_id):
        raise ValueError(f"video_id {video_id!r} is not a YouTube id (letters, digits, '-', '_')")
    start, end, width, height = (_integer(fields, c) for c in ("start", "end", "width", "height"))
    if start < 0 or end <= start:
        raise ValueError(f"frame range start {start}, end {end}: needs 0 <= start < end")
    if width <= 0 or height <= 0:
        raise ValueError(f"source size {width}x{height} is not positive")
    box = _BOX.fullmatch(fields["bbox"])
    if box is None:
        raise ValueError(f"bbox {fields['bbox']!r} is not left-top-right-bottom")
    left, top, right, bottom = (int(v) for v in box.groups())
    if right <= left or bottom <= top:
        raise ValueError(f"bbox {fields['bbox']}: needs right > left and bottom > top")
    try:
        fps = Fraction(fields["fps"])
    except ValueError:
        raise ValueError(f"fps {fields['fps']!r} is not a number") from None
    if fps <= 0:
        raise ValueError(f"fps {fields['fps']} is not positive")
    if fields["partition"] not in PARTITIONS:
        raise ValueError(f"partition {fields['partition']!r} is neither train nor test")
    return ClipRow(number, video_id, start, end, (left, top, right, bottom), fps, width, height, fields["partition"])


def _integer(fields: dict[str, str], column: str) -> int:
    try:
        return int(fields[column])
    except ValueError:
        raise ValueError(f"{column} {fields[column]!r} is not an integer") from None


def by_video(rows: list[ClipRow]) -> dict[str, list[ClipRow]]:
    """Rows grouped by source id, ids and rows in the order of the metadata."""
    out: dict[str, list[ClipRow]] = {}
    for row in rows:
        out.setdefault(row.video_id, []).append(row)
    return out
