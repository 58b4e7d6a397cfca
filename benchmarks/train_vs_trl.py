"""`hala train` against a bare TRL `SFTTrainer` script: train tokens/s and peak RSS, side by side.

Both sides fine-tune the same model on the same rows: the first `steps × batch` bundled seed pairs
in the translator's prompt-completion format (prompt `Translate everything that follows into
Arabic:\\n\\n{en}`, completion the Arabic), with the same max_length, per-device batch, learning
rate, max_steps, seed, AdamW, in float32 on the CPU, no eval and no checkpoint during the loop.

- `hala`: `hala.train.sft.train(TrainConfig(...))`, the function `hala train` calls, as shipped.
- `trl`: what a user writes by hand: transformers' `from_pretrained` for the model and tokenizer, a
  `datasets.Dataset` of prompt/completion messages, `SFTConfig` + `SFTTrainer`, `save_model`.
  Where hala's defaults differ from SFTConfig's in a way that changes the work done, this side is
  given hala's value (`gradient_checkpointing=False`, `bf16=False`, cosine schedule, 3% warm-up);
  the JSON lists every field on which the two trainers' arguments still differ, and hala's
  defaults against SFTConfig's.
- `hala_all_positions`: `hala` with TRL's own CPU LM head. hala projects the LM head only at the
  positions that have a label (TRL does so on CUDA/XPU only; on a CPU it projects every position,
  prompt and padding too); with Gemma 3's 262k-row head that is much of a step, so hala's headline
  ratio includes that feature (it is what `hala train` does), and this side gives the ratio for
  the same work, i.e. the cost of hala's wrapper alone.

Each run is its own child process (sides alternate, the first side rotates every round; best of
`--repeats`). Throughput: tokens fed to the model (non-padding tokens of the collated batches,
counted by a forward pre-hook; the same on every side, or the script fails) between the end of the
first optimizer step (warm-up, not counted) and the end of the last, timed by the same callback on
every side. TRL's own `train_runtime` (every step) is reported too, and the child's wall time with
loading, tokenizing and saving. On a shared machine wall time swings (Gemma-3-270M, 8 steps of 8: TRL
22 and 26 tokens/s in two rounds), so tokens per CPU-second of the same loop (`time.process_time`,
every thread) are reported beside it. Peak RSS is the child's own (kernel `wait4` rusage); this
process imports neither torch nor hala, so the children's figures are theirs.

Usage: python benchmarks/train_vs_trl.py [--model DIR] [--steps 4] [--batch-size 4] [--max-length 128]
       [--repeats 2] [--threads N] [--sides hala hala_all_positions trl]
(default model: Gemma-3-270M in ~/.cache/hala/models/gemma3-270m, written by `hala models gemma3-270m`
if absent; 7.5 minutes on 2 shared cores, six children of ~70 s, half of each loading and warm-up.
Smoke run: `hala models tiny-llama --out /tmp/tiny` then `--model /tmp/tiny`.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PROMPT = "Translate everything that follows into Arabic:\n\n"
SEED_PAIRS = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "samples" / "seed_pairs.jsonl"
SIDES = ("hala", "hala_all_positions", "trl")
LEARNING_RATE, SEED = 2e-5, 42
# Trainer arguments that name this run rather than its work, left out of the comparison of settings
NOT_WORK = {"output_dir", "logging_dir", "run_name", "save_steps", "save_strategy", "per_device_eval_batch_size",
            "use_cpu", "eval_strategy", "logging_strategy"}  # fmt: skip


def step_clock():
    """A TrainerCallback that stamps the end of every optimizer step and counts the tokens its
    forward passes were fed (built here: transformers is imported in the children only)."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends, self.cpu_ends, self.fed, self.supervised = [], [], [], []
            self._fed = self._supervised = 0
            self.train_runtime, self.begin, self.args = None, None, None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.begin = time.perf_counter()
            self.args = args.to_dict()
            model.register_forward_pre_hook(self._count, with_kwargs=True)

        def _count(self, module, args, kwargs):
            fed, supervised = fed_tokens(kwargs)
            self._fed += fed
            self._supervised += supervised

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())  # every thread of the process
            self.fed.append(self._fed)
            self.supervised.append(self._supervised)
            self._fed = self._supervised = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" in logs:
                self.train_runtime = logs["train_runtime"]

    return StepClock()


def fed_tokens(inputs: dict) -> tuple[int, int]:
    """(non-padding tokens, tokens with a label) of one forward pass's inputs."""
    ids, mask, labels = inputs["input_ids"], inputs.get("attention_mask"), inputs.get("labels")
    fed = int(mask.sum()) if mask is not None else ids.numel()  # padding-free batches have no padding
    return fed, int((labels != -100).sum()) if labels is not None else 0


