"""Where frames come from: a video file, a folder of images, or a zip of images.

A source spec is a path: ``clip.mp4`` (any container FFmpeg reads), ``clip_frames/`` (a folder of
JPEG/PNG files, taken in natural name order), ``clip.zip`` (every image in the zip), or
``frames.zip::frames/clip/frames`` (the images under one folder inside a zip that holds many
videos, the layout researchers keep on Google Drive).

Image sources yield encoded bytes, so JPEGs that need no resizing are stored unchanged. Their
files are untrusted: ``info()`` reads every image's header first and refuses mixed sizes, images
that are not images, and files or zip members too large to be a frame (see the caps in
:mod:`densemotion.frames.store`), before anything is decoded or written.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from densemotion import video
from densemotion.atomic import listing_sha256, sha256_file
from densemotion.errors import DensemotionError
from densemotion.frames.store import (
    MAX_FRAME_PIXELS,
    MAX_IMAGE_BYTES,
    ZIP_READ_ERRORS,
    check_member,
    check_no_overlap,
    image_size,
    read_member,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (
    ".mp4",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".ogv",
    ".3gp",
    ".ts",
)
ZIP_SEPARATOR = "::"


class SourceError(DensemotionError):
    """A source that cannot give frames (missing, empty, mixed sizes, unknown kind)."""


# a decoded RGB frame (H, W, 3) uint8, decoded YUV 4:2:0 planes, or encoded image bytes
Payload = np.ndarray | video.Yuv420 | bytes


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # "video", "folder" or "zip"
    width: int
    height: int
    fps: float | None  # None for image sequences


def zip_image_names(names: list[str]) -> list[str]:
    """The members of a zip that are images, leaving out macOS metadata (``__MACOSX/``, ``._*``)."""
    return [
        n
        for n in names
        if n.lower().endswith(IMAGE_EXTENSIONS)
        and not n.startswith("__MACOSX/")
        and not n.rpartition("/")[2].startswith(".")
    ]


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_keeper(src_fps: float | None, fps: float | None, where: str) -> Callable[[int], bool]:
    """A predicate on source frame indices that subsamples ``src_fps`` to ``fps``.

    Keeps source frame i when it is the first at or after output time k / fps, so output frame k
    shows the video at time ~k / fps whatever the source rate. Never upsamples.
    """
    if fps is None:
        return lambda i: True
    if not src_fps:
        raise SourceError(
            f"{where}: frames.fps is set but the source has no frame rate "
            "(image sequences: set frames.image_fps to their rate)"
        )
    if fps >= src_fps:
        return lambda i: True
    step = src_fps / fps
    state = {"next": 0.0}

    def keep(i: int) -> bool:
        if i + 1e-6 >= state["next"]:
            state["next"] += step
            return True
        return False

    return keep


class VideoSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        # lines on what decoded short of the container's stated length, once frames() has run out
        self.warnings: list[str] = []

    def info(self) -> SourceInfo:
        meta = video.probe(self.path)
        return SourceInfo("video", meta.width, meta.height, meta.fps or None)

    def checksum(self) -> str:
        return sha256_file(self.path)

    def frames(self) -> Iterator[tuple[int, Payload]]:
        return video.iter_frames(self.path, planes=True, warn=self.warnings.append)


class _ImageSequence:
    """Shared logic of folder and zip sources: ordered names, sizes, checksums."""

    kind = "images"

    def __init__(self, where: str, names: list[str], image_fps: float | None) -> None:
        if not names:
            raise SourceError(f"{where}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
        self.where = where
        self.names = sorted(names, key=_natural_key)
        self.image_fps = image_fps

    def _read(self, name: str) -> bytes:
        raise NotImplementedError

    def _size(self, name: str) -> tuple[int, int]:
        """(W, H) of one image, as decoded, from its header (see :func:`image_size`)."""
        raise NotImplementedError

    def info(self) -> SourceInfo:
        """The size every image has; refused when one differs (the promise of one size per video).

        Every header is read here, before anything is decoded or written: resizing a stray
        thumbnail's size onto a whole video, or the video onto it, would pass unnoticed.
        """
        first = self._size(self.names[0])
        if first[0] * first[1] > MAX_FRAME_PIXELS:
            raise SourceError(
                f"{self.name_of(0)}: {first[0]}x{first[1]} is {first[0] * first[1]} pixels, over the cap of "
                f"{MAX_FRAME_PIXELS} for one frame"
            )
        for index, name in enumerate(self.names[1:], 1):
            size = self._size(name)
            if size != first:
                raise SourceError(
                    f"{self.name_of(index)}: {size[0]}x{size[1]} image among frames of {first[0]}x{first[1]} "
                    f"(from {self.names[0]}); all frames of a video must have one size"
                )
        return SourceInfo(self.kind, first[0], first[1], self.image_fps)

    def frames(self) -> Iterator[tuple[int, Payload]]:
        for i, name in enumerate(self.names):
            yield i, self._read(name)

    def name_of(self, index: int) -> str:
        return f"{self.where}/{self.names[index]}"

    def _listing_digest(self) -> str:
        """The digest of every image's name and bytes: the same for a folder and its zip."""
        return listing_sha256((name, hashlib.sha256(self._read(name)).hexdigest()) for name in self.names)


