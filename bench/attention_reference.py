#!/usr/bin/env python3
"""PyTorch SDPA at bench_attention's shapes: the reference numbers for wanrt's attention kernel.

Runs torch.nn.functional.scaled_dot_product_attention with the FLASH_ATTENTION (FlashAttention-2
derived) and CUDNN_ATTENTION backends forced through torch.nn.attention.sdpa_kernel, bf16,
[B=1, H, L, d] layout, default scale 1/sqrt(d), no mask; times back-to-back calls with CUDA
events after a warm-up call (about half a second per measurement, at least 3 calls), keeps the
best of --rounds rounds and prints TFLOP/s with FLOPs = 4·H·Lq·Lk·d, as bench_attention does.
Run both in the same device session:

    python3 bench/attention_reference.py [--shape NAME] [--seconds S] [--rounds N]
"""
import argparse
import math

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [  # name, heads, queries, keys, head_dim
    ("720p-self", 40, 75600, 75600, 128),
    ("720p-ulysses8", 5, 75600, 75600, 128),
    ("480p-self", 40, 32760, 32760, 128),
    ("720p-cross", 40, 75600, 512, 128),
    ("480p-self-d64", 80, 32760, 32760, 64),
]
BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]


def seconds_per_call(call, target_seconds):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def measure(calls):
        start.record()
        for _ in range(calls):
            call()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop) * 1e-3 / calls

    first = measure(1)  # warm-up, and the estimate of how many calls to time
    calls = int(min(500, max(3, math.ceil(target_seconds / first))))
    return measure(calls)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", help="only this shape")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    props = torch.cuda.get_device_properties(0)
    print(f"attention_reference on {props.name} ({props.multi_processor_count} SMs), torch "
          f"{torch.__version__}, cuDNN {torch.backends.cudnn.version()}; FLOPs = 4·H·Lq·Lk·d; "
          f"best of {args.rounds} rounds\n")
    results = {}
    for name, heads, lq, lk, d in SHAPES:
        if args.shape and args.shape != name:
            continue
        generator = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(1, heads, lq, d, device="cuda", dtype=torch.bfloat16, generator=generator)
        k = torch.randn(1, heads, lk, d, device="cuda", dtype=torch.bfloat16, generator=generator)
        v = torch.randn(1, heads, lk, d, device="cuda", dtype=torch.bfloat16, generator=generator)
        tflop = 4.0 * heads * lq * lk * d * 1e-12
        best = {}
        for _ in range(max(1, args.rounds)):
            for backend_name, backend in BACKENDS:
                if best.get(backend_name, 0.0) is None:
                    continue  # refused this shape already
                try:
                    with sdpa_kernel([backend]):
                        seconds = seconds_per_call(lambda: F.scaled_dot_product_attention(q, k, v), args.seconds)
                    best[backend_name] = min(best.get(backend_name) or math.inf, seconds)
                except Exception as error:  # a backend may refuse a shape
                    best[backend_name] = None
                    print(f"{name:14s} sdpa-{backend_name:6s} n/a ({type(error).__name__}: {str(error)[:120]})",
                          flush=True)
        for backend_name, _ in BACKENDS:
            seconds = best.get(backend_name)
            results[(name, backend_name)] = None if seconds is None else (seconds * 1e3, tflop / seconds)
            if seconds is not None:
                print(f"{name:14s} sdpa-{backend_name:6s} {seconds * 1e3:10.3f} ms {tflop / seconds:8.1f} TFLOP/s",
                      flush=True)
        del q, k, v
        torch.cuda.empty_cache()

    print("\n| shape | H x Lq x Lk x d | SDPA flash TFLOP/s | SDPA cuDNN TFLOP/s |")
    print("| --- | --- | --- | --- |")
    for name, heads, lq, lk, d in SHAPES:
        if args.shape and args.shape != name:
            continue
        cells = []
        for backend_name, _ in BACKENDS:
            r = results.get((name, backend_name))
            cells.append("n/a" if r is None else f"{r[1]:.1f} ({r[0]:.3f} ms)")
        print(f"| {name} | {heads} x {lq} x {lk} x {d} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
