"""The published clip list: one row per clip of a source video (TaiChi-HD's ``taichi-metadata.csv``).

Columns ``video_id,start,end,bbox,fps,width,height,partition``: ``start`` and ``end`` are frame
indices counted at the row's ``fps``; ``bbox`` is ``left-top-right-bottom`` in pixels of a
``width`` x ``height`` source; ``partition`` is ``train`` or ``test``. A malformed row is kept as
a :class:`RowProblem` naming what is wrong, so the run goes on and the manifest says why.

Values are read strictly, whatever Python's own parsers would take: ``start``, ``end``, ``width``
and ``height`` are plain ASCII digits (no sign, no ``1_0``, no ``١٢``, at most 9 digits), the box's
four numbers the same with an optional ``-``, ``fps`` a decimal (``29.97``) or a ratio
(``30000/1001``) above 0 and at most 1000, ``video_id`` at most 64 of ``A-Za-z0-9_-``. Every way a
row can be wrong (a line that is not CSV included) is that row's problem, never an exception; a
file that is not UTF-8 text, or larger than 64 MiB, is refused as a whole with one line naming it.
"""

from __future__ import annotations

import csv
import io
import re
import urllib.request
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from densemotion.errors import DensemotionError
from densemotion.params import PARTITIONS  # the metadata's own split; also the output's sub-folders


class MetadataError(DensemotionError):
    """A clip list (or one of its rows) that cannot be read."""


COLUMNS = ("video_id", "start", "end", "bbox", "fps", "width", "height", "partition")
MAX_BYTES = 64 << 20  # TaiChi-HD's list is 0.2 MB: a larger file (or /dev/zero) is not a clip list
MAX_ID = 64  # YouTube ids have 11 characters; a longer one is no id (and no file name)
MAX_FPS = 1000
# ASCII only ([0-9], never \d, which takes '١٢' too; never int(), which takes '1_0' and ' 5'),
# at most 9 digits: no frame index, pixel size or coordinate of a real clip list needs more
_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID}}}")  # YouTube ids; safe as a file name
_UINT = re.compile(r"[0-9]{1,9}")  # start, end, width, height: plain digits, no sign
_COORD = r"(-?[0-9]{1,9})"
_BOX = re.compile("-".join([_COORD] * 4))  # left-top-right-bottom, signs allowed (a box past the edge)
_FPS = re.compile(r"([0-9]{1,6}(?:\.[0-9]{1,6})?)|([0-9]{1,9})/([0-9]{1,9})")  # 29.97 or 30000/1001
SHOWN = 40  # characters of a bad value that a reason quotes
KEPT = 100  # characters of each field of a bad row that the manifest keeps


def shown(value: str) -> str:
    """``value`` quoted for a message: at most :data:`SHOWN` characters, control characters escaped."""
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "...")


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


def read_bytes(source: str | Path) -> bytes:
    """The metadata's bytes from a path or an http(s) URL (at most :data:`MAX_BYTES`)."""
    text = str(source)
    if re.match(r"https?://", text):
        with urllib.request.urlopen(text, timeout=60) as response:
            data = response.read(MAX_BYTES + 1)
    else:
        path = Path(source)
        if not path.is_file():  # a folder, a FIFO or a device is no clip list (and may never end)
            raise FileNotFoundError(f"{source}: no such file" if not path.exists() else f"{source}: not a file")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise MetadataError(f"{source}: larger than {MAX_BYTES >> 20} MiB: not a clip list")
    return data


def decode(data: bytes, where: str | Path) -> str:
    """The text of metadata bytes: UTF-8 (a BOM allowed); ValueError naming ``where`` otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise MetadataError(
            f"{where}: not UTF-8 text (byte {err.start} is {data[err.start : err.start + 1]!r}): "
            "save the clip list as UTF-8"
        ) from None


def read_text(source: str | Path) -> str:
    """The metadata's text from a path or an http(s) URL."""
    return decode(read_bytes(source), source)


