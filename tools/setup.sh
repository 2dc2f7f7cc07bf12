#!/usr/bin/env bash
# tools/setup.sh: install the Debian packages the project builds with, when any is missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) only when installing.
# The CUDA toolkit is not installed here: the CUDA backend is built when nvcc is found.
#   tools/setup.sh          what building and the demo need
#   tools/setup.sh --test   also what the test suite runs against (tools/test.sh, CI): headless
#                           Chromium (report.html's test) and a one-node Slurm with munge
#                           (integration_slurm). Installed here, up front, so that two tests
#                           running in parallel never race for the dpkg lock.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-dev gzip libuv1-dev libcsv-dev libjansson-dev libpcre2-dev libxxhash-dev xxhash libopenblas-dev patchelf)
if [ "${1:-}" = --test ]; then
  pkgs+=(chromium slurmctld slurmd slurm-client munge)
elif [ $# -gt 0 ]; then
  echo "usage: tools/setup.sh [--test]" >&2
  exit 64
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
