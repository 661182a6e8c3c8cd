#!/usr/bin/env python3
"""One forward of a Wan2.2 I2V-A14B expert in PyTorch eager: the baseline for bench_dit.

Written from the specification (shared/spec/wan22-dit-and-sampling.md, sections 1.4 and 6),
with the numerics of the official single-GPU command (`--convert_model_dtype`: bf16
parameters, the forward under autocast(bf16) with float32 regions where the official code
has them: the time embedding, the modulation sums, the gated residual adds and the head;
RoPE in float64 complex arithmetic; layer norms in float32).

Differences from the official code, said again in the output:
  * Attention is torch's scaled_dot_product_attention (SDPA; --sdpa-backend picks its
    kernel). The official code calls flash_attn, which is not installed here. The 17.7 s
    anchor of issue 4 was measured with the official code, not with this script.
  * Weights are random (speed does not depend on their values), generated on the GPU.
  * By default the time embedding runs once per token, as the official code does (t is
    expanded to every token: ~28 TFLOP of float32 GEMMs and a 9.3 GB e0 at 720p); --time-once
    computes it once and broadcasts, as wanrt does.

Timing uses CUDA events: per forward, per phase (embeddings, blocks, head) and per part of a
block (modulation, norm + q/k/v, RoPE, attention, output projection, cross-attention, FFN).
--blocks N builds and runs N blocks and scales the block time to 40 (said in the output).

Needs only PyTorch (2.11 with CUDA); no network. Memory: 40 blocks of bf16 weights are
~28.6 GB. `--dry-run` prints the plan (shapes, FLOPs, weight bytes) without PyTorch.

  python3 bench/pytorch_dit.py [--size 480p|720p|all] [--blocks N] [--warmup N] [--repeats N]
                               [--sdpa-backend auto|flash|cudnn|efficient|math] [--time-once]
                               [--seed N] [--dry-run]
"""
import argparse
import math
import sys
import time

# The I2V-A14B expert (spec section 1.1).
DIM, FFN_DIM, HEADS, LAYERS = 5120, 13824, 40, 40
IN_DIM, OUT_DIM, TEXT_LEN, TEXT_DIM, FREQ_DIM = 36, 16, 512, 4096, 256
PATCH = (1, 2, 2)
EPS = 1e-6
H100_DENSE_BF16_TFLOPS = 989.0

# Latent grids [frames, height, width] before the 1x2x2 patch.
SIZES = {
    "480p": (21, 60, 104),  # 832x480, 81 frames: 21*30*52 = 32,760 tokens
    "720p": (21, 90, 160),  # 1280x720, 81 frames: 21*45*80 = 75,600 tokens
}
TINY = {"dim": 256, "ffn": 512, "heads": 2, "layers": 2, "grid": (3, 8, 12)}

BLOCK_PARTS = ["modulation", "norm+qkv", "rope", "attention", "out_proj+residual",
               "cross_attn", "ffn"]


def forward_flops(dim, ffn, layers, tokens, time_per_token):
    """GEMM and attention FLOPs of one forward (2 FLOP per multiply-add), spec section 1.5."""
    L, D, T, F = float(tokens), float(dim), float(TEXT_LEN), float(ffn)
    time_rows = L if time_per_token else 1.0
    gemm = (2 * L * IN_DIM * 4 * D                                  # patch embedding
            + 2 * time_rows * (FREQ_DIM * D + D * D + D * 6 * D)    # time MLP and projection
            + 2 * T * (TEXT_DIM * D + D * D)                        # text embedding
            + layers * (8 * L * D * D + 4 * L * D * D + 4 * T * D * D + 4 * L * D * F)
            + 2 * L * D * OUT_DIM * 4)                              # head
    attention = layers * (4 * L * L * D + 4 * L * T * D)
    return gemm, attention


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="all", choices=["480p", "720p", "all"])
    p.add_argument("--blocks", type=int, default=LAYERS,
                   help="blocks to build and run; the block time is scaled to 40 (default 40)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sdpa-backend", default="auto",
                   choices=["auto", "flash", "cudnn", "efficient", "math"])
    p.add_argument("--time-once", action="store_true",
                   help="time embedding once, broadcast (wanrt's way); default: per token (official)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=H100_DENSE_BF16_TFLOPS)
    p.add_argument("--dry-run", action="store_true", help="print the plan only (no PyTorch needed)")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny model (dim 256, 2 blocks): tests the script, numbers mean nothing")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny, for testing)")
    args = p.parse_args(argv)
    if args.blocks < 1:
        p.error("--blocks must be at least 1")
    if args.warmup < 0 or args.repeats < 1:
        p.error("--warmup must be >= 0 and --repeats >= 1")
    if args.device != "cuda" and not args.tiny:
        p.error("--device cpu runs only with --tiny (a full-size forward on the CPU takes hours)")
    return args