def seed_pairs(n: int) -> list[dict]:
    rows = [json.loads(line) for line in SEED_PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]
    if n > len(rows):
        raise SystemExit(f"steps × batch = {n} rows, but {SEED_PAIRS} has {len(rows)}: lower --steps or --batch-size")
    return rows[:n]


def train_hala(args: argparse.Namespace, work: Path, clock) -> None:
    import trl

    from hala.data.records import ParallelPair
    from hala.pairs.sft import prompt_completion
    from hala.train import sft
    from hala.train.config import TrainConfig

    # what `hala pairs` writes for the translator, one row per pair
    rows = [prompt_completion(ParallelPair(id=p["id"], src=p["en"], tgt=p["ar"]), "en-ar")
            for p in seed_pairs(args.steps * args.batch_size)]  # fmt: skip
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if args.side == "hala_all_positions":
        sft.score_only_supervised_positions = lambda: None  # TRL's CPU LM head: every position
    # hala.train gives a run no callback of its own: the clock joins the trainer it builds
    init = trl.SFTTrainer.__init__

    def init_with_clock(self, *a, **kw):
        init(self, *a, **kw)
        self.add_callback(clock)

    trl.SFTTrainer.__init__ = init_with_clock
    cfg = TrainConfig(model=args.model, data=[str(data)], out=str(work / "out"), max_length=args.max_length,
                      batch_size=args.batch_size, max_steps=args.steps, learning_rate=LEARNING_RATE, seed=SEED,
                      save_steps=args.steps + 1)  # fmt: skip
    sft.train(cfg)


def train_trl(args: argparse.Namespace, work: Path, clock) -> dict:
    """The hand-written script. Returns SFTConfig's own defaults, to compare hala's with."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": PROMPT + p["en"]}],
         "completion": [{"role": "assistant", "content": p["ar"]}]}
        for p in seed_pairs(args.steps * args.batch_size)
    ])  # fmt: skip
    config = SFTConfig(
        output_dir=str(work / "checkpoints"), max_length=args.max_length, per_device_train_batch_size=args.batch_size,
        learning_rate=LEARNING_RATE, max_steps=args.steps, seed=SEED, save_strategy="no", eval_strategy="no",
        report_to="none",
        # hala's defaults where SFTConfig's would change the work: fp32 on a CPU, no recomputation, its schedule
        bf16=False, gradient_checkpointing=False, lr_scheduler_type="cosine", warmup_steps=0.03,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    trainer.save_model(str(work / "model"))
    # on a machine without a GPU, SFTConfig's default bf16=True is refused unless use_cpu is set
    return SFTConfig(output_dir=str(work / "checkpoints"), use_cpu=True).to_dict()


def child(args: argparse.Namespace) -> None:
    """One run of one side; prints its figures as the last line."""
    start = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clock = step_clock()
    with tempfile.TemporaryDirectory(prefix=f"train-vs-trl-{args.side}-") as tmp:
        defaults = train_trl(args, Path(tmp), clock) if args.side == "trl" else train_hala(args, Path(tmp), clock)
    import torch

    timed = sum(clock.fed[1:])
    loop = clock.ends[-1] - clock.ends[0]
    loop_cpu = clock.cpu_ends[-1] - clock.cpu_ends[0]
    print(json.dumps({
        "steps": len(clock.ends), "tokens_fed": clock.fed, "tokens_supervised": clock.supervised,
        "tokens_per_s": timed / loop, "loop_s": loop, "tokens_per_cpu_s": timed / loop_cpu,
        "train_runtime_s": clock.train_runtime, "tokens_per_s_train_runtime": sum(clock.fed) / clock.train_runtime,
        "setup_s": clock.begin - start, "child_wall_s": time.perf_counter() - start, "threads": torch.get_num_threads(),
        "trainer_args": clock.args, "sft_config_defaults": defaults,
    }, default=str))  # fmt: skip


def run_side(side: str, args: argparse.Namespace) -> dict:
    """One side in its own process: its figures, wall time and peak RSS (wait4)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, "--side", side, "--model", args.model, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: the child is reaped by wait4, not communicate
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"the {side} side failed:\n{err.read()[-3000:]}")
    figures = json.loads(out.strip().splitlines()[-1])
    return figures | {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}


