"""`hala train`: one thin wrapper over TRL's SFTTrainer, used for the translator and the Hala models.

What it decides:
- the loss: prompt-completion rows train on the completion only; conversations on the assistant
  turns only (with a training chat template that marks them, see `templates.py`);
- data with no trainable token left after masking (and truncation to `max_length`) is an error,
  not a silent zero loss; examples left without one are counted;
- the LM head projects only positions with a label (TRL does so on GPUs; here on CPUs too);
- full fine-tune (optionally with the embedding frozen) or LoRA (merged into the weights at the
  end, so every later stage loads a plain checkpoint), packing, resume from the latest checkpoint
  of the same run (the stage frame, `hala.frame`, claims the folder like every stage's:
  checkpoints of other settings or data are refused, not resumed); a resumed run ends with the
  weights, the logged losses and the `train_loss` of one never stopped (`resume`);
- the model saved in the base's dtype unless `save_dtype` says otherwise;
- TRL's own options: any `SFTConfig` field given as `trl.NAME`, set over what hala derives;
- the final save in OUT/model: safetensors, tokenizer, the model's original chat template and
  generation config.

Multi-GPU runs use the same function under `accelerate launch` (configs in recipes/accelerate/):
every rank holds the output folder's lock shared (`distributed_rank`), and rank 0 alone writes
model/, loss_history.json and the manifest, after the others have finished training; they return
the manifest it wrote.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from hala.data.manifest import Manifest
from hala.data.output_lock import distributed_rank, holds_output
from hala.data.rows import expand_inputs
from hala.data.rejects import RejectLog
from hala.data.writers import atomic_folder, atomic_write_text, write_jsonl
from hala.frame import StageFrame
from hala.models.licenses import copy_license_files
from hala.train import data as train_data
from hala.train.config import TrainConfig
from hala.train.templates import training_template

CHECKPOINTS = "checkpoints"  # OUT/checkpoints: TRL's checkpoints, what `resume` picks up


class NoTrainableTokensError(ValueError):
    """Every example is fully masked: nothing to learn from."""


def _dataset(paths: list[str], fmt: str, out: Path, name: str, limit: int | None):
    """A datasets.Dataset built from hala's readers; bad rows land in OUT/rejected/NAME.jsonl."""
    from datasets import Dataset

    rejects = RejectLog()
    rows = list(train_data.rows(paths, fmt, rejects, limit))
    if len(rejects):
        write_jsonl(out / "rejected" / f"{name}.jsonl", rejects.rows())
    if not rows:
        raise NoTrainableTokensError(
            f"no trainable {name} rows in {', '.join(paths)}: all {len(rejects)} rejected (see {out / 'rejected'})"
        )
    return Dataset.from_list(rows), len(rejects)


def _trainable_tokens(dataset) -> list[int]:
    counted = dataset.map(
        lambda batch: {"n": [sum(t != -100 for t in labels) for labels in batch["labels"]]},
        batched=True,
        remove_columns=dataset.column_names,
    )
    return counted["n"]


@dataclass
class Prepared:
    trainer: object
    tokenizer: object
    original_template: str | None
    examples: int
    rejected: int
    fmt: str


def score_only_supervised_positions() -> None:
    """Make TRL's fused LM head project only the positions that have a label, on every device.

    trl 1.16 does so on CUDA/XPU; elsewhere it projects every position of the batch (prompt and
    padding too), to keep tile shapes fixed for compilers such as Neuron's. On a CPU, in eager mode,
    nothing is compiled, and with Gemma 3's 262k-row head the extra positions are most of a step.
    The switch is `trl.trainer.utils._use_triton`, which that module uses for this alone (its
    kernels keep their own copy, so they stay on the CPU path)."""
    import trl.trainer.utils as trl_utils

    original = trl_utils._use_triton
    if getattr(original, "hala_compact", False):
        return

    def compact_everywhere(device) -> bool:
        return device.type not in ("xla", "neuron") or original(device)

    compact_everywhere.hala_compact = True
    compact_everywhere.original = original
    trl_utils._use_triton = compact_everywhere


def freeze_lowest_layers(model, n: int) -> None:
    """Stop training the lowest `n` decoder layers (the model's `layers` list, whatever its family)."""
    layers = getattr(model.get_decoder(), "layers", None)
    if layers is None:
        raise ValueError(f"freeze_layers: {type(model).__name__} has no decoder `layers` list")
    if n >= len(layers):
        raise ValueError(f"freeze_layers={n}: the model has {len(layers)} decoder layers; leave at least one to train")
    for layer in layers[:n]:
        layer.requires_grad_(False)


