"""Seconds per optimizer step of `hala train` on one model: TRL's default LM head vs hala's, full
fine-tune vs frozen embedding vs LoRA.

The same trainer hala builds (TRL's SFTTrainer, completion-only loss, the LM head projected only at
supervised positions; the first variant switches that back to TRL's CPU default, every position),
on the same batches of the bundled seed pairs with the paper's translator prompt, in one process, one variant after the other. The first step of each (allocation, warm-up)
is not counted; the median of the others is. On a CPU, a small model with a large vocabulary spends
most of its optimizer step on the embedding (Gemma-3-270M: 168M of 268M parameters), which is what
`freeze_embeddings` removes.

Usage: python benchmarks/train_step.py [--model DIR] [--steps 6] [--batch-size 8] [--threads N]
(default model: Gemma-3-270M as `hala models gemma3-270m` writes it, in ~/.cache/hala/models)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

PROMPT = "Translate everything that follows into Arabic:\n\n"
VARIANTS = {  # name -> (TrainConfig settings, LM head over every position as TRL does off GPUs)
    "full_trl_all_positions": ({}, True),
    "full": ({}, False),
    "frozen_embeddings": ({"freeze_embeddings": True}, False),
    "lora_r16": ({"lora": {"r": 16, "alpha": 32}}, False),
}


def seconds_per_step(model: str, data: Path, out: Path, steps: int, batch_size: int, all_positions: bool, **variant) -> float:
    import trl.trainer.utils as trl_utils
    from transformers import TrainerCallback

    from hala.train.config import TrainConfig
    from hala.train.sft import build_trainer

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.start)

    cfg = TrainConfig(model=model, data=[str(data)], out=str(out), max_steps=steps, batch_size=batch_size,
                      learning_rate=1e-5, save_steps=10_000, logging_steps=10_000, **variant)  # fmt: skip
    prepared = build_trainer(cfg)  # switches TRL to project only supervised positions
    hala_switch = trl_utils._use_triton
    if all_positions:
        trl_utils._use_triton = hala_switch.original
    try:
        prepared.trainer.add_callback(Clock())
        prepared.trainer.train()
    finally:
        trl_utils._use_triton = hala_switch
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()

    import torch

    from hala.models.gemma3 import materialize_gemma3_270m

    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or str(materialize_gemma3_270m(Path.home() / ".cache" / "hala" / "models" / "gemma3-270m"))
    text = resources.files("hala.resources").joinpath("samples/seed_pairs.jsonl").read_text(encoding="utf-8")
    pairs = [json.loads(line) for line in text.splitlines()[: args.steps * args.batch_size]]
    rows = [{"prompt": [{"role": "user", "content": PROMPT + p["en"]}], "completion": [{"role": "assistant", "content": p["ar"]}]}
            for p in pairs]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        result = {
            name: round(seconds_per_step(model, data, Path(tmp) / name, args.steps, args.batch_size, everywhere, **variant), 2)
            for name, (variant, everywhere) in VARIANTS.items()
        }
    for name, seconds in result.items():
        print(f"{name:>18}: {seconds:.2f} s/step ({args.batch_size} pairs, {torch.get_num_threads()} threads)")
    print(json.dumps({
        "model": Path(model).name, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "s_per_step": result,
        "speedup_supervised_positions_only": round(result["full_trl_all_positions"] / result["full"], 2),
        "speedup_frozen_embeddings": round(result["full"] / result["frozen_embeddings"], 2),
        "speedup_lora_r16": round(result["full"] / result["lora_r16"], 2),
        "speedup_frozen_vs_trl_default": round(result["full_trl_all_positions"] / result["frozen_embeddings"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
