#!/usr/bin/env bash
# tools/bundle.sh: build the relocatable binary bundle (docs/bundle.md):
#   dist/orchestrate-<version>-linux-x86_64-cuda<MAJOR>/  (or -cpu) and a .tar.gz of it, holding
#   orchestrate, lm-worker, lib/ (the CUDA plugin liblm_cuda.so and every shared library the
#   programs need that a plain Ubuntu 22.04 lacks), LICENSES/, plan.example.json, demo/, README.md.
# The programs get RUNPATH $ORIGIN/lib, the libraries $ORIGIN. Every ELF file is checked to need
# at most GLIBC_2.35 and GLIBCXX_3.4.30 (Ubuntu 22.04); the script fails otherwise.
#
# Usage: tools/bundle.sh [--cuda 12|13|none] [--out DIR] [--build-dir DIR] [--with-cublas] [--jobs N]
#   --cuda 13      build against the host's CUDA toolkit (/usr/local/cuda, nvcc 13.x); needs an R580+ driver
#   --cuda 12      fetch CUDA 12.4 from Debian trixie non-free into a private cache (no change to
#                  the host system; ~1.3 GB download, $ORCH_CUDA12_CACHE, default
#                  ~/.cache/orchestrate-cuda12) and build against it; runs on any R525+ driver
#   --cuda none    CPU only (-cpu bundle)
#   (default: 13 when /usr/local/cuda/bin/nvcc or nvcc on PATH exists, else none)
#   --build-dir D  package an already-built build directory as is (the tests use this); the CUDA
#                  major comes from what D was configured with
#   --out DIR      where the bundle goes (default dist/ at the repository root)
#   --with-cublas  also copy libcublas/libcublasLt into lib/ (~700 MB; by default lm-worker finds
#                  the system's or pip's copy, see docs/bundle.md)
# What it does NOT do: install anything on the host besides tools/setup.sh's packages.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cuda="" out="$ROOT/dist" build_dir="" with_cublas=0 jobs=$(nproc 2>/dev/null || echo 2)
die() { echo "bundle: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=${2:?--cuda needs 12, 13 or none}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --build-dir) build_dir=${2:?--build-dir needs a directory}; shift 2 ;;
    --with-cublas) with_cublas=1; shift ;;
    --jobs) jobs=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
command -v patchelf >/dev/null || "$ROOT/tools/setup.sh"
command -v patchelf >/dev/null || die "patchelf not found (tools/setup.sh installs it)"

