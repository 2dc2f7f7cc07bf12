#!/usr/bin/env bash
# tools/demo.sh: the README's demo. Installs missing packages, builds, and runs the demo ensemble:
# the bundled tiny Llama (+ LoRA adapter, with swap_ab TTA) and tiny Gemma-2 classifiers on the
# 200-row LMSYS-style sample, through orchestrate, on the GPUs NVML finds or else 2 CPU slots.
# Writes demo-submission.csv and demo-work/ (report.json, logs) at the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target orchestrate lm-worker
./build/orchestrate --plan tools/demo-plan.json "$@"
echo
echo "demo: submission written to demo-submission.csv; report in demo-work/report.json"
head -4 demo-submission.csv
