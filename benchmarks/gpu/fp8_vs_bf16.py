"""FP8 (torch._scaled_mm, row-wise scales) vs BF16 matmul throughput at the teacher's layer shapes.

The paper claims ~2x throughput for its FP8 teacher (Command-A-Translate, 111B) and did not publish
the figures. This measures the part FP8 changes, on one GPU, in a few minutes:

1. each Linear of a Command A decoder layer (fused QKV, O, fused gate/up, down) at several token
   counts: BF16 `x @ W.T` against FP8 `torch._scaled_mm` with per-token activation scales and
   per-channel weight scales (what hala's checkpoints hold and vLLM runs). FP8 is timed twice: the
   GEMM alone, and with the dynamic activation quantization done in plain PyTorch (unfused, so an
   upper bound on its cost; vLLM fuses it into the previous op);
2. one random-weight Command A decoder layer (LayerNorm, GQA attention, SiLU MLP, parallel
   residual as in Cohere's models) with all its Linears in BF16, then in FP8.

Target: >= 1.6x for the FP8 GEMMs at prefill-sized token counts. FP8 tensor cores exist on
compute capability 8.9 (Ada) and 9.0+ (Hopper, Blackwell); elsewhere the script says so and stops.
`--device cpu` runs the same code at small shapes to check the script itself (CPU timings mean nothing).

Usage: python benchmarks/gpu/fp8_vs_bf16.py [--quick] [--tokens 512,2048,8192] [--device cuda|cpu]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
# Command A (CohereLabs/c4ai-command-a-03-2025; Command-A-Translate shares it): check the hub config when online
TEACHER = {"hidden": 12288, "intermediate": 36864, "heads": 96, "kv_heads": 8, "head_dim": 128, "layers": 64}


def teacher_linears(cfg: dict) -> dict[str, tuple[int, int]]:
    """(out, in) of each Linear as vLLM runs it (q/k/v and gate/up fused)."""
    h, i, d = cfg["hidden"], cfg["intermediate"], cfg["head_dim"]
    qkv = (cfg["heads"] + 2 * cfg["kv_heads"]) * d
    return {"qkv_proj": (qkv, h), "o_proj": (h, cfg["heads"] * d), "gate_up_proj": (2 * i, h), "down_proj": (h, i)}


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row FP8 (rows of activations = tokens; rows of weights = output channels): absmax / 448."""
    scale = (x.abs().amax(dim=1, keepdim=True).float() / FP8_MAX).clamp_min(1e-12)
    return (x.float() / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8), scale


