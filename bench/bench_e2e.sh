#!/usr/bin/env bash
# bench_e2e.sh: the whole image-to-video pipeline, end to end, on one GPU, at full size:
# `wanrt generate` at --size 832*480 (480p), 81 frames, 40 UniPC steps with CFG (80 DiT
# calls), on a full-size checkpoint of RANDOM weights written by
# `wanrt make-demo-checkpoint --full-size`, so the real loading path is measured too.
#
# What the numbers mean:
#   * The weights are random: the video is noise, the work is the real work.
#   * The checkpoint holds one expert; the low-noise expert's shards link to the high-noise
#     ones (the GPU machine's 64 GB disk cannot hold two 28.6 GB experts next to umT5 and the
#     VAE). wanrt still loads and uploads two copies, as it would two different experts, but the
#     second read comes from the page cache.
#   * Unless --cold is given (and works: it needs root), the checkpoint was just written and is
#     probably in the page cache, so the load time is a warm-cache figure.
#   * With the official size rule an 832x480 image at --size 832*480 gives an 832x464 video
#     (latent 58x104, 31,668 tokens); generate prints the size it made.
#   * Both bf16 experts, umT5 and the VAE resident need ~69 GB of an 80 GB H100 before any
#     activation; if generate runs out of memory, add `-- --offload_model True` (one expert
#     resident, as the official single-GPU command does), and say so with the figures.
#
# Usage:
#   bench/bench_e2e.sh --wanrt BUILD/wanrt --work DIR [--steps N] [--frames N] [--size W*H]
#                      [--cold] [--clean] [--tiny] [-- extra flags for wanrt generate]
# Output: DIR/generate.log (the whole log), DIR/timing.txt (generate's timing summary),
# DIR/e2e_summary.md (a table row for BENCHMARKS.md). The checkpoint stays in DIR/ckpt for the
# next run unless --clean. --tiny runs the same script on the tiny demo checkpoint with the CPU
# backend in seconds (CTest runs it), to test the script, not to measure anything.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "bench_e2e: error: $*" >&2; exit 1; }
now() { date +%s.%N; }
seconds_since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

wanrt=${WANRT:-}
work=
steps=40
frames=81
size='832*480'
cold=0
clean=0
tiny=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wanrt) wanrt=${2:?--wanrt needs a path}; shift 2 ;;
    --work) work=${2:?--work needs a folder}; shift 2 ;;
    --steps) steps=${2:?--steps needs a number}; shift 2 ;;
    --frames) frames=${2:?--frames needs a number}; shift 2 ;;
    --size) size=${2:?--size needs W*H}; shift 2 ;;
    --cold) cold=1; shift ;;
    --clean) clean=1; shift ;;
    --tiny) tiny=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument '$1' (run with --help)" ;;
  esac
done
[ -n "$wanrt" ] || die "--wanrt BUILD/wanrt is required (the wanrt program to measure)"
[ -x "$wanrt" ] || die "--wanrt $wanrt: not an executable file"
[ -n "$work" ] || die "--work DIR is required (it receives the checkpoint, ~41 GB, and the logs)"
if [ "$tiny" = 1 ]; then
  steps=2 frames=5 size='128*96'
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
ckpt="$work/ckpt"
[ "$tiny" = 1 ] && ckpt="$work/ckpt-tiny"
log="$work/generate.log"

# ---- the checkpoint ----
marker=FULL-SIZE
[ "$tiny" = 1 ] && marker='RANDOM WEIGHTS'
if [ -f "$ckpt/README.txt" ] && grep -q "$marker" "$ckpt/README.txt" && [ -f "$ckpt/Wan2.1_VAE.pth" ]; then
  echo "bench_e2e: reusing the checkpoint in $ckpt"
else
  if [ "$tiny" = 1 ]; then
    echo "bench_e2e: writing the tiny demo checkpoint to $ckpt"
    "$wanrt" make-demo-checkpoint "$ckpt" --force
  else
    echo "bench_e2e: writing a full-size RANDOM-weight checkpoint to $ckpt (~41 GB; minutes)"
    start=$(now)
    "$wanrt" make-demo-checkpoint "$ckpt" --full-size --force 2>&1 | tee "$work/make-checkpoint.log"
    [ "${PIPESTATUS[0]}" = 0 ] || die "make-demo-checkpoint failed (see $work/make-checkpoint.log)"
    echo "bench_e2e: checkpoint written in $(seconds_since "$start") s"
  fi
fi
[ -f "$ckpt/google/umt5-xxl/spiece.model" ] ||
  die "$ckpt has no tokenizer (google/umt5-xxl/spiece.model): this wanrt was built without SentencePiece; install libsentencepiece-dev and rebuild, or copy a spiece.model there"
image="$ckpt/example.png"
[ -f "$image" ] || die "$ckpt has no example.png: this wanrt was built without libpng; install libpng-dev and rebuild"

cache=warm
if [ "$cold" = 1 ]; then
  sync
  if echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    cache=cold
  else
    echo "bench_e2e: warning: --cold: cannot drop the page cache (needs root); the load is warm" >&2
  fi