class FolderSource(_ImageSequence):
    kind = "folder"

    def __init__(self, path: Path, image_fps: float | None) -> None:
        self.path = path
        names = [p.name for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        super().__init__(str(path), names, image_fps)

    def _open(self, name: str) -> tuple[BinaryIO, str]:
        """The open file ``name`` and its description for errors, refused when too large to be a frame."""
        where = f"{self.where}/{name}"
        try:
            f = open(self.path / name, "rb")  # noqa: SIM115 (closed by the caller's with)
            size = os.fstat(f.fileno()).st_size
        except OSError as err:
            raise SourceError(f"{where}: unreadable ({err.strerror or err})") from None
        if size == 0 or size > MAX_IMAGE_BYTES:
            f.close()
            why = "an empty file" if size == 0 else f"{size} bytes, over the cap of {MAX_IMAGE_BYTES} bytes"
            raise SourceError(f"{where}: {why}, not a frame image")
        return f, where

    def _read(self, name: str) -> bytes:
        f, where = self._open(name)
        with f:
            try:
                data = f.read(MAX_IMAGE_BYTES + 1)  # bounded: the file may grow after the check
            except OSError as err:
                raise SourceError(f"{where}: unreadable ({err.strerror or err})") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise SourceError(f"{where}: grew over the cap of {MAX_IMAGE_BYTES} bytes for one frame while read")
        return data

    def _size(self, name: str) -> tuple[int, int]:
        f, where = self._open(name)
        with f:
            try:
                return image_size(f)
            except ValueError as err:
                raise SourceError(f"{where}: {err}") from None

    def checksum(self) -> str:
        return self._listing_digest()


class ZipSource(_ImageSequence):
    kind = "zip"

    def __init__(self, path: Path, inner: str, image_fps: float | None) -> None:
        self.path = path
        self.inner = inner.strip("/")
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise SourceError(f"{path}: not a readable zip ({err})") from None
        prefix = f"{self.inner}/" if self.inner else ""
        images = zip_image_names(self._zip.namelist())
        names = [n[len(prefix) :] for n in images if n.startswith(prefix) and "/" not in n[len(prefix) :]]
        if not names and not self.inner:  # a zip of one video: take its one folder of images
            names = images
            folders = sorted({n.rpartition("/")[0] for n in names})
            if len(folders) > 1:
                raise SourceError(
                    f"{path}: images in {len(folders)} folders ({', '.join(folders[:3])}, ...), the frames "
                    f"of several videos; pick one as {path}{ZIP_SEPARATOR}FOLDER (or list them all with "
                    "`densemotion use-videos` on the zip's folder)"
                )
        where = f"{path}{ZIP_SEPARATOR}{self.inner}" if self.inner else str(path)
        super().__init__(where, names, image_fps)
        # every member's declared size, checked before any is inflated
        wanted = {self._full(n) for n in self.names}
        members = [i for i in self._zip.infolist() if i.filename in wanted]
        for info in members:
            check_member(info, f"{self.where}/{info.filename[len(prefix) :]}", MAX_IMAGE_BYTES, SourceError)
        check_no_overlap(members, path, SourceError)

    def _full(self, name: str) -> str:
        return f"{self.inner}/{name}" if self.inner else name

    def _read(self, name: str) -> bytes:
        info = self._zip.getinfo(self._full(name))
        return read_member(self._zip, info, f"{self.where}/{name}", MAX_IMAGE_BYTES, SourceError)

    def _size(self, name: str) -> tuple[int, int]:
        where = f"{self.where}/{name}"
        info = self._zip.getinfo(self._full(name))
        check_member(info, where, MAX_IMAGE_BYTES, SourceError)
        if info.file_size == 0:
            raise SourceError(f"{where}: an empty file, not an image")
        try:
            with self._zip.open(info) as f:  # PIL reads the header only: the member is never inflated whole
                return image_size(f)
        except ValueError as err:
            raise SourceError(f"{where}: {err}") from None
        except ZIP_READ_ERRORS as err:
            raise SourceError(f"{where}: unreadable ({err})") from None

    def checksum(self) -> str:
        # one video of a zip of many: its own images only (hashing a multi-GB zip per video would not scale)
        return self._listing_digest() if self.inner else sha256_file(self.path)


FrameSource = VideoSource | FolderSource | ZipSource


def open_source(spec: str | Path, image_fps: float | None = None) -> FrameSource:
    """Open a source spec (see module docstring); errors name the path."""
    spec = str(spec)
    path_part, _, inner = spec.partition(ZIP_SEPARATOR)
    path = Path(path_part)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return FolderSource(path, image_fps)
    if path.suffix.lower() == ".zip" or inner:
        return ZipSource(path, inner, image_fps)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise SourceError(f"{path}: a single image is not a video (point at its folder instead)")
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        # FFmpeg "decodes" even a text file (as ANSI art), so the suffix decides
        raise SourceError(f"{path}: not a video ({', '.join(VIDEO_EXTENSIONS)}), a frame folder or a zip of frames")
    return VideoSource(path)
