"""After writing: the merged folder must load and generate, or the merge did not succeed.

A merge can write every tensor and still produce a model that doesn't load (a config that no
longer matches the weights, a tokenizer whose ids run past the embedding) or that emits NaN. We
load the merged folder with transformers, exactly as a user would (`trust_remote_code` only when
asked), and greedily generate a few tokens from a chat-formatted prompt. This holds the whole
model in memory once, which is why it can be switched off for a model larger than the machine.
"""

from __future__ import annotations

import time
from pathlib import Path

from hala.merge.config import CheckConfig


class MergeCheckError(ValueError):
    """The merged model did not load or generate (a ValueError so the CLI reports it as an error line)."""


def generation_check(folder: Path, cfg: CheckConfig, trust_remote_code: bool = False) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", trust_remote_code=trust_remote_code)
    except Exception as exc:  # any load failure means a broken output
        raise MergeCheckError(f"the merged model in {folder} does not load: {exc}") from exc
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": cfg.prompt}]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    else:
        ids = tokenizer(cfg.prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        if not bool(torch.isfinite(logits).all()):
            raise MergeCheckError(f"the merged model in {folder} gives NaN or Inf logits")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=cfg.max_new_tokens,
            do_sample=False, pad_token_id=pad,
        )  # fmt: skip
    new = out[0, ids.shape[1] :]
    if new.numel() == 0:
        raise MergeCheckError(f"the merged model in {folder} generated no token")
    return {
        "prompt": cfg.prompt,
        "generated": tokenizer.decode(new, skip_special_tokens=False),
        "new_tokens": int(new.numel()),
        "seconds": round(time.perf_counter() - started, 3),
    }
