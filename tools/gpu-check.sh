#!/usr/bin/env bash
# On the GPU machine: build everything with CUDA (Release), confirm the Hopper kernels carry
# sm_90a machine code, and run the whole test suite, GPU tests included.
# Usage: tools/gpu-check.sh [golden-dir]   (results under ${OUT:-/tmp/wanrt-gpu-check})
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/wanrt-gpu-check}"
mkdir -p "$out"
[ -n "${1:-}" ] && export WANRT_GOLDEN_DIR="$(realpath "$1")"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$out/gpu.txt"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
grep 'wanrt:' "$out/configure.log"
cmake --build build-gpu -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -E 'error|Error' -A5 "$out/build.log" | head -60; exit 1; }
echo "sm_90a SASS in the library:"; cuobjdump --list-elf build-gpu/libwanrt_lib.a 2>/dev/null | grep -c sm_90a
ctest --test-dir build-gpu --output-on-failure -j 8 2>&1 | tee "$out/ctest.log" | tail -25
ctest --test-dir build-gpu -L gpu -V 2>&1 | grep -E 'GPU 0|SKIPPED|OK|FAILED' | head -20
