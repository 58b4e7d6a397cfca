"""Gemma-3-270M on one GPU: a BF16 fine-tuning step and FP8 against BF16, the parts `check.sh` runs.

The GPU machines hala borrows have torch, transformers, accelerate, safetensors and numpy, and
nothing can be installed there; hala's stages need more (pydantic for their configs, TRL and
datasets to train, compressed-tensors to write and read FP8 checkpoints). So each part runs hala's
own code where it can import it, a plain equivalent where it can't, and the JSON says which ran:

1. `sft`: timed AdamW steps in BF16 (batch 8, 128 tokens, loss on the completion tokens only)
   through `hala.train.sft.build_trainer` (TRL's SFTTrainer with hala's settings) when TRL,
   datasets and pydantic import, else a plain PyTorch loop on one fixed batch of random token ids
   (half prompt, masked, half completion; a step costs the same whatever the ids). Tokens/s, peak
   GPU memory, and the loss before and after (it must be finite, and on a fixed batch it falls);
2. `quantize_roundtrip`: `hala quantize` writes the compressed-tensors FP8 checkpoint, transformers
   loads it (the FP8 tensors it loaded are counted), and it generates greedily beside the BF16
   model: top-1 next-token agreement and greedy exact match. Skipped, naming what is missing,
   where pydantic or compressed-tensors does not import;
3. `fp8_w8a8`: the BF16 model with every Linear but the head run as `torch._scaled_mm` in FP8
   (weights per channel, activations per token, as vLLM runs hala's checkpoints), the GEMM of
   `fp8_vs_bf16.py`: its top-1 agreement with BF16. Needs torch alone.

The model is the folder `hala models gemma3-270m --out DIR` writes, when one is given (536 MB, so it
can't travel with the working tree to a borrowed machine); without one, a randomly initialised
Gemma3ForCausalLM of the same shapes, with hala's tiny BPE tokenizer. Speed and memory are those of
the real model; agreement on random weights is a weak signal (near-uniform logits flip under any
rounding), so no threshold is applied to it. `--smoke` runs a two-layer model on the CPU to check
the script itself.

Usage: python benchmarks/gpu/gemma3_270m.py [--model DIR] [--smoke] [--sft auto|hala|plain]
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import torch

from fp8_vs_bf16 import FP8Linear

SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:  # hala is not pip-installed on a borrowed machine: its source is imported
    sys.path.insert(0, str(SRC))
TEST_PAIRS = SRC / "hala" / "resources" / "samples" / "test_pairs.jsonl"
TRANSLATE_PROMPT = "Translate everything that follows into Arabic:\n\n"  # as hala.quantize.verify
# google/gemma-3-270m, as the config.json `hala models gemma3-270m` writes
GEMMA3_270M = dict(
    hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
    head_dim=256, vocab_size=262144, query_pre_attn_scalar=256, sliding_window=512, max_position_embeddings=32768,
    rms_norm_eps=1e-6, tie_word_embeddings=True,
    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
)  # fmt: skip
SMOKE_SHAPES = dict(GEMMA3_270M, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                    head_dim=32, query_pre_attn_scalar=32, vocab_size=1024)  # fmt: skip
PACKAGES = ("torch", "transformers", "accelerate", "safetensors", "numpy", "pydantic", "trl", "datasets",
            "compressed-tensors")  # fmt: skip


@dataclass
class Settings:
    device: str
    batch: int = 8
    seq: int = 128
    warmup_steps: int = 3
    timed_steps: int = 20
    learning_rate: float = 1e-4
    prompts: int = 4
    prompt_tokens: int = 16
    new_tokens: int = 16


SMOKE = dict(device="cpu", batch=2, seq=64, warmup_steps=1, timed_steps=2, prompts=2, prompt_tokens=8, new_tokens=4)


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def describe(device: str) -> dict:
    if device != "cuda":
        return {"kind": "cpu"}
    major, minor = torch.cuda.get_device_capability()
    return {"kind": "cuda", "name": torch.cuda.get_device_name(), "capability": f"{major}.{minor}",
            "memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}  # fmt: skip


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def pairs(n: int) -> list[dict]:
    lines = TEST_PAIRS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def random_gemma3(out: Path, shapes: dict) -> Path:
    """A random Gemma3ForCausalLM of `shapes` with hala's tiny BPE tokenizer (ids fit the vocabulary)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from hala.models.tiny import build_tokenizer  # tokenizers and transformers only

    tokenizer = build_tokenizer()
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(**shapes, **ids)).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def load(folder: Path, device: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map=device)


