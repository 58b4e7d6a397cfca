"""The quantization pass: checkpoint in, FP8 shards out, one block of rows at a time.

Each Linear weight is read in blocks of whole rows (a per-output-channel scale needs only its row),
quantized with `fp8_quantize` and written straight into its planned shard; its [out, 1] scale
follows it. Every other tensor is copied byte for byte in blocks, so embeddings, norms, the LM
head and ignored layers are identical to the source. Nothing else is held: memory is bounded by
the block size (`chunk_bytes`), whatever the size of a shard or of the checkpoint. Reading, the
shard plan and the loop over shards are `hala.checkpoint`'s; this module says what each tensor
becomes.

Non-finite weights are not written as if nothing happened: every tensor with a NaN or Inf is
collected by name and the pass fails at the end, naming all of them (`checkpoint.finite`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hala.checkpoint import (
    DTYPE_NAMES,
    CheckpointError,
    OutTensor,
    ShardWriter,
    TensorRef,
    all_finite,
    nonfinite_report,
    write_shards,
)
from hala.quantize.fp8 import FP8_DTYPE, fp8_quantize, squared_error_sums

SCALE_SUFFIX = "_scale"  # weight -> weight_scale, as compressed-tensors names it


@dataclass
class PassResult:
    shards: list[str]
    tensors_in: int = 0
    quantized: dict[str, float] = field(default_factory=dict)  # weight name -> relative error
    copied: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def error_summary(self, worst: int = 5) -> dict:
        errors = list(self.quantized.values())
        if not errors:
            return {"tensors": 0}
        ranked = sorted(self.quantized.items(), key=lambda kv: kv[1], reverse=True)[:worst]
        return {
            "tensors": len(errors),
            "mean": statistics.fmean(errors),
            "median": statistics.median(errors),
            "max": max(errors),
            "min": min(errors),
            "worst": [{"tensor": name, "relative_error": err} for name, err in ranked],
        }


def output_groups(refs: list[TensorRef], linear: set[str]) -> list[list[OutTensor]]:
    """What each input tensor becomes: a Linear weight -> FP8 weight + scale, else itself."""
    groups = []
    for ref in refs:
        if ref.name in linear:
            groups.append(
                [
                    OutTensor(ref.name, DTYPE_NAMES[FP8_DTYPE], ref.shape),
                    OutTensor(ref.name + SCALE_SUFFIX, ref.dtype, (ref.shape[0], 1)),
                ]
            )
        else:
            groups.append([OutTensor(ref.name, ref.dtype, ref.shape)])
    return groups


def quantize_checkpoint(
    refs: list[TensorRef], linear: set[str], out_dir: Path, max_shard_bytes: int, chunk_bytes: int
) -> PassResult:
    """Write `out_dir/model-*.safetensors` and the index; returns per-tensor statistics."""
    by_name = {r.name: r for r in refs}
    result = PassResult(shards=[])
    nonfinite: list[str] = []
    chunk_bytes = max(8, chunk_bytes - chunk_bytes % 8)

    def write_group(group: list[OutTensor], writer: ShardWriter) -> None:
        ref = by_name[group[0].name]  # a weight (and its scale) or a copied tensor
        result.tensors_in += 1
        result.bytes_in += ref.nbytes
        if ref.name in linear:
            finite, rel_error = _quantize_tensor(ref, writer, chunk_bytes)
            result.quantized[ref.name] = rel_error
        else:
            finite = _copy_tensor(ref, writer, chunk_bytes)
            result.copied += 1
        if not finite:
            nonfinite.append(ref.name)

    written = write_shards(output_groups(refs, linear), out_dir, max_shard_bytes, write_group)
    if nonfinite:  # the shards were written into a temporary folder, which this error discards
        raise CheckpointError(f"{nonfinite_report(nonfinite)}; fix the source checkpoint")
    result.shards, result.bytes_out = written.names, written.bytes_out
    return result


def _quantize_tensor(ref: TensorRef, writer: ShardWriter, chunk_bytes: int) -> tuple[bool, float]:
    rows, row_bytes = ref.shape[0], ref.nbytes // ref.shape[0]
    step = max(1, chunk_bytes // max(1, row_bytes))
    scales, err, norm, finite = [], 0.0, 0.0, True
    for first in range(0, rows, step):
        w = ref.read_rows(first, min(rows, first + step))
        q, scale = fp8_quantize(w)
        finite = finite and all_finite(scale)  # a NaN or Inf anywhere in a row reaches its absmax
        writer.write(ref.name, q)
        scales.append(scale)
        if finite:
            e, n = squared_error_sums(w, q, scale)
            err, norm = err + e, norm + n
        del w, q
    writer.write(ref.name + SCALE_SUFFIX, torch.cat(scales))
    if not finite:
        return False, float("nan")
    return True, (err / norm) ** 0.5 if norm > 0 else 0.0


def _copy_tensor(ref: TensorRef, writer: ShardWriter, chunk_bytes: int) -> bool:
    finite = True
    floating = ref.torch_dtype.is_floating_point and ref.torch_dtype.itemsize > 1
    for begin in range(0, max(ref.nbytes, 1), chunk_bytes):
        raw = ref.read_bytes(begin, min(ref.nbytes, begin + chunk_bytes))
        if floating:
            finite = finite and all_finite(raw.view(ref.torch_dtype))
        writer.write(ref.name, raw)
    return finite