class FP8Linear:
    """A Linear held as hala writes it: FP8 weight [out, in] and float32 scale [out, 1]."""

    rowwise = True  # some builds only scale per tensor on sm_89; main() falls back and says so

    def __init__(self, weight: torch.Tensor):
        self.weight, scale = quantize_rows(weight)
        self.scale_b = scale.t().contiguous()  # [1, out]

    def gemm(self, xq: torch.Tensor, scale_a: torch.Tensor) -> torch.Tensor:
        if FP8Linear.rowwise:
            return torch._scaled_mm(
                xq, self.weight.t(), scale_a=scale_a, scale_b=self.scale_b, out_dtype=torch.bfloat16
            )
        one = torch.ones((), device=xq.device)
        out = torch._scaled_mm(xq, self.weight.t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        return (out * scale_a * self.scale_b).to(torch.bfloat16)  # as vLLM's fallback: scales outside the GEMM

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xq, scale_a = quantize_rows(x.reshape(-1, x.shape[-1]))
        return self.gemm(xq, scale_a).reshape(*x.shape[:-1], -1)


def timed(fn, device: str, iters: int, warmup: int = 3) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


class DecoderLayer:
    """A Cohere-style decoder layer with random weights: x + attn(ln(x)) + mlp(ln(x))."""

    def __init__(self, cfg: dict, device: str, fp8: bool):
        g = torch.Generator(device=device).manual_seed(0)
        self.cfg = cfg
        self.ln_w = torch.ones(cfg["hidden"], device=device, dtype=torch.bfloat16)
        self.linears = {}
        for name, (n, k) in teacher_linears(cfg).items():
            w = (torch.randn(n, k, generator=g, device=device, dtype=torch.bfloat16) * k**-0.5).contiguous()
            self.linears[name] = FP8Linear(w) if fp8 else (lambda x, w=w: x @ w.t())
            del w

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c, (b, s, h) = self.cfg, x.shape
        y = torch.nn.functional.layer_norm(x, (h,), self.ln_w)
        q, k, v = self.linears["qkv_proj"](y).split(
            [c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"]], -1
        )
        q = q.view(b, s, c["heads"], c["head_dim"]).transpose(1, 2)
        k = k.view(b, s, c["kv_heads"], c["head_dim"]).transpose(1, 2).repeat_interleave(c["heads"] // c["kv_heads"], 1)
        v = v.view(b, s, c["kv_heads"], c["head_dim"]).transpose(1, 2).repeat_interleave(c["heads"] // c["kv_heads"], 1)
        attn = (
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, -1)
        )
        gate, up = self.linears["gate_up_proj"](y).chunk(2, dim=-1)
        return x + self.linears["o_proj"](attn) + self.linears["down_proj"](torch.nn.functional.silu(gate) * up)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer token counts and iterations (about a minute)")
    parser.add_argument("--tokens", default=None, help="token counts, e.g. 512,2048,8192")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--iters", type=int, default=None)
    args = parser.parse_args()

    device, cfg = args.device, dict(TEACHER)
    if device == "cuda":
        if not torch.cuda.is_available():
            print("no CUDA GPU here: nothing measured (run on an Ada/Hopper GPU, or --device cpu to check the script)")
            print(json.dumps({"device": "none", "measured": False}))
            return
        major, minor = torch.cuda.get_device_capability()
        name = torch.cuda.get_device_name()
        if (major, minor) < (8, 9):
            print(f"{name} is sm_{major}{minor}: no FP8 tensor cores (needs 8.9+), nothing measured")
            print(json.dumps({"device": name, "capability": f"{major}.{minor}", "measured": False}))
            return
    else:
        name, major, minor = "cpu (script check only)", 0, 0
        cfg.update(
            hidden=256, intermediate=512, heads=4, kv_heads=2, head_dim=64
        )  # 4 MB layer: CPU timings mean nothing

    default_tokens = "512,4096" if args.quick else "128,512,2048,8192"
    tokens = [int(t) for t in (args.tokens or (default_tokens if device == "cuda" else "64,256")).split(",")]
    iters = args.iters or (10 if args.quick else 30)
    torch.manual_seed(0)
    layers, speedups, errors = {}, {}, {}
    print(f"device: {name}; teacher shapes {cfg}; token counts {tokens}; median of {iters} runs")
    for lname, (n, k) in teacher_linears(cfg).items():
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16) * k**-0.5
        fp8 = FP8Linear(w)
        for m in tokens:
            x = torch.randn(m, k, device=device, dtype=torch.bfloat16)
            xq, scale_a = quantize_rows(x)
            try:
                out = fp8.gemm(xq, scale_a)
            except RuntimeError as exc:  # row-wise scaling unsupported by this build/GPU
                print(f"row-wise _scaled_mm unavailable ({str(exc).splitlines()[0]}); scaling per tensor + outside")
                FP8Linear.rowwise = False
                out = fp8.gemm(xq, scale_a)
            reference = x @ w.t()
            errors[f"{lname}@{m}"] = float((out.float() - reference.float()).norm() / reference.float().norm())
            del out, reference
            t_bf16 = timed(lambda x=x, w=w: x @ w.t(), device, iters)
            t_gemm = timed(lambda xq=xq, s=scale_a, f=fp8: f.gemm(xq, s), device, iters)
            t_full = timed(lambda x=x, f=fp8: f(x), device, iters)
            flops = 2 * m * n * k
            key = f"{lname}@{m}"
            layers[key] = {"shape": [n, k], "tokens": m, "bf16_tflops": flops / t_bf16 / 1e12,
                           "fp8_gemm_tflops": flops / t_gemm / 1e12, "fp8_with_act_quant_tflops": flops / t_full / 1e12}  # fmt: skip
            speedups[key] = t_bf16 / t_gemm
            layers[key]["fp8_relative_error"] = errors[key]  # checks the FP8 path computes the same product
            print(f"{key:>20}: bf16 {layers[key]['bf16_tflops']:7.1f} TFLOP/s | fp8 GEMM {layers[key]['fp8_gemm_tflops']:7.1f} "
                  f"({t_bf16 / t_gemm:.2f}x) | fp8 + unfused act. quant {layers[key]['fp8_with_act_quant_tflops']:7.1f} "
                  f"({t_bf16 / t_full:.2f}x) | rel. error {errors[key]:.3f}")  # fmt: skip
        del w, fp8
    decoder = {}
    seq = tokens[-1] if device == "cuda" else 64
    for label, fp8 in (("bf16", False), ("fp8", True)):
        layer = DecoderLayer(cfg, device, fp8)
        x = torch.randn(1, seq, cfg["hidden"], device=device, dtype=torch.bfloat16)
        decoder[label] = timed(lambda x=x, layer=layer: layer(x), device, max(3, iters // 3))
        del layer
        if device == "cuda":
            torch.cuda.empty_cache()
    layer_speedup = decoder["bf16"] / decoder["fp8"]
    print(
        f"decoder layer, {seq} tokens: bf16 {decoder['bf16'] * 1e3:.2f} ms, fp8 {decoder['fp8'] * 1e3:.2f} ms -> {layer_speedup:.2f}x"
    )
    big = [v for key, v in speedups.items() if layers[key]["tokens"] >= 2048] or list(speedups.values())
    summary = {
        "device": name,
        "capability": f"{major}.{minor}",
        "measured": True,
        "rowwise_scaled_mm": FP8Linear.rowwise,
        "max_fp8_relative_error": round(max(errors.values()), 4),
        "layers": layers,
        "fp8_over_bf16": {k: round(v, 3) for k, v in speedups.items()},
        "gemm_speedup_at_2048_plus_tokens": round(statistics.fmean(big), 3),
        "decoder_layer_speedup": round(layer_speedup, 3),
        "target_1_6x_met": statistics.fmean(big) >= 1.6,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