# --- CUDA 12.4 from Debian trixie, unpacked into a private folder (never dpkg -i) ---
cuda12_toolkit() {
  local C=${ORCH_CUDA12_CACHE:-$HOME/.cache/orchestrate-cuda12} T
  T=$C/toolkit
  if [ ! -x "$T/bin/nvcc" ] || [ ! -e "$C/root/.complete" ]; then
    echo "bundle: fetching CUDA 12.4 (Debian trixie non-free) into $C" >&2
    mkdir -p "$C/apt/state/lists/partial" "$C/apt/cache/archives/partial" "$C/apt/etc" "$C/apt/debs"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib non-free" \
      > "$C/apt/etc/sources.list"
    touch "$C/apt/state/status"
    local A=(-o "Dir::Etc::SourceList=$C/apt/etc/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State=$C/apt/state" -o "Dir::State::status=$C/apt/state/status" -o "Dir::Cache=$C/apt/cache"
             -o APT::Architecture=amd64 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    apt-get "${A[@]}" -qq update
    (cd "$C/apt/debs" && apt-get "${A[@]}" -qq download nvidia-cuda-toolkit nvidia-cuda-dev libcudart12 \
       libcublas12 libcublaslt12 libnvvm4 libcu++-dev)
    rm -rf "$C/root" && mkdir -p "$C/root"
    for d in "$C"/apt/debs/*.deb; do dpkg -x "$d" "$C/root"; done
    touch "$C/root/.complete"
    # A toolkit laid out like /usr/local/cuda, pointing into the unpacked packages; Debian's nvcc
    # wrapper and nvcc.profile assume /usr/lib/nvidia-cuda-toolkit, so ours replaces them.
    local R=$C/root f
    rm -rf "$T" && mkdir -p "$T/bin" "$T/nvvm"
    for f in nvcc cicc crt; do ln -s "$R/usr/lib/nvidia-cuda-toolkit/bin/$f" "$T/bin/$f"; done
    for f in ptxas fatbinary nvlink cudafe++ bin2c nvprune cuobjdump; do ln -s "$R/usr/bin/$f" "$T/bin/$f"; done
    ln -s "$R/usr/include" "$T/include"
    ln -s "$R/usr/lib/x86_64-linux-gnu" "$T/lib64"
    ln -s "$R/usr/lib/nvidia-cuda-toolkit/libdevice" "$T/nvvm/libdevice"
    printf '%s\n' 'TOP = $(_HERE_)/..' 'NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice' 'PATH += $(_HERE_):' \
      'INCLUDES += "-I$(TOP)/include" $(_SPACE_)' 'LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"' \
      > "$T/bin/nvcc.profile"
  fi
  "$T/bin/nvcc" --version | grep -q "release 12\." || die "$T/bin/nvcc is not CUDA 12"
  echo "$T"
}

# --- build (unless --build-dir) ---
if [ -z "$build_dir" ]; then
  if [ -z "$cuda" ]; then
    if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null; then cuda=13; else cuda=none; fi
  fi
  "$ROOT/tools/setup.sh"
  build_dir="$ROOT/build-bundle-$cuda"
  cfg=(-DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF)
  case "$cuda" in
    none) cfg+=(-DORCH_CUDA=OFF) ;;
    13) nvcc=/usr/local/cuda/bin/nvcc; [ -x "$nvcc" ] || nvcc=$(command -v nvcc) || die "--cuda 13: no nvcc"
        "$nvcc" --version | grep -q "release 13\." || die "--cuda 13: $nvcc is not CUDA 13"
        cfg+=(-DORCH_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc") ;;
    12) T=$(cuda12_toolkit)
        # The host's compiler and glibc, not trixie's: the bundle must run on Ubuntu 22.04.
        cfg+=(-DORCH_CUDA=ON -DCMAKE_CUDA_COMPILER="$T/bin/nvcc" -DCUDAToolkit_ROOT="$T"
              -DCMAKE_CUDA_HOST_COMPILER="$(command -v g++)") ;;
    *) die "--cuda $cuda: expected 12, 13 or none" ;;
  esac
  [ -n "${ORCH_CUDA_ARCHITECTURES:-}" ] && cfg+=(-DCMAKE_CUDA_ARCHITECTURES="$ORCH_CUDA_ARCHITECTURES")
  cmake -S "$ROOT" -B "$build_dir" "${cfg[@]}" >/dev/null
  targets=(orchestrate lm-worker)
  [ "$cuda" = none ] || targets+=(lm_cuda)
  cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}"
fi
build_dir=$(cd "$build_dir" && pwd)
[ -x "$build_dir/orchestrate" ] && [ -x "$build_dir/lm-worker" ] || die "$build_dir has no orchestrate/lm-worker (build it first)"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build_dir/CMakeCache.txt")
[ -n "$version" ] || die "$build_dir/CMakeCache.txt: no CMAKE_PROJECT_VERSION"
plugin="$build_dir/lib/liblm_cuda.so"
if [ -f "$plugin" ]; then
  major=$(readelf -d "$plugin" | sed -n 's/.*Shared library: \[libcublas\.so\.\([0-9]*\)\].*/\1/p')
  [ -n "$major" ] || die "$plugin: no libcublas.so.N in its NEEDED entries"
  [ -z "$cuda" ] || [ "$cuda" = "$major" ] || die "--cuda $cuda but $build_dir is built with CUDA $major"
  suffix=cuda$major
else
  [ -z "$cuda" ] || [ "$cuda" = none ] || die "--cuda $cuda but $build_dir has no CUDA plugin (lib/liblm_cuda.so)"
  plugin="" suffix=cpu
fi
name="orchestrate-$version-linux-x86_64-$suffix"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage="$out/.$name.tmp"
rm -rf "$stage"
mkdir -p "$stage/lib" "$stage/LICENSES" "$stage/demo/models"

# --- programs, plugin, and the libraries they need ---
cp "$build_dir/orchestrate" "$build_dir/lm-worker" "$stage/"
[ -z "$plugin" ] || cp "$plugin" "$stage/lib/"
# In every Ubuntu 22.04 (and Kaggle) image, or the NVIDIA driver/cuBLAS: never copied.
is_base_lib() {
  case "$1" in
    linux-vdso.so.*|ld-linux-x86-64.so.*|libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1) return 0 ;;
    libgcc_s.so.1|libstdc++.so.6|libz.so.1|libcuda.so.*|libnvidia-*) return 0 ;;
    libcublas.so.*|libcublasLt.so.*) [ "$with_cublas" = 0 ] ;;
    *) return 1 ;;
  esac
}
declare -A shipped=()   # soname -> real file it was copied from
for elf in "$stage/orchestrate" "$stage/lm-worker" ${plugin:+"$stage/lib/liblm_cuda.so"}; do
  while read -r so arrow path _; do
    [ "$arrow" = "=>" ] || continue
    is_base_lib "$so" && continue
    [ "$path" != "not" ] || die "$(basename "$elf") needs $so, which is not installed here"
    [ -n "${shipped[$so]:-}" ] && continue
    shipped[$so]=$(readlink -f "$path")   # e.g. OpenBLAS's alternatives symlink -> the real file
    cp "${shipped[$so]}" "$stage/lib/$so"
    chmod u+w "$stage/lib/$so"
  done < <(ldd "$elf")
