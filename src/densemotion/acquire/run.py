"""One acquisition: every clip row of a metadata file, source by source, recorded in the manifest.

Source ids are independent. With ``jobs`` > 1 each id runs in a worker process of its own (at most
``jobs`` at once), which fetches its video once and cuts all its clips in one pass; with ``jobs``
= 1 the ids run in this process. The run is resumable: a clip the manifest lists as ok, at this
``size``, whose file is still there (same size, inside the output folder) is not redone, nor a row
past its source's end or with its box outside the frame, and an id whose rows are all done is not
fetched (the others are retried); the manifest is rewritten after every id, so a killed run loses
at most the ids in flight.

A problem of one row or id is recorded in its entries and the run goes on: a malformed row, an
unavailable source, a file that is not a video, a clip past the end, a full disk, and also

- an id that takes longer than ``timeout`` seconds (a stalled download): its worker, and whatever
  that worker started, is killed, and its rows are ``failed`` naming the timeout (with ``jobs`` = 1
  the timeout is an alarm in this process, which cannot stop a call into C that never returns);
- a worker process that dies (killed, out of memory): its own id's rows are ``failed``, naming
  the cause, and the next ids get new workers.

A source that downloads gets a fresh folder per id (``tempfile.mkdtemp`` in ``work_dir``), removed
with what it holds when the id is done, whatever its end; nothing else in ``work_dir`` is touched.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from tqdm import tqdm

from densemotion.acquire.clips import CRF, MAX_SIZE, cut_clips
from densemotion.acquire.manifest import (
    BAD_ROW,
    FAILED,
    MANIFEST,
    OK,
    PAST_END,
    UNAVAILABLE,
    Entry,
    clip_path,
    read_manifest,
    write_manifest,
    write_run_info,
)
from densemotion.acquire.metadata import ClipRow, RowProblem, by_video
from densemotion.acquire.sources import Source, SourceUnavailable
from densemotion.errors import DensemotionError

FINAL = (OK, PAST_END, BAD_ROW)  # outcomes a rerun keeps (see :func:`finished`)
DEFAULT_TIMEOUT = 1800.0  # seconds one id may take: its download and its clips
STARTUP_TIMEOUT = 300.0  # seconds a worker process may take to start (imports) before its id fails


class TimedOut(BaseException):
    """The alarm of an id run in this process: a BaseException, so that no handler of the id's own
    work (which turns every Exception into its rows' entries) takes it."""


def timed_out(timeout: float) -> str:
    return f"timed out after {timeout:g} s (--timeout): stopped, its clips not made"


def check_options(size: int, timeout: float) -> None:
    """ValueError naming the option when ``size`` or ``timeout`` is out of bounds."""
    if not 2 <= size <= MAX_SIZE or size % 2:
        raise DensemotionError(
            f"--size {size}: must be even, from 2 to {MAX_SIZE} (H.264 yuv420p; each frame of a clip is kept in "
            f"memory, {MAX_SIZE}x{MAX_SIZE} already takes 50 MB)"
        )
    if not (math.isfinite(timeout) and timeout > 0):
        raise DensemotionError(f"--timeout {timeout}: must be a positive number of seconds")


def acquire_video(
    video_id: str, rows: list[ClipRow], source: Source, out_dir: Path, size: int, folder: Path
) -> list[Entry]:
    """Fetch one source video (into ``folder``, see :class:`Source`) and cut its clips; every
    failure becomes the rows' entries."""
    try:
        video = source.fetch(video_id, folder)
    except SourceUnavailable as err:
        return [Entry.of(row, UNAVAILABLE, _no_paths(str(err), folder)) for row in rows]
    except Exception as err:  # whatever else a download raises: this id fails, the run goes on
        reason = _no_paths(f"fetching {video_id}: {err.__class__.__name__}: {err}", folder)
        return [Entry.of(row, FAILED, reason) for row in rows]
    try:
        return cut_clips(video, rows, out_dir, size)
    except Exception as err:  # an unforeseen error of this id's clips: recorded, the run goes on
        return [Entry.of(row, FAILED, _no_paths(f"{err.__class__.__name__}: {err}", folder)) for row in rows]
    finally:
        with contextlib.suppress(Exception):
            source.release(video_id, video, folder)


def _no_paths(text: str, folder: Path) -> str:
    """A reason without the download folder's path (random, and of this machine)."""
    for path in {str(folder.resolve()), str(folder)}:
        text = text.replace(f"{path}{os.sep}", "").replace(path, "the download folder")
    return text


def previous_entries(out_dir: Path) -> dict[str, Entry]:
    """Clip path -> its entry in the manifest a previous run left in ``out_dir`` (none: {}). An
    entry whose clip path is not inside ``out_dir`` (see :func:`clip_path`) is dropped: never trusted."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return {}
    return {e.clip: e for e in read_manifest(path) if e.clip and clip_path(out_dir, e.clip) is not None}


def finished(rows: list[ClipRow], previous: dict[str, Entry], out_dir: Path, size: int) -> dict[int, Entry]:
    """Row -> its previous entry, for the rows that need no work: clips listed ok at this ``size``
    whose file is still there (inside ``out_dir``) with the recorded size, and outcomes that the same
    source would give again (past its end, box outside the frame). Unavailable sources, undecodable
    downloads, failed writes and clips of another size are done again."""
    done: dict[int, Entry] = {}
    for row in rows:
        entry = previous.get(row.path)
        if entry is None or entry.status not in FINAL:
            continue
        if entry.status == OK:
            clip = clip_path(out_dir, row.path)
            if clip is None or (entry.width, entry.height) != (size, size):
                continue
            if not clip.is_file() or clip.stat().st_size != entry.bytes:
                continue
        done[row.row] = entry.moved_to(row.row)
    return done


def acquire(
    rows: list[ClipRow],
    problems: list[RowProblem],
    source: Source,
    out_dir: Path,
    *,
    size: int = 256,
    jobs: int = 2,
    work_dir: Path,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    metadata_sha256: str | None = None,
) -> list[Entry]:
    """Acquire the clips of ``rows`` into ``out_dir``; returns the manifest's entries (also written,
    with ``manifest.json``: the size, the metadata's SHA-256 and what the source is)."""
    check_options(size, timeout)
    previous = previous_entries(out_dir)
    entries = {p.row: Entry.of_problem(p) for p in problems}
    entries.update(finished(rows, previous, out_dir, size))
    todo = by_video([row for row in rows if row.row not in entries])
    # until redone, a row keeps what the last run found; one never reached says so (a killed run)
    waiting = {
        row.row: previous[row.path].moved_to(row.row)
        if row.path in previous
        else Entry.of(row, FAILED, "not reached (the run stopped first)")
        for clips in todo.values()
        for row in clips
    }
    if todo and source.downloads:
        work_dir.mkdir(parents=True, exist_ok=True)  # an unusable --download-dir: an error now, not per id
    manifest = out_dir / MANIFEST
    out_dir.mkdir(parents=True, exist_ok=True)
    write_run_info(out_dir, {"size": size, "crf": CRF, "metadata_sha256": metadata_sha256, "source": _identity(source)})
    write_manifest(manifest, list({**waiting, **entries}.values()))
    bar = tqdm(total=len(waiting), unit="clip", desc="acquire", disable=not progress)
    with bar:
        for done in _each_video(todo, source, out_dir, size, work_dir, jobs, timeout):
            entries.update((e.row, e) for e in done)
            bar.update(len(done))
            bar.set_postfix(problems=sum(e.status != OK for e in entries.values()), refresh=False)
            write_manifest(manifest, list({**waiting, **entries}.values()))
    return sorted(entries.values(), key=lambda e: e.row)


def _identity(source: Source) -> str:
    try:
        return str(source.identity())
    except Exception:  # a source of other code without one
        return type(source).__name__


def _each_video(
    todo: dict[str, list[ClipRow]], source: Source, out_dir: Path, size: int, work_dir: Path, jobs: int, timeout: float
) -> Iterator[list[Entry]]:
    """The entries of each id as it completes: in this process for one job, else in workers."""
    if jobs <= 1:
        for video_id, rows in todo.items():
            yield _here(video_id, rows, source, out_dir, size, work_dir, timeout)
    else:
        yield from _in_workers(todo, source, out_dir, size, work_dir, jobs, timeout)


# --- download folders: created by the run, removed by it --------------------------------------


def _scratch(source: Source, work_dir: Path, video_id: str) -> Path | None:
    """A fresh folder for ``video_id``'s download (None for a source that does not download)."""
    return Path(tempfile.mkdtemp(prefix=f".acquire-{video_id}.", dir=work_dir)) if source.downloads else None


def _remove(folder: Path | None) -> None:
    """Remove a folder :func:`_scratch` made, with all it holds (the id's download, its parts)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


# --- one id in this process --------------------------------------------------------------------


def _here(
    video_id: str, rows: list[ClipRow], source: Source, out_dir: Path, size: int, work_dir: Path, timeout: float
) -> list[Entry]:
    folder = _scratch(source, work_dir, video_id)
    try:
        with _alarm(timeout):
            return acquire_video(video_id, rows, source, out_dir, size, folder or work_dir)
    except TimedOut:
        return [Entry.of(row, FAILED, timed_out(timeout)) for row in rows]
    finally:
        _remove(folder)


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`TimedOut` in this thread after ``seconds`` (the main thread of a POSIX system;
    elsewhere no alarm can be had, and the id runs without a limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise TimedOut

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous)


# --- ids in worker processes -------------------------------------------------------------------


@dataclass
class _Job:
    video_id: str
    rows: list[ClipRow]
    process: BaseProcess
    reader: Connection
    folder: Path | None
    deadline: float  # the start's, until the worker says it started; then the id's
    started: bool = False


def _work(
    conn: Connection, video_id: str, rows: list[ClipRow], source: Source, out_dir: Path, size: int, folder: Path
) -> None:
    """A worker process: one id, its entries sent back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the run stops its workers itself
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # a group of its own: a timeout kills what it started (a downloader's ffmpeg) too
    with contextlib.suppress(OSError):  # the run gone: nobody to tell
        conn.send(("started", None))
        conn.send(("done", acquire_video(video_id, rows, source, out_dir, size, folder)))
        conn.close()


def _in_workers(
    todo: dict[str, list[ClipRow]], source: Source, out_dir: Path, size: int, work_dir: Path, jobs: int, timeout: float
) -> Iterator[list[Entry]]:
    # spawn: a worker never inherits this process's threads (tqdm's monitor) or their locks
    context = multiprocessing.get_context("spawn")
    waiting = list(todo.items())
    running: list[_Job] = []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                video_id, rows = waiting.pop(0)
                running.append(_start(context, video_id, rows, source, out_dir, size, work_dir))
            soonest = min(job.deadline for job in running)
            wait(
                [job.reader for job in running] + [job.process.sentinel for job in running],
                max(0.0, soonest - time.monotonic()),
            )
            for job in list(running):
                entries = _poll(job, timeout)
                if entries is not None:
                    running.remove(job)
                    _end(job)
                    yield entries
    finally:  # interrupted (Ctrl-C, or the caller stopped): no worker outlives the run
        for job in running:
            _end(job, kill=True)


def _start(
    context: Any, video_id: str, rows: list[ClipRow], source: Source, out_dir: Path, size: int, work_dir: Path
) -> _Job:
    folder = _scratch(source, work_dir, video_id)
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(
        target=_work,
        args=(writer, video_id, rows, source, out_dir, size, folder or work_dir),
        name=f"acquire {video_id}",
        daemon=True,
    )
    try:
        process.start()
    except BaseException:
        reader.close()
        _remove(folder)
        raise
    finally:
        writer.close()  # the worker's end only: its death closes the pipe
    return _Job(video_id, rows, process, reader, folder, time.monotonic() + STARTUP_TIMEOUT)


def _poll(job: _Job, timeout: float) -> list[Entry] | None:
    """The entries of a job that has ended (done, died, or stopped at its deadline), else None."""
    alive = job.process.is_alive()  # asked before reading: what it sent before exiting is read below
    try:
        while job.reader.poll():
            kind, payload = job.reader.recv()
            if kind == "done":
                return list(payload)
            job.started = True
            job.deadline = time.monotonic() + timeout
    except (EOFError, OSError):
        alive = False  # its end of the pipe closed: it is gone, or going
    except Exception as err:  # a result that cannot be read back
        _kill(job)
        cause = f"its result could not be read ({err.__class__.__name__}: {err})"
        return [Entry.of(row, FAILED, f"worker process failed: {cause}") for row in job.rows]
    if alive and time.monotonic() < job.deadline:
        return None
    if alive:
        _kill(job)
        reason = timed_out(timeout) if job.started else f"worker process did not start within {STARTUP_TIMEOUT:g} s"
    else:
        reason = _death(job)
    return [Entry.of(row, FAILED, reason) for row in job.rows]


def _death(job: _Job) -> str:
    """Why a worker ended without a result, from its exit status."""
    job.process.join(10)
    code = job.process.exitcode
    if code is None:
        _kill(job)
        return "worker process died (it closed its pipe without a result)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = f"killed by {name}" + (": out of memory?" if -code == signal.SIGKILL else "")
        return f"worker process died ({cause}), its clips not made"
    return f"worker process died (exit status {code}), its clips not made"


def _kill(job: _Job) -> None:
    """Kill a worker and the processes it started (its own process group), and reap it."""
    if job.process.exitcode is None and job.process.pid is not None:  # not reaped: its pid is still its own
        with contextlib.suppress(OSError):
            os.killpg(job.process.pid, signal.SIGKILL)  # its own group (no other group has its id)
        with contextlib.suppress(OSError):
            job.process.kill()
    job.process.join()


def _end(job: _Job, kill: bool = False) -> None:
    """A job is over: its worker gone (killed when ``kill``, or when it lingers), its pipe closed,
    its download folder removed."""
    if kill:
        _kill(job)
    else:
        job.process.join(30)
        if job.process.is_alive():
            _kill(job)
    job.reader.close()
    job.process.close()
    _remove(job.folder)
