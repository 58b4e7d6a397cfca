"""FP8 (E4M3) weight quantization, the pure math: no files, no models.

One scale per output channel (row of a Linear weight), `scale = absmax / 448`, where 448 is the
largest finite float8_e4m3fn. The arithmetic is done in the weight's own dtype, exactly as
compressed-tensors does on its PyTorch path (which llm-compressor calls), so that hala writes the
same bits: the scale is `absmax / 448` rounded to the model dtype, the weight is `w / scale`
rounded to the model dtype, clamped to ±448 and cast to FP8 (round to nearest even). A row of
zeros would give a zero scale; like compressed-tensors we replace it with the dtype's epsilon, so
dequantization never divides by zero (the row stays exactly zero either way).
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)  # 448.0


def fp8_scale(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale of a [out, in] weight: absmax / 448, shape [out, 1], in w's dtype."""
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D Linear weight, got shape {tuple(w.shape)}")
    if not w.is_floating_point():
        raise ValueError(f"expected a floating-point weight, got {w.dtype}")
    absmax = w.abs().amax(dim=1, keepdim=True)
    scale = absmax / FP8_MAX
    return torch.where(scale == 0, torch.tensor(torch.finfo(w.dtype).eps, dtype=w.dtype), scale)


def fp8_quantize(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A [out, in] weight as (float8_e4m3fn weight, [out, 1] scale in w's dtype)."""
    scale = fp8_scale(w)
    q = (w / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


def fp8_dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The weight the FP8 tensor stands for: q * scale, in `dtype`.

    FP8 goes through BF16 on its way: every E4M3 value is exact in BF16, and PyTorch's CPU cast
    from FP8 to BF16 is about three times faster than the direct one to float32."""
    return q.to(torch.bfloat16).to(dtype) * scale.to(dtype)


def squared_error_sums(w: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> tuple[float, float]:
    """(sum of (w - dequant)^2, sum of w^2), to be added up over the blocks of a tensor.

    Float32 with in-place ops: two temporaries of the block's size, not a float64 copy of each."""
    diff = w.to(torch.float32)
    norm = float(torch.linalg.vector_norm(diff)) ** 2
    diff.sub_(fp8_dequantize(q, scale, torch.float32))
    return float(torch.linalg.vector_norm(diff)) ** 2, norm


def relative_error(w: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> float:
    """‖w - dequant(q)‖ / ‖w‖ (Frobenius); 0 for an all-zero weight."""
    err, norm = squared_error_sums(w, q, scale)
    return (err / norm) ** 0.5 if norm > 0 else 0.0
