"""Post the report on a GitLab merge request as one note, edited in place on every push.

    python scripts/mr_note.py report/report.md

Reads GitLab CI's own variables (CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID) and a
REPO_TOKEN (a project access token with `api` scope, set as a masked CI variable). The note is
found again by the report's marker line; without REPO_TOKEN nothing is posted (the report stays an
artifact). A failing API call, an odd answer or an unreadable report is reported in one line and
exits 0: the results, not the comment, fail a job. MR_NOTE_TIMEOUT: seconds per API call (30).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

MARKER = "<!-- densemotion report -->"  # densemotion.report.MARKER (kept here: this script needs no install)
PER_PAGE = 100  # GitLab's largest page
MAX_PAGES = 50  # 5,000 notes: past that the note is posted anew rather than searched for ever
MAX_ANSWER = 16 * 2**20  # bytes of one answer; a notes page is a few hundred kB at most
TIMEOUT = 30.0  # seconds per API call (MR_NOTE_TIMEOUT)


class NoteError(Exception):
    """The API answered something this script cannot use (the message says what)."""


# what a call to the API can raise: urllib's and http.client's errors (timeouts and refused
# connections are OSErrors), a bad URL or header (ValueError), JSON that is not JSON or nests too deep
FAILURES = (NoteError, urllib.error.URLError, http.client.HTTPException, OSError, ValueError, RecursionError)


def _timeout() -> float:
    try:
        seconds = float(os.environ.get("MR_NOTE_TIMEOUT", TIMEOUT))
    except ValueError:
        return TIMEOUT
    return seconds if math.isfinite(seconds) and seconds > 0 else TIMEOUT


def _kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows a redirect, but sends the token only to the host it was set for: a redirect to
    another host (or port) gets the request without PRIVATE-TOKEN."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Private-token")  # urllib stores header names capitalised
        return new


_OPENER = urllib.request.build_opener(_TokenStaysHome)


def _call(method: str, url: str, token: str, body: dict | None = None) -> tuple[object, str | None]:
    """One API call: (the answer's JSON, its X-Next-Page header or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"PRIVATE-TOKEN": token, "Content-Type": "application/json"}
    )
    where = f"{method} {urllib.parse.urlsplit(url).path}"
    timeout = _timeout()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            next_page = response.headers.get("X-Next-Page")
            deadline = time.monotonic() + timeout
            chunks, size = [], 0
            while chunk := response.read1(65536):  # bounded in size and time, however the server dribbles
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise NoteError(f"{where}: the answer is over {MAX_ANSWER // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise NoteError(f"{where}: the answer took over {timeout:g} s")
            raw = b"".join(chunks)
    except urllib.error.HTTPError as err:
        raise NoteError(f"{where}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
        raise NoteError(f"{where}: {why}") from err
    if method != "GET":
        return None, None  # an edit or a new note: the status says it was done, the answer is not used
    try:
        return json.loads(raw or b"null"), next_page
    except (ValueError, RecursionError) as err:  # not JSON, not text, or nested past Python's stack
        raise NoteError(f"{where}: the answer is not JSON ({type(err).__name__}: {err})") from err


def _note_id(note: object, page: int) -> int:
    """The id of one note of a notes page, checked: it goes into the URL of the edit."""
    if not isinstance(note, dict):
        raise NoteError(f"page {page} of notes holds a JSON {_kind(note)} where a note (an object) belongs")
    if "id" not in note:
        raise NoteError(f"page {page} of notes holds a note without an id")
    note_id = note["id"]
    if isinstance(note_id, bool) or not isinstance(note_id, int) or note_id < 0:
        what = f"the JSON {_kind(note_id)}" + (f" {note_id}" if isinstance(note_id, (int, float)) else "")
        raise NoteError(f"page {page} of notes holds a note whose id is {what}, not a note's number")
    if "body" not in note:
        raise NoteError(f"note {note_id} has no body")
    if not isinstance(note["body"], str):
        raise NoteError(f"note {note_id} has a body that is a JSON {_kind(note['body'])}, not a string")
    return note_id


def _next(header: str | None, page: int) -> int | None:
    """The page after ``page``: GitLab's X-Next-Page where it sends one (empty: the last page)."""
    if header is None:
        return page + 1
    header = header.strip()
    if not header:
        return None
    return int(header) if header.isascii() and header.isdigit() and int(header) > 0 else page + 1


def post_or_update(api: str, project: str, mr: str, token: str, text: str) -> str:
    """Edit the note that carries MARKER, or add one; returns 'updated' or 'posted'.

    The notes are read oldest first (the report's note is one of the first) in at most MAX_PAGES
    pages; the search also stops on the last page (X-Next-Page empty, fewer than PER_PAGE notes,
    none) and on a page that repeats one already read (an API that ignores `page`).
    """
    quote = lambda part: urllib.parse.quote(part, safe="")
    notes_url = f"{api.rstrip('/')}/projects/{quote(project)}/merge_requests/{quote(mr)}/notes"
    seen_pages: set[tuple[int, ...]] = set()
    asked: set[int] = set()
    page: int | None = 1
    while page is not None:
        if len(asked) == MAX_PAGES:
            print(f"mr_note: stopped looking for the report's note after {MAX_PAGES} pages; posting it anew")
            break
        asked.add(page)
        url = f"{notes_url}?per_page={PER_PAGE}&page={page}&order_by=created_at&sort=asc"
        notes, header = _call("GET", url, token)
        if not isinstance(notes, list):
            raise NoteError(f"page {page} of notes is a JSON {_kind(notes)}, not a list")
        ids = tuple(_note_id(note, page) for note in notes)
        if not ids or ids in seen_pages:  # the end, or the API repeats itself
            break
        seen_pages.add(ids)
        for note in notes:
            if MARKER in note["body"]:
                _call("PUT", f"{notes_url}/{note['id']}", token, {"body": text})
                return "updated"
        page = _next(header, page) if len(notes) >= PER_PAGE else None
        if page in asked:
            break
    _call("POST", notes_url, token, {"body": text})
    return "posted"


def _say(line: str) -> None:
    """One line on stdout, whatever it holds and whatever stdout's encoding."""
    line = " ".join(line.split())
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    print(line.encode(encoding, "backslashreplace").decode(encoding, "replace"), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    token = os.environ.get("REPO_TOKEN", "")
    needed = ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID")
    missing = [v for v in needed if not os.environ.get(v)]
    if not token or missing:
        why = "REPO_TOKEN unset" if not token else "not a merge request: " + ", ".join(missing)
        _say(f"mr_note: not posting ({why})")
        return 0
    try:
        text = Path(argv[0]).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        _say(f"mr_note: not posting: cannot read the report {argv[0]}: {err.strerror or err}")
        return 0
    try:
        done = post_or_update(os.environ["CI_API_V4_URL"], os.environ["CI_PROJECT_ID"],
                              os.environ["CI_MERGE_REQUEST_IID"], token, text)  # fmt: skip
    except FAILURES as err:
        _say(f"mr_note: could not post the report on the merge request: {err}")
        return 0
    _say(f"mr_note: {done} the report on merge request !{os.environ['CI_MERGE_REQUEST_IID']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
