#!/usr/bin/env bash
# check-cuda12.sh: does the GPU path still build with CUDA 12.1, the oldest toolkit we support
# (Kaggle's images ship CUDA 12.x)? Run by hand where PyPI is reachable; not part of CI (it
# downloads about 430 MB). No GPU needed.
#
# PyPI's CUDA 12.1 wheels carry the headers and ptxas but no nvcc front end, so it checks the two
# halves separately:
#   1. host side: backend_cuda.c, test_kernels.c and the kernels (as C++, under cuda-emu) built
#      against CUDA 12.1's runtime, fp16/bf16 and cuBLAS headers with -Werror, then run:
#      test_kernels_emu and a golden, so every runtime/cuBLAS call and every half-type helper
#      the code uses exists in 12.1 with the same meaning;
#   2. device side: each kernel's PTX (from this machine's nvcc, for sm_75/80/89/90) marked as
#      PTX ISA 8.1 and assembled by CUDA 12.1's ptxas, so no instruction newer than 12.1 is used.
# Usage: tools/check-cuda12.sh [WORKDIR]   (default /tmp/check-cuda12)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-/tmp/check-cuda12}
mkdir -p "$W/wheels" "$W/inc" "$W/ptx"
cd "$W/wheels"
pip download --quiet --no-deps nvidia-cuda-nvcc-cu12==12.1.105 nvidia-cuda-runtime-cu12==12.1.105 \
    nvidia-cublas-cu12==12.1.3.1 -d .
for w in *.whl; do unzip -q -o "$w" 'nvidia/*/include/*' 'nvidia/cuda_nvcc/bin/ptxas' 2>/dev/null || true; done
for d in cuda_runtime cuda_nvcc cublas; do cp -r "nvidia/$d/include/." "$W/inc/"; done
grep -q 'CUDART_VERSION  12010' "$W/inc/cuda_runtime_api.h" || { echo "not CUDA 12.1 headers" >&2; exit 1; }

echo "== 1. host side against CUDA 12.1 headers"
cmake -S "$ROOT" -B "$W/build" -DCMAKE_BUILD_TYPE=Release -DORCH_WERROR=ON -DCMAKE_CUDA_ARCHITECTURES=75 \
    -DORCH_CUDA_HEADERS="$W/inc" >/dev/null
cmake --build "$W/build" -j"$(nproc)" --target test_kernels_emu lm-worker-emu >/dev/null
(cd "$ROOT/tests" && "$W/build/tests/cuda_emu/test_kernels_emu" | grep -E "passed|FAIL")
M=$ROOT/tests/fixtures/models
"$W/build/lm-worker-emu" bench --device cuda --dtype bf16 --model "$M/tiny-llama" --golden "$M/tiny-llama/golden.json" |
    tail -1

echo "== 2. device side: PTX assembled by CUDA 12.1's ptxas"
PTXAS="$W/wheels/nvidia/cuda_nvcc/bin/ptxas"
"$PTXAS" --version | tail -1
for cu in "$ROOT"/kernels/*.cu; do
    n=$(basename "$cu" .cu)
    for a in 75 80 89 90; do
        nvcc -std=c++17 -ptx -arch=compute_$a -I"$ROOT/kernels" "$cu" -o "$W/ptx/$n.$a.ptx"
        sed -i 's/^\.version .*/.version 8.1/' "$W/ptx/$n.$a.ptx"
        "$PTXAS" -arch=sm_$a "$W/ptx/$n.$a.ptx" -o "$W/ptx/$n.$a.cubin"
    done
    echo "ok   $n: sm_75 sm_80 sm_89 sm_90"
done
echo "check-cuda12: the host side builds and runs against CUDA 12.1 headers; every kernel assembles with its ptxas"
