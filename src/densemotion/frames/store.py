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
from the source without re-encoding), cuts (archive frames that start a new shot, increasing;
absent in archives written before cut detection: read as none) and cut_threshold (the
``frames.cut_threshold`` they were found with; null: detection was off).

Reading treats an archive as untrusted (it may come from a shared remote): meta.json and every
member are checked against the caps below before being inflated, and the meta keys readers use
are type-checked, so a damaged or forged archive is one FrameArchiveError naming it.
"""

from __future__ import annotations

import io
import json
import math
import reprlib
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING

import cv2
import numpy as np

from densemotion.errors import DensemotionError

if TYPE_CHECKING:
    from densemotion.video import Yuv420

SCHEMA_VERSION = 1
META_NAME = "meta.json"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps fixed so identical input gives identical bytes

# Caps on what untrusted zips and images may make us allocate (a 5 MB zip can declare terabytes).
MAX_IMAGE_BYTES = 64 * 2**20  # one frame file: a 4K PNG is ~25 MB, an 8K one ~50-80 MB
MAX_META_BYTES = 32 * 2**20  # meta.json: ~12 bytes per frame, so ~2.8 million frames
MAX_FRAME_PIXELS = 2**26  # 8192x8192 (8K UHD is 7680x4320): at most 192 MiB once decoded to RGB
MAX_INFLATE_RATIO = 200  # JPEG/PNG barely deflate (~1:1); zeros deflate ~1000:1
_RATIO_FREE_BYTES = 2**20  # members this small may inflate at any ratio: they cannot hurt
# what reading a damaged or hostile member raises: CRC/format, truncation, password, method, deflate data
ZIP_READ_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error)


class FrameArchiveError(DensemotionError):
    """A frame archive that is missing, truncated, of another schema or inconsistent."""


def is_frame_archive(path: Path) -> bool:
    """A zip holding a meta.json: what the frames stage writes (and may replace)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "meta.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def frame_name(index: int) -> str:
    return f"frames/{index:06d}.jpg"


def check_member(info: zipfile.ZipInfo, where: str, cap: int, error: type[ValueError]) -> None:
    """Refuse a zip member from its declared sizes, before inflating it: over ``cap`` bytes, or
    inflating more than MAX_INFLATE_RATIO times (a zip bomb). ``where`` names the member."""
    if info.flag_bits & 0x1:
        raise error(f"{where}: encrypted; frames must be readable without a password")
    if info.file_size > cap:
        raise error(f"{where}: declares {info.file_size} bytes uncompressed, over the cap of {cap} bytes")
    if info.file_size > _RATIO_FREE_BYTES and info.file_size > MAX_INFLATE_RATIO * info.compress_size:
        raise error(
            f"{where}: declares {info.file_size} bytes from {info.compress_size} compressed, more than "
            f"{MAX_INFLATE_RATIO}:1 (a zip bomb?); store images uncompressed (zip -0) or use a folder"
        )


def check_no_overlap(infos: list[zipfile.ZipInfo], path: Path, error: type[ValueError]) -> None:
    """Refuse members whose compressed data add up to more than the zip file ``path`` itself: entries
    that share their bytes, the overlapping-entries zip bomb (Python 3.11's zipfile lets it pass)."""
    total = sum(i.compress_size for i in infos)
    size = path.stat().st_size
    if total > size:
        raise error(
            f"{path}: its members hold {total} compressed bytes in a {size}-byte zip, so they overlap "
            "(a zip bomb?); re-create the zip"
        )


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, cap: int, error: type[ValueError]) -> bytes:
    """The bytes of one zip member, refused (``error`` naming ``where``) when too large or unreadable.

    Declared sizes are checked first, then at most ``cap + 1`` bytes are inflated, so a member
    lying about its size cannot exceed the cap either.
    """
    check_member(info, where, cap, error)
    try:
        with zf.open(info) as f:
            data = f.read(cap + 1)
    except ZIP_READ_ERRORS as err:
        raise error(f"{where}: unreadable ({err})") from None
    if len(data) > cap:
        raise error(f"{where}: inflates to more than {cap} bytes (declared {info.file_size}); a zip bomb?")
    return data


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


