"""Per-video frame archives: one uncompressed zip of JPEGs per video, randomly accessible.

Why a zip: DVC remotes on Google Drive choke on hundreds of thousands of small files, so each
video's frames travel as one file; ZIP_STORED keeps the JPEG bytes as they are (overhead about
100 bytes per frame), the zip's central directory is the index that gives frame i without
reading the others, and ``unzip -l`` / any archive tool can inspect it.

Layout (schema 1)::

    <video>.zip
      frames/000000.jpg ... frames/NNNNNN.jpg   frame i of the archive, RGB JPEG
      meta.json                                 written last (see ``FrameArchiveWriter.close``)

``meta.json`` keys: schema_version, video, source, source_kind, source_sha256, frame_count, fps
(null when unknown), width, height, source_width, source_height, source_fps, source_indices
(index in the decoded source of each stored frame), jpeg_quality, passthrough (JPEG bytes copied
from the source without re-encoding).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from densemotion.video import Yuv420

SCHEMA_VERSION = 1
META_NAME = "meta.json"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so identical input gives identical bytes


class FrameArchiveError(ValueError):
    """A frame archive that is missing, truncated, of another schema or inconsistent."""


def frame_name(index: int) -> str:
    return f"frames/{index:06d}.jpg"


class FrameArchiveWriter:
    """Append JPEG-encoded frames in order, then ``close(meta)`` writes meta.json.

    Write to a temporary path (see :func:`densemotion.atomic.atomic_path`); the archive is only
    complete, and only readable by :class:`FrameArchive`, once meta.json is in it.
    """

    def __init__(self, path: str | Path) -> None:
        self._zip = zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.count = 0

    def add(self, jpeg: bytes) -> None:
        info = zipfile.ZipInfo(frame_name(self.count), date_time=_FIXED_TIME)
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, jpeg)
        self.count += 1

    def close(self, meta: dict) -> None:
        meta = {**meta, "schema_version": SCHEMA_VERSION, "frame_count": self.count}
        info = zipfile.ZipInfo(META_NAME, date_time=_FIXED_TIME)
        info.external_attr = 0o644 << 16
        self._zip.writestr(info, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._zip.close()

    def abort(self) -> None:
        self._zip.close()


def decode_jpeg(data: bytes, where: str = "") -> np.ndarray:
    """JPEG (or any image) bytes -> (H, W, 3) uint8 RGB."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameArchiveError(f"{where}: not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameArchive:
    """Read frame i of a per-video archive at random; ``meta`` describes where it came from."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameArchiveError(f"{self.path}: frame archive not found")
        try:
            self._zip = zipfile.ZipFile(self.path, mode="r")
        except (zipfile.BadZipFile, OSError) as err:
            raise FrameArchiveError(
                f"{self.path}: not a complete frame archive ({err}); delete it and re-run the frames stage"
            ) from None
        self.meta = self._read_meta()
        self._sha256: str | None = None

    def _read_meta(self) -> dict:
        try:
            meta = json.loads(self._zip.read(META_NAME))
        except KeyError:
            raise FrameArchiveError(f"{self.path}: has no {META_NAME} (interrupted write?)") from None
        except (zipfile.BadZipFile, ValueError) as err:
            raise FrameArchiveError(f"{self.path}: unreadable {META_NAME} ({err})") from None
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FrameArchiveError(
                f"{self.path}: frame archive schema {version!r}, this code reads {SCHEMA_VERSION}; "
                "re-run the frames stage"
            )
        names = {n for n in self._zip.namelist() if n.startswith("frames/")}
        if len(names) != meta["frame_count"]:
            raise FrameArchiveError(
                f"{self.path}: meta says {meta['frame_count']} frames but the archive holds {len(names)}"
            )
        return meta

    def __len__(self) -> int:
        return int(self.meta["frame_count"])

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the stored frames."""
        return int(self.meta["height"]), int(self.meta["width"])

    @property
    def sha256(self) -> str:
        """Checksum of the archive file (what downstream stages record as their input)."""
        if self._sha256 is None:
            from densemotion.atomic import sha256_file

            self._sha256 = sha256_file(self.path)
        return self._sha256

    def read_bytes(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: frame {index} out of range (0..{len(self) - 1})")
        try:
            return self._zip.read(frame_name(index))
        except (zipfile.BadZipFile, OSError) as err:
            raise FrameArchiveError(f"{self.path}: frame {index} unreadable ({err})") from None

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB."""
        return decode_jpeg(self.read_bytes(index), f"{self.path}[{index}]")

    def read_range(self, start: int, count: int) -> np.ndarray:
        """Frames start .. start+count-1 as (count, H, W, 3) uint8 RGB."""
        return np.stack([self.read(i) for i in range(start, start + count)])

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> FrameArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # reopen in each DataLoader worker instead of sharing one file handle across processes
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        FrameArchive.__init__(self, state["path"])


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> baseline JPEG bytes (libjpeg-turbo through OpenCV; releases the GIL)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_jpeg_planes(yuv: Yuv420, quality: int) -> bytes:
    """Full-range YUV 4:2:0 planes -> JPEG bytes with no colour conversion (libjpeg-turbo)."""
    import simplejpeg

    return simplejpeg.encode_jpeg_yuv_planes(
        np.ascontiguousarray(yuv.y), np.ascontiguousarray(yuv.u), np.ascontiguousarray(yuv.v), quality=quality
    )


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(W, H) of JPEG/PNG bytes without decoding pixels, or None when not recognisable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:
        return None
