#!/usr/bin/env bash
# bundle.sh: the relocatable bundle (tools/bundle.sh, docs/bundle.md), packaged from this build
# directory (--build-dir: nothing is rebuilt) and checked:
#   1. every ELF file needs at most GLIBC_2.35 / GLIBCXX_3.4.30 (read with objdump, not with the
#      readelf the bundler's own check uses), and lm-worker links no CUDA library;
#   2. in a private mount namespace where the system's libuv, jansson, libcsv, pcre2, OpenBLAS
#      (+ gfortran, quadmath), every CUDA library and /usr/local/cuda* are hidden (the build's own
#      orchestrate and lm-worker, which use the system copies, must fail to start there):
#      the demo ensemble runs (lm-worker on the CPU), `--device auto` runs on the CPU and says
#      why, `--device cuda` fails with that reason and exit 69; with a fake libcuda.so.1
#      (tests/fake_driver) the driver-too-old, no-device and cuBLAS-not-found messages.
# Needs root (unshare -m); fails, not skips, without it. Skips in the ASan build, whose binaries
# need the sanitizer runtime and are not what a bundle ships.
set -euo pipefail
source "$(dirname "$0")/../helpers/itest_lib.sh"
SRC=${ORCH_SOURCE_DIR:?}
if grep -q '^ORCH_SANITIZE:BOOL=ON' "$B/CMakeCache.txt"; then
    echo "skipped: sanitizer build (the bundle packages the Release build)"
    exit 77
fi
[ "$(id -u)" = 0 ] || fail "needs root for unshare -m (CI runs as root)"
command -v unshare >/dev/null || fail "unshare (util-linux) not found"
command -v objdump >/dev/null || fail "objdump (binutils) not found"

"$SRC/tools/bundle.sh" --build-dir "$B" --out "$T/dist" >"$T/bundle.log" 2>&1 || { cat "$T/bundle.log"; fail "tools/bundle.sh failed"; }
D=$(find "$T/dist" -mindepth 1 -maxdepth 1 -type d -name 'orchestrate-*-linux-x86_64-*')
[ -n "$D" ] && [ -f "$D.tar.gz" ] || fail "no bundle folder and .tar.gz in $T/dist"
for f in orchestrate lm-worker plan.example.json README.md LICENSES/README.md LICENSES/libcsv3.copyright \
         lib/libuv.so.1 lib/libjansson.so.4 lib/libcsv.so.3 lib/libpcre2-8.so.0 lib/libopenblas.so.0 demo/plan.json; do
    [ -e "$D/$f" ] || fail "bundle lacks $f"
done
cuda=0
[ -f "$D/lib/liblm_cuda.so" ] && cuda=1
case "$D" in *-cpu) [ $cuda = 0 ] || fail "-cpu bundle with a CUDA plugin" ;; *) [ $cuda = 1 ] || fail "$D: no lib/liblm_cuda.so" ;; esac