def sft_plain(folder: Path, s: Settings) -> dict:
    """AdamW steps on one fixed batch of random ids: the first half of each row is prompt (masked)."""
    model = load(folder, s.device)
    model.train()
    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (s.batch, s.seq), generator=g).to(s.device)
    labels = ids.clone()
    labels[:, : s.seq // 2] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate)
    losses, times = [], []
    for _ in range(s.warmup_steps + s.timed_steps):
        sync(s.device)
        started = time.perf_counter()
        with torch.enable_grad():  # a library loaded before (vLLM, lighteval) may have turned grad off
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(s.device)
        times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    steps = [(s.batch * s.seq, int((labels[:, 1:] != -100).sum()))] * len(times)  # HF shifts the labels by one
    del model, optimizer
    return {"path": "plain PyTorch loop (fixed batch of random token ids)", **step_figures(times, steps, losses, s)}


def sft_rows(tokenizer, seq: int) -> list[dict]:
    """Prompt-completion rows (TRL's conversational form) of consecutive test pairs, each just past `seq`
    tokens (TRL truncates it there) with its prompt, about half, inside: every row keeps completion tokens."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows, chunk = [], []
    for pair in pairs(150):
        chunk.append(pair)
        en, ar = TRANSLATE_PROMPT + " ".join(p["en"] for p in chunk), " ".join(p["ar"] for p in chunk)
        if count(en) + count(ar) >= seq:
            rows.append({"prompt": [{"role": "user", "content": en}],
                         "completion": [{"role": "assistant", "content": ar}]})  # fmt: skip
            chunk = []
    return rows


def sft_hala(folder: Path, work: Path, s: Settings) -> dict:
    """hala's trainer (TRL SFTTrainer, completion-only loss), each step timed, each batch's tokens counted."""
    from transformers import AutoTokenizer, TrainerCallback

    from hala.train.config import TrainConfig
    from hala.train.sft import build_trainer

    data = work / "sft.jsonl"
    rows = sft_rows(AutoTokenizer.from_pretrained(folder), s.seq)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = TrainConfig(
        model=str(folder), data=[str(data)], out=str(work / "sft"), format="prompt_completion", max_length=s.seq,
        max_steps=s.warmup_steps + s.timed_steps, batch_size=s.batch, learning_rate=s.learning_rate,
        lr_scheduler="constant", warmup_ratio=0.0, bf16=s.device == "cuda", logging_steps=1,
        trl={"save_strategy": "no"},
    )  # fmt: skip
    trainer = build_trainer(cfg).trainer
    if s.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batches: list[tuple[int, int]] = []
    collate = trainer.data_collator

    def counted(features):  # batches come in order (accelerate may fetch one ahead)
        batch = collate(features)
        batches.append((int(batch["attention_mask"].sum()), int((batch["labels"] != -100).sum())))
        return batch

    trainer.data_collator = counted
    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync(s.device)
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync(s.device)
            times.append(time.perf_counter() - self.started)

    trainer.add_callback(StepTimes())
    with torch.enable_grad():
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer
    return {"path": "hala.train.sft.build_trainer (TRL SFTTrainer)", **step_figures(times, batches, losses, s)}


def step_figures(times: list[float], batches: list[tuple[int, int]], losses: list[float], s: Settings) -> dict:
    """Tokens/s over the timed steps (warm-up left out), from each step's (tokens, completion tokens)."""
    timed = slice(s.warmup_steps, s.warmup_steps + s.timed_steps)
    seconds = sum(times[timed])
    tokens = sum(t for t, _ in batches[timed])
    completion = sum(c for _, c in batches[timed])
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    return {
        "batch": s.batch, "max_tokens_per_row": s.seq, "warmup_steps": s.warmup_steps, "timed_steps": len(times[timed]),
        "tokens_per_step": round(tokens / len(times[timed]), 1), "tokens_per_s": round(tokens / seconds, 1),
        "completion_tokens_per_s": round(completion / seconds, 1),
        "step_ms": round(1e3 * seconds / len(times[timed]), 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if s.device == "cuda" else None,
        "loss_first": round(losses[0], 4) if losses else None, "loss_last": round(losses[-1], 4) if losses else None,
        "loss_finite": finite,
    }  # fmt: skip


def prompt_ids(tokenizer, s: Settings) -> torch.Tensor:
    """`s.prompts` translation prompts cut to `s.prompt_tokens` each, so they batch without padding."""
    sample = pairs(2 * s.prompts)
    texts = [TRANSLATE_PROMPT + a["en"] + " " + b["en"] for a, b in zip(sample[::2], sample[1::2])]
    rows = [tokenizer(t)["input_ids"][: s.prompt_tokens] for t in texts]
    if any(len(r) < s.prompt_tokens for r in rows):
        raise ValueError(f"a prompt is shorter than {s.prompt_tokens} tokens")
    return torch.tensor(rows, device=s.device)


@torch.no_grad()
def greedy(model, prompts: torch.Tensor, s: Settings) -> torch.Tensor:
    """Prompts and their greedy continuations of exactly `s.new_tokens` tokens."""
    return model.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                          max_new_tokens=s.new_tokens, min_new_tokens=s.new_tokens)  # fmt: skip


@torch.no_grad()
def argmax_on(model, sequences: torch.Tensor) -> torch.Tensor:
    """The model's next-token argmax at every position (teacher forcing); NaN or Inf is an error."""
    logits = model(input_ids=sequences, use_cache=False).logits[:, :-1]
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError("the model gives NaN or Inf logits")
    return logits.argmax(-1)


def agreement(reference: dict, top1: torch.Tensor, sequences: torch.Tensor) -> dict:
    """Top-1 agreement with BF16 over every position, and the share of identical greedy continuations."""
    same = (reference["sequences"] == sequences).all(dim=1)
    return {"top1_agreement": round(float((reference["top1"] == top1).float().mean()), 4),
            "greedy_exact": round(float(same.float().mean()), 4)}  # fmt: skip


def bf16_reference(folder: Path, reference: dict, s: Settings) -> dict:
    """The BF16 model, its prompts, greedy continuations and next-token argmax, kept in `reference`."""
    from transformers import AutoTokenizer

    model = load(folder, s.device).eval()
    reference["prompts"] = prompt_ids(AutoTokenizer.from_pretrained(folder), s)
    reference["sequences"] = greedy(model, reference["prompts"], s)
    reference["top1"] = argmax_on(model, reference["sequences"])
    reference["model"] = model
    return {"parameters": sum(p.numel() for p in model.parameters()), "prompts": s.prompts,
            "prompt_tokens": s.prompt_tokens, "new_tokens": s.new_tokens}  # fmt: skip


def quantize_roundtrip(folder: Path, work: Path, reference: dict, s: Settings) -> dict:
    """hala quantize -> compressed-tensors checkpoint -> transformers -> generate, against BF16."""
    absent = missing("pydantic", "compressed_tensors")
    if absent:
        why = ("hala quantize needs pydantic (its config) and compressed-tensors (to write quantization_config); "
               "transformers needs compressed-tensors to load the checkpoint")
        return {"skipped": f"{', '.join(absent)} not importable: {why}"}
    from hala.quantize import QuantizeConfig, quantize
    from hala.quantize.verify import VerifyConfig

    started = time.perf_counter()
    quantize(QuantizeConfig(model=str(folder), out=str(work / "fp8"), verify=VerifyConfig(enabled=False)))
    quantize_s = time.perf_counter() - started
    model = load(work / "fp8", s.device)
    fp8_tensors = sum(1 for p in model.parameters() if p.dtype == torch.float8_e4m3fn)  # before a forward decompresses
    if fp8_tensors == 0:
        raise RuntimeError(f"transformers loaded no FP8 tensor from {work / 'fp8'}")
    sequences = greedy(model, reference["prompts"], s)
    found = agreement(reference, argmax_on(model, reference["sequences"]), sequences)
    size = sum(f.stat().st_size for f in (work / "fp8").glob("*.safetensors"))
    del model
    return {"fp8_tensors_loaded": fp8_tensors, "checkpoint_mb": round(size / 2**20, 1),
            "quantize_s": round(quantize_s, 2), **found}  # fmt: skip


class ScaledMMLinear(torch.nn.Module):
    """A Linear computed by `torch._scaled_mm` in FP8 (rows padded to a multiple of 16 for CUDA)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.fp8 = FP8Linear(linear.weight.detach())
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        pad = -rows.shape[0] % 16
        try:
            out = self.fp8(torch.nn.functional.pad(rows, (0, 0, 0, pad)))
        except RuntimeError:  # row-wise scales unsupported by this build: per tensor, scaled outside, as the benchmark
            FP8Linear.rowwise = False
            out = self.fp8(torch.nn.functional.pad(rows, (0, 0, 0, pad)))
        out = out[: rows.shape[0]].reshape(*x.shape[:-1], -1)
        return out if self.bias is None else out + self.bias


def fp8_w8a8(model, reference: dict, s: Settings) -> dict:
    """Swap every Linear but the (tied) head for ScaledMMLinear, then compare with BF16."""
    if s.device == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        return {"skipped": f"{torch.cuda.get_device_name()} has no FP8 tensor cores (needs sm_89+)"}
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and f"{name}.{child_name}".strip(".") != "lm_head":
                setattr(module, child_name, ScaledMMLinear(child))
                swapped += 1
    sequences = greedy(model, reference["prompts"], s)
    found = agreement(reference, argmax_on(model, reference["sequences"]), sequences)
    return {"linears_in_fp8": swapped, "rowwise_scaled_mm": FP8Linear.rowwise, **found}


def run_part(name: str, result: dict, failed: list[str], fn, *args) -> None:
    started = time.perf_counter()
    try:
        result[name] = fn(*args)
    except Exception as exc:
        traceback.print_exc()
        result[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        failed.append(name)
    result[name]["seconds"] = round(time.perf_counter() - started, 2)
    print(f"{name}: {json.dumps(result[name])}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=None, help="a BF16 HF folder (hala models gemma3-270m --out DIR)")
    parser.add_argument("--smoke", action="store_true", help="a two-layer Gemma 3 on the CPU: checks the script")
    parser.add_argument("--sft", default="auto", choices=["auto", "hala", "plain"])
    args = parser.parse_args()
    s = Settings(**SMOKE) if args.smoke else Settings(device="cuda")
    if s.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured (--smoke checks the script on the CPU)")
        print(json.dumps({"device": {"kind": "none"}, "measured": False}))
        return 2
    started = time.perf_counter()
    result: dict = {"device": describe(s.device), "versions": versions(), "settings": asdict(s)}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hala-gpu-check-") as tmp:
        work = Path(tmp)
        if args.model:
            folder = args.model
            result["model"] = {"source": "folder", "path": str(folder)}
        else:
            folder = random_gemma3(work / "bf16", SMOKE_SHAPES if args.smoke else GEMMA3_270M)
            shapes = "a two-layer smoke model" if args.smoke else "Gemma-3-270M's"
            result["model"] = {"source": "random-init", "shapes": shapes}

        absent = missing("trl", "datasets", "pydantic")
        if args.sft == "hala" or (args.sft == "auto" and not absent):
            run_part("sft", result, failed, sft_hala, folder, work, s)
        else:
            run_part("sft", result, failed, sft_plain, folder, s)
            if args.sft == "auto":
                result["sft"]["why"] = f"hala's train path needs {', '.join(absent)}, not importable here"
        if result["sft"].get("loss_finite") is False:
            failed.append("sft")
        free(s.device)

        reference: dict = {}
        run_part("bf16_reference", result, failed, bf16_reference, folder, reference, s)
        if "model" in reference:
            run_part("quantize_roundtrip", result, failed, quantize_roundtrip, folder, work, reference, s)
            free(s.device)
            run_part("fp8_w8a8", result, failed, fp8_w8a8, reference.pop("model"), reference, s)
    result["failed"] = failed
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
