"""One acquisition: every clip row of a metadata file, source by source, recorded in the manifest.

Source ids are independent: they run in ``jobs`` worker processes, each fetching its video once
and cutting all its clips in one pass. The run is resumable: a clip the manifest lists as ok whose
file is still there (same size) is not redone, nor a row past its source's end or with its box
outside the frame, and an id whose rows are all done is not fetched (the others are retried);
the manifest is rewritten after every id, so a killed run loses at most the ids in flight. A
problem of one row or id (malformed, unavailable, not a video, past the end, a full disk) is
recorded in its entries and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm import tqdm

from densemotion.acquire.clips import cut_clips
from densemotion.acquire.manifest import (
    BAD_ROW,
    FAILED,
    MANIFEST,
    OK,
    PAST_END,
    UNAVAILABLE,
    Entry,
    read_manifest,
    write_manifest,
)
from densemotion.acquire.metadata import ClipRow, RowProblem, by_video
from densemotion.acquire.sources import Source, SourceUnavailable

FINAL = (OK, PAST_END, BAD_ROW)  # outcomes a rerun keeps (see :func:`finished`)


def acquire_video(
    video_id: str, rows: list[ClipRow], source: Source, out_dir: Path, size: int, work_dir: Path
) -> list[Entry]:
    """Fetch one source video and cut its clips; every failure becomes the rows' entries."""
    try:
        video = source.fetch(video_id, work_dir)
    except SourceUnavailable as err:
        return [Entry.of(row, UNAVAILABLE, str(err)) for row in rows]
    except Exception as err:  # whatever else a download raises: this id fails, the run goes on
        return [Entry.of(row, FAILED, f"fetching {video_id}: {err.__class__.__name__}: {err}") for row in rows]
    try:
        return cut_clips(video, rows, out_dir, size)
    except Exception as err:  # an unforeseen error of this id's clips: recorded, the run goes on
        return [Entry.of(row, FAILED, f"{err.__class__.__name__}: {err}") for row in rows]
    finally:
        source.release(video)


def previous_entries(out_dir: Path) -> dict[str, Entry]:
    """Clip path -> its entry in the manifest a previous run left in ``out_dir`` (none: {})."""
    path = out_dir / MANIFEST
    return {e.clip: e for e in read_manifest(path) if e.clip} if path.is_file() else {}


def finished(rows: list[ClipRow], previous: dict[str, Entry], out_dir: Path) -> dict[int, Entry]:
    """Row -> its previous entry, for the rows that need no work: clips listed ok whose file is
    still there with the recorded size, and outcomes that the same source would give again (past
    its end, box outside the frame). Unavailable sources, undecodable downloads and failed writes
    are tried again."""
    done: dict[int, Entry] = {}
    for row in rows:
        entry = previous.get(row.path)
        if entry is None or entry.status not in FINAL:
            continue
        clip = out_dir / row.path
        if entry.status != OK or (clip.is_file() and clip.stat().st_size == entry.bytes):
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
) -> list[Entry]:
    """Acquire the clips of ``rows`` into ``out_dir``; returns the manifest's entries (also written)."""
    previous = previous_entries(out_dir)
    entries = {p.row: Entry.of_problem(p) for p in problems}
    entries.update(finished(rows, previous, out_dir))
    todo = by_video([row for row in rows if row.row not in entries])
    # until redone, a row keeps what the last run found; one never reached says so (a killed run)
    waiting = {
        row.row: previous[row.path].moved_to(row.row)
        if row.path in previous
        else Entry.of(row, FAILED, "not reached (the run stopped first)")
        for clips in todo.values()
        for row in clips
    }
    manifest = out_dir / MANIFEST
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, list({**waiting, **entries}.values()))
    bar = tqdm(total=len(waiting), unit="clip", desc="acquire", disable=not progress)
    with bar:
        for done in _each_video(todo, source, out_dir, size, work_dir, jobs):
            entries.update((e.row, e) for e in done)
            bar.update(len(done))
            bar.set_postfix(problems=sum(e.status != OK for e in entries.values()), refresh=False)
            write_manifest(manifest, list({**waiting, **entries}.values()))
    return sorted(entries.values(), key=lambda e: e.row)


def _each_video(
    todo: dict[str, list[ClipRow]], source: Source, out_dir: Path, size: int, work_dir: Path, jobs: int
) -> Iterator[list[Entry]]:
    """The entries of each id as it completes: in this process for one job, else in a pool."""
    if jobs <= 1 or len(todo) <= 1:
        for video_id, rows in todo.items():
            yield acquire_video(video_id, rows, source, out_dir, size, work_dir)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        running: set[Future] = {
            pool.submit(acquire_video, video_id, rows, source, out_dir, size, work_dir)
            for video_id, rows in todo.items()
        }
        while running:
            complete, running = wait(running, return_when=FIRST_COMPLETED)
            for future in complete:
                yield future.result()
