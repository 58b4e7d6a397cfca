"""How far apart two merged checkpoints are, in units of last place of their own dtype.

"Same as mergekit" can't mean bit-identical: the two tools sum the norms and the dot product in a
different order, so cos θ differs in its last float32 bits, and once in a while a result lands on
the other side of a bf16 rounding boundary. The honest measure is the distance in representable
values (ulps) between the two results, tensor by tensor; the target is at most 1. Both folders are
read tensor by tensor through `hala.checkpoint`, as the merge itself reads its inputs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hala.checkpoint import tensor_refs, weight_files

_INT_VIEW = {2: (torch.int16, 0x7FFF), 4: (torch.int32, 0x7FFFFFFF)}


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many representable values of their (shared, 16- or 32-bit float) dtype lie between a and b."""
    if a.dtype != b.dtype or a.element_size() not in _INT_VIEW:
        raise ValueError(
            f"ulp_distance needs two 16- or 32-bit float tensors of one dtype, got {a.dtype} and {b.dtype}"
        )
    int_dtype, magnitude = _INT_VIEW[a.element_size()]

    def ordinal(x: torch.Tensor) -> torch.Tensor:
        bits = x.contiguous().view(int_dtype).to(torch.int64)
        return torch.where(bits < 0, -(bits & magnitude), bits)  # sign-magnitude -> one ordered line

    return (ordinal(a) - ordinal(b)).abs()


def compare_checkpoints(a: str | Path, b: str | Path) -> dict:
    """Max |a-b|, max ulps and the count of differing values over every tensor both folders hold."""
    a_refs = {r.name: r for r in tensor_refs(weight_files(a))}
    b_refs = {r.name: r for r in tensor_refs(weight_files(b))}
    if set(a_refs) != set(b_refs):
        raise ValueError(f"different tensors: {sorted(set(a_refs) ^ set(b_refs))[:5]}")
    result = {"tensors": len(a_refs), "values": 0, "differing": 0, "max_abs": 0.0, "max_ulps": 0, "worst": None}
    for name in sorted(a_refs):
        x, y = a_refs[name].read(), b_refs[name].read()
        if x.shape != y.shape or x.dtype != y.dtype:
            raise ValueError(f"{name}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        ulps = ulp_distance(x, y)
        result["values"] += x.numel()
        result["differing"] += int((ulps > 0).sum())
        result["max_abs"] = max(result["max_abs"], float((x.float() - y.float()).abs().max()) if x.numel() else 0.0)
        worst = int(ulps.max()) if x.numel() else 0
        if worst > result["max_ulps"]:
            result["max_ulps"], result["worst"] = worst, name
    return result