def model_shape(args):
    if args.tiny:
        return TINY["dim"], TINY["ffn"], TINY["heads"], min(args.blocks, TINY["layers"])
    return DIM, FFN_DIM, HEADS, args.blocks


def selected_sizes(args):
    if args.tiny:
        return [("tiny", TINY["grid"])]
    return [(name, grid) for name, grid in SIZES.items() if args.size in ("all", name)]


def print_plan(args):
    dim, ffn, heads, blocks = model_shape(args)
    block_params = 8 * dim * dim + 8 * dim + 4 * dim + 2 * dim + 6 * dim + 2 * dim * ffn + ffn + dim
    print(f"model: dim {dim}, {heads} heads of {dim // heads}, FFN {ffn}, {blocks} blocks built "
          f"(of {LAYERS if not args.tiny else blocks}), bf16 weights "
          f"{blocks * block_params * 2 / 1e9:.2f} GB in blocks")
    for name, (f, h, w) in selected_sizes(args):
        tokens = f * (h // 2) * (w // 2)
        gemm, attention = forward_flops(dim, ffn, LAYERS if not args.tiny else blocks, tokens,
                                        not args.time_once)
        print(f"[{name}] latent {OUT_DIM}x{f}x{h}x{w} + conditioning {IN_DIM - OUT_DIM}x{f}x{h}x{w}"
              f" -> {tokens} tokens; {(gemm + attention) / 1e12:.1f} TFLOP per forward "
              f"(GEMM {gemm / 1e12:.1f}, attention {attention / 1e12:.1f})")


def main(argv):
    args = parse_args(argv)
    print("pytorch_dit: Wan2.2 I2V-A14B expert forward in PyTorch eager (written from the spec)")
    print("  attention: torch SDPA (backend: %s); the official code uses flash_attn, which is not "
          "installed here -- the 17.7 s anchor was measured with the official code, not this "
          "script" % args.sdpa_backend)
    print("  time embedding: " + ("once per forward, broadcast (wanrt's way; --time-once)"
                                  if args.time_once else
                                  "per token, as the official code computes it"))
    print("  weights: RANDOM, bf16 (speed does not depend on the values)")
    print_plan(args)
    if args.dry_run:
        return 0
    try:
        import torch
    except ImportError:
        print("pytorch_dit: error: PyTorch is not installed (pip install torch); --dry-run works "
              "without it", file=sys.stderr)
        return 1
    return run(args, torch)


def run(args, torch):
    import torch.nn.functional as F

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pytorch_dit: error: no CUDA device (use --tiny --device cpu to test the script)",
              file=sys.stderr)
        return 1
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default: true fp32 GEMMs
    dim, ffn, heads, blocks = model_shape(args)
    head_dim = dim // heads
    full_layers = LAYERS if not args.tiny else blocks
    bf16, f32 = torch.bfloat16, torch.float32
    if cuda:
        print(f"  device: {torch.cuda.get_device_name(device)}, PyTorch {torch.__version__}, "
              f"CUDA {torch.version.cuda}")

    # ---- random weights, bf16 on the device ----
    def param(*shape, gain=False):
        t = torch.empty(*shape, dtype=bf16, device=device).normal_(0.0, 0.02)
        return t.add_(1.0) if gain else t

    def linear_params(out_features, in_features):
        return param(out_features, in_features), param(out_features)

    t0 = time.perf_counter()
    weights = {
        "patch": (param(dim, IN_DIM, *PATCH), param(dim)),
        "text0": linear_params(dim, TEXT_DIM), "text2": linear_params(dim, dim),
        "time0": linear_params(dim, FREQ_DIM), "time2": linear_params(dim, dim),
        "proj": linear_params(6 * dim, dim),
        "head_mod": param(1, 2, dim), "head": linear_params(OUT_DIM * 4, dim),
    }
    block_weights = []
    for _ in range(blocks):
        b = {"mod": param(1, 6, dim), "norm3": (param(dim, gain=True), param(dim)),
             "ffn0": linear_params(ffn, dim), "ffn2": linear_params(dim, ffn)}
        for attn in ("self", "cross"):
            for proj in "qkvo":
                b[f"{attn}_{proj}"] = linear_params(dim, dim)
            b[f"{attn}_norm_q"] = param(dim, gain=True)
            b[f"{attn}_norm_k"] = param(dim, gain=True)
        block_weights.append(b)
    if cuda:
        torch.cuda.synchronize()
    print(f"weights: {blocks} blocks generated on the device in {time.perf_counter() - t0:.1f} s"
          + (f", {torch.cuda.memory_allocated() / 1e9:.2f} GB allocated" if cuda else ""))

    # ---- the RoPE frequency table (built once, complex128, as at model construction) ----
    def rope_axis(axis_dim):
        exponents = torch.arange(0, axis_dim, 2, dtype=torch.float64) / axis_dim
        angles = torch.outer(torch.arange(1024, dtype=torch.float64), 1.0 / (10000.0 ** exponents))
        return torch.polar(torch.ones_like(angles), angles)

    hw_dim = 2 * (head_dim // 6)
    rope_freqs = torch.cat([rope_axis(head_dim - 2 * hw_dim), rope_axis(hw_dim), rope_axis(hw_dim)],
                           dim=1).to(device)  # [1024, head_dim / 2] complex128

    # ---- timing marks ----
    class Marks:
        """CUDA events between phases; elapsed times are read after the forward's sync."""

        def __init__(self):
            self.events = []

        def mark(self, name):
            if cuda:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
            else:
                event = time.perf_counter()
            self.events.append((name, event))

        def intervals(self):
            out = []
            for (_, start), (name, end) in zip(self.events, self.events[1:]):
                seconds = start.elapsed_time(end) / 1e3 if cuda else end - start
                out.append((name, seconds))
            return out

    # ---- the forward ----
    def linear(x, wb):
        return F.linear(x, wb[0], wb[1])

    def layer_norm(x, weight=None, bias=None):  # float32 in and out (affine in float32), back to x's dtype
        weight = weight.float() if weight is not None else None
        bias = bias.float() if bias is not None else None
        return F.layer_norm(x.float(), (dim,), weight, bias, EPS).type_as(x)

    def rms_norm(x, gain):  # normalised value rounded to x's dtype, then times the gain
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + EPS)).type_as(x) * gain

    def rope(x, grid):  # x [1, L, H, d]; float64 complex rotation of adjacent pairs -> float32
        f, h, w = grid
        slots = head_dim // 2
        split = [slots - 2 * (slots // 3), slots // 3, slots // 3]
        ft, fh, fw = rope_freqs.split(split, dim=1)
        table = torch.cat([ft[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                           fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                           fw[:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1)
        table = table.reshape(f * h * w, 1, slots)
        z = torch.view_as_complex(x[0].to(torch.float64).reshape(f * h * w, heads, slots, 2))
        return torch.view_as_real(z * table).flatten(2).unsqueeze(0).float()

    sdpa_context = None
    if args.sdpa_backend != "auto":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                   "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
        sdpa_context = lambda: sdpa_kernel([backend[args.sdpa_backend]])

    def attention(q, k, v):  # [1, L, H, d] each -> [1, Lq, H*d]
        q, k, v = (t.to(bf16).transpose(1, 2) for t in (q, k, v))
        if sdpa_context is None:
            out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(head_dim))
        else:
            with sdpa_context():
                out = F.scaled_dot_product_attention(q, k, v, scale=1.0 / math.sqrt(head_dim))
        return out.transpose(1, 2).flatten(2)

    def block_forward(b, x, e0, context, grid, marks):
        tokens = x.shape[1]
        with torch.autocast(device.type, dtype=f32):
            shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (b["mod"].unsqueeze(0) + e0).unbind(2)
        marks.mark("modulation")
        a = layer_norm(x).float() * (1 + scale_sa) + shift_sa
        q = rms_norm(linear(a, b["self_q"]), b["self_norm_q"]).view(1, tokens, heads, head_dim)
        k = rms_norm(linear(a, b["self_k"]), b["self_norm_k"]).view(1, tokens, heads, head_dim)
        v = linear(a, b["self_v"]).view(1, tokens, heads, head_dim)
        marks.mark("norm+qkv")
        q, k = rope(q, grid), rope(k, grid)
        marks.mark("rope")
        y = attention(q, k, v)
        marks.mark("attention")
        y = linear(y, b["self_o"])
        with torch.autocast(device.type, dtype=f32):
            x = x + y * gate_sa
        marks.mark("out_proj+residual")
        c = layer_norm(x, *b["norm3"])
        qc = rms_norm(linear(c, b["cross_q"]), b["cross_norm_q"]).view(1, tokens, heads, head_dim)
        kc = rms_norm(linear(context, b["cross_k"]), b["cross_norm_k"]).view(1, -1, heads, head_dim)
        vc = linear(context, b["cross_v"]).view(1, -1, heads, head_dim)
        x = x + linear(attention(qc, kc, vc), b["cross_o"])
        marks.mark("cross_attn")
        h = F.gelu(linear(layer_norm(x).float() * (1 + scale_ff) + shift_ff, b["ffn0"]), approximate="tanh")
        y = linear(h, b["ffn2"])
        with torch.autocast(device.type, dtype=f32):
            x = x + y * gate_ff
        marks.mark("ffn")
        return x

    def forward(x, y, t, context, marks):
        with torch.autocast(device.type, dtype=bf16):
            marks.mark("start")
            xin = torch.cat([x, y], dim=0).unsqueeze(0)  # [1, 36, F, H, W] fp32
            tokens = F.conv3d(xin, *weights["patch"], stride=PATCH)  # bf16 [1, D, F', H', W']
            grid = tuple(tokens.shape[2:])
            tokens = tokens.flatten(2).transpose(1, 2)  # [1, L, D]
            n = 1 if args.time_once else tokens.shape[1]
            with torch.autocast(device.type, dtype=f32):
                half = FREQ_DIM // 2
                steps = t.to(torch.float64).expand(n)
                angles = torch.outer(steps, torch.pow(10000.0, -torch.arange(half, dtype=torch.float64,
                                                                           device=device) / half))
                sinusoid = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()
                e = linear(F.silu(linear(sinusoid, weights["time0"])), weights["time2"])  # [n, D]
                e0 = linear(F.silu(e), weights["proj"]).unflatten(1, (6, dim)).unsqueeze(0)  # [1, n, 6, D]
            ctx = torch.cat([context, context.new_zeros(TEXT_LEN - context.shape[0], TEXT_DIM)]).unsqueeze(0)
            ctx = linear(F.gelu(linear(ctx, weights["text0"]), approximate="tanh"), weights["text2"])
            marks.mark("embeddings")
            h = tokens
            for b in block_weights:
                h = block_forward(b, h, e0, ctx, grid, marks)
            with torch.autocast(device.type, dtype=f32):
                shift, scale = (weights["head_mod"].unsqueeze(0) + e.unsqueeze(0).unsqueeze(2)).unbind(2)
                out = linear(layer_norm(h) * (1 + scale) + shift, weights["head"])  # [1, L, 64]
            f, hh, ww = grid
            out = out[0].view(f, hh, ww, 1, 2, 2, OUT_DIM)
            out = torch.einsum("fhwpqrc->cfphqwr", out).reshape(OUT_DIM, f, hh * 2, ww * 2).float()
            marks.mark("head")
        return out

    results = []
    for name, (frames, height, width) in selected_sizes(args):
        tokens = frames * (height // 2) * (width // 2)
        gemm, attn_flops = forward_flops(dim, ffn, full_layers, tokens, not args.time_once)
        flops = gemm + attn_flops
        x = torch.randn(OUT_DIM, frames, height, width, device=device)
        y = torch.randn(IN_DIM - OUT_DIM, frames, height, width, device=device)
        context = (0.1 * torch.randn(TEXT_LEN, TEXT_DIM, device=device)).to(bf16)
        t = torch.tensor([999], dtype=torch.int64, device=device)
        print(f"\n[{name}] {tokens} tokens, {flops / 1e12:.1f} TFLOP per {full_layers}-block forward",
              flush=True)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        totals, per_part, block_times, embed_times, head_times = [], {}, [], [], []
        with torch.inference_mode():
            for i in range(args.warmup + args.repeats):
                marks = Marks()
                out = forward(x, y, t, context, marks)
                if cuda:
                    torch.cuda.synchronize()
                intervals = marks.intervals()
                embed = sum(s for n_, s in intervals if n_ == "embeddings")
                head = sum(s for n_, s in intervals if n_ == "head")
                blocks_s = sum(s for n_, s in intervals if n_ in BLOCK_PARTS)
                estimate = embed + head + blocks_s * full_layers / blocks
                label = "warm-up" if i < args.warmup else "run"
                print(f"  {label}: {estimate:.3f} s (embeddings {embed:.3f}, {blocks} blocks "
                      f"{blocks_s:.3f} = {blocks_s / blocks:.4f} s/block, head {head:.3f})"
                      + (f" -> scaled to {full_layers} blocks" if blocks != full_layers else ""),
                      flush=True)
                if i < args.warmup:
                    continue
                totals.append(estimate)
                embed_times.append(embed)
                head_times.append(head)
                block_times.append(blocks_s / blocks)
                for part in BLOCK_PARTS:
                    per_part[part] = per_part.get(part, 0.0) + sum(s for n_, s in intervals if n_ == part)
        finite = bool(torch.isfinite(out).all())
        mean = sum(totals) / len(totals)
        peak_gb = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
        print(f"  output finite: {'yes' if finite else 'NO (NaN/Inf)'}")
        print(f"  forward: mean {mean:.3f} s, min {min(totals):.3f} s over {len(totals)} runs; "
              f"{flops / mean / 1e12:.1f} TFLOP/s ({100 * flops / mean / 1e12 / args.peak_tflops:.1f} % of "
              f"{args.peak_tflops:.0f}); peak memory allocated {peak_gb:.2f} GB (torch allocator)")
        block_total = sum(per_part.values())
        print(f"  per block (mean of {blocks} blocks x {len(totals)} runs): {block_total / blocks / len(totals):.4f} s")
        for part in BLOCK_PARTS:
            s = per_part[part] / blocks / len(totals)
            print(f"    {part:<18} {s * 1e3:9.3f} ms  {100 * per_part[part] / block_total:5.1f} %")
        results.append((name, tokens, mean, min(totals), sum(block_times) / len(block_times), flops, peak_gb))

    print(f"\nSummary (pytorch_dit, PyTorch {torch.__version__}, SDPA backend {args.sdpa_backend}, "
          f"time embedding {'once' if args.time_once else 'per token'}"
          + (f", {blocks} blocks run and scaled to {full_layers}" if blocks != full_layers else "") + ")")
    print("| size | tokens | forward s (mean) | min s | s/block | TFLOP | TFLOP/s | % of peak | peak memory GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, tokens, mean, best, per_block, flops, peak_gb in results:
        rate = flops / mean / 1e12
        print(f"| {name} | {tokens} | {mean:.3f} | {best:.3f} | {per_block:.4f} | {flops / 1e12:.1f} | "
              f"{rate:.1f} | {100 * rate / args.peak_tflops:.1f} % | {peak_gb:.2f} |")
    if blocks != full_layers:
        print(f"(peak memory is that of {blocks} blocks of weights, not {full_layers})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