# --- 1. the glibc / libstdc++ bound, with objdump's version references ---
n=0
while IFS= read -r -d '' f; do
    [ "$(head -c4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue
    n=$((n + 1))
    for v in $(objdump -p "$f" | awk '/^Version References:/{on=1} on' | grep -oE '(GLIBC|GLIBCXX)_[0-9.]+' | sort -u); do
        lim=2.35
        [ "${v%%_*}" = GLIBCXX ] && lim=3.4.30
        [ "$(printf '%s\n%s\n' "${v#*_}" "$lim" | sort -V | tail -1)" = "$lim" ] || fail "${f#"$D"/} needs $v (bound: $lim)"
    done
done < <(find "$D" -type f -print0)
[ $n -ge 8 ] || fail "only $n ELF files in the bundle"
if readelf -d "$D/lm-worker" | grep -E 'NEEDED.*(libcud|libcublas|libnv)'; then fail "lm-worker links a CUDA library"; fi
readelf -d "$D/lm-worker" | grep -q 'RUNPATH.*\[\$ORIGIN/lib\]' || fail "lm-worker lacks RUNPATH \$ORIGIN/lib"
if [ $cuda = 1 ]; then
    readelf -d "$D/lib/liblm_cuda.so" | grep -q 'NEEDED.*libcublas\.so\.' || fail "the plugin does not need libcublas"
    if readelf -d "$D/lib/liblm_cuda.so" | grep -q 'NEEDED.*libcudart'; then fail "the plugin links libcudart dynamically"; fi
    major=$(readelf -d "$D/lib/liblm_cuda.so" | sed -n 's/.*\[libcublas\.so\.\([0-9]*\)\].*/\1/p')
fi

# --- 2. the namespace: what to hide ---
: >"$T/empty"
hide_files=()
for so in libuv.so.1 libjansson.so.4 libcsv.so.3 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 \
          $(ldconfig -p | awk '{print $1}' | grep -E '^lib(cuda|cublas|cublasLt|cudart|nvidia-ml)\.so' | sort -u) libpcre2-8.so.0; do
    for p in $(ldconfig -p | awk -v s="$so" '$1 == s {print $NF}'); do
        hide_files+=("$(readlink -f "$p")")
    done
done
for p in /usr/lib/x86_64-linux-gnu/openblas*/libopenblas*.so* /usr/lib/x86_64-linux-gnu/blas/libblas.so*; do
    [ -e "$p" ] && hide_files=("$(readlink -f "$p")" "${hide_files[@]}")
done
hide_dirs=()
for p in /usr/local/cuda /usr/local/cuda-* /usr/local/lib/python3*/dist-packages/nvidia /usr/local/lib/python3*/site-packages/nvidia \
         /usr/lib/python3/dist-packages/nvidia /opt/conda/lib/python3*/site-packages/nvidia; do
    [ -d "$p" ] && [ ! -L "$p" ] && hide_dirs+=("$p")
done
[ ${#hide_files[@]} -ge 6 ] || fail "found only ${#hide_files[@]} system libraries to hide: ${hide_files[*]}"

cp -r "$D/demo" "$T/demo"
sed -i 's/"max_length": [0-9]*/"max_length": 96/' "$T/demo/plan.json"
FAKE_DIR="$B/tests/fake_driver"
cat >"$T/ns.sh" <<EOF
# Runs inside unshare -m. pcre2 is hidden last: mount itself needs it (through libselinux).
set -u
mount --make-rprivate / || exit 90
for d in ${hide_dirs[*]+"${hide_dirs[@]}"}; do mount -t tmpfs -o size=1m tmpfs "\$d" || exit 91; done
for f in ${hide_files[*]}; do [ -e "\$f" ] || continue; mount --bind "$T/empty" "\$f" || exit 92; done
cd "$T"
"$B/orchestrate" --help >sys_orch.out 2>&1; echo \$? >sys_orch.rc
"$B/lm-worker" --help >sys_lmw.out 2>&1; echo \$? >sys_lmw.rc
RUN=("$D/lm-worker" run --model "$D/demo/models/tiny-llama" --input "$D/demo/input.csv" --max-length 64)
"\${RUN[@]}" --output auto.csv --device auto >auto.out 2>auto.err; echo \$? >auto.rc
"\${RUN[@]}" --output cuda.csv --device cuda >cuda.out 2>cuda.err; echo \$? >cuda.rc
if [ $cuda = 1 ]; then
    LD_LIBRARY_PATH="$FAKE_DIR" FAKE_CUDA_DRIVER_VERSION=11080 "\${RUN[@]}" --output old.csv --device cuda >/dev/null 2>old.err; echo \$? >old.rc
    LD_LIBRARY_PATH="$FAKE_DIR" FAKE_CUDA_DEVICES=0 "\${RUN[@]}" --output nodev.csv --device cuda >/dev/null 2>nodev.err; echo \$? >nodev.rc
    LD_LIBRARY_PATH="$FAKE_DIR" FAKE_CUDA_DRIVER_VERSION=99000 "\${RUN[@]}" --output noblas.csv --device auto >/dev/null 2>noblas.err; echo \$? >noblas.rc
fi
(cd demo && "$D/orchestrate" --plan plan.json >../demo.out 2>&1; echo \$? >../demo.rc)
exit 0
EOF
unshare -m bash "$T/ns.sh" || fail "unshare -m / mounting over the system libraries failed (exit $?): this test needs root and mount namespaces"

# The system copies were really hidden: the build's own programs (linked to them) cannot start.
[ "$(cat "$T/sys_orch.rc")" != 0 ] || fail "system libuv/jansson still usable in the namespace (build/orchestrate started)"
[ "$(cat "$T/sys_lmw.rc")" != 0 ] || fail "system libraries still usable in the namespace (build/lm-worker started)"
grep -q "error while loading shared libraries" "$T/sys_lmw.out" || { cat "$T/sys_lmw.out"; fail "build/lm-worker failed for another reason"; }

[ "$(cat "$T/auto.rc")" = 0 ] || { cat "$T/auto.err"; fail "--device auto failed in the namespace"; }
[ "$(grep -c '^note:' "$T/auto.err")" = 1 ] || { cat "$T/auto.err"; fail "--device auto: expected one note: line"; }
head -1 "$T/auto.csv" | grep -q '^id,' || fail "--device auto wrote no output"
[ "$(cat "$T/cuda.rc")" = 69 ] || { cat "$T/cuda.err"; fail "--device cuda: exit $(cat "$T/cuda.rc"), expected 69"; }
[ ! -e "$T/cuda.csv" ] || fail "--device cuda failed but wrote an output"
if [ $cuda = 1 ]; then
    why="no NVIDIA driver (libcuda.so.1 not found)"
    grep -qF "$why" "$T/auto.err" || { cat "$T/auto.err"; fail "--device auto: the note does not say '$why'"; }
    grep -qF "$why" "$T/cuda.err" || { cat "$T/cuda.err"; fail "--device cuda: no '$why'"; }
    [ "$(cat "$T/old.rc")" = 69 ] && grep -q "driver too old: it supports CUDA 11.8" "$T/old.err" ||
        { cat "$T/old.err"; fail "old driver: expected exit 69 and 'driver too old'"; }
    [ "$(cat "$T/nodev.rc")" = 69 ] && grep -q "no CUDA device" "$T/nodev.err" ||
        { cat "$T/nodev.err"; fail "no device: expected exit 69 and 'no CUDA device'"; }
    [ "$(cat "$T/noblas.rc")" = 0 ] || { cat "$T/noblas.err"; fail "--device auto without cuBLAS did not fall back"; }
    for w in "cuBLAS not found" "libcublas.so.$major" "libcublasLt.so.$major" "$D/lib" /usr/local/cuda/lib64 "nvidia/cublas/lib"; do
        grep -qF "$w" "$T/noblas.err" || { cat "$T/noblas.err"; fail "cuBLAS message lacks '$w'"; }
    done
else
    grep -q "built without CUDA" "$T/cuda.err" || { cat "$T/cuda.err"; fail "-cpu bundle: --device cuda does not say why"; }
fi
[ "$(cat "$T/demo.rc")" = 0 ] || { cat "$T/demo.out"; fail "the demo ensemble failed in the namespace"; }
[ "$(wc -l <"$T/demo/submission.csv")" = 201 ] || fail "demo submission: expected 200 rows"
echo "ok: $(basename "$D"): $n ELF files within the bound; runs with the system libraries and CUDA hidden"
