"""Engines: one interface for generating text, whatever serves the model.

`get_engine(cfg)` picks the implementation from an explicit registry. Each engine module is
imported, with its heavy library (vllm, torch and transformers, httpx), only when it is built, so
choosing `fake` costs nothing. `hala.engines.device` is the one probe of where this process
computes (a CUDA GPU or the CPU).
"""

from __future__ import annotations

from importlib import import_module

from hala.engines.base import Engine, EngineConfig, Generation, SamplingParams

ENGINES: dict[str, str] = {
    "vllm": "hala.engines.vllm:VLLMEngine",
    "openai": "hala.engines.openai:OpenAIEngine",
    "fake": "hala.engines.fake:FakeEngine",
    "transformers": "hala.engines.transformers:TransformersEngine",
}


def get_engine(cfg: EngineConfig) -> Engine:
    """Build the engine named by `cfg.kind`."""
    if cfg.kind not in ENGINES:
        raise ValueError(f"unknown engine {cfg.kind!r}; valid: {', '.join(ENGINES)}")
    module, _, name = ENGINES[cfg.kind].partition(":")
    return getattr(import_module(module), name)(cfg)


__all__ = ["ENGINES", "Engine", "EngineConfig", "Generation", "SamplingParams", "get_engine"]