def parse_metadata(text: str, where: str = "metadata") -> tuple[list[ClipRow], list[RowProblem]]:
    """The clip rows of a metadata CSV, and the rows that cannot be used (with the reason).

    A missing column is an error for the whole file (ValueError); anything wrong with a row (a bad
    value, a line that is not CSV, a field too long) spoils that row only. A clip listed twice is
    a problem the second time.
    """
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        raise MetadataError(f"{where}: its header is not CSV ({err})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise MetadataError(f"{where}: no column {', '.join(missing)} (expected the header {','.join(COLUMNS)})")
    rows: list[ClipRow] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    number = 0
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # e.g. a field beyond csv's limit: this row is lost, the rest is read
            number += 1
            problems.append(RowProblem(number, dict.fromkeys(COLUMNS, ""), f"not a CSV row ({err})"))
            continue
        number += 1
        fields = {c: (raw.get(c) or "").strip() for c in COLUMNS}
        kept = {c: v if len(v) <= KEPT else v[: KEPT - 3] + "..." for c, v in fields.items()}
        try:
            clip = _parse_row(number, fields, raw)
        except Exception as err:  # every way a row can be wrong is that row's problem, never the run's
            reason = str(err) if isinstance(err, ValueError) else f"{err.__class__.__name__}: {err}"
            problems.append(RowProblem(number, kept, reason))
            continue
        if clip.path in seen:
            problems.append(RowProblem(number, kept, f"duplicate of row {seen[clip.path]} ({clip.path})"))
            continue
        seen[clip.path] = number
        rows.append(clip)
    return rows, problems


def _parse_row(number: int, fields: dict[str, str], raw: dict) -> ClipRow:
    if None in raw:  # csv's key for values beyond the header
        raise MetadataError(f"{len(COLUMNS) + len(raw[None])} fields, the header has {len(COLUMNS)}")
    empty = [c for c in COLUMNS if not fields[c]]
    if empty:
        raise MetadataError(f"missing {', '.join(empty)}")
    video_id = fields["video_id"]
    if not _ID.fullmatch(video_id):
        raise MetadataError(
            f"video_id {shown(video_id)} is not a YouTube id (letters, digits, '-', '_'; at most {MAX_ID})"
        )
    start, end, width, height = (_integer(fields, c) for c in ("start", "end", "width", "height"))
    if end <= start:
        raise MetadataError(f"frame range start {start}, end {end}: needs 0 <= start < end")
    for column, value in (("width", width), ("height", height)):
        if value <= 0:
            raise MetadataError(f"{column} {value}: the source size must be positive")
    box = _BOX.fullmatch(fields["bbox"])
    if box is None:
        raise MetadataError(
            f"bbox {shown(fields['bbox'])} is not left-top-right-bottom (whole numbers of at most 9 digits)"
        )
    left, top, right, bottom = (int(v) for v in box.groups())
    if right <= left or bottom <= top:
        raise MetadataError(f"bbox {fields['bbox']}: needs right > left and bottom > top")
    fps = _fps(fields["fps"])
    if fields["partition"] not in PARTITIONS:
        raise MetadataError(f"partition {shown(fields['partition'])} is neither train nor test")
    return ClipRow(number, video_id, start, end, (left, top, right, bottom), fps, width, height, fields["partition"])


def _integer(fields: dict[str, str], column: str) -> int:
    """A whole number of plain ASCII digits (no sign, no '_', at most 9 digits)."""
    if not _UINT.fullmatch(fields[column]):
        raise MetadataError(f"{column} {shown(fields[column])} is not a whole number (plain digits 0-9, at most 9)")
    return int(fields[column])


def _fps(text: str) -> Fraction:
    """A frame rate: a decimal (``29.97``) or a ratio (``30000/1001``), positive and at most MAX_FPS."""
    match = _FPS.fullmatch(text)
    if match is None:
        raise MetadataError(
            f"fps {shown(text)} is not a number (a decimal such as 29.97, or a ratio such as 30000/1001)"
        )
    decimal, numerator, denominator = match.groups()
    if decimal is None and int(denominator) == 0:
        raise MetadataError(f"fps {text}: a ratio over 0")
    fps = Fraction(decimal) if decimal is not None else Fraction(int(numerator), int(denominator))
    if not 0 < fps <= MAX_FPS:
        raise MetadataError(f"fps {text} is not positive" if fps <= 0 else f"fps {text} is above {MAX_FPS}")
    return fps


def by_video(rows: list[ClipRow]) -> dict[str, list[ClipRow]]:
    """Rows grouped by source id, ids and rows in the order of the metadata."""
    out: dict[str, list[ClipRow]] = {}
    for row in rows:
        out.setdefault(row.video_id, []).append(row)
    return out
