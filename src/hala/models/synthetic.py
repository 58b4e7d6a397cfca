"""Synthetic Llama checkpoints of any size, written shard by shard without building the model.

Memory and streaming benchmarks need checkpoints far larger than the tiny test models (a ~1.5B
model, several shards) and no model hub. We write random BF16 tensors with the exact names and
shapes of `LlamaForCausalLM`, one shard at a time, so writing a checkpoint holds one shard, plus
config.json, the index and the tiny local tokenizer: transformers, vLLM and llm-compressor load it
like any hub model. The weights are random, so only memory, speed and format are meaningful.
"""

from __future__ import annotations

import json
from pathlib import Path


def llama_tensor_shapes(hidden: int, intermediate: int, layers: int, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "input_layernorm.weight", (hidden,)),
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.k_proj.weight", (hidden, hidden)),
            (p + "self_attn.v_proj.weight", (hidden, hidden)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "post_attention_layernorm.weight", (hidden,)),
            (p + "mlp.gate_proj.weight", (intermediate, hidden)),
            (p + "mlp.up_proj.weight", (intermediate, hidden)),
            (p + "mlp.down_proj.weight", (hidden, intermediate)),
        ]
    return shapes + [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]


def make_synthetic_llama(
    out: str | Path,
    *,
    hidden: int = 512,
    intermediate: int = 1536,
    layers: int = 4,
    vocab: int = 4096,
    shard_bytes: int = 64 << 20,
    seed: int = 0,
) -> Path:
    """A random BF16 Llama (head_dim 64, untied head) in shards of about `shard_bytes`."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from hala.models.tiny import _ids, build_tokenizer, decoder_shape

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    if vocab < len(tokenizer):
        raise ValueError(f"vocab {vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    generator = torch.Generator().manual_seed(seed)
    shapes = llama_tensor_shapes(hidden, intermediate, layers, vocab)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = 2 * torch.Size(shape).numel()
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    weight_map = {}
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {}
        for name, shape in group:
            if len(shape) == 1:
                tensors[name] = torch.ones(shape, dtype=torch.bfloat16)
            else:
                std = 1.0 if "embed" in name else shape[1] ** -0.5
                tensors[name] = (torch.randn(shape, generator=generator) * std).to(torch.bfloat16)
            weight_map[name] = file
        save_file(tensors, out / file, metadata={"format": "pt"})
        del tensors
    total = sum(2 * torch.Size(s).numel() for _, s in shapes)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    ids = {**_ids(tokenizer), "vocab_size": vocab}
    config = LlamaConfig(**decoder_shape(hidden, intermediate, layers), head_dim=64, tie_word_embeddings=False, **ids)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
