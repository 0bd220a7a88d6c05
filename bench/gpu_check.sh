#!/usr/bin/env bash
# The one prepared GPU check (bench/gpu_check.py): the trackers' reference tests on the GPU, then
# the throughput table, written to $OUT (else bench/out/) as gpu_check.md and gpu_check.json.
#
#   bash bench/gpu_check.sh [--skip-tests] [--batch 8] [--seconds 4] [--dry]
#
# Made for a lent H100/H200 machine that has only torch, torchvision, numpy,
# opencv-python-headless, matplotlib, pyyaml, pytest and tqdm: under 8 minutes there (each row is
# timed for ~4 s after one warm-up call; the reference tests take about a minute). The check
# imports no PyAV and no DVC; densemotion's params need pydantic, which comes as wheels in .whl/
# at the repository's root (untracked, so it travels with the working tree; never commit it),
# downloaded once where the registry is reachable, at the versions in .venv (python -m pip list;
# 3.12: the GPU machine's python3):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_extensions==4.16.0 \
#     typing_inspection==0.4.5
#
# Without .whl/ the packages must already be importable (PYTHONPATH=src only).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
python3 bench/gpu_check.py --device cuda --out "${OUT:-bench/out}" "$@"