def differing(a: dict, b: dict, skip=frozenset()) -> dict:
    """{field: [a's, b's]} for every trainer argument on which a and b differ."""
    return {k: [a.get(k), b.get(k)] for k in sorted(a.keys() | b.keys()) if k not in skip and a.get(k) != b.get(k)}


def default_model() -> str:
    folder = Path(os.environ.get("HALA_MODELS_CACHE") or Path.home() / ".cache" / "hala" / "models") / "gemma3-270m"
    if not (folder / "config.json").exists():
        subprocess.run([str(BIN / "hala"), "models", "gemma3-270m"], check=True)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF model folder (default: Gemma-3-270M)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps; the first is warm-up, not timed")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is warm-up")
    args.model = args.model or default_model()
    if args.side:
        return child(args)
    if "trl" not in args.sides:
        parser.error("--sides must include trl, the baseline")

    runs: dict[str, list[dict]] = {side: [] for side in args.sides}
    for r in range(args.repeats):
        for side in args.sides[r % len(args.sides) :] + args.sides[: r % len(args.sides)]:
            runs[side].append(last := run_side(side, args))
            print(f"round {r + 1}: {side:<18} {last['tokens_per_s']:7.1f} tokens/s  loop {last['loop_s']:5.1f}s  "
                  f"wall {last['wall_s']:5.1f}s  peak RSS {last['peak_rss_mb']:6.0f} MB", flush=True)  # fmt: skip
    fed = {side: rs[0]["tokens_fed"] for side, rs in runs.items()}
    if any(f != fed["trl"] for rs in runs.values() for f in (r["tokens_fed"] for r in rs)):
        raise RuntimeError(f"the sides were fed different tokens per step, the comparison is void: {fed}")
    best = {side: max(rs, key=lambda r: r["tokens_per_s"]) for side, rs in runs.items()}
    low_rss = {side: min(r["peak_rss_mb"] for r in rs) for side, rs in runs.items()}
    low_wall = {side: min(r["wall_s"] for r in rs) for side, rs in runs.items()}
    trl_side = best["trl"]
    sides = {
        side: {"tokens_per_s": round(b["tokens_per_s"], 1), "loop_s": round(b["loop_s"], 2),
               "tokens_per_cpu_s": round(max(r["tokens_per_cpu_s"] for r in runs[side]), 2),
               "tokens_per_s_train_runtime": round(b["tokens_per_s_train_runtime"], 1),
               "train_runtime_s": round(b["train_runtime_s"], 2), "setup_s": round(b["setup_s"], 1),
               "wall_s": round(low_wall[side], 1), "peak_rss_mb": round(low_rss[side]),
               "tokens_per_s_rounds": [round(r["tokens_per_s"], 1) for r in runs[side]]}
        for side, b in best.items()
    }  # fmt: skip
    figures = {side + "_throughput_ratio": round(b["tokens_per_s"] / trl_side["tokens_per_s"], 3)
               for side, b in best.items() if side != "trl"}  # fmt: skip
    per_cpu_s = {side: f["tokens_per_cpu_s"] for side, f in sides.items()}
    figures |= {side + "_cpu_throughput_ratio": round(per_cpu_s[side] / per_cpu_s["trl"], 3)
                for side in best if side != "trl"}  # fmt: skip
    figures |= {side + "_peak_rss_ratio": round(low_rss[side] / low_rss["trl"], 3) for side in best if side != "trl"}
    if "hala" in best:
        figures["hala_wall_ratio"] = round(low_wall["hala"] / low_wall["trl"], 3)
        hala_args = best["hala"]["trainer_args"]
        figures["trainer_args_hala_vs_trl_side"] = differing(hala_args, trl_side["trainer_args"], NOT_WORK)
        figures["hala_defaults_vs_sft_config"] = differing(
            hala_args, trl_side["sft_config_defaults"], NOT_WORK | {"max_length", "per_device_train_batch_size",
                                                                    "learning_rate", "max_steps", "seed"})  # fmt: skip
        figures["hala_beyond_sft_config"] = {"lm_head_supervised_positions_only": [True, False],
                                             "save_dtype": ["the base model's (bf16)", "the training dtype (fp32)"]}
    figures |= {
        "target": {"hala_throughput_ratio": 0.95},
        "model": Path(args.model).name, "steps": args.steps, "timed_steps": args.steps - 1,
        "batch_size": args.batch_size, "max_length": args.max_length, "dtype": "float32", "device": "cpu",
        "threads": trl_side["threads"], "repeats": args.repeats, "tokens_fed_per_step": fed["trl"],
        "tokens_supervised_per_step": trl_side["tokens_supervised"], "sides": sides,
    }  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
