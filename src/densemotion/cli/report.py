"""``densemotion report --base REV [--out report.md]``: what this change did, as markdown.

The workspace against a git revision (a merge request's base, the previous commit): the
held-out results side by side, ``dvc params diff`` and ``dvc metrics diff``, and every plot of
``dvc plots diff`` rendered to PNG beside the report (offline). Missing pieces are lines in the
report, not errors.
"""

from __future__ import annotations

import argparse

from densemotion.cli.common import clean_errors, stage_parser
from densemotion.report import build_report


def _parser() -> argparse.ArgumentParser:
    p = stage_parser("report", __doc__)
    p.add_argument("--base", required=True, help="git revision to compare with (e.g. origin/main, HEAD~1)")
    p.add_argument("--out", default="report/report.md", help="markdown file to write (default: %(default)s)")
    p.add_argument("--repo", default=".", help="the repository (default: here)")
    return p


@clean_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = build_report(args.repo, args.base, args.out)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
