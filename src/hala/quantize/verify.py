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

Throughput is measured for both models on the current device and reported as it is; the note says
what to expect where: FP8 matrix units exist only on Ada/Hopper-class GPUs.
"""

from __future__ import annotations

import gc
import logging
import platform
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field

from hala.config import StrictModel
from hala.engines.base import EngineConfig, SamplingParams
from hala.quantize import metrics

log = logging.getLogger("hala.quantize.verify")

TRANSLATE_PROMPT = "Translate everything that follows into Arabic:\n\n"  # the paper's translator prompt
PLAIN_TEMPLATE = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"  # for models without one
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


def device_info() -> dict:
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return {"kind": "cuda", "name": torch.cuda.get_device_name(), "capability": f"{major}.{minor}"}
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {"kind": "cpu", "name": name}


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
    device = device_info()
    report: dict = {
        "device": device,
        "samples": {"translation_prompts": len(samples.chats), "heldout_texts": len(samples.texts),
                    "max_tokens": cfg.max_tokens, "pairs": cfg.pairs or "bundled test_pairs.jsonl"},
    }  # fmt: skip
    if "transformers" in cfg.engines:
        from hala.quantize.verify_transformers import run_transformers

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
    report["throughput_note"] = throughput_note(device)
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


def run_vllm(path: Path, samples: Samples, cfg: VerifyConfig, template: str | None, tokenizer) -> dict:
    """Greedy translations from vLLM (the engine of the translate stage), timed after a warm-up."""
    from hala.engines import get_engine

    engine_cfg = cfg.engine.model_copy(
        update={"model": str(path), "chat_template": cfg.engine.chat_template or template}
    )
    try:
        engine = get_engine(engine_cfg)
    except Exception as exc:
        raise VerificationError(f"vLLM could not load {path}: {type(exc).__name__}: {exc}") from exc
    try:
        llm = getattr(engine, "llm", None)
        quantization = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        quantization = getattr(quantization, "quantization", None)
        engine.chat(samples.chats[:1], SamplingParams(max_tokens=2))
        started = time.perf_counter()
        generations = engine.chat(samples.chats, SamplingParams(max_tokens=cfg.max_tokens, temperature=0.0))
        elapsed = time.perf_counter() - started
    finally:
        engine.close()
        gc.collect()
    texts = [g.text for g in generations]
    tokens = sum(g.completion_tokens for g in generations)
    return {
        "texts": texts,
        "token_ids": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts],
        "tokens": tokens,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
        "quantization": quantization,
    }