def decode_jpeg(data: bytes, where: str = "", error: type[ValueError] = FrameArchiveError) -> np.ndarray:
    """JPEG (or any image) bytes -> (H, W, 3) uint8 RGB; ``error`` naming ``where`` when undecodable."""
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:  # OpenCV asserts instead of returning None on an empty buffer
        bgr = None
    if bgr is None:
        raise error(f"{where}: not a decodable image (corrupt or truncated)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class FrameArchive:
    """Read frame i of a per-video archive at random; ``meta`` describes where it came from."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameArchiveError(f"{self.path}: frame archive not found")
        try:
            self._zip = zipfile.ZipFile(self.path, mode="r")
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise FrameArchiveError(
                f"{self.path}: not a complete frame archive ({err}); delete it and re-run the frames stage"
            ) from None
        try:
            self.meta = self._read_meta()
            self._check_members(self.meta["frame_count"])
        except BaseException:
            self._zip.close()
            raise
        self._sha256: str | None = None

    def _read_meta(self) -> dict:
        """meta.json, read as untrusted: bounded in size, and every key the readers use checked."""
        try:
            info = self._zip.getinfo(META_NAME)
        except KeyError:
            raise FrameArchiveError(f"{self.path}: has no {META_NAME} (interrupted write?)") from None
        raw = read_member(self._zip, info, f"{self.path}: {META_NAME}", MAX_META_BYTES, FrameArchiveError)
        try:
            meta = json.loads(raw)
        except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than Python's stack
            raise FrameArchiveError(f"{self.path}: unreadable {META_NAME} ({err})") from None
        if not isinstance(meta, dict):
            raise FrameArchiveError(f"{self.path}: {META_NAME} is not a JSON object")
        version = meta.get("schema_version")
        if type(version) is not int or version != SCHEMA_VERSION:  # JSON true == 1 in Python
            raise FrameArchiveError(
                f"{self.path}: frame archive schema {reprlib.repr(version)}, this code reads {SCHEMA_VERSION}; "
                "re-run the frames stage"
            )
        count = self._whole(meta, "frame_count", 0)
        width, height = self._whole(meta, "width", 1), self._whole(meta, "height", 1)
        if width * height > MAX_FRAME_PIXELS:
            raise FrameArchiveError(
                f"{self.path}: {META_NAME} says {width}x{height} frames, over the cap of {MAX_FRAME_PIXELS} pixels"
            )
        indices = meta.get("source_indices")
        if not (
            isinstance(indices, list)
            and len(indices) == count
            and all(_is_whole(i, 0) for i in indices)
            and all(a < b for a, b in zip(indices, indices[1:], strict=False))
        ):
            raise FrameArchiveError(
                f"{self.path}: {META_NAME} source_indices must list {count} increasing frame indices "
                "(whole numbers >= 0)"
            )
        cuts = meta.get("cuts", [])
        if not (
            isinstance(cuts, list)
            and all(_is_whole(c, 1) and c < count for c in cuts)
            and all(a < b for a, b in zip(cuts, cuts[1:], strict=False))
        ):
            raise FrameArchiveError(
                f"{self.path}: {META_NAME} cuts must list increasing frame indices in 1..{count - 1}, "
                f"not {reprlib.repr(cuts)}"
            )
        if not isinstance(meta.get("video", ""), str):
            raise FrameArchiveError(
                f"{self.path}: {META_NAME} video must be a string, not {reprlib.repr(meta['video'])}"
            )
        for key in ("fps", "source_fps"):  # null: unknown (image sequences); absent in hand-made archives
            fps = meta.get(key)
            if fps is not None and not (type(fps) in (int, float) and math.isfinite(fps) and fps > 0):
                raise FrameArchiveError(
                    f"{self.path}: {META_NAME} {key} must be a positive number or null, not {reprlib.repr(fps)}"
                )
        return meta

    def _whole(self, meta: dict, key: str, low: int) -> int:
        """meta[key], refused unless a whole number >= ``low`` (JSON true is no frame count)."""
        if key not in meta:
            raise FrameArchiveError(f"{self.path}: {META_NAME} has no {key}")
        value = meta[key]
        if not _is_whole(value, low):
            raise FrameArchiveError(
                f"{self.path}: {META_NAME} {key} must be a whole number >= {low}, not {reprlib.repr(value)}"
            )
        return value

    def _check_members(self, count: int) -> None:
        """Exactly frames/000000.jpg .. of meta's count, none declaring a bomb's size, none overlapping."""
        infos = [i for i in self._zip.infolist() if i.filename.startswith("frames/")]
        names = {i.filename for i in infos}
        if len(names) != count:
            raise FrameArchiveError(f"{self.path}: meta says {count} frames but the archive holds {len(names)}")
        missing = next((frame_name(i) for i in range(count) if frame_name(i) not in names), None)
        if missing is not None:
            raise FrameArchiveError(f"{self.path}: has no {missing} though meta says {count} frames")
        for info in infos:
            check_member(info, f"{self.path}: {info.filename}", MAX_IMAGE_BYTES, FrameArchiveError)
        check_no_overlap(self._zip.infolist(), self.path, FrameArchiveError)

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
        info = self._zip.getinfo(frame_name(index))  # there: checked on opening
        return read_member(self._zip, info, f"{self.path}: frame {index}", MAX_IMAGE_BYTES, FrameArchiveError)

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as (H, W, 3) uint8 RGB, of the size meta.json says (checked before decoding)."""
        data = self.read_bytes(index)
        where = f"{self.path}: frame {index}"
        height, width = self.size
        try:
            size = image_size(data)
        except ValueError as err:
            raise FrameArchiveError(f"{where}: {err}") from None
        rgb = decode_jpeg(data, where) if size == (width, height) else None
        if rgb is None or rgb.shape[:2] != (height, width):
            got = size if rgb is None else (rgb.shape[1], rgb.shape[0])
            raise FrameArchiveError(
                f"{where} is {got[0]}x{got[1]}, but {META_NAME} says {width}x{height}; re-run the frames stage"
            )
        return rgb

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
        raise FrameArchiveError("JPEG encoding failed")
    return buf.tobytes()


def encode_jpeg_planes(yuv: Yuv420, quality: int) -> bytes:
    """Full-range YUV 4:2:0 planes -> JPEG bytes with no colour conversion (libjpeg-turbo)."""
    import simplejpeg

    return simplejpeg.encode_jpeg_yuv_planes(
        np.ascontiguousarray(yuv.y), np.ascontiguousarray(yuv.u), np.ascontiguousarray(yuv.v), quality=quality
    )


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _is_whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def image_size(data: bytes | IO[bytes]) -> tuple[int, int]:
    """(W, H) of image bytes or an open image file as OpenCV decodes it, read from the header alone.

    OpenCV applies an EXIF rotation (phones write them), so a 90-degree tag swaps W and H. Raises
    ValueError saying why for bytes that are no image (empty, unknown, corrupt header, or more
    pixels than PIL's decompression-bomb limit).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # PIL's bomb warning (between its limit and twice it): callers bound pixels
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        with im:
            width, height = im.size
            exif = im.info.get("exif")  # JPEG APP1 or a PNG eXIf chunk before the pixels; never decodes
    except Image.DecompressionBombError as err:
        raise FrameArchiveError(f"too many pixels for an image ({err})") from None
    except UnidentifiedImageError:
        raise FrameArchiveError(
            "not a readable image (empty, of an unknown format, or with a corrupt header)"
        ) from None
    except Exception as err:  # PIL raises SyntaxError, struct.error, EOFError, ... on broken headers
        kind = "zlib.error" if isinstance(err, zlib.error) else type(err).__name__  # zlib's is just "error"
        raise FrameArchiveError(f"not a readable image ({kind}: {err})") from None
    if isinstance(exif, bytes) and _exif_orientation(exif) in (5, 6, 7, 8):  # transposed or rotated 90
        return height, width
    return width, height


def _exif_orientation(raw: bytes) -> int:
    """The EXIF orientation tag (1 = upright) of raw EXIF bytes; 1 when unreadable."""
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(raw)
        return int(exif.get(0x0112, 1))
    except Exception:  # a malformed EXIF block: OpenCV ignores it as well
        return 1
