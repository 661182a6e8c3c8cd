#!/usr/bin/env bash
# One GPU-machine session, in stages, each logged to $OUT/<stage>.log (raw results are kept):
#   build        Release build of everything (build-gpu/)
#   test         the GPU tests (label gpu) with the golden data, verbose (the errors are the evidence)
#   test-all     the whole suite
#   micro        bench_linear, bench_kernels, bench_attention + PyTorch SDPA in the same run
#   dit          bench_dit 720p and 480p, and the PyTorch eager baseline of the same forward
#   vae-t5       bench_vae (fp16, the default; fp32 with TF32 convolutions) and bench_t5
#   quant        bench_dit at 720p with --quantize int8 and fp8 (the bf16 row is the dit stage's)
#   attention    issue 5's table: Ops::attention (bf16 auto and --attention int8) and PyTorch SDPA
#                (flash, cuDNN) at the four Wan shapes, in one session
#   dit720       bench_dit at 720p: blocks eager and graphed, 8-bit attention, and the fastest
#                per-forward combination (fp8 linears + 8-bit attention), no profiling
#   e2e          full-size random checkpoint + `wanrt generate` at 480p, 81 frames, 40 steps
# Usage: tools/gpu-session.sh [--golden DIR] STAGE...   (stages run in the order given)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/wanrt-gpu}"
mkdir -p "$out"
if [ "${1:-}" = "--golden" ]; then export WANRT_GOLDEN_DIR="$(realpath "$2")"; shift 2; fi
jobs=$(nproc)
stage() { echo "=== $1 ($(date -u +%H:%M:%S))"; }
for s in "$@"; do
  case "$s" in
    build)
      stage build
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
      cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
      { time cmake --build build-gpu -j "$jobs"; } > "$out/build.log" 2>&1 || { grep -E 'error|Error' -A5 "$out/build.log" | head -60; exit 1; }
      tail -4 "$out/build.log"; grep -c "warning:" "$out/build.log" | sed 's/^/compiler warnings: /' ;;
    test)
      stage test
      ctest --test-dir build-gpu -L gpu -V -j 4 > "$out/test-gpu.log" 2>&1
      grep -E "tests passed|tests failed|\(Failed\)|rel err|relative error|error [0-9]|conv_dtype|bf16 error" "$out/test-gpu.log" | head -80 ;;
    test-all)
      stage test-all
      ctest --test-dir build-gpu -j "$jobs" --output-on-failure > "$out/test-all.log" 2>&1
      tail -15 "$out/test-all.log" ;;
    micro)
      stage micro
      timeout 150 ./build-gpu/bench_linear > "$out/bench_linear.log" 2>&1; tail -20 "$out/bench_linear.log"
      timeout 120 ./build-gpu/bench_kernels > "$out/bench_kernels.log" 2>&1; tail -30 "$out/bench_kernels.log"
      timeout 150 ./build-gpu/bench_attention > "$out/bench_attention.log" 2>&1; tail -15 "$out/bench_attention.log"
      timeout 150 python3 bench/attention_reference.py > "$out/attention_reference.log" 2>&1; tail -15 "$out/attention_reference.log" ;;
    dit)
      stage dit
      timeout 300 ./build-gpu/bench_dit --size all --warmup 1 --repeats 2 > "$out/bench_dit.log" 2>&1; tail -60 "$out/bench_dit.log"
      timeout 200 python3 bench/pytorch_dit.py --size all --blocks 8 --warmup 1 --repeats 2 > "$out/pytorch_dit.log" 2>&1; tail -25 "$out/pytorch_dit.log" ;;
    vae-t5)
      stage vae-t5
      timeout 180 ./build-gpu/bench_vae --conv-dtype fp16 > "$out/bench_vae_fp16.log" 2>&1; tail -20 "$out/bench_vae_fp16.log"
      timeout 180 ./build-gpu/bench_vae --conv-dtype fp32 --tf32 > "$out/bench_vae_tf32.log" 2>&1; tail -20 "$out/bench_vae_tf32.log"
      timeout 60 ./build-gpu/bench_t5 --tokens 512 --warmup 1 --repeats 5 > "$out/bench_t5.log" 2>&1; tail -15 "$out/bench_t5.log" ;;
    quant)
      stage quant
      for q in int8 fp8; do
        timeout 240 ./build-gpu/bench_dit --size 720p --quantize $q --warmup 1 --repeats 2 > "$out/bench_dit_$q.log" 2>&1; tail -30 "$out/bench_dit_$q.log"
      done ;;
    attention)
      stage attention
      for shape in 720p-self 720p-ulysses8 480p-self 720p-cross; do
        timeout 60 ./build-gpu/bench_attention --shape $shape --only op --seconds 0.3 --rounds 3 > "$out/attention_bf16_$shape.log" 2>&1
        WANRT_ATTENTION=int8 timeout 60 ./build-gpu/bench_attention --shape $shape --only op --seconds 0.3 --rounds 3 > "$out/attention_int8_$shape.log" 2>&1
        timeout 90 python3 bench/attention_reference.py --shape $shape --seconds 0.3 --rounds 3 > "$out/attention_reference_$shape.log" 2>&1
        grep -h "^|" "$out/attention_bf16_$shape.log" "$out/attention_int8_$shape.log" "$out/attention_reference_$shape.log" | grep -v "^|---"
      done ;;
    dit720)
      stage dit720
      timeout 150 ./build-gpu/bench_dit --size 720p --graph both --no-profile --warmup 2 --repeats 2 > "$out/bench_dit_720p.log" 2>&1; grep -A5 "^Summary" "$out/bench_dit_720p.log"
      WANRT_ATTENTION=int8 timeout 100 ./build-gpu/bench_dit --size 720p --graph on --no-profile --warmup 2 --repeats 2 > "$out/bench_dit_720p_int8attn.log" 2>&1; grep -A4 "^Summary" "$out/bench_dit_720p_int8attn.log"
      WANRT_ATTENTION=int8 timeout 100 ./build-gpu/bench_dit --size 720p --graph on --quantize fp8 --no-profile --warmup 2 --repeats 2 --magcache E012K2R20,E012K2R10,E024K2R10 > "$out/bench_dit_720p_fastest.log" 2>&1; grep -A4 "^Summary" "$out/bench_dit_720p_fastest.log"; grep -A8 "^Per 40-step" "$out/bench_dit_720p_fastest.log" ;;
    e2e)
      stage e2e
      bash bench/bench_e2e.sh --wanrt build-gpu/wanrt --work /tmp/wanrt-e2e > "$out/e2e.log" 2>&1; tail -40 "$out/e2e.log" ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done
