#!/usr/bin/env bash
# tools/setup.sh: install the Debian packages the project builds with, when any is missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) only when installing.
# The CUDA toolkit is not installed here: the CUDA backend is built when nvcc is found.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-dev gzip libuv1-dev libcsv-dev libjansson-dev libpcre2-dev libxxhash-dev xxhash libopenblas-dev patchelf)
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
