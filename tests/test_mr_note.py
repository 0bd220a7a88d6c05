"""scripts/mr_note.py against a real HTTP server on 127.0.0.1 that answers what GitLab would not:
pages repeated for ever, lists of non-notes, notes without ids, 500s, non-JSON, silence. The
script's promise: one line, exit 0 (the results, not the comment, fail a job), a bounded search."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import REPO

SCRIPT = REPO / "scripts" / "mr_note.py"
_spec = importlib.util.spec_from_file_location("mr_note", SCRIPT)
mr_note = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mr_note)

MARKER = mr_note.MARKER
# (status, headers, body): what the server answers to one request
Answer = tuple[int, dict[str, str], bytes]


def ok(document: object, **headers: str) -> Answer:
    return 200, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()


def notes(first: int, n: int, body: str = "a comment") -> list[dict]:
    return [{"id": i, "body": body} for i in range(first, first + n)]


@dataclass
class Api:
    """What the server answers: ``get(page)`` to a GET of the notes, ``write`` to a PUT or POST."""

    get: Callable[[int], Answer] = lambda page: ok([])
    write: Callable[[], Answer] = lambda: ok({"id": 1})
    delay: float = 0.0
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)

    def count(self, method: str) -> int:
        return sum(m == method for m, _ in self.requests)


class _Handler(BaseHTTPRequestHandler):
    api: Api = Api()

    def _answer(self, answer: Answer) -> None:
        status, headers, body = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api = self.api
        api.requests.append(("GET", self.path))
        time.sleep(api.delay)
        page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
        self._answer(api.get(page))

    def _write(self):
        api = self.api
        api.requests.append((self.command, self.path))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(api.write())

    do_PUT = do_POST = _write

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def env_for(server: ThreadingHTTPServer, **more: str) -> dict[str, str]:
    return {"CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4", "CI_PROJECT_ID": "7",
            "CI_MERGE_REQUEST_IID": "3", "REPO_TOKEN": "t", "MR_NOTE_TIMEOUT": "2", **more}  # fmt: skip


def post(server: ThreadingHTTPServer, api: Api, report, **env: str) -> tuple[int, list[str]]:
    """Run the script in this process against ``api``: (exit status, the lines it printed)."""
    _Handler.api = api
    out = io.StringIO()
    with mock.patch.dict(os.environ, env_for(server, **env)), contextlib.redirect_stdout(out):
        status = mr_note.main([str(report)])
    return status, out.getvalue().splitlines()


@pytest.fixture
def report(tmp_path):
    path = tmp_path / "report.md"
    path.write_text(f"{MARKER}\nthe report\n")
    return path


# --- defect 1: a bounded search for the note ---------------------------------------------------


def test_a_server_that_repeats_page_one_for_ever_is_read_twice(server, report):
    api = Api(get=lambda page: ok(notes(1, mr_note.PER_PAGE)))  # every page is page 1, full
    status, lines = post(server, api, report)
    assert status == 0 and lines == ["mr_note: posted the report on merge request !3"]
    assert api.count("GET") == 2 and api.count("POST") == 1  # page 2 repeated page 1: the end


def test_endless_distinct_full_pages_stop_at_the_cap_with_one_line(server, report):
    api = Api(get=lambda page: ok(notes(page * 1000, mr_note.PER_PAGE)))
    status, lines = post(server, api, report)
    assert status == 0 and api.count("GET") == mr_note.MAX_PAGES and api.count("POST") == 1
    assert len(lines) == 2 and f"after {mr_note.MAX_PAGES} pages" in lines[0] and "posted" in lines[1]


def test_a_page_with_fewer_notes_than_per_page_is_the_last(server, report):
    api = Api(get=lambda page: ok(notes(1, 3)))  # a server that ignores `page`, with a short page
    status, lines = post(server, api, report)
    assert status == 0 and api.count("GET") == 1 and api.count("POST") == 1


def test_x_next_page_is_followed_and_an_empty_one_ends_the_search(server, report):
    pages = {1: "5", 5: "2", 2: ""}  # GitLab's own order of pages, whatever it is
    full = lambda page: notes(page * 1000, mr_note.PER_PAGE - 1) + [{"id": page, "body": "x"}]
    api = Api(get=lambda page: ok(full(page), **{"X-Next-Page": pages.get(page, "1")}))
    status, _ = post(server, api, report)
    asked = [int(parse_qs(urlsplit(path).query)["page"][0]) for m, path in api.requests if m == "GET"]
    assert status == 0 and asked == [1, 5, 2] and api.count("POST") == 1


def test_the_note_on_a_later_page_is_edited(server, report):
    def get(page: int) -> Answer:
        page_notes = notes(page * 1000, mr_note.PER_PAGE)
        if page == 3:
            page_notes[7]["body"] = f"{MARKER}\nthe last report"
        return ok(page_notes, **{"X-Next-Page": str(page + 1)})

    api = Api(get=get)
    status, lines = post(server, api, report)
    assert status == 0 and lines == ["mr_note: updated the report on merge request !3"]
    assert api.count("GET") == 3 and [r for r in api.requests if r[0] != "GET"] == [
        ("PUT", "/api/v4/projects/7/merge_requests/3/notes/3007")
    ]


def test_an_x_next_page_that_points_back_ends_the_search(server, report):
    api = Api(get=lambda page: ok(notes(page * 1000, mr_note.PER_PAGE), **{"X-Next-Page": "1"}))
    status, _ = post(server, api, report)
    assert status == 0 and api.count("GET") == 1 and api.count("POST") == 1


# --- defect 2: an odd answer is one line and exit 0 -------------------------------------------


@pytest.mark.parametrize(
    "answer, says",
    [
        (ok([1, "two", None]), "a JSON number where a note (an object) belongs"),
        (ok([[{"id": 1, "body": "x"}]]), "a JSON list where a note (an object) belongs"),
        (ok([{"body": "no id"}]), "a note without an id"),
        (ok([{"id": "1; drop", "body": "x"}]), "whose id is the JSON string"),
        (ok([{"id": 1.5, "body": "x"}]), "whose id is the JSON number 1.5"),
        (ok([{"id": 4}]), "note 4 has no body"),
        (ok([{"id": 4, "body": {"text": MARKER}}]), "note 4 has a body that is a JSON object, not a string"),
        (ok({"message": "403 Forbidden"}), "page 1 of notes is a JSON object, not a list"),
        (ok("notes"), "page 1 of notes is a JSON string, not a list"),
        ((200, {"Content-Type": "text/html"}, b"<html>sign in</html>"), "the answer is not JSON"),
        ((200, {}, b"\xff\xfe\x00garbage"), "the answer is not JSON"),
        ((200, {}, b"[" * 100_000), "the answer is not JSON"),  # nests past Python's stack
        ((500, {}, b"oops"), "GET /api/v4/projects/7/merge_requests/3/notes: HTTP 500"),
        ((401, {}, b'{"message": "401 Unauthorized"}'), "HTTP 401"),
    ],
)
def test_an_odd_answer_to_the_list_of_notes_is_one_line(server, report, answer, says):
    api = Api(get=lambda page: answer)
    status, lines = post(server, api, report)
    assert status == 0 and len(lines) == 1, lines
    assert lines[0].startswith("mr_note: could not post the report on the merge request: ") and says in lines[0]
    assert api.count("POST") == 0 and api.count("PUT") == 0  # nothing written on an answer not understood


@pytest.mark.parametrize("marker_found", [True, False])
def test_a_failing_edit_or_post_is_one_line(server, report, marker_found):
    body = MARKER if marker_found else "a comment"
    api = Api(get=lambda page: ok([{"id": 9, "body": body}]), write=lambda: (500, {}, b"down"))
    status, lines = post(server, api, report)
    method = "PUT" if marker_found else "POST"
    assert status == 0 and len(lines) == 1 and f"{method} /api/v4/projects/7/merge_requests/3/notes" in lines[0]
    assert "HTTP 500" in lines[0]


def test_an_edit_answered_with_non_json_still_counts(server, report):
    api = Api(get=lambda page: ok([{"id": 9, "body": MARKER}]), write=lambda: (200, {}, b"<html>"))
    assert post(server, api, report) == (0, ["mr_note: updated the report on merge request !3"])


def test_a_silent_server_times_out_in_one_line(server, report):
    api = Api(get=lambda page: ok([]), delay=1.5)
    start = time.monotonic()
    status, lines = post(server, api, report, MR_NOTE_TIMEOUT="0.3")
    assert status == 0 and len(lines) == 1 and "timed out" in lines[0]
    assert time.monotonic() - start < 1.4  # the script's timeout, not the server's answer, ended it


@pytest.mark.parametrize(
    "url, says",
    [
        ("http://127.0.0.1:1/api/v4", "ConnectionRefusedError"),
        ("http://127.0.0.1:notaport/api/v4", "nonnumeric port"),
        ("ftp-ish://nowhere/api/v4", "unknown url type"),
        ("not a url", "unknown url type"),
    ],
)
def test_an_unreachable_api_is_one_line(server, report, url, says):
    status, lines = post(server, Api(), report, CI_API_V4_URL=url)
    assert status == 0 and len(lines) == 1 and lines[0].startswith("mr_note: could not post") and says in lines[0]


def test_the_timeout_falls_back_to_30_seconds():
    for value in ("", "soon", "-1", "0", "nan", "inf"):
        with mock.patch.dict(os.environ, {"MR_NOTE_TIMEOUT": value}):
            assert mr_note._timeout() == 30.0
    with mock.patch.dict(os.environ, {}, clear=True):
        assert mr_note._timeout() == 30.0
    with mock.patch.dict(os.environ, {"MR_NOTE_TIMEOUT": "2.5"}):
        assert mr_note._timeout() == 2.5


def _script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("which", ["missing", "a folder"])
def test_an_unreadable_report_is_one_line_and_exit_0(server, tmp_path, which):
    path = tmp_path / "report.md"
    if which == "a folder":
        path.mkdir()
    _Handler.api = api = Api()
    done = _script([str(path)], env_for(server))
    assert done.returncode == 0 and done.stderr == "" and api.requests == []
    says = f"mr_note: not posting: cannot read the report {path}"
    assert done.stdout.count("\n") == 1 and done.stdout.startswith(says)


@pytest.mark.parametrize("args", [[], ["a.md", "b.md"]])
def test_a_wrong_number_of_arguments_is_exit_2_with_usage(args):
    done = _script(args, {})
    assert done.returncode == 2 and "python scripts/mr_note.py report/report.md" in done.stderr


# --- any answer at all -------------------------------------------------------------------------

try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    given = None

if given is not None:
    _scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    _json = st.recursive(
        _scalars | st.just(MARKER),
        lambda inner: (
            st.lists(inner, max_size=6)
            | st.dictionaries(st.sampled_from(["id", "body", "message"]) | st.text(max_size=8), inner, max_size=4)
            | st.fixed_dictionaries({"id": inner, "body": inner})
        ),
        max_leaves=25,
    )
    _answer = st.tuples(
        st.sampled_from([200, 200, 200, 201, 204, 301, 404, 500]),
        st.none() | st.sampled_from(["", "1", "2", "0", "-3", "x", "99999999999999999999"]),
        _json,
    )

    @given(pages=st.lists(_answer, min_size=1, max_size=4), write=_answer)
    def test_any_json_answer_is_one_line_exit_0_and_a_bounded_search(server, tmp_path_factory, pages, write):
        def get(page: int) -> Answer:
            status, next_page, document = pages[(page - 1) % len(pages)]
            headers = {} if next_page is None else {"X-Next-Page": next_page}
            return status, headers, json.dumps(document).encode()

        api = Api(get=get, write=lambda: (write[0], {}, json.dumps(write[2]).encode()))
        report = tmp_path_factory.mktemp("report") / "report.md"
        report.write_text(f"{MARKER}\nthe report\n")
        status, lines = post(server, api, report, MR_NOTE_TIMEOUT="2")
        assert status == 0 and 1 <= len(lines) <= 2 and all(line.startswith("mr_note: ") for line in lines)
        assert api.count("GET") <= mr_note.MAX_PAGES and api.count("PUT") + api.count("POST") <= 1


def test_a_redirect_to_another_host_never_gets_the_token(server, report):
    """The token is for the GitLab API: a redirect elsewhere (here another port) goes without it."""
    seen: list[str | None] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("PRIVATE-TOKEN"))
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        away = f"http://127.0.0.1:{other.server_port}/notes"
        status, _ = post(server, Api(get=lambda page: (302, {"Location": away}, b"")), report)
    finally:
        other.shutdown()
        other.server_close()
    assert status == 0 and seen == [None]
