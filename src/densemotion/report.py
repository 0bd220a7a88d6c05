"""A markdown report of what a change did: metrics, params, the held-out table, and the plots.

Compares the workspace with a git revision (a merge request's base, the previous commit) through
DVC itself (`dvc metrics diff --md`, `dvc params diff --md`, `dvc plots diff --json`), so it says
what DVC records. The plots are DVC's own Vega-Lite specs rendered to PNG offline with
vl-convert (no browser, no network: the HTML of `dvc plots show` loads Vega from a CDN), written
beside the report and linked from it. Whatever is missing (a base revision a shallow clone lacks,
a first commit without metrics, a metrics file on one side only) becomes a line in the report,
never a crash: the report is for a person reading a merge request.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

SUMMARY = "metrics/evaluate/summary.json"
HEADLINE_KEYS = (
    ("model_epe_px", "model EPE (px)"),
    ("zero_epe_px", "zero motion EPE (px)"),
    ("mean_epe_px", "training-set mean EPE (px)"),
    ("model_to_zero", "model / zero"),
    ("model_to_mean", "model / mean"),
    ("beats_zero_motion", "beats zero motion"),
)
MARKER = "<!-- densemotion report -->"  # a merge-request note finds its previous version by it


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True)


def revision_exists(repo: Path, rev: str) -> bool:
    return _run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo).returncode == 0


def headline_at(repo: Path, rev: str | None) -> dict | None:
    """The evaluate headline of ``rev`` (None: the workspace), or None where there is none."""
    if rev is None:
        path = repo / SUMMARY
        text = path.read_text() if path.is_file() else None
    else:
        shown = _run(["git", "show", f"{rev}:{SUMMARY}"], repo)
        text = shown.stdout if shown.returncode == 0 else None
    if text is None:
        return None
    try:
        headline = json.loads(text).get("headline")
    except (json.JSONDecodeError, AttributeError):
        return None
    return headline if isinstance(headline, dict) else None


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def headline_table(base: dict | None, head: dict | None, base_name: str) -> str:
    """Held-out results side by side: the model against both baselines, at the base and now."""
    if base is None and head is None:
        return "No held-out results on either side (`metrics/evaluate/summary.json` has no `headline`)."
    rows = [f"| | {base_name} | workspace |", "|---|---|---|"]
    for key, label in HEADLINE_KEYS:
        rows.append(f"| {label} | {_cell((base or {}).get(key))} | {_cell((head or {}).get(key))} |")
    notes = []
    if base is None:
        notes.append(f"{base_name} has no held-out results (no `{SUMMARY}` with a `headline` there).")
    if head is None:
        notes.append(f"The workspace has no held-out results (no `{SUMMARY}`): run `dvc repro`.")
    if head is not None and head.get("beats_zero_motion") is False:
        notes.append("**The model does not beat zero motion on the held-out videos.**")
    return "\n".join(rows + [""] + notes).rstrip()


def dvc_markdown(repo: Path, args: list[str], empty: str) -> str:
    out = _run(["dvc", *args], repo)
    if out.returncode != 0:
        return f"`dvc {' '.join(args)}` failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}"
    return out.stdout.strip() or empty


def render_plots(repo: Path, base: str, out_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """PNG of every Vega plot of ``dvc plots diff base``: ([(plot id, relative png path)], problems)."""
    diff = _run(["dvc", "plots", "diff", base, "--json"], repo)
    if diff.returncode != 0:
        return [], [f"`dvc plots diff {base}` failed: {diff.stderr.strip().splitlines()[-1:]}"]
    try:
        plots = json.loads(diff.stdout).get("data", {})
    except json.JSONDecodeError:
        return [], ["`dvc plots diff --json` gave no JSON"]
    try:
        import vl_convert as vlc
    except ImportError:
        return [], ["plots not rendered: install vl-convert-python (`pip install -e '.[report]'`)"]
    images, problems = [], []
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for plot_id, entries in plots.items():
        for entry in entries:
            if entry.get("type") != "vega":
                continue
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", plot_id).strip("_") + ".png"
            try:
                png = vlc.vegalite_to_png(entry["content"], scale=1.5)
            except Exception as err:  # vl-convert raises its own error types for a bad spec
                problems.append(f"plot `{plot_id}` not rendered: {str(err).splitlines()[0]}")
                continue
            (out_dir / "plots" / name).write_bytes(png)
            images.append((plot_id, f"plots/{name}"))
    return images, problems


def build_report(repo: str | Path, base: str, out: str | Path) -> Path:
    """Write the report of the workspace against ``base`` to ``out`` (plots in ``out``'s folder)."""
    repo, out = Path(repo), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [MARKER, f"## densemotion: this change against `{base}`", ""]
    if not revision_exists(repo, base):
        lines += [
            f"Revision `{base}` is not in this clone (a shallow clone? `git fetch` it): only the "
            "workspace's results are shown.",
            "",
            "### Held-out results",
            "",
            headline_table(None, headline_at(repo, None), base),
        ]
        out.write_text("\n".join(lines) + "\n")
        return out
    lines += ["### Held-out results", "", headline_table(headline_at(repo, base), headline_at(repo, None), base), ""]
    lines += ["### Params", "", dvc_markdown(repo, ["params", "diff", base, "--md"], "No params changed."), ""]
    lines += ["### Metrics", "", dvc_markdown(repo, ["metrics", "diff", base, "--md"], "No metrics changed."), ""]
    images, problems = render_plots(repo, base, out.parent)
    lines += ["### Plots", ""]
    lines += [f"**{plot_id}**\n\n![{plot_id}]({path})\n" for plot_id, path in images] or ["No plots."]
    lines += [f"- {p}" for p in problems]
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out
