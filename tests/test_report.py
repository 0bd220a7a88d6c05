"""`densemotion report`: a change's params, metrics, held-out table and plots, offline; and the
merge-request note that carries it, posted once and edited on every push."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from conftest import REPO
from test_e2e_dvc import BIN, built_repo, ran_stages, repo, run  # the e2e fixtures, shared


def _report(repo: Path, base: str) -> tuple[str, Path]:
    """The command as a user runs it, in this process (so that coverage sees it)."""
    from densemotion.cli import report

    out = repo / "report" / "report.md"
    with mock.patch.dict(os.environ, {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}):  # this venv's dvc
        assert report.main(["--base", base, "--out", str(out), "--repo", str(repo)]) == 0
    return out.read_text(), out.parent


@pytest.mark.slow
@pytest.mark.e2e
def test_report_of_a_change_in_epochs_shows_the_param_both_results_and_the_plots(repo):
    pytest.importorskip("vl_convert", reason="the report renders plots with vl-convert-python")
    before = json.loads((repo / "metrics/evaluate/summary.json").read_text())["headline"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "train" in ran_stages(run(repo, "dvc", "repro").stdout)
    after = json.loads((repo / "metrics/evaluate/summary.json").read_text())["headline"]
    text, folder = _report(repo, "HEAD")
    assert text.startswith("<!-- densemotion report -->")
    assert "train.epochs" in text and "| 1 " in text and "| 3 " in text  # the param, both values
    assert f"{before['model_epe_px']:.3f}" in text and f"{after['model_epe_px']:.3f}" in text
    images = sorted(p.name for p in (folder / "plots").iterdir())
    assert images == ["epe_histogram.png", "epe_per_epoch.png", "epe_per_video.png", "loss_per_epoch.png"]
    assert all((folder / "plots" / name).read_bytes()[:4] == b"\x89PNG" for name in images)
    assert all(f"](plots/{name})" in text for name in images)


@pytest.mark.slow
@pytest.mark.e2e
def test_report_says_what_is_missing_instead_of_failing(repo):
    text, _ = _report(repo, "no-such-branch")
    assert "`no-such-branch` is not in this clone" in text and "model EPE" in text
    run(repo, "git", "checkout", "-q", "--orphan", "first")
    run(repo, "git", "rm", "-q", "--cached", "-r", "metrics")
    run(repo, "git", "commit", "-qm", "no metrics yet")
    text, _ = _report(repo, "HEAD")
    assert "HEAD has no held-out results" in text and "### Params" in text


class _GitLab(BaseHTTPRequestHandler):
    """A few lines of GitLab's notes API: list, create, edit."""

    notes: list[dict] = []
    calls: list[str] = []

    def _reply(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.calls.append("GET")
        page = parse_qs(urlsplit(self.path).query)["page"]
        self._reply(self.notes if page == ["1"] else [])

    def do_POST(self):
        self.calls.append("POST")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.notes.append({"id": len(self.notes) + 1, "body": body["body"]})
        self._reply(self.notes[-1])

    def do_PUT(self):
        self.calls.append("PUT")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        note = next(n for n in self.notes if self.path.endswith(f"/notes/{n['id']}"))
        note["body"] = body["body"]
        self._reply(note)

    def log_message(self, *args) -> None:
        pass


def test_the_merge_request_note_is_posted_once_then_edited(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), _GitLab)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _GitLab.notes = [{"id": 1, "body": "an unrelated comment"}]
    env = {"CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4", "CI_PROJECT_ID": "7",
           "CI_MERGE_REQUEST_IID": "3", "REPO_TOKEN": "t", "PATH": "/usr/bin:/bin"}  # fmt: skip
    script = [sys.executable, str(REPO / "scripts" / "mr_note.py"), str(tmp_path / "report.md")]
    try:
        for version in ("first", "second"):
            (tmp_path / "report.md").write_text(f"<!-- densemotion report -->\n{version}\n")
            out = subprocess.run(script, env=env, capture_output=True, text=True, check=True).stdout
            assert ("posted" if version == "first" else "updated") in out
    finally:
        server.shutdown()
    assert [n["body"] for n in _GitLab.notes] == ["an unrelated comment", "<!-- densemotion report -->\nsecond\n"]
    unset = subprocess.run(script, env={**env, "REPO_TOKEN": ""}, capture_output=True, text=True, check=True)
    assert "not posting (REPO_TOKEN unset)" in unset.stdout
    down = subprocess.run(script, env={**env, "CI_API_V4_URL": "http://127.0.0.1:1/api/v4"}, capture_output=True,
                          text=True)  # fmt: skip
    assert down.returncode == 0 and "could not post" in down.stdout  # the results, not the comment, fail a job
