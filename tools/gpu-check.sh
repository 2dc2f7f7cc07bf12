#!/usr/bin/env bash
# gpu-check.sh: the one script that checks and measures lm-worker's CUDA backend on a GPU machine.
#
# Built for a short device session (one command, 600 s at most): the headline numbers come first
# and each step prints its "RESULT ..." line as soon as it has it, so a run cut short still shows
# them. In order:
#   0. reuses a prebuilt build (--build-dir, or a carried build-gpu/; see `prebuild` below) when
#      its lm-worker, lib/liblm_cuda.so and tests/test_kernels run here and were built for this
#      card's arch; otherwise builds Release for the card's arch (lm-worker, orchestrate,
#      test_kernels, test_quant), and says which. Meanwhile the random Llama-3-8B- and
#      Gemma-2-9B-shaped bf16 checkpoints are written in the background, GPU_CHECK_LAYERS deep
#      (default 4) plus a copy at half that depth;
#   a. test_kernels (every CUDA op against the CPU reference, fp32/bf16/fp16/int8) and ONE bf16
#      golden (tiny-llama through the real forward pass, packed and one by one);
#   b. the cuBLAS bf16 8192^3 GEMM ceiling (tools/bench_hf.py --gemm), once the checkpoint
#      writer is done with the GPU;
#   c. Llama-3-8B shapes: lm-worker bench at 8x1024 and 4x2048 on both depths, then transformers
#      (sdpa) on the same checkpoints and shapes;
#   d. Gemma-2-9B shapes: the same, transformers with sdpa and eager (only eager applies the
#      attention softcap exactly); then the logits of 4 sequences (37..4500 tokens) through both
#      implementations, compared;
#   e. fidelity: the same 4 sequences through lm-worker on CUDA in fp32 and in bf16, the pooled
#      hidden state after every layer compared (lm-worker bench --trace): relative error per
#      layer, its max and mean over layers (a {"mode": "fidelity"} line);
#   f. the remaining goldens (fp32, fp16; tiny-gemma2, LoRA, int8) and test_quant;
#   g. per-op time: `lm-worker bench --ops` at 4x2048 on each deep checkpoint, timed by CUDA
#      events, again with LM_SYNC_EVERY_OP=1 (wall times), and with LM_CUBLASLT=0;
#   h. orchestrate end to end on the GPU(s) with both tiny models and NVML memory checks;
#   i. compute-sanitizer memcheck of test_kernels' attention test, last, only if time is left;
# then the summary table, which always prints.
#
# Timings and extrapolation. The speed checkpoints have GPU_CHECK_LAYERS layers (default 4; 0 =
# the real 32 / 42, which costs 34 GB of writes and most of the budget). Every timing is also
# taken at half that depth; per-layer time = the difference / the layer difference, non-layer
# time (embedding, final norm, score, launches) = the deep time - its layers' share, and the
# full model = non-layer + real layer count x per-layer time. Numbers derived that way are
# always labelled "extrapolated"; everything else is measured (tools/gpu_check_report.py).
#
# Every mismatch or failed step is printed and makes the exit status 1; later steps still run, so
# one run tells as much as it can. GPU_CHECK_BUDGET (default 540 s) is when optional steps are
# skipped and running ones cut short, so that the table prints before 600 s. Logs, results.jsonl
# and summary.txt go to --out DIR; build (when not prebuilt) and checkpoints to $GPU_CHECK_WORK
# (/tmp/gpu-check-work).
#
# Usage: tools/gpu-check.sh [--out DIR] [--build-dir DIR]     on the GPU machine (<= 600 s limit;
#                                        in a 15-minute session: GPU_CHECK_BUDGET=420, limit 480)
#        tools/gpu-check.sh prebuild [--arch 90] [--build-dir DIR] [--targets "T..."]
#                                        beforehand, where nvcc is: a carriable build (below)
#        tools/gpu-check.sh fetch-deps   beforehand, where apt works (build dependencies)
#        tools/gpu-check.sh --help
# Build dependencies (libuv, libcsv, jansson, pcre2, xxhash headers) are often missing on GPU
# images and cannot be installed there: `fetch-deps` downloads the .deb files into .gpu-deps/
# (git-ignored); carry that folder, and a build on the GPU machine unpacks it into a private
# prefix. `prebuild` builds the device run's targets for one arch into build-gpu/ (only the
# programs, the plugin and their non-system shared libraries, so no rebuild and no CMake cache
# travels); carry build-gpu and .gpu-deps (docs/benchmarks.md, "How to run it in a 15-minute
# device session").
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS_DIR=$ROOT/.gpu-deps
DEB_PACKAGES="libuv1 libuv1-dev libcsv3 libcsv-dev libjansson4 libjansson-dev libpcre2-8-0 libpcre2-16-0
  libpcre2-32-0 libpcre2-posix3 libpcre2-dev libxxhash0 libxxhash-dev pkgconf pkgconf-bin libpkgconf3"
