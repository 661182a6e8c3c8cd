#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ with clang and runs each for FUZZ_SECONDS seconds.
# Exits non-zero when a target reports a finding: a crash, a sanitizer report, an unexpected
# exception, a timeout or running out of memory.
#
# Usage: scripts/run-fuzzers.sh [target ...]     (default: every fuzz/*.cpp)
# Environment:
#   FUZZ_SECONDS    run time per target (default 20)
#   FUZZ_BUILD_DIR  build folder (default build-fuzz in the repository root)
#   FUZZ_JOBS       parallel build jobs (default 1)
#
# Seeds come from fuzz/corpus/<target>/ (small files made by our own writers) and are only
# read; what libFuzzer adds is kept in <build>/fuzz-work/<target>/corpus for the next run.
# fuzz/<target>.dict, when present, is passed as the target's dictionary.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$repo/build-fuzz}
seconds=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-1}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for source in "$repo"/fuzz/*.cpp; do
    [ -e "$source" ] && targets+=("$(basename "$source" .cpp)")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "run-fuzzers: no fuzz targets in $repo/fuzz" >&2
  exit 2
fi

# WANRT_SANITIZE puts ASan and UBSan (no recovery: any UB aborts) on the whole library, and
# -fsanitize=fuzzer-no-link gives libFuzzer coverage of the library code, not only of the
# target's own file; the targets themselves add -fsanitize=fuzzer.
mkdir -p "$build"
cmake -S "$repo" -B "$build" -G Ninja \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
  -DWANRT_FUZZ=ON -DWANRT_SANITIZE=ON -DWANRT_CUDA=OFF -DBUILD_TESTING=OFF -DWANRT_BENCH=OFF \
  >"$build/configure.log" 2>&1 || { cat "$build/configure.log" >&2; exit 2; }
ninja -C "$build" -j"$jobs" "${targets[@]}"

findings=()
for target in "${targets[@]}"; do
  work=$build/fuzz-work/$target
  mkdir -p "$work/corpus" "$work/artifacts"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
           -artifact_prefix="$work/artifacts/")
  [ -f "$repo/fuzz/$target.dict" ] && options+=(-dict="$repo/fuzz/$target.dict")
  corpora=("$work/corpus")
  [ -d "$repo/fuzz/corpus/$target" ] && corpora+=("$repo/fuzz/corpus/$target")

  echo "== $target: ${seconds}s (log: $work/log)"
  if "$build/$target" "${options[@]}" "${corpora[@]}" >"$work/log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/log" || true
  else
    echo "!! $target: FINDING (exit $?); reproducer in $work/artifacts/" >&2
    tail -n 40 "$work/log" >&2
    findings+=("$target")
  fi
done

if [ ${#findings[@]} -gt 0 ]; then
  echo "run-fuzzers: findings in: ${findings[*]}" >&2
  exit 1
fi
echo "run-fuzzers: no findings in ${#targets[@]} target(s)"
