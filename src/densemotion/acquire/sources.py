"""Where source videos come from: one class per kind, behind :class:`Source`.

``YtDlpSource`` downloads from YouTube with yt-dlp (the optional extra ``densemotion[acquire]``),
as the published procedure did with youtube-dl; ``LocalSource`` reads ``<video_id>.<ext>`` from a
folder (videos obtained elsewhere, and the tests). Sources are picklable: worker processes use them.

A source that downloads (``downloads = True``) is given, for each id, a fresh empty folder that the
run created for it (``tempfile.mkdtemp`` in ``--download-dir``) and that the run removes, with all
it holds, once that id is done (or its worker died or timed out). The source writes only there, and
the path it returns must lie inside it: a download reported anywhere else is an error of that id,
never read and never removed. Nothing else in ``--download-dir`` is ever deleted or replaced.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from densemotion.frames.sources import VIDEO_EXTENSIONS

# yt-dlp's format choice: the best video-only MP4 stream, else any best stream; audio is never needed.
# (The published procedure asked youtube-dl for `best/mp4`, which today tops out at 360p.)
YTDLP_FORMAT = "bestvideo[ext=mp4]/bestvideo/best"
YOUTUBE_URL = "https://www.youtube.com/watch?v={}"
SOCKET_TIMEOUT = 60  # seconds yt-dlp waits on a silent connection (the whole id has --timeout)


class SourceUnavailable(Exception):
    """The source video of an id cannot be had (gone, private, blocked, not in the folder)."""


class SourceError(Exception):
    """The source misbehaved for an id (e.g. a download reported outside its folder): the id fails."""


class Source(Protocol):
    downloads: ClassVar[bool]  # True: fetch writes into the fresh folder it is given

    def fetch(self, video_id: str, folder: Path) -> Path:
        """The path of ``video_id``'s video. ``folder``: for a source that downloads, a fresh empty
        folder of this run for this id (removed with its content afterwards), where the download
        must land; else the work folder, unused. Raises :class:`SourceUnavailable` with the reason
        when the video cannot be had."""
        ...

    def release(self, video_id: str, path: Path, folder: Path) -> None:
        """Done with a fetched video (before ``folder`` is removed): a source may keep it elsewhere."""
        ...

    def identity(self) -> str:
        """What the videos came from, for ``manifest.json`` (no machine path)."""
        ...


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path``, symlinks resolved, lies inside ``folder`` (and is not ``folder``)."""
    try:
        real, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return real != root and real.is_relative_to(root)


@dataclass(frozen=True)
class LocalSource:
    """Videos already on disk: ``folder/<video_id>.mp4`` (or another video extension)."""

    folder: Path
    downloads: ClassVar[bool] = False

    def fetch(self, video_id: str, folder: Path) -> Path:
        for ext in VIDEO_EXTENSIONS:
            path = self.folder / f"{video_id}{ext}"
            if path.is_file():
                return path
        raise SourceUnavailable(f"no {video_id}.mp4 (or other video file) in --source-dir")

    def release(self, video_id: str, path: Path, folder: Path) -> None:
        pass  # not ours to delete

    def identity(self) -> str:
        return "local folder (--source-dir)"


@dataclass(frozen=True)
class YtDlpSource:
    """YouTube through yt-dlp, each download into the fresh folder the run gives it.

    With ``keep``, a finished download is kept as ``<download dir>/<video_id>.<ext>`` (when that
    name is free) and a later run with ``keep`` uses it instead of downloading; acquire never
    deletes those. Without ``keep``, files already in the download folder are ignored."""

    keep: bool = False
    downloads: ClassVar[bool] = True

    @staticmethod
    def check_installed() -> None:
        """Fail at once, with the remedy, when yt-dlp is missing (rather than once per id)."""
        try:
            import yt_dlp  # noqa: F401
        except ImportError:
            raise ImportError(
                "yt-dlp is not installed: pip install 'densemotion[acquire]' (or give --source-dir with the videos)"
            ) from None

    def identity(self) -> str:
        try:
            import yt_dlp
        except ImportError:
            return "yt-dlp (not installed)"
        version = getattr(getattr(yt_dlp, "version", None), "__version__", None)
        return f"yt-dlp {version}" if isinstance(version, str) else "yt-dlp (version unknown)"

    def fetch(self, video_id: str, folder: Path) -> Path:
        import yt_dlp

        if self.keep and (kept := _kept(video_id, folder.parent)) is not None:
            return kept
        options = {
            "format": YTDLP_FORMAT,
            "outtmpl": str(folder / f"{video_id}.%(ext)s"),  # yt-dlp writes .part, renames when complete
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "retries": 3,
            "socket_timeout": SOCKET_TIMEOUT,
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(YOUTUBE_URL.format(video_id), download=True)
                path = Path(ydl.prepare_filename(info))
        except yt_dlp.utils.DownloadError as err:
            raise SourceUnavailable(" ".join(str(err).replace("ERROR: ", "").split())) from None
        if not is_inside(path, folder):  # never read, never removed: not ours
            raise SourceError(f"yt-dlp reported the download of {video_id} outside its download folder: not used")
        if not path.is_file():
            raise SourceUnavailable(f"yt-dlp reported {path.name} but wrote no such file")
        return path

    def release(self, video_id: str, path: Path, folder: Path) -> None:
        if not self.keep or not is_inside(path, folder) or path.is_symlink():
            return  # the run removes the folder, and the download with it
        target = folder.parent / f"{video_id}{path.suffix.lower()}"
        if not os.path.lexists(target):  # never replaces a file already there
            with contextlib.suppress(OSError):  # not kept: downloaded again next time
                os.rename(path, target)


def _kept(video_id: str, download_dir: Path) -> Path | None:
    """A download an earlier run kept (``--keep-downloads``) in ``download_dir``."""
    for ext in VIDEO_EXTENSIONS:
        path = download_dir / f"{video_id}{ext}"
        if path.is_file():
            return path
    return None
