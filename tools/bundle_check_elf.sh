#!/usr/bin/env bash
# tools/bundle_check_elf.sh DIR: fail unless every ELF file under DIR needs at most GLIBC_2.35,
# GLIBCXX_3.4.30 and CXXABI_1.3.13 (Ubuntu 22.04's glibc and GCC 12 libstdc++), the bound the
# bundle promises (docs/bundle.md). Prints one line per file with its highest versions.
set -euo pipefail
dir=${1:?usage: bundle_check_elf.sh DIR}
max_glibc=2.35 max_glibcxx=3.4.30 max_cxxabi=1.3.13
bad=0 n=0
# Highest version in "$2" (one per line) of prefix $1, or empty.
top() { { grep "^$1_[0-9.]*$" <<<"$2" || true; } | sed "s/^$1_//" | sort -V | tail -1; }
# 0 when version $1 <= $2.
le() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$2" ]; }
while IFS= read -r -d '' f; do
  [ "$(head -c4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || continue
  n=$((n + 1))
  needs=$(readelf -V -W "$f" | sed -n '/Version needs section/,$p' | grep -o 'Name: [A-Z+]*_[0-9.]*' | awk '{print $2}' | sort -u)
  g=$(top GLIBC "$needs"); x=$(top GLIBCXX "$needs"); a=$(top CXXABI "$needs")
  echo "${f#"$dir"/}: GLIBC ${g:--}${x:+ GLIBCXX $x}${a:+ CXXABI $a}"
  if [ -n "$g" ] && ! le "$g" $max_glibc; then echo "  ERROR: needs GLIBC_$g > $max_glibc" >&2; bad=1; fi
  if [ -n "$x" ] && ! le "$x" $max_glibcxx; then echo "  ERROR: needs GLIBCXX_$x > $max_glibcxx" >&2; bad=1; fi
  if [ -n "$a" ] && ! le "$a" $max_cxxabi; then echo "  ERROR: needs CXXABI_$a > $max_cxxabi" >&2; bad=1; fi
done < <(find "$dir" -type f -print0)
[ "$n" -gt 0 ] || { echo "bundle_check_elf: no ELF file under $dir" >&2; exit 1; }
[ "$bad" = 0 ] || { echo "bundle_check_elf: $dir exceeds glibc $max_glibc / libstdc++ $max_glibcxx" >&2; exit 1; }
echo "bundle_check_elf: $n ELF files within GLIBC_$max_glibc, GLIBCXX_$max_glibcxx, CXXABI_$max_cxxabi"
