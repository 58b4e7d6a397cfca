"""The transformers half of verification: full next-token distributions and greedy outputs.

An FP8 checkpoint in the compressed-tensors format loads with its Linear weights still in FP8; we
count them before the first forward pass, which is when compressed-tensors decompresses them; its
forward then rounds every Linear's input to FP8 per token (the scheme's dynamic activations), so
the model computes what vLLM's W8A8 kernels compute, in higher precision.
Generation is batched with left padding and is greedy, so both models see exactly the same inputs.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch

from hala.quantize.fp8 import FP8_DTYPE


def run_transformers(path: Path, samples, cfg, template: str | None) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hala.quantize.verify import VerificationError

    tokenizer = AutoTokenizer.from_pretrained(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto", device_map=cfg.device_map)
    except Exception as exc:
        raise VerificationError(f"transformers could not load {path}: {type(exc).__name__}: {exc}") from exc
    model.eval()
    fp8_tensors = sum(1 for p in model.parameters() if p.dtype == FP8_DTYPE)
    try:
        with torch.no_grad():
            logprobs = [_logprobs(model, tokenizer, text, cfg.max_text_tokens) for text in samples.texts]
            if not all(bool(torch.isfinite(lp).all()) for lp in logprobs):
                raise VerificationError(f"{path}: the model gives NaN or Inf log-probabilities")
            token_ids, elapsed = _generate(model, tokenizer, samples.chats, cfg.max_tokens, template)
    finally:
        del model
        gc.collect()
    tokens = sum(len(ids) for ids in token_ids)
    return {
        "fp8_tensors": fp8_tensors,
        "logprobs": logprobs,
        "token_ids": token_ids,
        "texts": [tokenizer.decode(ids, skip_special_tokens=True) for ids in token_ids],
        "tokens": tokens,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
    }


def _logprobs(model, tokenizer, text: str, max_tokens: int) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens).input_ids
    logits = model(input_ids=ids.to(model.device)).logits[0]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def _generate(model, tokenizer, chats, max_tokens: int, template: str | None) -> tuple[list[list[int]], float]:
    prompts = [
        tokenizer.apply_chat_template(c, chat_template=template, add_generation_prompt=True, tokenize=False)
        for c in chats
    ]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = pad_id
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    started = time.perf_counter()
    out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad_id)
    elapsed = time.perf_counter() - started
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    results = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        kept = []
        for token in row:
            if token in stops:
                break
            kept.append(token)
        results.append(kept)
    return results, elapsed
