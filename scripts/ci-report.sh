#!/usr/bin/env bash
# The `report` job of .gitlab-ci.yml: results of this commit, a report against REPORT_BASE, posted.
#   REPORT_BASE=<rev> bash scripts/ci-report.sh
# With DVC_REMOTE_URL set (a CI variable; credentials as the remote's own variables, see
# docs/gitlab.md), results are reused from that remote and only what changed runs; without it the whole
# pipeline is reproduced on the built-in sample. The job fails only where the results fail:
# a missing base, a base without metrics or a failed post become lines of the report.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${REPORT_BASE:?set REPORT_BASE to the git revision to compare with}"

if [ -n "${CI_MERGE_REQUEST_TARGET_BRANCH_NAME:-}" ]; then
  echo "==> fetching the target branch $CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
  git fetch --quiet origin "$CI_MERGE_REQUEST_TARGET_BRANCH_NAME" \
    || echo "    could not fetch it: the report will say what is missing"
fi
if ! git rev-parse --verify --quiet "$REPORT_BASE^{commit}" >/dev/null; then
  git fetch --quiet --unshallow origin 2>/dev/null || true   # a shallow clone lacks the base
fi

bash scripts/dev.sh setup
export PATH="$PWD/.venv/bin:$PATH"
if [ -n "${DVC_REMOTE_URL:-}" ]; then
  echo "==> results from the DVC remote (DVC_REMOTE_URL); running only what changed"
  dvc remote add --local --force --default ci "$DVC_REMOTE_URL"
  if [ -n "${DVC_SSH_KEY_FILE:-}" ]; then dvc remote modify --local ci keyfile "$DVC_SSH_KEY_FILE"; fi
  dvc repro --pull --allow-missing
else
  echo "==> no DVC_REMOTE_URL: reproducing the pipeline on the built-in sample"
  dvc repro
fi
dvc status

echo "==> report against $REPORT_BASE"
python -m densemotion report --base "$REPORT_BASE" --out report/report.md
dvc plots diff "$REPORT_BASE" --out report/dvc_plots >/dev/null 2>&1 \
  || echo "    dvc plots diff failed: report/dvc_plots/ is missing (the PNGs in report/plots/ are not)"
python scripts/mr_note.py report/report.md
