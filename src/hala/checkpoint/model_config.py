"""A model folder's config.json, and the one rule that refuses an already quantized checkpoint.

Quantize and merge both need the BF16/FP16 weights: quantizing an FP8 checkpoint again, or
SLERP-ing packed integers and their scales, "works" tensor by tensor and writes a broken model. A
quantized checkpoint is told by either of two signs, and both stages check both:

- its config.json has a `quantization_config` block (compressed-tensors, GPTQ, AWQ, bitsandbytes
  all write one), checked by `read_model_config`;
- its tensors are FP8, or are named like the parts of a quantized layer, checked by
  `refuse_quantized_tensors`: that catches a folder whose config block was lost or stripped.

The names are the union of what the quantizers write: `*_scale` (compressed-tensors' weight and
input scales, FP8 KV-cache `k_scale`/`v_scale`), `weight_packed` and `weight_zero_point`
(compressed-tensors' packed integers), `qweight`, `qzeros` and `*.scales` (GPTQ, AWQ).
"""

from __future__ import annotations

import json
from pathlib import Path

from hala.checkpoint.reader import CheckpointError, TensorRef
from hala.data.writers import atomic_write_text

CONFIG = "config.json"
QUANTIZED_SUFFIXES = ("_scale", "weight_packed", "weight_zero_point", "qweight", "qzeros", ".scales")
SHOWN = 3


def read_model_config(folder: Path, stage: str) -> dict:
    """`folder/config.json`, refused when it describes a quantized model. `stage` (`quantize`,
    `merge`) is the command the messages speak of."""
    path = folder / CONFIG
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; hala {stage} needs a Hugging Face model folder")
    config = json.loads(path.read_text(encoding="utf-8"))
    if "quantization_config" in config:
        method = config["quantization_config"].get("quant_method", "unknown")
        raise CheckpointError(f"{folder} is already quantized ({method}); {stage} the BF16/FP16 source instead")
    return config


def is_quantized(ref: TensorRef) -> bool:
    return ref.dtype.startswith("F8") or ref.name.endswith(QUANTIZED_SUFFIXES)


def refuse_quantized_tensors(folder: Path, refs: list[TensorRef], stage: str) -> None:
    """Raise naming the first quantized tensors of `refs` (the checkpoint in `folder`), if any."""
    quantized = [r.name for r in refs if is_quantized(r)]
    if quantized:
        raise CheckpointError(
            f"{folder} holds quantized tensors ({', '.join(quantized[:SHOWN])}); {stage} the BF16/FP16 source instead"
        )


def write_model_config(folder: Path, config: dict) -> Path:
    """`folder/config.json`, indented, non-ASCII text kept as it is."""
    return atomic_write_text(folder / CONFIG, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
