"""A markdown report of what a change did: metrics, params, the held-out table, and the plots.

Compares the workspace with a git revision (a merge request's base, the previous commit) through
DVC itself (`dvc metrics diff --md`, `dvc params diff --md`, `dvc plots diff --json`), so it says
what DVC records. The plots are DVC's own Vega-Lite specs rendered to PNG offline with
vl-convert (no browser, no network: the HTML of `dvc plots show` loads Vega from a CDN), written
beside the report and linked from it. DVC's line charts colour by revision and dash by series with
a grey dash legend, so before rendering every line gets its own colour and dash and one legend
that draws both (`legible`). Whatever is missing (a base revision a shallow clone lacks,
a first commit without metrics, a metrics file on one side only) becomes a line in the report,
never a crash: the report is for a person reading a merge request.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from densemotion.metrics import SPREAD_HEADLINE, SPREAD_LABELS

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
    spread = [(k, SPREAD_LABELS[k]) for k in SPREAD_HEADLINE if k in (base or {}) or k in (head or {})]
    for key, label in (*HEADLINE_KEYS, *spread):  # a distribution head's scores where either side has them
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


# A hue per series (dark for the first revision, the workspace; lighter for the next) and a dash per
# series: every line of a chart differs from every other by colour, and from other series by dash
# (up to 6 series and 3 revisions; past that, colours repeat).
SHADES = (
    ("#08519c", "#4292c6", "#9ecae1"),  # blues
    ("#a63603", "#f16913", "#fdae6b"),  # oranges
    ("#006d2c", "#41ab5d", "#a1d99b"),  # greens
    ("#54278f", "#807dba", "#bcbddc"),  # purples
    ("#a50f15", "#ef3b2c", "#fc9272"),  # reds
    ("#252525", "#737373", "#bdbdbd"),  # greys
)
DASHES = ([1, 0], [8, 4], [2, 3], [10, 3, 2, 3], [16, 4], [4, 2, 4, 6])  # solid, dash, dot, dash-dot, ...
LINE_LEGEND = "revision: series"


def _short_names(names: list[str]) -> dict[str, str]:
    """Series names without the path components they all share: ``train/epe_px.tsv`` and
    ``val/epe_px.tsv`` become ``train`` and ``val``; a lone name stays whole."""
    from densemotion.videolist import differing_parts  # one home for "the parts that differ"

    if len(names) < 2:
        return {n: n for n in names}
    short = {n: "/".join(p) for n, p in zip(names, differing_parts(names), strict=True)}
    return short if len(set(short.values())) == len(names) else {n: n for n in names}


def legible(spec: dict) -> dict:
    """DVC's line chart (colour by revision, dash by series, the dash legend in grey) with every
    line told apart: colour and dash encode one field, "revision: series", so there is one legend
    whose symbols are the lines as drawn. Revisions keep DVC's order (the workspace first; its lines
    are drawn last, on top), series the data's (the order of dvc.yaml's y). Any other spec is
    returned as it is."""
    enc = spec.get("encoding", {})
    mark = spec.get("mark")
    kind = mark.get("type") if isinstance(mark, dict) else mark
    rev_field = enc.get("color", {}).get("field")
    series_field = enc.get("strokeDash", {}).get("field")
    rows = spec.get("data", {}).get("values")
    if kind != "line" or not rev_field or not series_field or not isinstance(rows, list) or not rows:
        return spec
    if not all(isinstance(row, dict) for row in rows):
        return spec
    revs = [str(r) for r in enc["color"].get("scale", {}).get("domain", [])]
    series: list[str] = []
    for row in rows:
        rev, name = str(row.get(rev_field)), str(row.get(series_field))
        if rev not in revs:
            revs.append(rev)
        if name not in series:
            series.append(name)
    short = _short_names(series)
    field = "line"
    while any(field in row for row in rows):
        field = f"_{field}"

    def label(rev: str, name: str) -> str:
        return f"{rev}: {short[name]}"

    values = [{**row, field: label(str(row.get(rev_field)), str(row.get(series_field)))} for row in rows]
    values.sort(key=lambda row: -revs.index(str(row.get(rev_field))))  # drawn in data order: the workspace on top
    present = {row[field] for row in values}
    lines = [(r, s) for r in revs for s in series if label(r, s) in present]
    domain = [label(r, s) for r, s in lines]
    colours = [SHADES[series.index(s) % len(SHADES)][revs.index(r) % 3] for r, s in lines]
    dashes = [DASHES[series.index(s) % len(DASHES)] for _, s in lines]
    legend = {"symbolType": "stroke", "symbolSize": 900, "symbolStrokeWidth": 2.5, "labelLimit": 0}
    channel = {"field": field, "type": "nominal", "title": LINE_LEGEND, "legend": legend}
    out = {**spec, "data": {**spec["data"], "values": values}}
    out["mark"] = {**(mark if isinstance(mark, dict) else {"type": "line"}), "strokeWidth": 2}
    counts = [sum(row[field] == name for row in values) for name in domain]
    if min(counts) == 1:  # a one-epoch run is a single point, which a line alone does not draw
        out["mark"]["point"] = True
    if isinstance(spec.get("width", 300), int):  # room for the curves beside a legend of long labels
        out["width"] = max(spec.get("width", 300), 400)
    out["encoding"] = {
        **enc,
        "color": {**channel, "scale": {"domain": domain, "range": colours}},
        "strokeDash": {**channel, "scale": {"domain": domain, "range": dashes}},
    }
    x = enc.get("x", {})
    if x.get("field") == "step":  # dvclive's step is the epoch: whole ticks only
        out["encoding"]["x"] = {**x, "axis": {**x.get("axis", {}), "tickMinStep": 1, "format": "d"}}
    return out


def plot_specs(repo: Path, base: str) -> tuple[dict[str, dict], list[str]]:
    """The Vega-Lite spec the report renders of every plot of ``dvc plots diff base`` (made
    `legible`): ({plot id: spec}, problems)."""
    diff = _run(["dvc", "plots", "diff", base, "--json"], repo)
    if diff.returncode != 0:
        return {}, [f"`dvc plots diff {base}` failed: {diff.stderr.strip().splitlines()[-1:]}"]
    try:
        plots = json.loads(diff.stdout).get("data", {})
    except json.JSONDecodeError:
        return {}, ["`dvc plots diff --json` gave no JSON"]
    specs = {
        plot_id: legible(entry["content"])
        for plot_id, entries in plots.items()
        for entry in entries
        if entry.get("type") == "vega"
    }
    return specs, []


def render_plots(repo: Path, base: str, out_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """PNG of every Vega plot of ``dvc plots diff base``: ([(plot id, relative png path)], problems)."""
    specs, problems = plot_specs(repo, base)
    if not specs:
        return [], problems
    try:
        import vl_convert as vlc
    except ImportError:
        return [], ["plots not rendered: install vl-convert-python (`pip install -e '.[report]'`)"]
    images = []
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    for plot_id, spec in specs.items():
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", plot_id).strip("_") + ".png"
        try:
            png = vlc.vegalite_to_png(spec, scale=1.5)
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
