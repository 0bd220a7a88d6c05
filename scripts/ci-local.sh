#!/usr/bin/env bash
# Run .gitlab-ci.yml's jobs on this machine with gitlab-ci-local, as GitLab would:
#   bash scripts/ci-local.sh              the test job, then the report job as on a merge request
#   bash scripts/ci-local.sh report       one job (test | report)
# Installs what it needs: gitlab-ci-local 4.60.1 (newer ones fail on Node 20) into .ci-local/,
# rsync, and Node/npm where apt-get can. With no Docker, jobs run in a shell here
# (--force-shell-executor) on a copy of the repository in .gitlab-ci-local/. The merge request's
# variables are given with --variable; its base is the previous commit.
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

# gitlab-ci-local copies the git-tracked files; a clean tree is what GitLab would see
[ -z "$(git status --porcelain --untracked-files=no)" ] || echo "note: uncommitted changes to tracked files go into the run"
MR=(--variable CI_PIPELINE_SOURCE=merge_request_event
    --variable CI_MERGE_REQUEST_IID=1
    --variable "CI_MERGE_REQUEST_DIFF_BASE_SHA=$(git rev-parse HEAD~1)"
    --variable "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=$(git rev-parse --abbrev-ref HEAD)")
for job in "${@:-test report}"; do
  for j in $job; do
    echo "==> gitlab-ci-local $j"
    "$BIN" --force-shell-executor "${MR[@]}" "$j"
  done
done
echo "==> ci-local: every job passed; the report is in .gitlab-ci-local/builds/report/report/"
