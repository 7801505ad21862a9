#!/usr/bin/env bash
# The GPU check: one table of CLIP ViT-B/32, SimCLR ResNet-18, the losses and the place-cell job on one GPU,
# in at most 8 minutes (benchmarks/gpu_check.py). Extra arguments go to it: `--cpu --tiny` is the smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout --signal=INT --kill-after=20 480 python benchmarks/gpu_check.py "$@"
