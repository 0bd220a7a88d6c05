#!/usr/bin/env bash
# densemotion's two entry points on a fresh machine (see README):
#   bash scripts/dev.sh pipeline   set up .venv, then run the whole DVC pipeline on the sample
#   bash scripts/dev.sh test       set up .venv, then every check CI runs: ruff (lint and format),
#                                  mypy, and the whole test suite with coverage (extra args go to pytest)
# and for development:
#   bash scripts/dev.sh quick      the checks and the quick tests (-m "not slow"), in about a minute
#   bash scripts/dev.sh setup      only create/refresh .venv
# Needs only python3 (>= 3.10) with venv; everything else is installed into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DENSEMOTION_VENV:-.venv}"
PY="$VENV/bin/python"

setup() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "densemotion needs Python >= 3.10 (found $(python3 --version 2>&1))" >&2; exit 1; }
  if [ ! -x "$PY" ]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV" || { echo "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
  fi
  echo "==> installing densemotion and its dependencies into $VENV (first time: a few minutes)"
  # torch and torchvision come as a matching pair from the registry (see README, "Two commands")
  "$PY" -m pip install --quiet --disable-pip-version-check -e ".[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
  "$PY" -c "import torch, torchvision, av, cv2, dvc; print('==> ready: torch', torch.__version__, '| torchvision', torchvision.__version__, '| dvc', dvc.__version__)"
}

pipeline() {
  setup
  export PATH="$PWD/$VENV/bin:$PATH"
  echo "==> dvc repro (the whole pipeline on the built-in sample)"
  dvc repro
  echo "==> held-out results (all metrics: dvc metrics show)"
  dvc metrics show --precision 3 metrics/evaluate/summary.json
  echo "==> done; pictures and plots: metrics/ (dvc plots show writes dvc_plots/index.html)"
}

ensure_sshd() {
  # the SSH remote round trip needs an OpenSSH server; install it where apt-get can, else it skips
  if command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing openssh-server (for the SSH remote test)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q openssh-server >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q openssh-server >/dev/null 2>&1; } \
      || echo "    could not install openssh-server: the SSH remote tests will skip"
  fi
}

checks() {
  echo "==> ruff check (lint)"
  "$VENV/bin/ruff" check src tests bench scripts
  echo "==> ruff format --check"
  "$VENV/bin/ruff" format --check src tests bench scripts
  echo "==> mypy src"
  "$VENV/bin/mypy"
  "$VENV/bin/pre-commit" validate-config .pre-commit-config.yaml
}

tests() {
  setup
  export PATH="$PWD/$VENV/bin:$PATH"
  checks
  ensure_sshd
  echo "==> pytest (all tests, with coverage; slowest 15 listed)"
  python -m pytest -n 2 --dist loadfile -q --cov --cov-report=term --durations=15 "$@"
}

quick() {
  setup
  export PATH="$PWD/$VENV/bin:$PATH"
  checks
  echo "==> pytest -m 'not slow'"
  python -m pytest -n 2 --dist loadfile -q -m "not slow" "$@"
}

case "${1:-}" in
  setup) setup ;;
  pipeline) pipeline ;;
  test) shift; tests "$@" ;;
  quick) shift; quick "$@" ;;
  *) echo "usage: bash scripts/dev.sh {pipeline|test|quick|setup}" >&2; exit 2 ;;
esac
