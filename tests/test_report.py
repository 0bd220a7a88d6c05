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
    declared = [name for entry in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"] for name in entry]
    assert {"epe_histogram", "epe_per_epoch", "epe_per_video", "loss_per_epoch"} <= set(declared)
    assert images == sorted(f"{name}.png" for name in declared)  # every top-level plot of dvc.yaml
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


# --- the plots' lines, told apart ------------------------------------------------------------------

LINE_PLOTS = {  # plot id -> the legend the report must draw: revision x series, both revisions
    "epe_histogram": [f"{rev}: {s}" for rev in ("workspace", "HEAD") for s in ("model", "zero", "mean")],
    "epe_per_epoch": [f"{rev}: {s}" for rev in ("workspace", "HEAD") for s in ("train", "val")],
    "loss_per_epoch": [f"{rev}: {s}" for rev in ("workspace", "HEAD") for s in ("train", "val")],
}


def _plot_data(repo: Path, shift: float) -> None:
    """The files the top-level plots draw, their values moved by ``shift`` (one revision from another)."""
    hist = ["epe_px,model,zero,mean"] + [
        f"{x:.1f},{0.5 / (1 + x) + shift:.4f},{0.3 / (1 + x / 4):.4f},{0.2 / (1 + x / 8):.4f}" for x in range(12)
    ]
    (repo / "metrics/evaluate").mkdir(parents=True, exist_ok=True)
    (repo / "metrics/evaluate/epe_hist.csv").write_text("\n".join(hist) + "\n")
    rows = ["bar,video,method,epe_px"] + [f"v: {m} vs tracker,v,{m} vs tracker,{e + shift}" for m, e in
                                         (("model", 1.0), ("zero", 3.0), ("mean", 3.5))]  # fmt: skip
    (repo / "metrics/evaluate/per_video.csv").write_text("\n".join(rows) + "\n")
    for part, level in (("train", 2.0), ("val", 3.0)):
        folder = repo / "metrics/train/plots/metrics" / part
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("epe_px", "loss_px"):
            lines = [f"step\t{key}"] + [f"{s}\t{level / s + shift}" for s in range(1, 9)]
            (folder / f"{key}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    """A git + DVC repository with this repository's top-level plots and their files: HEAD, and a
    workspace whose values differ."""
    repo = tmp_path / "plots"
    repo.mkdir()
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, str(BIN / "dvc"), "init", "-q")
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False))
    _plot_data(repo, 0.0)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "base")
    _plot_data(repo, 0.15)
    return repo


def _scene(spec: dict) -> tuple[list[dict], list[dict], tuple[float, float]]:
    """The rendered chart's legend entries ({label, x, y, stroke, dash}, in chart px) and drawn lines
    ({stroke, dash}), from Vega's own scenegraph, and its origin."""
    import vl_convert as vlc

    scene = vlc.vegalite_to_scenegraph(spec)
    symbols, labels, lines = [], [], []

    def walk(mark: dict, x0: float, y0: float) -> None:
        for item in mark.get("items", []):
            x, y = x0 + item.get("x", 0), y0 + item.get("y", 0)
            if mark.get("role") == "legend-symbol":
                symbols.append({"x": x, "y": y, "stroke": item["stroke"], "dash": item.get("strokeDash")})
            elif mark.get("role") == "legend-label":
                labels.append({"y": y, "label": item["text"]})
            elif mark.get("marktype") == "line":
                lines.append({"stroke": item["stroke"], "dash": item.get("strokeDash")})
            for child in item.get("items", []):
                walk(child, x, y)

    walk(scene["scenegraph"], 0.0, 0.0)
    for symbol in symbols:
        symbol["label"] = next(lab["label"] for lab in labels if abs(lab["y"] - symbol["y"]) < 1)
    return symbols, lines, tuple(scene["origin"])


def _runs(on: list[bool]) -> int:
    return sum(1 for i, v in enumerate(on) if v and (i == 0 or not on[i - 1]))


def test_every_line_of_the_report_plots_has_its_own_colour_and_dash_and_the_legend_draws_them(plots_repo, tmp_path):
    pytest.importorskip("vl_convert", reason="the report renders plots with vl-convert-python")
    import cv2
    import numpy as np

    from densemotion import report

    with mock.patch.dict(os.environ, {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}):  # this venv's dvc
        specs, problems = report.plot_specs(plots_repo, "HEAD")
        images, _ = report.render_plots(plots_repo, "HEAD", tmp_path / "out")
    assert problems == [] and set(specs) == {*LINE_PLOTS, "epe_per_video"}
    assert sorted(name for name, _ in images) == sorted(specs)
    for plot_id, expected in LINE_PLOTS.items():
        enc = specs[plot_id]["encoding"]
        assert enc["color"]["field"] == enc["strokeDash"]["field"], plot_id  # one legend, not two
        assert enc["color"]["scale"]["domain"] == enc["strokeDash"]["scale"]["domain"] == expected, plot_id
        pairs = list(zip(enc["color"]["scale"]["range"], map(tuple, enc["strokeDash"]["scale"]["range"]), strict=True))
        assert len(set(c for c, _ in pairs)) == len(expected), plot_id  # every line its own colour
        dash = {label.split(": ")[1]: d for label, (_, d) in zip(expected, pairs, strict=True)}
        assert all(dash[label.split(": ")[1]] == d for label, (_, d) in zip(expected, pairs, strict=True)), plot_id
        assert len(set(dash.values())) == len(dash), plot_id  # every series its own dash

        # what is drawn: one legend whose symbols are the lines as drawn, in the PNG as in the spec
        symbols, lines, (ox, oy) = _scene(specs[plot_id])
        assert [s["label"] for s in symbols] == expected, plot_id
        drawn = {(line["stroke"], tuple(line["dash"])) for line in lines}  # a line mark: one item per point
        assert sorted((s["stroke"], tuple(s["dash"])) for s in symbols) == sorted(drawn), plot_id
        png = cv2.imread(str(tmp_path / "out" / dict(images)[plot_id]), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
        seen = []
        for symbol in symbols:  # the symbol's own row of pixels, 30 px long at scale 1 (symbolSize 900)
            y = round((oy + symbol["y"]) * 1.5)
            x0, x1 = round((ox + symbol["x"] - 14) * 1.5), round((ox + symbol["x"] + 14) * 1.5)
            row = png[y - 1 : y + 2, x0:x1].min(axis=0)  # the darkest of three rows: the stroke's core
            on = (row.max(axis=1) - row.min(axis=1) > 40) | (row.max(axis=1) < 160)  # coloured, not white/grey
            assert on.sum() > 5, (plot_id, symbol["label"])
            want = np.array([int(symbol["stroke"][i : i + 2], 16) for i in (1, 3, 5)])
            colour = np.median(row[on], axis=0)
            assert np.abs(colour - want).max() < 40, (plot_id, symbol["label"], colour, want)
            runs = _runs(list(on))
            assert (runs == 1) if tuple(symbol["dash"]) == (1, 0) else (runs >= 2), (plot_id, symbol["label"], runs)
            seen.append(colour)
        for i, a in enumerate(seen):  # told apart in the picture: no two legend colours alike
            assert all(np.abs(a - b).max() > 40 for b in seen[i + 1 :]), plot_id
        order = list(dict.fromkeys(line["stroke"] for line in lines))  # drawn in this order
        assert set(order[-len(order) // 2 :]) == {s["stroke"] for s in symbols[: len(symbols) // 2]}, plot_id
    bars = specs["epe_per_video"]  # a bar chart is left as DVC draws it: colour by revision
    assert bars["encoding"]["color"]["field"] == "rev"


def test_series_names_lose_only_the_path_they_share_and_other_charts_are_left_alone():
    from densemotion.report import _short_names, legible

    assert _short_names(["train/epe_px.tsv", "val/epe_px.tsv"]) == {"train/epe_px.tsv": "train",
                                                                    "val/epe_px.tsv": "val"}  # fmt: skip
    assert _short_names(["a/x/m.tsv", "a/y/m.tsv"]) == {"a/x/m.tsv": "x", "a/y/m.tsv": "y"}
    assert _short_names(["model", "zero", "mean"]) == {"model": "model", "zero": "zero", "mean": "mean"}
    assert _short_names(["train/epe_px.tsv"]) == {"train/epe_px.tsv": "train/epe_px.tsv"}
    bars = {"mark": "bar", "encoding": {"color": {"field": "rev"}}, "data": {"values": [{"rev": "HEAD"}]}}
    assert legible(bars) is bars
    one = {"mark": {"type": "line"}, "encoding": {"color": {"field": "rev"}}, "data": {"values": [{"rev": "HEAD"}]}}
    assert legible(one) is one  # no series to tell apart: DVC's colour by revision is enough
    rows = [{"step": s, "y": 1.0, "rev": r, "filename": f} for r, n in (("workspace", 3), ("HEAD", 1))
            for f in ("train/a.tsv", "val/a.tsv") for s in range(1, n + 1)]  # fmt: skip
    encoding = {
        "x": {"field": "step"},
        "color": {"field": "rev", "scale": {"domain": ["workspace", "HEAD"]}},
        "strokeDash": {"field": "filename"},
    }
    line = {"mark": {"type": "line"}, "data": {"values": rows}, "encoding": encoding}
    shown = legible(line)
    assert shown["encoding"]["color"]["scale"]["domain"] == ["workspace: train", "workspace: val", "HEAD: train",
                                                              "HEAD: val"]  # fmt: skip
    assert shown["mark"]["point"] is True  # the base's one epoch is a point, drawn as one
    assert [r["rev"] for r in shown["data"]["values"]][-1] == "workspace"  # drawn last: on top
    assert shown["encoding"]["x"]["axis"]["tickMinStep"] == 1  # epochs are whole
    rows3 = [r for r in rows if r["rev"] == "workspace"]
    assert "point" not in legible({**line, "data": {"values": rows3}})["mark"]


def test_the_report_shows_a_distribution_heads_scores_beside_the_others():
    """The base a point head, the workspace a hypotheses head: the best-of-M rows appear, n/a at the base."""
    from densemotion.report import headline_table

    base = {"model_epe_px": 0.64, "zero_epe_px": 3.44, "beats_zero_motion": True}
    head = {**base, "best_of_m_epe_px": 0.52, "codebook_best_of_m_epe_px": 1.08}
    rows = headline_table(base, head, "main").splitlines()
    assert "| best-of-M EPE (px) | n/a | 0.520 |" in rows
    assert "| codebook best-of-M EPE (px) | n/a | 1.080 |" in rows
    assert not any("NLL" in r for r in rows)  # only what either side has
    assert not any("best-of-M" in r for r in headline_table(base, base, "main").splitlines())