# The device run's targets; lm-worker pulls in the plugin lib/liblm_cuda.so.
TARGETS="lm-worker orchestrate test_kernels test_quant"

usage() {
    sed -n '/^# Usage:/,/^# Build dependencies/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    cat <<EOF

Options:
  --out DIR        logs, results.jsonl, summary.txt (default: \$OUT if set, else /tmp/gpu-check-out)
  --build-dir DIR  reuse the build in DIR when it runs here, else build there (default: a carried
                   $ROOT/build-gpu if present, else \$GPU_CHECK_WORK/build)
  -h, --help       this text
prebuild options:
  --arch N         CUDA arch to build for (default: 90, H100/H200)
  --build-dir DIR  the carriable result (default: $ROOT/build-gpu); the CMake tree is DIR-tree
  --targets "T..." build only these (default: "$TARGETS"); for trying the subcommand out
Environment:
  GPU_CHECK_BUDGET=540   seconds after which optional steps are skipped
  GPU_CHECK_LAYERS=4     depth of the speed checkpoints (0: the real models; see above)
  GPU_CHECK_WORK=DIR     build and checkpoints (default: /tmp/gpu-check-work)
EOF
}

# ---------------------------------------------------------------------------------------------
# fetch-deps: the build dependencies as .deb files, for a GPU image without them
# ---------------------------------------------------------------------------------------------
if [[ "${1:-}" == "fetch-deps" ]]; then
    mkdir -p "$DEPS_DIR" && cd "$DEPS_DIR" || exit 1
    # shellcheck disable=SC2086
    apt-get download $DEB_PACKAGES || exit 1
    echo "fetched into $DEPS_DIR ($(du -sh "$DEPS_DIR" | cut -f1)); carry '.gpu-deps' to the GPU machine"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# prebuild: build the device run's targets here, for one arch, into a folder that can be carried