def build_trainer(cfg: TrainConfig) -> Prepared:
    """Data, tokenizer (with its training template), model and TRL trainer, ready to train."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from hala.engines import device

    out = Path(cfg.out)
    fmt = cfg.format if cfg.format != "auto" else train_data.sniff(expand_inputs(cfg.data[0]))
    train_set, rejected = _dataset(cfg.data, fmt, out, "train", cfg.limit)
    eval_set = _dataset(cfg.eval_data, fmt, out, "eval", None)[0] if cfg.eval_data else None

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if cfg.chat_template:
        tokenizer.chat_template = Path(cfg.chat_template).read_text(encoding="utf-8")
    original_template = tokenizer.chat_template
    if fmt == "conversations":
        tokenizer.chat_template = training_template(tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    bf16 = cfg.bf16 if cfg.bf16 is not None else device.bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.bfloat16 if bf16 else torch.float32)
    if cfg.freeze_embeddings:  # a tied LM head is this same Parameter, so it stays frozen too
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.freeze_layers:
        freeze_lowest_layers(model, cfg.freeze_layers)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")  # fmt: skip
    ours = dict(
        output_dir=str(out / CHECKPOINTS),
        assistant_only_loss=fmt == "conversations",
        max_length=cfg.max_length,
        packing=cfg.packing,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5 has no warmup_ratio: a float in [0, 1) is the fraction
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=bf16,
        use_cpu=not device.on_gpu(),
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="epoch" if eval_set is not None else "no",
        seed=cfg.seed,
        report_to="none",
    )
    args = SFTConfig(**(ours | cfg.trl))  # any other TRL field, over ours (the config refused unknown names)
    score_only_supervised_positions()
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                         processing_class=tokenizer, peft_config=peft_config)  # fmt: skip
    return Prepared(trainer, tokenizer, original_template, len(train_set), rejected, fmt)


def save_dtype(cfg: TrainConfig):
    """The dtype the model is saved in: the setting, or the base model's own (config.json `dtype`)."""
    import torch
    from transformers import AutoConfig

    name = cfg.save_dtype
    if name == "auto":
        base = AutoConfig.from_pretrained(cfg.model)
        name = getattr(base, "dtype", None) or getattr(base, "torch_dtype", None) or "float32"
    return name if isinstance(name, torch.dtype) else getattr(torch, str(name))


@holds_output(shared=distributed_rank)
def train(cfg: TrainConfig) -> Manifest:
    frame = StageFrame("train", cfg, work=CHECKPOINTS)  # resume must not pick up another run's checkpoint
    if done := frame.open(f for p in cfg.data + cfg.eval_data for f in expand_inputs(p)):
        return done
    out = frame.out

    prepared = build_trainer(cfg)
    trainer, tokenizer = prepared.trainer, prepared.tokenizer
    kept = len(trainer.train_dataset)
    tokens = sum(_trainable_tokens(trainer.train_dataset)) if kept else 0
    if tokens == 0:
        raise NoTrainableTokensError(
            f"no trainable tokens after masking in {prepared.examples} examples: conversations need assistant "
            f"turns and prompt-completion rows a non-empty completion within max_length={cfg.max_length}"
        )
    resume = cfg.resume if isinstance(cfg.resume, str) else (cfg.resume and any((out / CHECKPOINTS).glob("checkpoint-*")))
    import torch

    from hala.train.resume import RunLoss, run_loss

    trainer.add_callback(accounting := RunLoss())
    with torch.enable_grad():  # another library in this process (vLLM, lighteval) may have turned grad off
        result = trainer.train(resume_from_checkpoint=resume or None)

    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    final = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    final = final.to(save_dtype(cfg))
    model_dir = out / "model"
    if trainer.is_world_process_zero():  # one writer: under DDP every rank holds the same weights
        shutil.rmtree(model_dir, ignore_errors=True)  # a model of these settings whose run died before its manifest
        with atomic_folder(model_dir) as tmp:  # model/ is complete or absent, never half written
            final.save_pretrained(tmp, safe_serialization=True)
            tokenizer.chat_template = prepared.original_template
            tokenizer.save_pretrained(tmp)
            copy_license_files(cfg.model, tmp)  # e.g. Gemma's NOTICE.txt: a fine-tune is a derivative
    trainer.accelerator.wait_for_everyone()
    steps = int(trainer.state.global_step)
    metrics = {"train_loss": run_loss(trainer.state.log_history, accounting.first_step, result.training_loss, steps)}
    if trainer.eval_dataset is not None:  # every rank: the evaluation is distributed too
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
    if not trainer.is_world_process_zero():  # one writer of the run's records too; the others return them
        trainer.accelerator.wait_for_everyone()
        return Manifest.read(out)
    history = [h for h in trainer.state.log_history if "loss" in h]
    atomic_write_text(out / "loss_history.json", json.dumps(history, indent=1))
    counts = {
        "examples": prepared.examples, "examples_fully_masked": prepared.examples - kept,
        "rejected": prepared.rejected, "trainable_tokens": tokens, "steps": steps, "trainable_parameters": trainable,
        "processes": trainer.args.world_size,  # 2 under `accelerate launch --num_processes 2`
    }  # fmt: skip
    manifest = frame.finish(counts, metrics, [p for p in sorted(model_dir.iterdir()) if p.is_file()])
    trainer.accelerator.wait_for_everyone()
    return manifest
