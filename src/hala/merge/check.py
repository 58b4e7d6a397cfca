"""After writing: the merged folder must load and generate, or the merge did not succeed.

A merge can write every tensor and still produce a model that doesn't load (a config that no
longer matches the weights, a tokenizer whose ids run past the embedding) or that emits NaN. We
load the merged folder with the transformers engine (`hala.engines.transformers`), exactly as a
user would (`trust_remote_code` only when asked), check that the prompt's next-token
distributions are finite, and greedily generate a few tokens from it as a chat (the model's
template, or the plain one for a model without). This holds the whole model in memory once,
which is why it can be switched off for a model larger than the machine.
"""

from __future__ import annotations

import time
from pathlib import Path

from hala.merge.config import CheckConfig


class MergeCheckError(ValueError):
    """The merged model did not load or generate (a ValueError so the CLI reports it as an error line)."""


def generation_check(folder: Path, cfg: CheckConfig, trust_remote_code: bool = False) -> dict:
    from hala.engines import EngineConfig, SamplingParams
    from hala.engines.transformers import TransformersEngine

    started = time.perf_counter()
    try:
        engine_cfg = EngineConfig(kind="transformers", model=str(folder))
        engine = TransformersEngine(engine_cfg, trust_remote_code=trust_remote_code)
    except Exception as exc:  # any load failure means a broken output
        raise MergeCheckError(f"the merged model in {folder} does not load: {exc}") from exc
    chat = [{"role": "user", "content": cfg.prompt}]
    with engine:
        [logprobs] = engine.next_token_logprobs([engine.prompt_ids(chat)])
        if not bool(logprobs.isfinite().all()):
            raise MergeCheckError(f"the merged model in {folder} gives NaN or Inf logits")
        [answer] = engine.chat([chat], SamplingParams(max_tokens=cfg.max_new_tokens))
        generated = engine.tokenizer.decode(answer.token_ids, skip_special_tokens=False)
    if answer.completion_tokens == 0:
        raise MergeCheckError(f"the merged model in {folder} generated no token")
    return {
        "prompt": cfg.prompt,
        "generated": generated,
        "new_tokens": answer.completion_tokens,
        "seconds": round(time.perf_counter() - started, 3),
    }
