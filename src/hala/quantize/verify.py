"""Does the FP8 model still do the job? Load it, generate, and measure it against the BF16 source.

Every quantization ends here unless verification is turned off, because a quantizer that reports
success with a broken output is worse than none. Both models are loaded in each engine, one after
the other (never two at once), on a sample of the paper's translation prompts and of held-out text:

- transformers loads the FP8 checkpoint through compressed-tensors (we count the FP8 tensors it
  really loaded); on the first forward pass compressed-tensors decompresses the weights and from
  then on quantizes each Linear's input per token to FP8 and back, so it emulates the W8A8 model
  vLLM serves, and gives the full next-token distributions: top-1 agreement and KL;
- vLLM serves the checkpoint as is (W8A8: FP8 weights and dynamic per-token FP8 activations) and
  gives the greedy translations that vLLM would give in the translate stage.

Each model is reached through its engine (`hala.engines.transformers`, `hala.engines.vllm`), never
through the library itself. Both engines' greedy outputs are compared as tokens: the transformers
engine's own ids (its stop token left out), vLLM's texts tokenized again with the source's
tokenizer. Throughput is measured for both models on the current device and reported as it is;
the note says what to expect where: FP8 matrix units exist only on Ada/Hopper-class GPUs.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field

from hala.config import StrictModel
from hala.engines import device
from hala.engines.base import PLAIN_TEMPLATE, EngineConfig, SamplingParams
from hala.quantize import metrics

log = logging.getLogger("hala.quantize.verify")

TRANSLATE_PROMPT = "Translate everything that follows into Arabic:\n\n"  # the paper's translator prompt
EXAMPLES = 3


class VerifyConfig(StrictModel):
    enabled: bool = True
    engines: list[Literal["transformers", "vllm"]] = Field(default_factory=lambda: ["transformers", "vllm"])
    pairs: str | None = Field(None, description="EN-AR pairs to sample from (default: the bundled held-out test pairs)")
    translations: int = Field(8, ge=1, description="translation prompts (greedy outputs, chrF)")
    heldout: int = Field(8, ge=1, description="held-out texts (top-1 agreement, KL)")
    max_tokens: int = Field(48, ge=1)
    max_text_tokens: int = Field(128, ge=2)
    device_map: str | None = Field(None, description="transformers device_map, e.g. auto on GPUs; none: CPU")
    engine: EngineConfig = Field(
        default_factory=lambda: EngineConfig(kind="vllm", max_model_len=1024, enforce_eager=True)
    )


class VerificationError(ValueError):
    """The quantized model failed to load or produced something unusable (the output is not kept)."""


@dataclass
class Samples:
    chats: list[list[dict[str, str]]]
    references: list[str]
    texts: list[str]


def load_samples(cfg: VerifyConfig) -> Samples:
    from hala.data.readers import read_pairs

    path = cfg.pairs or str(resources.files("hala.resources").joinpath("samples/test_pairs.jsonl"))
    pairs = []
    for pair in read_pairs(path):
        pairs.append(pair)
        if len(pairs) >= cfg.translations + cfg.heldout:
            break
    if len(pairs) < 2:
        raise ValueError(f"{path}: need at least 2 EN-AR pairs to verify with, found {len(pairs)}")
    cut = min(cfg.translations, len(pairs) - 1)
    head, tail = pairs[:cut], pairs[cut:]
    chats = [[{"role": "user", "content": TRANSLATE_PROMPT + p.src}] for p in head]
    texts = [p.src if i % 2 == 0 else p.tgt for i, p in enumerate(tail)]
    return Samples(chats, [p.tgt for p in head], texts)


def throughput_note(device: dict) -> str:
    if device["kind"] == "cpu":
        return (
            "On CPU, FP8 saves memory (weights take half the bytes), not time: CPUs have no FP8 matrix units, "
            "so the FP8 path converts and rescales. The speed-up needs FP8 tensor cores: NVIDIA Ada (sm_89) "
            "or Hopper (sm_90) GPUs and newer."
        )
    major, minor = (int(x) for x in device["capability"].split("."))
    if (major, minor) >= (8, 9):
        return f"{device['name']} (sm_{major}{minor}) has FP8 tensor cores: the FP8 model runs W8A8 in FP8."
    return (
        f"{device['name']} (sm_{major}{minor}) has no FP8 tensor cores: vLLM runs FP8 weights with BF16 "
        "activations (W8A16), which saves memory but gives little speed-up; Ada or Hopper is needed for that."
    )


def verify(source: Path, quantized: Path, cfg: VerifyConfig, fp8_tensors: int) -> dict:
    """Run each configured engine on both models; raises VerificationError if the FP8 one is broken."""
    from transformers import AutoTokenizer

    samples = load_samples(cfg)
    tokenizer = AutoTokenizer.from_pretrained(source)
    template = None if tokenizer.chat_template else PLAIN_TEMPLATE
    where = device.describe()
    report: dict = {
        "device": where,
        "samples": {"translation_prompts": len(samples.chats), "heldout_texts": len(samples.texts),
                    "max_tokens": cfg.max_tokens, "pairs": cfg.pairs or "bundled test_pairs.jsonl"},
    }  # fmt: skip
    if "transformers" in cfg.engines:
        bf16 = run_transformers(source, samples, cfg, template)
        fp8 = run_transformers(quantized, samples, cfg, template)
        if fp8["fp8_tensors"] != fp8_tensors:
            raise VerificationError(
                f"transformers loaded {fp8['fp8_tensors']} FP8 tensors from {quantized}, expected {fp8_tensors}"
            )
        section = _compare(bf16, fp8, samples)
        section["fp8_tensors_loaded"] = fp8["fp8_tensors"]
        section["next_token"] = metrics.next_token_agreement(bf16["logprobs"], fp8["logprobs"])
        report["transformers"] = section
    if "vllm" in cfg.engines:
        bf16 = run_vllm(source, samples, cfg, template, tokenizer)
        fp8 = run_vllm(quantized, samples, cfg, template, tokenizer)
        section = _compare(bf16, fp8, samples)
        section["quantization"] = fp8["quantization"]
        report["vllm"] = section
    report["throughput_note"] = throughput_note(where)
    return report


def _compare(bf16: dict, fp8: dict, samples: Samples) -> dict:
    ratio = fp8["tokens_per_s"] / bf16["tokens_per_s"] if bf16["tokens_per_s"] else None
    return {
        "greedy": metrics.greedy_agreement(bf16["token_ids"], fp8["token_ids"]),
        "chrf_fp8_vs_bf16": metrics.chrf(fp8["texts"], bf16["texts"]),
        "chrf_vs_reference": {
            "bf16": metrics.chrf(bf16["texts"], samples.references),
            "fp8": metrics.chrf(fp8["texts"], samples.references),
        },
        "throughput": {
            "bf16_tokens_per_s": bf16["tokens_per_s"],
            "fp8_tokens_per_s": fp8["tokens_per_s"],
            "fp8_over_bf16": ratio,
            "bf16_tokens": bf16["tokens"],
            "fp8_tokens": fp8["tokens"],
        },
        "examples": [
            {"prompt": chat[-1]["content"], "bf16": a, "fp8": b}
            for chat, a, b in list(zip(samples.chats, bf16["texts"], fp8["texts"]))[:EXAMPLES]
        ],
    }


@contextmanager
def _loaded(kind: str, path: Path, cfg: VerifyConfig, template: str | None) -> Iterator:
    """The engine of `kind` on `path`, closed (and its memory collected) before the next one loads."""
    from hala.engines import get_engine
    from hala.engines.transformers import TransformersEngine

    try:
        if kind == "transformers":
            engine = TransformersEngine(EngineConfig(kind=kind, model=str(path), chat_template=template),
                                        device_map=cfg.device_map)  # fmt: skip
        else:
            template = cfg.engine.chat_template or template
            engine = get_engine(cfg.engine.model_copy(update={"model": str(path), "chat_template": template}))
    except Exception as exc:
        name = "transformers" if kind == "transformers" else "vLLM"
        raise VerificationError(f"{name} could not load {path}: {type(exc).__name__}: {exc}") from exc
    try:
        yield engine
    finally:
        engine.close()
        gc.collect()


def _timed_greedy(engine, samples: Samples, cfg: VerifyConfig) -> tuple[list, float]:
    started = time.perf_counter()
    generations = engine.chat(samples.chats, SamplingParams(max_tokens=cfg.max_tokens, temperature=0.0))
    return generations, time.perf_counter() - started


def _outputs(texts: list[str], token_ids: list[list[int]], tokens: int, elapsed: float) -> dict:
    speed = tokens / elapsed if elapsed > 0 else 0.0
    return {"texts": texts, "token_ids": token_ids, "tokens": tokens, "tokens_per_s": speed}


def run_transformers(path: Path, samples: Samples, cfg: VerifyConfig, template: str | None) -> dict:
    """Full next-token distributions and greedy outputs from the transformers engine. An FP8
    compressed-tensors checkpoint loads with its Linear weights in FP8, counted before the first
    forward pass decompresses them; its forward then rounds every Linear's input to FP8 per token
    (the scheme's dynamic activations), so the model computes what vLLM's W8A8 kernels compute."""
    from hala.quantize.fp8 import FP8_DTYPE

    with _loaded("transformers", path, cfg, template) as engine:
        fp8_tensors = engine.count_parameters(FP8_DTYPE)
        encode = engine.tokenizer
        texts = [encode(t, truncation=True, max_length=cfg.max_text_tokens)["input_ids"] for t in samples.texts]
        logprobs = engine.next_token_logprobs(texts)
        if not all(bool(lp.isfinite().all()) for lp in logprobs):
            raise VerificationError(f"{path}: the model gives NaN or Inf log-probabilities")
        generations, elapsed = _timed_greedy(engine, samples, cfg)
    token_ids = [list(g.token_ids[:-1] if g.finish_reason == "stop" else g.token_ids) for g in generations]
    outputs = _outputs([g.text for g in generations], token_ids, sum(len(ids) for ids in token_ids), elapsed)
    return {"fp8_tensors": fp8_tensors, "logprobs": logprobs, **outputs}


def run_vllm(path: Path, samples: Samples, cfg: VerifyConfig, template: str | None, tokenizer) -> dict:
    """Greedy translations from vLLM (the engine of the translate stage), timed after a warm-up."""
    with _loaded("vllm", path, cfg, template) as engine:
        quantization = engine.quantization
        engine.chat(samples.chats[:1], SamplingParams(max_tokens=2))
        generations, elapsed = _timed_greedy(engine, samples, cfg)
    texts = [g.text for g in generations]
    token_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    tokens = sum(g.completion_tokens for g in generations)
    return {"quantization": quantization, **_outputs(texts, token_ids, tokens, elapsed)}