# ---------------------------------------------------------------------------------------------
# The folder holds lm-worker, orchestrate, lib/liblm_cuda.so, tests/test_kernels and
# tests/test_quant in the build tree's layout, the non-system shared libraries they need
# (libuv, jansson, pcre2, libcsv, xxhash) in lib/, and PREBUILT (arch, commit, CUDA version).
# It is relocatable: lm-worker's RUNPATH is $ORIGIN/lib, and the plugin is found from
# /proc/self/exe (lib/ next to the program, or ../lib from tests/: backend_cuda_load.c). No
# CMake cache travels, so nothing on the GPU machine rebuilds or needs the absolute paths of
# this one. OpenBLAS is left out (ORCH_OPENBLAS=OFF): a GPU run does not need it and its 36 MB
# would not fit the device tool's 64 MiB carry limit.
if [[ "${1:-}" == "prebuild" ]]; then
    shift
    ARCH=90 DEST=$ROOT/build-gpu TGTS=$TARGETS
    while (($#)); do
        case "$1" in
            --arch) ARCH=${2:?--arch needs a value}; shift 2 ;;
            --build-dir) DEST=${2:?--build-dir needs a value}; shift 2 ;;
            --targets) TGTS=${2:?--targets needs a value}; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) echo "gpu-check.sh prebuild: unknown option '$1' (--help lists them)" >&2; exit 64 ;;
        esac
    done
    [[ "$DEST" = /* ]] || DEST=$PWD/$DEST
    TREE=$DEST-tree
    if ! command -v nvcc >/dev/null && [[ -z "${CUDACXX:-}" ]] && [[ -x /usr/local/cuda/bin/nvcc ]]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    echo "prebuild: sm_$ARCH, targets: $TGTS; CMake tree $TREE"
    mkdir -p "$TREE" || exit 1
    cmake -S "$ROOT" -B "$TREE" -DCMAKE_BUILD_TYPE=Release -DORCH_CUDA=ON -DORCH_WERROR=ON -DORCH_OPENBLAS=OFF \
        -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >"$TREE/configure.log" 2>&1 ||
        { tail -n 20 "$TREE/configure.log"; echo "prebuild: configure failed (log: $TREE/configure.log)"; exit 1; }
    # shellcheck disable=SC2086
    cmake --build "$TREE" -j"${PREBUILD_JOBS:-2}" --target $TGTS || { echo "prebuild: build failed"; exit 1; }
    rm -rf "$DEST" && mkdir -p "$DEST/lib" "$DEST/tests" || exit 1
    staged=()
    for f in lm-worker orchestrate lib/liblm_cuda.so tests/test_kernels tests/test_quant; do
        [[ -f "$TREE/$f" ]] && cp -p "$TREE/$f" "$DEST/$f" && staged+=("$f")
    done
    # Their shared libraries, less the C runtime, the CUDA driver and cuBLAS (the GPU machine has
    # those; the plugin finds cuBLAS itself), copied as the soname the programs ask for.
    for f in "${staged[@]}"; do
        ldd "$DEST/$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
    done | sort -u | while read -r soname path; do
        case "$soname" in
            libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libstdc++* | libgcc_s* | \
                libcuda.so* | libcublas* | libcudart* | libnvidia* | liblm_cuda.so) ;;
            *) cp -L "$path" "$DEST/lib/$soname" ;;
        esac
    done
    cuda=$(sed -n 's/^CMAKE_CUDA_COMPILER_VERSION:[A-Z]*=//p' "$TREE/CMakeCache.txt")
    [[ -n "$cuda" ]] || cuda=$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')
    {
        echo "build_type=Release"
        echo "arch=$ARCH"
        echo "cuda=$cuda"
        echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo -dirty)"
        echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "programs=${staged[*]}"
    } >"$DEST/PREBUILT"
    echo "prebuild: staged ${staged[*]:-nothing} and $(find "$DEST/lib" -maxdepth 1 -name '*.so*' ! -name liblm_cuda.so | wc -l) shared libraries"
    missing=()
    for f in lm-worker lib/liblm_cuda.so tests/test_kernels; do [[ -f "$DEST/$f" ]] || missing+=("$f"); done
    ((${#missing[@]})) && echo "prebuild: NOT complete, missing ${missing[*]}: gpu-check.sh will build on the GPU machine"
    size_k=$(du -sk "$DEST" | cut -f1)
    deps_k=$(du -sk "$DEPS_DIR" 2>/dev/null | cut -f1)
    echo "prebuild: $DEST is $((size_k / 1024)) MiB; .gpu-deps $((${deps_k:-0} / 1024)) MiB (device carry limit: 64 MiB)"
    ((size_k + ${deps_k:-0} > 62 * 1024)) && echo "prebuild: WARNING: too big to carry"
    echo "prebuild: CUDA $cuda: the GPU machine needs a CUDA ${cuda%%.*}.x driver and libcublas.so.${cuda%%.*}"
    echo "carry: [\"$(realpath --relative-to="$ROOT" "$DEST")\", \".gpu-deps\"]"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
OUTDIR=${OUT:-/tmp/gpu-check-out}
BUILD_DIR=
while (($#)); do
    case "$1" in
        --out) OUTDIR=${2:?--out needs a folder}; shift 2 ;;
        --build-dir) BUILD_DIR=${2:?--build-dir needs a folder}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "gpu-check.sh: unknown argument '$1' (--help lists them)" >&2; exit 64 ;;
    esac
done
WORK=${GPU_CHECK_WORK:-/tmp/gpu-check-work}
BUDGET=${GPU_CHECK_BUDGET:-540}
LAYERS=${GPU_CHECK_LAYERS:-4}
[[ "$LAYERS" =~ ^[0-9]+$ && "$BUDGET" =~ ^[0-9]+$ ]] ||
    { echo "gpu-check.sh: GPU_CHECK_LAYERS and GPU_CHECK_BUDGET must be whole numbers" >&2; exit 64; }
LOGS=$WORK/logs
RESULTS=$OUTDIR/results.jsonl
REPORT=(python3 "$ROOT/tools/gpu_check_report.py")
mkdir -p "$OUTDIR" "$LOGS" || exit 2
rm -f "$LOGS"/*.log
: >"$RESULTS"
T0=$(date +%s)
FAILS=()
SKIPS=()

elapsed() { echo $(($(date +%s) - T0)); }
note() { echo "[$(printf '%4d' "$(elapsed)")s] $*"; }

# run NAME LIMIT CMD...: run CMD with a time limit, output to $LOGS/NAME.log; JSON result lines
# go to results.jsonl. On failure print the log's tail and record NAME. Returns CMD's status.
run() {
    local name=$1 limit=$2 t rc left
    shift 2
    # Never run past the budget's end (+40 s): the summary must still print inside the device
    # tool's per-command limit.
    left=$((BUDGET + 40 - $(elapsed)))
    ((limit > left)) && limit=$((left > 10 ? left : 10))
    t=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    grep -h '^{"mode"' "$LOGS/$name.log" >>"$RESULTS"
    if [[ $rc -eq 0 ]]; then
        note "ok    $name ($(($(date +%s) - t))s)"
    else
        note "FAIL  $name (exit $rc$([[ $rc -eq 124 ]] && echo ", timed out after ${limit}s"), $(($(date +%s) - t))s)"
        FAILS+=("$name")
        grep -E 'MISMATCH|FAIL|error|fatal' "$LOGS/$name.log" | head -n 30
        echo "  ----- last lines of $name.log"
        tail -n 15 "$LOGS/$name.log" | sed 's/^/  | /'
    fi
    return $rc
}

# have SECONDS: is there time left for a step that needs about SECONDS?
have() {
    if (($(elapsed) + $1 > BUDGET)); then
        return 1
    fi
    return 0
}

# skip WHAT: record a step skipped for time.
skip() { note "skip  $1 (out of time)"; SKIPS+=("$1"); }

# The summary table (always), the logits cross-check, the verdict.
finish() {
    if [[ -n "${CKPT_PID:-}" ]] && kill -0 "$CKPT_PID" 2>/dev/null; then
        pkill -P "$CKPT_PID" # the generator (our own child) is not needed any more
        kill "$CKPT_PID" 2>/dev/null
    fi
    grep -h '^{"mode"' "$LOGS/checkpoints.log" >>"$RESULTS" 2>/dev/null
    "${REPORT[@]}" table "$RESULTS" | tee "$OUTDIR/summary.txt"
    "${REPORT[@]}" logits "$RESULTS" | tee -a "$OUTDIR/summary.txt" || FAILS+=("logits-vs-transformers")
    cat "$LOGS"/*.log >"$OUTDIR/gpu-check.log" 2>/dev/null
    echo
    if ((${#SKIPS[@]})); then echo "skipped for time: ${SKIPS[*]}"; fi
    if ((${#FAILS[@]})); then
        echo "GPU CHECK FAILED ($(elapsed)s): ${FAILS[*]}"
        exit 1
    fi
    echo "GPU CHECK PASSED ($(elapsed)s)"
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------
# CMake finds nvcc on PATH (or through CUDACXX); images often keep it only in /usr/local/cuda/bin.
if ! command -v nvcc >/dev/null && [[ -z "${CUDACXX:-}" ]] && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH=/usr/local/cuda/bin:$PATH
fi
note "gpu: $(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
note "nvcc: $(nvcc --version 2>&1 | tail -1); $(cmake --version 2>&1 | head -1)"
note "python: $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
note "disk: $(df -h "$WORK" | tail -1); out: $OUTDIR"
CC_ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
if [[ -z "$CC_ARCH" ]]; then
    echo "FATAL: nvidia-smi cannot see a GPU"
    exit 2
fi
HALF=fp16
((CC_ARCH >= 80)) && HALF=bf16

# ---------------------------------------------------------------------------------------------
# Random checkpoints, in the background (GPU random numbers, disk writes) while we build and test
# ---------------------------------------------------------------------------------------------
# ckpt_dir ARCH DEPTH: where the checkpoint of ARCH at DEPTH layers (0: the real depth) lives.
ckpt_dir() { echo "$WORK/$1-L$2"; }
if ((LAYERS > 0)); then
    SHALLOW=$((LAYERS / 2 > 0 ? LAYERS / 2 : 1))
    ((SHALLOW == LAYERS)) && SHALLOW=
else
    SHALLOW=
fi
(
    for arch in llama3-8b gemma2-9b; do
        for depth in $LAYERS $SHALLOW; do
            dir=$(ckpt_dir "$arch" "$depth")
            [[ -f "$dir/config.json" ]] && continue # kept from an earlier run on this machine
            python3 "$ROOT/tools/make_random_checkpoint.py" --arch "$arch" --out "$dir" --layers "$depth" || exit 1
        done
    done
) >"$LOGS/checkpoints.log" 2>&1 &
CKPT_PID=$!
note "writing random checkpoints: ${LAYERS/#0/real} layers${SHALLOW:+ and $SHALLOW} (GPU_CHECK_LAYERS)"

# ---------------------------------------------------------------------------------------------
# Build: reuse a prebuilt one that runs here, else build
# ---------------------------------------------------------------------------------------------
# prebuilt_ok DIR: does DIR hold a Release build of lm-worker, its plugin and test_kernels for
# this card's arch that runs here (the plugin loads, the driver and cuBLAS fit)? Prints why not.
prebuilt_ok() {
    local d=$1 bt arch f out
    if [[ -f "$d/PREBUILT" ]]; then
        bt=$(sed -n 's/^build_type=//p' "$d/PREBUILT") arch=$(sed -n 's/^arch=//p' "$d/PREBUILT")
    elif [[ -f "$d/CMakeCache.txt" ]]; then
        bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$d/CMakeCache.txt")
        arch=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$d/CMakeCache.txt")
    else
        echo "no PREBUILT or CMakeCache.txt"; return 1
    fi
    [[ "$bt" == Release ]] || { echo "build type '$bt', not Release"; return 1; }
    [[ " ${arch//;/ } " == *" $CC_ARCH "* || " ${arch//;/ } " == *" $CC_ARCH-real "* ]] ||
        { echo "built for arch '$arch', this card is $CC_ARCH"; return 1; }
    for f in lm-worker lib/liblm_cuda.so tests/test_kernels; do
        [[ -f "$d/$f" ]] || { echo "$f missing"; return 1; }
    done
    out=$(LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" "$d/lm-worker" --version 2>&1) ||
        { echo "lm-worker --version: $(echo "$out" | tail -n 2 | tr '\n' ' ')"; return 1; }
    out=$(LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" "$d/lm-worker" check --device cuda 2>&1) ||
        { echo "lm-worker check --device cuda: $(echo "$out" | tail -n 2 | tr '\n' ' ')"; return 1; }
    out=$(LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" "$d/tests/test_kernels" --list 2>&1) ||
        { echo "test_kernels --list: $(echo "$out" | tail -n 2 | tr '\n' ' ')"; return 1; }
    return 0
}

deps_ok() {
    pkg-config --exists libuv jansson libpcre2-8 libxxhash 2>/dev/null &&
        { [[ -f /usr/include/csv.h ]] || [[ -f "${CMAKE_PREFIX_PATH:-/nonexistent}/include/csv.h" ]]; }
}

# deps_unpack: make the build dependencies available (from .gpu-deps when the image lacks them).
# Returns 1 when they are still missing.
deps_unpack() {
    deps_ok && return 0
    if ls "$DEPS_DIR"/*.deb >/dev/null 2>&1; then
        local D=$WORK/deps f m ML
        rm -rf "$D" && mkdir -p "$D"
        for f in "$DEPS_DIR"/*.deb; do
            if command -v dpkg-deb >/dev/null; then
                dpkg-deb -x "$f" "$D"
            else # a .deb is an ar archive holding data.tar.{xz,zst,gz}
                m=$(ar t "$f" | grep '^data\.tar')
                ar p "$f" "$m" >"$WORK/$m" && tar -xf "$WORK/$m" -C "$D" && rm -f "$WORK/$m"
            fi
        done
        find "$D" -name '*.pc' -exec sed -i -E "s#=/usr(/|\$)#=$D/usr\\1#" {} +
        ML=$D/usr/lib/x86_64-linux-gnu
        export PATH=$D/usr/bin:$PATH LD_LIBRARY_PATH=$ML:${LD_LIBRARY_PATH:-} CMAKE_PREFIX_PATH=$D/usr
        export PKG_CONFIG_PATH=$ML/pkgconfig:$D/usr/share/pkgconfig:${PKG_CONFIG_PATH:-}
        note "build dependencies unpacked from .gpu-deps into $D"
    fi
    deps_ok && return 0
    echo "FATAL: build dependencies missing (pkg-config libuv jansson libpcre2-8 libxxhash, csv.h) and no usable"
    echo "       .gpu-deps/*.deb: run 'tools/gpu-check.sh fetch-deps' where apt works and carry .gpu-deps"
    return 1
}

if [[ -z "$BUILD_DIR" && -d "$ROOT/build-gpu" ]]; then
    BUILD_DIR=$ROOT/build-gpu
fi
[[ -n "$BUILD_DIR" && "$BUILD_DIR" != /* ]] && BUILD_DIR=$PWD/$BUILD_DIR
BUILT=0 # 1: the tests built; 2: lm-worker too (separate targets, so one failure costs less)
if [[ -n "$BUILD_DIR" ]] && why=$(prebuilt_ok "$BUILD_DIR"); then
    B=$BUILD_DIR
    BUILT=2
    export LD_LIBRARY_PATH=$B/lib:${LD_LIBRARY_PATH:-}
    note "ok    reusing the prebuilt build in $B: $(tr '\n' ' ' <"$B/PREBUILT" 2>/dev/null)$("$B/lm-worker" --version | tr '\n' ' ')"
else
    if [[ -n "$BUILD_DIR" ]]; then
        note "not reusing $BUILD_DIR: $why; building instead"
    fi
    B=$WORK/build
    [[ -n "$BUILD_DIR" && ! -f "$BUILD_DIR/PREBUILT" ]] && B=$BUILD_DIR # a staged prebuild stays as it was
    deps_unpack || exit 2
    note "building in $B for sm_$CC_ARCH"
    if run configure 180 cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DORCH_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="$CC_ARCH" &&
        run build-tests 420 cmake --build "$B" -j"$(nproc)" --target test_kernels test_quant; then
        BUILT=1
        run build-worker 300 cmake --build "$B" -j"$(nproc)" --target lm-worker orchestrate && BUILT=2
    fi
fi
W=$B/lm-worker
F=$ROOT/tests/fixtures/models

# Strict tolerances where the weights are exact in the dtype; elsewhere the issue's tolerance
# plus 3x the error the rounded weights alone cause (tests/helpers/golden_lib.sh, whose
# reasoning and tiny-model measurements are in docs/cuda-emu.md).
. "$ROOT/tests/helpers/golden_lib.sh"
golden() { # golden NAME MODE BASE ARGS...: MODE "" = strict
    local name=$1 mode=$2 base=$3; shift 3
    local tol=() t
    if [[ -n "$mode" ]]; then
        t=$(golden_tol "$W" "$mode" "$base" "$@")
        [[ -n "$t" ]] && tol=(--prob-tol "$t")
    fi
    run "$name" 120 "$W" bench --device cuda "${tol[@]}" "$@"
    grep -h '^golden' "$LOGS/$name.log" | sed "s/^golden [^ ]*: /      RESULT $name: /"
}

# ---------------------------------------------------------------------------------------------
# a. Kernel tests and one bf16 golden
# ---------------------------------------------------------------------------------------------
if ((BUILT >= 1)); then
    # About 30 s when healthy; a hung kernel must not eat the whole budget.
    run test_kernels 150 "$B/tests/test_kernels"
    grep -hE '^[0-9]+ passed, [0-9]+ failed$' "$LOGS/test_kernels.log" | tail -n 1 | sed 's/^/      RESULT test_kernels: /'
    # The three comparisons closest to their tolerance, for the record.
    grep 'worst |diff|/tol' "$LOGS/test_kernels.log" | awk '{print $NF, $0}' | sort -g | tail -n 3 |
        cut -d' ' -f2- | sed 's/^ */      closest to tolerance: /'
fi
if ((BUILT >= 2)); then
    golden "golden-tiny-llama-$HALF" "" 5e-3 --model "$F/tiny-llama" --dtype "$HALF" --golden "$F/tiny-llama/golden.json"
else
    SKIPS+=("goldens, timings, fidelity (lm-worker did not build)")
fi

# ---------------------------------------------------------------------------------------------
# b. GEMM ceiling, once the checkpoint writer no longer uses the GPU (or out of time)
# ---------------------------------------------------------------------------------------------
note "waiting for the random checkpoints"
while kill -0 "$CKPT_PID" 2>/dev/null && have 150; do sleep 1; done
kill -0 "$CKPT_PID" 2>/dev/null && note "WARNING: checkpoint generation still running: timings below share the GPU"
grep -h '^{"mode"' "$LOGS/checkpoints.log" | sed 's/^/      /'
run gemm-ceiling 60 python3 "$ROOT/tools/bench_hf.py" --gemm --n 8192
"${REPORT[@]}" gemm "$RESULTS" | sed 's/^/      /'

# wait_checkpoint DIR: is DIR complete? (make_random_checkpoint.py writes config.json last.) A
# checkpoint still being written when time ran out counts as a failure.
wait_checkpoint() {
    [[ -f "$1/config.json" ]] && return 0
    note "FAIL  checkpoint $(basename "$1") ($(kill -0 "$CKPT_PID" 2>/dev/null && echo "out of time" || echo "generator failed"))"
    FAILS+=("checkpoint-$(basename "$1")")
    tail -n 15 "$LOGS/checkpoints.log" | sed 's/^/  | /'
    return 1
}

# make_ids DIR FILE: 4 fixed random sequences (37, 300, 1100, 4500 tokens; 4500 crosses Gemma-2's
# 4096 sliding window) below the vocab size, never the pad id.
make_ids() {
    python3 - "$1" "$2" <<'EOF'
import json, random, sys
cfg = json.load(open(sys.argv[1] + "/config.json"))
rng, pad = random.Random(7), cfg.get("pad_token_id")
with open(sys.argv[2], "w") as f:
    for n in (37, 300, 1100, 4500):
        ids = [rng.randrange(cfg["vocab_size"]) for _ in range(n)]
        f.write(json.dumps({"input_ids": [(i + 1) % cfg["vocab_size"] if i == pad else i for i in ids]}) + "\n")
EOF
}

# ---------------------------------------------------------------------------------------------
# c, d. Each model: lm-worker at both depths, then transformers on the same checkpoints
# ---------------------------------------------------------------------------------------------
READY=() # the archs whose deep checkpoint is complete
for spec in "llama3-8b:sdpa:sdpa" "gemma2-9b:sdpa,eager:eager"; do
    IFS=: read -r name attns ids_attn <<<"$spec"
    deep=$(ckpt_dir "$name" "$LAYERS")
    wait_checkpoint "$deep" || continue
    READY+=("$name")
    make_ids "$deep" "$WORK/ids-$name.jsonl"
    hf_dirs=$deep
    if ((BUILT >= 2)) && have 60; then
        run "lm-worker-$name" 180 "$W" bench --model "$deep" --device cuda --dtype "$HALF" \
            --shapes 8x1024,4x2048 --iters 5 --ids "$WORK/ids-$name.jsonl"
        if [[ -n "$SHALLOW" ]] && wait_checkpoint "$(ckpt_dir "$name" "$SHALLOW")"; then
            hf_dirs=$deep,$(ckpt_dir "$name" "$SHALLOW")
            have 50 && run "lm-worker-$name-L$SHALLOW" 120 "$W" bench --model "$(ckpt_dir "$name" "$SHALLOW")" \
                --device cuda --dtype "$HALF" --shapes 8x1024,4x2048 --iters 5
        fi
        "${REPORT[@]}" model "$RESULTS" "$name" lm-worker | sed 's/^/      /'
    else
        skip "lm-worker-$name"
    fi
    if have 60; then
        run "transformers-$name" 240 python3 "$ROOT/tools/bench_hf.py" --model "$hf_dirs" --attn "$attns" \
            --shapes 8x1024,4x2048 --iters 5 --ids "$WORK/ids-$name.jsonl" --ids-attn "$ids_attn"
        "${REPORT[@]}" model "$RESULTS" "$name" hf | sed 's/^/      /'
    else
        skip "transformers-$name"
    fi
done
"${REPORT[@]}" logits "$RESULTS" | sed 's/^/      RESULT /'

# ---------------------------------------------------------------------------------------------
# e. Fidelity: bf16 against fp32 on CUDA, layer by layer, on the deep checkpoints
# ---------------------------------------------------------------------------------------------
for name in "${READY[@]}"; do
    deep=$(ckpt_dir "$name" "$LAYERS")
    if ((BUILT >= 2)) && have 60; then
        for dt in fp32 "$HALF"; do
            run "trace-$name-$dt" 120 "$W" bench --model "$deep" --device cuda --dtype "$dt" \
                --ids "$WORK/ids-$name.jsonl" --trace "$WORK/trace-$name-$dt.json" || break
        done
        if [[ -f "$WORK/trace-$name-fp32.json" && -f "$WORK/trace-$name-$HALF.json" ]]; then
            "${REPORT[@]}" fidelity "$RESULTS" "$name" "$WORK/trace-$name-fp32.json" "$WORK/trace-$name-$HALF.json" |
                sed 's/^/      /' || FAILS+=("fidelity-$name")
        fi
        rm -f "$WORK/trace-$name-"*.json
    else
        skip "fidelity-$name"
    fi
done

# ---------------------------------------------------------------------------------------------
# f. The remaining goldens and test_quant
# ---------------------------------------------------------------------------------------------
if ((BUILT >= 1)); then
    if [[ ! -x "$B/tests/test_quant" ]]; then
        SKIPS+=("test_quant (not built)")
    elif have 20; then
        run test_quant 60 "$B/tests/test_quant"
    else
        skip test_quant
    fi
fi
if ((BUILT >= 2)); then
    DTYPES="fp32 fp16"
    ((CC_ARCH >= 80)) && DTYPES="fp32 bf16 fp16"
    for dt in $DTYPES; do
        mode=$dt
        [[ $dt == fp32 ]] && mode=""
        if ! have 15; then skip "goldens-$dt"; continue; fi
        [[ $dt == "$HALF" ]] ||
            golden "golden-tiny-llama-$dt" "" 5e-3 --model "$F/tiny-llama" --dtype "$dt" --golden "$F/tiny-llama/golden.json"
        golden "golden-tiny-gemma2-$dt" "$mode" 5e-3 --model "$F/tiny-gemma2" --dtype "$dt" \
            --golden "$F/tiny-gemma2/golden.json"
        golden "golden-tiny-llama-lora-$dt" "$mode" 5e-3 --model "$F/tiny-llama" --adapter "$F/tiny-llama-lora" \
            --dtype "$dt" --golden "$F/tiny-llama-lora/golden.json"
    done
    for m in tiny-llama tiny-gemma2; do
        if have 15; then
            golden "golden-$m-$HALF-int8" int8 2e-2 --model "$F/$m" --dtype "$HALF" --quant int8 --golden "$F/$m/golden.json"
        else
            skip "golden-$m-$HALF-int8"
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# g. Per-op time at 4x2048 on each deep checkpoint
# ---------------------------------------------------------------------------------------------
# First timed by CUDA events (launches overlapping; LM_GEMM_DEBUG lists the cublasLt algorithm
# chosen per GEMM shape), then with LM_SYNC_EVERY_OP=1 (each op waited for: exact wall times, and
# an asynchronous error names its op), then, time permitting, with LM_CUBLASLT=0 (cublasGemmEx:
# does the cublasLt algorithm choice pay? compare the matmul rows). Each reloads the checkpoint.
for name in "${READY[@]}"; do
    for mode in events wall gemmex; do
        if ((BUILT >= 2)) && have 40; then
            envs=(LM_GEMM_DEBUG=1)
            [[ $mode == wall ]] && envs=(LM_SYNC_EVERY_OP=1)
            [[ $mode == gemmex ]] && envs=(LM_CUBLASLT=0)
            run "ops-$mode-$name" 120 env "${envs[@]}" "$W" bench --model "$(ckpt_dir "$name" "$LAYERS")" --device cuda \
                --dtype "$HALF" --shapes 4x2048 --iters 3 --ops
            sed -n '/^ops /,/^forward /p' "$LOGS/ops-$mode-$name.log"
        else
            skip "ops-$mode-$name"
        fi
    done
done

# ---------------------------------------------------------------------------------------------
# h. orchestrate end to end on the GPU(s)
# ---------------------------------------------------------------------------------------------
# Both tiny models (Llama+LoRA with swap_ab, Gemma-2) over the 200-row sample, gpus "auto"
# (NVML), memory checked back at baseline after each stage (orchestrate itself fails the run
# otherwise); the per-stage numbers are printed.
if ((BUILT >= 2)) && [[ ! -x "$B/orchestrate" ]]; then
    note "skip  orchestrate-e2e ($B/orchestrate not built)"
    SKIPS+=("orchestrate-e2e (not built)")
elif ((BUILT >= 2)) && have 60; then
    E2E=$WORK/e2e
    rm -rf "$E2E" && mkdir -p "$E2E"
    cat >"$E2E/plan.json" <<PLAN
{"input": "$ROOT/tests/fixtures/data/lmsys-sample.csv", "output": "$E2E/submission.csv",
 "work_dir": "$E2E/work", "gpus": "auto",
 "models": [
  {"name": "tiny-llama-lora", "worker": "lm-worker", "model": "$F/tiny-llama", "adapter": "$F/tiny-llama-lora",
   "dtype": "$HALF", "max_length": 512, "batch_size": 16, "tta": ["identity", "swap_ab"]},
  {"name": "tiny-gemma2", "worker": "lm-worker", "model": "$F/tiny-gemma2", "template": "gemma-chat",
   "dtype": "$HALF", "max_length": 512, "batch_size": 16}]}
PLAN
    if run orchestrate-e2e 120 "$B/orchestrate" --plan "$E2E/plan.json"; then
        python3 - "$E2E/work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for st in r.get("stages", []):
    for m in st.get("memory", []):
        print(f"      RESULT stage {st['model']}: GPU {m['gpu']} used {m['before_mib']:.0f} MiB before, "
              f"{m['after_mib']:.0f} MiB after (waited {m['waited_s']:.1f} s, leaked={m['leaked']})")
    if not st.get("memory"):
        print(f"      stage {st['model']}: no NVML memory numbers in the report")
PY
        if ! grep -q '"gpu"' "$E2E/work/report.json"; then
            note "FAIL  orchestrate-e2e: no NVML memory numbers in report.json"
            FAILS+=("orchestrate-e2e-nvml")
        fi
    fi
elif ((BUILT >= 2)); then
    skip orchestrate-e2e
fi

# ---------------------------------------------------------------------------------------------
# i. compute-sanitizer memcheck, last, only when time is left
# ---------------------------------------------------------------------------------------------
# Out-of-bounds and misaligned accesses of the attention kernels (tensor-core and generic),
# which a value comparison can miss. compute-sanitizer cannot attach on some hosts (gVisor:
# "Device not supported") and may be slow: both are reported as skipped, not failed.
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if ((BUILT >= 1)) && [[ -n "$CS" ]]; then
    if have 100; then
        t=$(date +%s)
        timeout --kill-after=10 90 "$CS" --tool memcheck --error-exitcode 97 --print-limit 20 \
            "$B/tests/test_kernels" test_attention >"$LOGS/memcheck-attention.log" 2>&1
        rc=$?
        if [[ $rc -eq 0 ]]; then
            note "ok    memcheck-attention ($(($(date +%s) - t))s)"
        elif [[ $rc -eq 124 || $rc -eq 137 ]] || grep -q 'Device not supported' "$LOGS/memcheck-attention.log"; then
            note "skip  memcheck-attention (sanitizer unusable here or too slow; exit $rc)"
            SKIPS+=("memcheck-attention")
        else
            note "FAIL  memcheck-attention (exit $rc)"
            FAILS+=("memcheck-attention")
            grep -E '^========= (Invalid|Misaligned|Out of|Program hit|ERROR)' "$LOGS/memcheck-attention.log" | head -n 20
            tail -n 15 "$LOGS/memcheck-attention.log" | sed 's/^/  | /'
        fi
    else
        skip memcheck-attention
    fi
fi
finish
