"""Where source videos come from: one class per kind, behind :class:`Source`.

``YtDlpSource`` downloads from YouTube with yt-dlp (the optional extra ``densemotion[acquire]``),
as the published procedure did with youtube-dl; ``LocalSource`` reads ``<video_id>.<ext>`` from a
folder (videos obtained elsewhere, and the tests). Sources are picklable: worker processes use them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from densemotion.frames.sources import VIDEO_EXTENSIONS

# yt-dlp's format choice: the best video-only MP4 stream, else any best stream; audio is never needed.
# (The published procedure asked youtube-dl for `best/mp4`, which today tops out at 360p.)
YTDLP_FORMAT = "bestvideo[ext=mp4]/bestvideo/best"
YOUTUBE_URL = "https://www.youtube.com/watch?v={}"


class SourceUnavailable(Exception):
    """The source video of an id cannot be had (gone, private, blocked, not in the folder)."""


class Source(Protocol):
    def fetch(self, video_id: str, work_dir: Path) -> Path:
        """The path of ``video_id``'s video, downloaded into ``work_dir`` if need be; raises
        :class:`SourceUnavailable` with the reason when it cannot be had."""
        ...

    def release(self, path: Path) -> None:
        """Done with a fetched video (a download may be deleted)."""
        ...


@dataclass(frozen=True)
class LocalSource:
    """Videos already on disk: ``folder/<video_id>.mp4`` (or another video extension)."""

    folder: Path

    def fetch(self, video_id: str, work_dir: Path) -> Path:
        for ext in VIDEO_EXTENSIONS:
            path = self.folder / f"{video_id}{ext}"
            if path.is_file():
                return path
        raise SourceUnavailable(f"no {video_id}.mp4 (or other video file) in {self.folder}")

    def release(self, path: Path) -> None:
        pass  # not ours to delete


@dataclass(frozen=True)
class YtDlpSource:
    """YouTube through yt-dlp; downloads land in ``work_dir`` and are deleted after use unless ``keep``."""

    keep: bool = False

    @staticmethod
    def check_installed() -> None:
        """Fail at once, with the remedy, when yt-dlp is missing (rather than once per id)."""
        try:
            import yt_dlp  # noqa: F401
        except ImportError:
            raise ImportError(
                "yt-dlp is not installed: pip install 'densemotion[acquire]' (or give --source-dir with the videos)"
            ) from None

    def fetch(self, video_id: str, work_dir: Path) -> Path:
        import yt_dlp

        work_dir.mkdir(parents=True, exist_ok=True)
        done = sorted(p for p in work_dir.glob(f"{video_id}.*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        if done:  # a kept (or interrupted run's finished) download
            return done[0]
        options = {
            "format": YTDLP_FORMAT,
            "outtmpl": str(work_dir / f"{video_id}.%(ext)s"),  # yt-dlp writes .part, renames when complete
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "retries": 3,
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(YOUTUBE_URL.format(video_id), download=True)
                path = Path(ydl.prepare_filename(info))
        except yt_dlp.utils.DownloadError as err:
            raise SourceUnavailable(" ".join(str(err).replace("ERROR: ", "").split())) from None
        if not path.is_file():
            raise SourceUnavailable(f"yt-dlp reported {path.name} but wrote no such file")
        return path

    def release(self, path: Path) -> None:
        if not self.keep:
            with contextlib.suppress(OSError):
                path.unlink()
