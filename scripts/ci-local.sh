#!/usr/bin/env bash
# Run .gitlab-ci.yml's jobs on this machine with gitlab-ci-local, as GitLab would:
#   bash scripts/ci-local.sh              the test job, then the report job as on a merge request
#   bash scripts/ci-local.sh report       one job (test | report)
# Installs what it needs: gitlab-ci-local 4.60.1 (newer ones fail on Node 20) into .ci-local/,
# rsync, and Node/npm where apt-get can. With no Docker, jobs run in a shell here
# (--force-shell-executor) in a fresh clone of HEAD (.ci-local/clone/), as GitLab's runner would.
# The merge request's variables are given with --variable; its base is the previous commit.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.60.1

need() {  # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing $2"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$2" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; }
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "ci-local needs $1 (install $2)" >&2; exit 1; }
}
need rsync rsync
need npm npm
BIN=.ci-local/node_modules/.bin/gitlab-ci-local
if [ ! -x "$BIN" ] || [ "$("$BIN" --version 2>/dev/null)" != "$VERSION" ]; then
  echo "==> installing gitlab-ci-local $VERSION into .ci-local/"
  npm install --silent --prefix .ci-local "gitlab-ci-local@$VERSION" >/dev/null
fi
git rev-parse --verify --quiet HEAD~1 >/dev/null || { echo "ci-local needs two commits (the report's base)" >&2; exit 1; }

# GitLab sees a fresh clone of the commit, not this working tree (its .venv, its data, its edits):
# the jobs run in a clone of HEAD whose origin is this repository (so the report can fetch)
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes are not in the run (GitLab would not see them)"
CLONE=.ci-local/clone   # gitlab-ci-local wants --cwd relative
rm -rf "$CLONE"
git clone --quiet --no-hardlinks "$PWD" "$CLONE"
BRANCH="$(git rev-parse --abbrev-ref HEAD)"
MR=(--variable CI_PIPELINE_SOURCE=merge_request_event
    --variable CI_MERGE_REQUEST_IID=1
    --variable "CI_MERGE_REQUEST_DIFF_BASE_SHA=$(git rev-parse HEAD~1)"
    --variable "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=$BRANCH")
JOBS=("$@")
[ ${#JOBS[@]} -gt 0 ] || JOBS=(test report)
for job in "${JOBS[@]}"; do
  echo "==> gitlab-ci-local $job"
  "$PWD/$BIN" --cwd "$CLONE" --force-shell-executor "${MR[@]}" "$job"
done
echo "==> ci-local: every job passed; the report is in .ci-local/clone/.gitlab-ci-local/builds/report/report/"
