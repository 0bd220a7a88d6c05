"""Post the report on a GitLab merge request as one note, edited in place on every push.

    python scripts/mr_note.py report/report.md

Reads GitLab CI's own variables (CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID) and a
REPO_TOKEN (a project access token with `api` scope, set as a masked CI variable). The note is
found again by the report's marker line; without REPO_TOKEN nothing is posted (the report stays an
artifact). A failing API call is reported and exits 0: the results, not the comment, fail a job.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

MARKER = "<!-- densemotion report -->"  # densemotion.report.MARKER (kept here: this script needs no install)


def _call(method: str, url: str, token: str, body: dict | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"PRIVATE-TOKEN": token, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def post_or_update(api: str, project: str, mr: str, token: str, text: str) -> str:
    """Edit the note that carries MARKER, or add one; returns 'updated' or 'posted'."""
    notes_url = f"{api}/projects/{project}/merge_requests/{mr}/notes"
    page = 1
    while True:
        notes = _call("GET", f"{notes_url}?per_page=100&page={page}", token)
        if not isinstance(notes, list) or not notes:
            break
        for note in notes:
            if MARKER in str(note.get("body", "")):
                _call("PUT", f"{notes_url}/{note['id']}", token, {"body": text})
                return "updated"
        page += 1
    _call("POST", notes_url, token, {"body": text})
    return "posted"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    token = os.environ.get("REPO_TOKEN", "")
    needed = ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_MERGE_REQUEST_IID")
    missing = [v for v in needed if not os.environ.get(v)]
    if not token or missing:
        why = "REPO_TOKEN unset" if not token else "not a merge request: " + ", ".join(missing)
        print(f"mr_note: not posting ({why})")
        return 0
    text = Path(argv[0]).read_text()
    try:
        done = post_or_update(os.environ["CI_API_V4_URL"], os.environ["CI_PROJECT_ID"],
                              os.environ["CI_MERGE_REQUEST_IID"], token, text)  # fmt: skip
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(f"mr_note: could not post the report on the merge request: {err}")
        return 0
    print(f"mr_note: {done} the report on merge request !{os.environ['CI_MERGE_REQUEST_IID']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