fi

# ---- GPU memory, sampled every 200 ms while generate runs ----
sampler=
if [ "$tiny" = 0 ] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$work/gpu_memory_mib.txt" 2>/dev/null &
  sampler=$!
fi
stop_sampler() { [ -n "$sampler" ] && kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=; }
trap stop_sampler EXIT

# ---- the run ----
# A wanrt whose generate has --backend gets it spelled out; an older one picks its own backend
# (checked below).
backend_flag=()
if "$wanrt" generate --help 2>&1 | grep -q -- '--backend'; then
  if [ "$tiny" = 1 ]; then backend_flag=(--backend cpu); else backend_flag=(--backend cuda); fi
fi
echo "bench_e2e: wanrt generate --size $size --frame_num $frames --sample_steps $steps (log: $log)"
start=$(now)
"$wanrt" generate --ckpt_dir "$ckpt" --image "$image" \
  --prompt "a red kite over a field in the wind, the camera slowly follows it" \
  --size "$size" --frame_num "$frames" --sample_steps "$steps" --base_seed 42 \
  --save_file "$work/e2e.mp4" "${backend_flag[@]}" "${extra[@]}" > "$log" 2>&1 &
pid=$!
tail -n +1 -f --pid="$pid" "$log" &  # the log, live
follower=$!
# The CPU backend would take days at full size: stop at once if generate did not pick CUDA.
backend=
while kill -0 "$pid" 2>/dev/null; do
  if [ -z "$backend" ] && grep -q '(backend: ' "$log" 2>/dev/null; then
    backend=$(sed -n 's/.*(backend: \([^)]*\)).*/\1/p' "$log" | head -1)
    if [ "$tiny" = 0 ] && [ "${backend%% *}" != cuda ]; then
      kill "$pid"
      die "wanrt generate runs on the '$backend' backend, not cuda: this benchmark needs the CUDA backend (a full-size run on the CPU takes days)"
    fi
  fi
  sleep 1
done
status=0
wait "$pid" || status=$?
wall=$(seconds_since "$start")
wait "$follower" 2>/dev/null || true
stop_sampler
[ "$status" = 0 ] || die "wanrt generate failed with status $status (see $log)"
[ -n "$backend" ] || backend=$(sed -n 's/.*(backend: \([^)]*\)).*/\1/p' "$log" | head -1)

# ---- the summary ----
sed -n '/^Timing by stage:/,/^  total/p' "$log" > "$work/timing.txt"
grep -m1 '^  peak GPU memory' "$log" >> "$work/timing.txt" || true  # where generate reports it
[ -s "$work/timing.txt" ] || die "no timing summary in $log"
video=$(sed -n 's/.*-> video \([0-9]*x[0-9]*\).*/\1/p' "$log" | head -1)
peak=n/a
if [ -s "$work/gpu_memory_mib.txt" ]; then
  peak="$(sort -n "$work/gpu_memory_mib.txt" | tail -1) MiB"
fi
# The seconds of one stage row ("  VAE encode       3.438 s  27.2 %"); "-" when absent.
stage() {
  awk -v s="$1" 'BEGIN { v = "-" } $0 ~ "^  "s" " { for (i = 1; i < NF; i++) if ($(i+1) == "s") { v = $i; break } } END { print v }' "$work/timing.txt"
}
{
  echo "bench_e2e ($( [ "$tiny" = 1 ] && echo 'TINY demo checkpoint, tests the script only' || echo 'full size' )):"
  echo "  wanrt generate --size $size -> video $video, $frames frames, $steps steps, backend $backend"
  if [ "$tiny" = 1 ]; then
    echo "  weights RANDOM (the tiny demo checkpoint); $cache page cache"
  else
    echo "  weights RANDOM; both experts share one set of shards (each loaded and uploaded, the second from the page cache); $cache page cache"
  fi
  echo "  wall time of the command $wall s; peak GPU memory used (nvidia-smi every 200 ms, all processes) $peak"
  cat "$work/timing.txt"
} | tee "$work/e2e_summary.txt"
{
  echo "| video | frames | steps | load s | text s | VAE encode s | denoise s | s/step | offload s | VAE decode s | write s | total s | wall s | peak GPU memory | cache |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  denoise=$(stage denoise)
  per_step=$(awk -v d="$denoise" -v n="$steps" 'BEGIN { printf "%.3f", d / n }')
  echo "| $video | $frames | $steps | $(stage load) | $(stage text) | $(stage 'VAE encode') | $denoise | $per_step | $(stage offload) | $(stage 'VAE decode') | $(stage write) | $(stage total) | $wall | $peak | $cache |"
} > "$work/e2e_summary.md"
echo "bench_e2e: table row in $work/e2e_summary.md"
cat "$work/e2e_summary.md"

if [ "$clean" = 1 ]; then
  rm -rf "$ckpt"
  echo "bench_e2e: removed $ckpt (--clean)"
fi
