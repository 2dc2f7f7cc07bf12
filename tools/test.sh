#!/usr/bin/env bash
# tools/test.sh: the project's test command (README, CI). Installs missing packages, then runs
# two builds and their ctest suites:
#   1. build/        Release, -Werror, the CUDA backend compiled when nvcc is present (no GPU is
#                    needed: GPU-only tests report "skipped"); integration_bundle packages it with
#                    tools/bundle.sh and runs it in a mount namespace, so it needs root;
#                    integration_slurm starts a private Slurm (installing slurmctld, slurmd,
#                    slurm-client and munge with apt-get when missing), so it needs root too;
#   2. build-asan/   clang, ASan+UBSan, every unit and integration test again plus a short run of
#                    each libFuzzer target over its seed corpus.
# Set TEST_FAST=1 to run only the first build. Wall-clock benchmarks (ctest label "bench") are
# left out; run them with `(cd build && ctest -L bench)`.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh --test
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DORCH_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -LE bench -j"$jobs")

if [ "${TEST_FAST:-0}" != 1 ]; then
  CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DORCH_SANITIZE=ON \
    -DORCH_FUZZ=ON -DORCH_WERROR=ON -DORCH_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -LE bench -j"$jobs")
fi