done
# Set a RUNPATH only where it is not already the one wanted (the programs are linked with
# $ORIGIN/lib), and check that patchelf changed nothing else: patchelf 0.14 overwrites an old
# RUNPATH string with X's, and ld lets a symbol name share that string's tail (".../openblas-
# pthread" held "read"), so a rewrite can corrupt a symbol.
set_runpath() { # FILE RUNPATH
  local now
  now=$(patchelf --print-rpath "$1")
  [ "$now" = "$2" ] && return 0
  local before after
  before=$(nm -D --format=posix "$1" | cut -d' ' -f1,2 | sort)
  patchelf --set-rpath "$2" "$1"
  after=$(nm -D --format=posix "$1" | cut -d' ' -f1,2 | sort)
  [ "$before" = "$after" ] || die "patchelf --set-rpath corrupted the dynamic symbols of $1 (old RUNPATH '$now')"
}
set_runpath "$stage/orchestrate" '$ORIGIN/lib'
set_runpath "$stage/lm-worker" '$ORIGIN/lib'
for so in "${!shipped[@]}"; do set_runpath "$stage/lib/$so" '$ORIGIN'; done

# --- the glibc / libstdc++ bound (Ubuntu 22.04: glibc 2.35, GCC 12's GLIBCXX_3.4.30) ---
"$ROOT/tools/bundle_check_elf.sh" "$stage"

# --- licences ---
cp "$ROOT/LICENSE" "$stage/LICENSES/orchestrate.LICENSE"
{
  echo "# What this bundle ships, and under which licence"
  echo
  echo "orchestrate, lm-worker and lib/liblm_cuda.so: this project's licence (orchestrate.LICENSE)."
  [ -z "$plugin" ] || echo "lib/liblm_cuda.so also contains NVIDIA's CUDA runtime (libcudart_static), redistributable under the NVIDIA CUDA Toolkit EULA (CUDA-EULA.txt)."
  echo
  echo "The common-licenses-*.txt files are the full licence texts the copyright files refer to."
  echo
  echo "| file in lib/ | from (Debian package) | licence text |"
  echo "|---|---|---|"
} > "$stage/LICENSES/README.md"
for so in $(printf '%s\n' "${!shipped[@]}" | sort); do
  case "$so" in libcublas*)   # --with-cublas: NVIDIA's, under the CUDA EULA like the runtime
    echo "| $so | NVIDIA cuBLAS (${shipped[$so]}) | CUDA-EULA.txt |" >> "$stage/LICENSES/README.md"; continue ;;
  esac
  pkg=$(dpkg -S "${shipped[$so]}" 2>/dev/null | head -1 | cut -d: -f1) || pkg=""
  if [ -z "$pkg" ]; then   # dpkg records the path before usrmerge (/lib vs /usr/lib)
    alt=${shipped[$so]#/usr}
    pkg=$(dpkg -S "$alt" 2>/dev/null | head -1 | cut -d: -f1) || pkg=""
  fi
  [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ] || die "$so (${shipped[$so]}): cannot find its Debian package's copyright file"
  cp "/usr/share/doc/$pkg/copyright" "$stage/LICENSES/$pkg.copyright"
  echo "| $so | $pkg $(dpkg-query -W -f='${Version}' "$pkg") | $pkg.copyright |" >> "$stage/LICENSES/README.md"
  # Debian's copyright files point at the full texts (GPL-3, LGPL-2.1, ...): ship those too.
  for lic in $(grep -o '/usr/share/common-licenses/[A-Za-z0-9.+_-]*' "/usr/share/doc/$pkg/copyright" | sed 's/\.$//' | sort -u); do
    [ -f "$lic" ] && cp "$lic" "$stage/LICENSES/common-licenses-$(basename "$lic").txt"
  done
done
if [ -n "$plugin" ]; then
  # The toolkit the build used: its EULA.txt (NVIDIA's installer layout), the runtime wheel's
  # License.txt (pip layout), or Debian's copyright file of the same EULA (the unpacked CUDA 12
  # packages next to our toolkit folder). The toolkit is found three ways, since nvcc may be a
  # wrapper script (CI's /usr/local/bin/nvcc execs the real one) or a symlink: CMake's own answer
  # from `nvcc -v`, and the compiler path's grandparent folder before and after resolving links.
  nvcc=$(sed -n 's/^CMAKE_CUDA_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
  roots=$(sed -n 's/^set(CMAKE_CUDA_COMPILER_TOOLKIT_ROOT "\(.*\)")$/\1/p' \
            "$build_dir"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | head -1)
  roots="$roots $(dirname "$(dirname "$nvcc")") $(dirname "$(dirname "$(readlink -f "$nvcc")")")"
  eula=""
  for troot in $roots; do
    for f in "$troot/EULA.txt" "$troot"/dist-info/nvidia_cuda_runtime-*/licenses/License.txt \
             "$troot/../root/usr/share/doc/nvidia-cuda-dev/copyright"; do
      [ -f "$f" ] && { eula=$f; break 2; }
    done
  done
  [ -n "$eula" ] || die "cannot find the CUDA EULA under any of:$roots (the toolkit of $nvcc), to ship with the CUDA runtime"
  cp "$eula" "$stage/LICENSES/CUDA-EULA.txt"
fi
if [ -n "${shipped[libcsv.so.3]:-}" ]; then
  cp /usr/share/common-licenses/LGPL-2.1 "$stage/LICENSES/common-licenses-LGPL-2.1.txt"
  printf '\n%s\n' "libcsv is licensed under the GNU LGPL (version 2.1 or later; see libcsv3.copyright and common-licenses-LGPL-2.1.txt). It is shipped unmodified as the separate shared library lib/libcsv.so.3, which orchestrate and lm-worker load at run time: you may replace it with your own build of libcsv (same soname) without relinking anything. Its source is at https://github.com/rgamble/libcsv and in Debian's libcsv source package." >> "$stage/LICENSES/README.md"
fi

# --- example plan, demo, README ---
cp "$ROOT/tools/bundle/plan.example.json" "$stage/plan.example.json"
cp "$ROOT/tools/bundle/README.md" "$stage/README.md"
sed -e "s/@NAME@/$name/g" -e "s/@VERSION@/$version/g" -i "$stage/README.md"
M="$ROOT/tests/fixtures/models"
cp -r "$M/tiny-llama" "$M/tiny-llama-lora" "$M/tiny-gemma2" "$stage/demo/models/"
cp "$ROOT/tests/fixtures/data/lmsys-sample.csv" "$stage/demo/input.csv"
sed -e 's|"\.\./tests/fixtures/data/lmsys-sample.csv"|"input.csv"|' -e 's|"\.\./demo-submission.csv"|"submission.csv"|' \
    -e 's|"\.\./demo-work"|"work"|' -e 's|"\.\./tests/fixtures/models/|"models/|' "$ROOT/tools/demo-plan.json" > "$stage/demo/plan.json"
! grep -q '\.\./' "$stage/demo/plan.json" || die "tools/demo-plan.json changed: demo/plan.json still has ../ paths"

# --- into place: the folder, then the archive (each renamed from a temporary name) ---
rm -rf "$out/$name"
mv "$stage" "$out/$name"
tar -C "$out" -czf "$out/.$name.tar.gz.tmp" "$name"
mv "$out/.$name.tar.gz.tmp" "$out/$name.tar.gz"
echo "bundle: $out/$name ($(du -sh "$out/$name" | cut -f1)) and $out/$name.tar.gz ($(du -sh "$out/$name.tar.gz" | cut -f1))"
