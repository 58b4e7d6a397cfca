"""The `hala` command line: one subcommand per stage, each a thin shell over a stage function.

Heavy libraries (torch, vllm, trl, lighteval) are imported inside the commands, so `hala --help`
is instant. Every command that runs a stage takes an optional `--config FILE` plus dotted
`KEY=VALUE` overrides and calls the same function the tests call.

Exit status: 0 done; 1 an error (the message says what and where); 2 a bad config or command
line; 3 the stage ran, but some engine requests failed after their retries (their rows are in
rejected/ and the folder has no manifest): rerun the same command to retry only those.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from hala.models.builtin import BUILTIN_MODELS

app = typer.Typer(
    name="hala",
    help="hala: build Arabic-centric instruction and translation LLMs with the translate-and-tune recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Materialize models for tests and the tiny recipe.", no_args_is_help=True)
data_app = typer.Typer(help="Read, validate and convert datasets into hala records.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models: the OALL v2 benchmarks, or translation quality.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")

OVERRIDES = typer.Argument(None, help="KEY=VALUE settings, e.g. engine.kind=fake sampling.max_tokens=64")
CONFIG = typer.Option(None, "--config", "-c", help="YAML file with the settings (overrides apply on top)")

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
    from hala.data.units import RequestsFailed
    from hala.translate.executors import ShardsFailed

    out = Path(cfg.out)
    created = not out.exists()
    try:
        manifest = fn(cfg)
    except (BadInputError, ConfigError, OutputInUseError, FileNotFoundError, ValueError, ShardsFailed) as exc:
        if created:
            _remove_if_unused(out)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except RequestsFailed as exc:  # the run went through, but rows are missing until a rerun
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(RequestsFailed.exit_code) from None
    counts = ", ".join(f"{k}={v}" for k, v in manifest.counts.items())
    typer.echo(f"{manifest.stage}: {counts}")
    # a shard's manifest is named after it, an executor's is the merge's; a launch (slurm) writes none
    for path in [manifest.path] if manifest.path else [o.path for o in manifest.outputs]:
        typer.echo(f"wrote {path}")
    nothing, fatal = _nothing_kept(manifest.counts, out)
    if nothing:
        typer.echo(f"{'error' if fatal else 'warning'}: {nothing}", err=True)
        if fatal:
            raise typer.Exit(1)


def _nothing_kept(counts: dict[str, int], out: Path) -> tuple[str | None, bool]:
    """(why a data stage that finished kept no row, whether that is a failure); (None, False) when
    it kept some, or is not a data stage.

    Inputs of which not one row could be read are a failure (exit 1), even though every step
    worked; the manifest and rejects are kept, so the reasons can be read and a rerun is still
    skipped. When rows were read but all were turned down by a verdict (QA, filters, the judge), the
    run did its job: a warning says so loudly and the exit code stays 0."""
    from hala.data.formats import BAD_KINDS

    kept = counts.get("rows_out", counts.get("kept"))
    if kept is None or kept > 0:
        return None, False
    rejected = counts.get("rejected", 0)
    if rejected:
        kinds = {k.removeprefix("rejected_"): v for k, v in counts.items() if k.startswith("rejected_")}
        shown = ", ".join(f"{k}={v}" for k, v in kinds.items())
        unreadable = all(k in BAD_KINDS for k in kinds)
        return f"no row was kept: all {rejected} were rejected ({shown}); the reasons are in {out / 'rejected'}", unreadable
    if counts.get("units", 1) == 0:  # a shard that got no unit of a larger run: nothing to do is right
        return None, False
    return "no row was kept: the inputs hold no records (only blank lines?)", True


def _remove_if_unused(folder: Path) -> None:
    """Remove an output folder this command created, when the failure left nothing in it but the
    run stamp and empty folders (a --strict stop at the first row, a refused input): never user data."""
    from hala.data.manifest import RUN_STAMP

    if not folder.is_dir():
        return
    entries = sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    if any(p.is_file() and p != folder / RUN_STAMP for p in entries):
        return
    for path in entries:
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()


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
        from hala.data.manifest import OutputInUseError
        from hala.translate.shards import IncompleteRunError, merge_shards

        target = out or (_load(TranslateConfig, config, {}, overrides).out if config else None)
        if not target:
            typer.echo("error: --merge-shards needs --out (or a --config with out)", err=True)
            raise typer.Exit(2)
        try:
            manifest = merge_shards(target)
        except (IncompleteRunError, OutputInUseError) as exc:
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


@app.command("pairs")
def pairs_command(
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="translate/judge/pairs run folder, pair file or folder, saved dataset or hf://NAME (repeatable)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output folder: pairs/, sft/, rejected/, manifest.json"),
    directions: Optional[list[str]] = typer.Option(None, "--direction", help="translator training direction: en-ar (default), ar-en (repeatable)"),
    dev: Optional[float] = typer.Option(None, "--dev", help="fraction of source ids in dev (default 0.02)"),
    test: Optional[float] = typer.Option(None, "--test", help="fraction of source ids in test (default 0.02)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows of each input file"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first unreadable row"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Build the parallel corpus (filtered, deduplicated, split by source id) and the translator's SFT data.

    Settings (see `hala.pairs.config.PairsConfig`) as KEY=VALUE, e.g. `filters.max_length_ratio=3
    filters.numbers=false filters.language_id=false splits.seed=v2 batch_size=8192`.
    """
    from hala.pairs import PairsConfig, build_pairs

    _setup_logging(verbose)
    settings = {
        "inputs": inputs or None, "out": out, "sft.directions": directions or None, "splits.dev": dev,
        "splits.test": test, "limit": limit, "strict": True if strict else None,
    }  # fmt: skip
    _run(build_pairs, _load(PairsConfig, config, settings, overrides))


@app.command("judge")
def judge_command(
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="pairs: file, folder, saved dataset, hf://NAME or a pairs/translate run (repeatable)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="output folder: data/ (accepted), rejected/, stats/, cache/, manifest.json"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="judge model (default: the paper's Qwen/Qwen2.5-3B-Instruct)"),
    engine: Optional[str] = typer.Option(None, "--engine", help="vllm (default), openai or fake"),
    mode: Optional[str] = typer.Option(None, "--mode", help="generate (default, the paper's), choice or likelihood"),
    threshold: Optional[str] = typer.Option(None, "--threshold", help="accept when score >= this (a number, or 'calibrated' with --gold)"),
    gold: Optional[str] = typer.Option(None, "--gold", help="a labelled gold set to calibrate the judge on"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N rows of each input file"),
    strict: bool = typer.Option(False, "--strict", help="stop at the first unreadable row"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Keep the pairs a judge ACCEPTs; the others go to rejected/, every row with its score (resumable, cached).

    `hala judge calibrate --gold FILE -m MODEL --mode likelihood -o OUT` scores only the gold set and
    reports accuracy, precision/recall of REJECT, Cohen's kappa, ROC AUC and the best threshold.
    Settings (see `hala.judge.stage.JudgeConfig`) as KEY=VALUE, e.g. `batch_size=8192 reverse=true
    engine.tensor_parallel_size=2 prompt="..."`.
    """
    from hala.data.manifest import Manifest
    from hala.judge import JudgeConfig, calibrate, judge

    _setup_logging(verbose)
    overrides = list(overrides or [])
    calibrating = bool(overrides) and overrides[0] == "calibrate"
    if calibrating:
        overrides = overrides[1:]
        inputs = inputs or ([gold] if gold else None)
    settings = {
        "inputs": inputs or None, "out": out, "engine.model": model, "engine.kind": engine, "mode": mode,
        "threshold": threshold, "gold": gold, "limit": limit, "strict": True if strict else None,
    }  # fmt: skip
    cfg = _load(JudgeConfig, config, settings, overrides)
    _run(calibrate if calibrating else judge, cfg)
    metrics = Manifest.read(cfg.out).metrics
    typer.echo(", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


@eval_app.command("bench")
def eval_bench(
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="model folder, or LABEL=DIR (repeatable)"),
    tasks: Optional[list[str]] = typer.Option(None, "--tasks", "-t", help="benchmarks, comma-separated or repeated; default: all six"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="local OALL v2 data; default: the bundled mini data"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most N items per subset"),
    out: Optional[str] = typer.Option(None, "--out", "-o"),
    backend: Optional[str] = typer.Option(None, "--backend", help="auto (default: vllm on a GPU, else hf), hf or vllm"),
    paper_row: Optional[str] = typer.Option(None, "--paper-row", help="auto (match model names), none, hala-350m, hala-700m, hala-1.2b or hala-9b"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="hf backend; default 8"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="default: float32 on CPU, the model's own on GPU"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The paper's six OALL v2 Arabic benchmarks (0-shot, acc_norm) via lighteval, with the paper's numbers alongside."""
    from hala.evaluate.bench import BenchConfig, bench

    _setup_logging(verbose)
    settings = {
        "models": model or None,
        "tasks": tasks or None,
        "data_dir": data_dir,
        "limit": limit,
        "out": out,
        "backend": backend,
        "paper_row": paper_row,
        "batch_size": batch_size,
        "dtype": dtype,
    }
    cfg = _load(BenchConfig, config, settings, overrides)
    _run(bench, cfg)
    typer.echo((Path(cfg.out) / "results.md").read_text(encoding="utf-8"))


@eval_app.command("translation")
def eval_translation(
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="model folder (or served name), or LABEL=DIR (repeatable)"),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="held-out test pairs ({en, ar}, translation: {..}, TSV)"),
    out: Optional[str] = typer.Option(None, "--out", "-o"),
    engine: Optional[str] = typer.Option(None, "--engine", help="vllm (default), openai or fake"),
    limit: Optional[int] = typer.Option(None, "--limit", help="only the first N pairs"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """BLEU and chrF++ (sacrebleu, signatures printed) of every model on the test pairs; the
    hypotheses are saved next to the scores. Settings: sampling.max_tokens, template, target_lang, ..."""
    from hala.evaluate.translation import TranslationEvalConfig, evaluate_translation

    _setup_logging(verbose)
    settings = {"models": model or None, "data": data, "out": out, "engine.kind": engine, "limit": limit}
    cfg = _load(TranslationEvalConfig, config, settings, overrides)
    _run(evaluate_translation, cfg)
    typer.echo((Path(cfg.out) / "results.md").read_text(encoding="utf-8"))


@app.command("quantize")
def quantize_command(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="BF16/FP16 Hugging Face model folder (safetensors)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="folder for the FP8 checkpoint, its report and manifest"),
    scheme: Optional[str] = typer.Option(None, "--scheme", help="fp8-dynamic (default): FP8 weights, dynamic per-token FP8 activations"),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="keep a module unquantized: name, suffix or re:REGEX (repeatable)"),
    linear: Optional[list[str]] = typer.Option(None, "--linear", help="regex naming Linear layers, for architectures hala doesn't know (repeatable)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read .bin/.pt weights (pickle can run code: only trusted files)"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip loading and comparing the FP8 model with its source"),
    config: Optional[Path] = CONFIG,
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Compress a model to FP8 (compressed-tensors, as vLLM serves it), streaming, then verify it."""
    from hala.quantize import QuantizeConfig, quantize

    _setup_logging(verbose)
    settings = {
        "model": model, "out": out, "scheme": scheme, "ignore": ignore or None, "linear_patterns": linear or None,
        "allow_pickle": True if allow_pickle else None, "verify.enabled": False if no_verify else None,
    }  # fmt: skip
    _run(quantize, _load(QuantizeConfig, config, settings, overrides))


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


@app.command("merge")
def merge_command(
    base: Optional[str] = typer.Option(None, "--base", "-b", help="base model folder (t=0); the output keeps its config"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="fine-tuned model folder (t=1)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="folder for the merged model and its manifest"),
    t: Optional[float] = typer.Option(None, "--t", help="interpolation factor (default 0.5); gradients and filters: t=[0,0.5,1] or --config"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: the base's)"),
    tokenizer_source: Optional[str] = typer.Option(None, "--tokenizer-source", help="base (default) or model: tokenizer, chat template, generation config"),
    vocab_policy: Optional[str] = typer.Option(None, "--vocab-policy", help="refuse (default) or truncate, for different vocabularies"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="read .bin/.pt weights (pickle can run code: only trusted files)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="let the check load custom model code"),
    no_check: bool = typer.Option(False, "--no-check", help="skip loading the merged model and generating a few tokens"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="hala YAML, or a mergekit slerp YAML (merge_method: slerp)"),
    overrides: Optional[list[str]] = OVERRIDES,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """SLERP-merge a fine-tune with its base (mergekit's math), streaming, checked before and after."""
    from hala.config import ConfigError
    from hala.merge import load_merge_config, merge

    _setup_logging(verbose)
    settings = {
        "base": base, "model": model, "out": out, "t": t, "dtype": dtype, "tokenizer_source": tokenizer_source,
        "vocab_policy": vocab_policy, "allow_pickle": True if allow_pickle else None,
        "trust_remote_code": True if trust_remote_code else None, "check.enabled": False if no_check else None,
    }  # fmt: skip
    try:
        cfg = load_merge_config(config, settings, overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _run(merge, cfg)


@app.command("run")
def run_command(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/tiny-cpu.yaml"),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE, e.g. translate.batch_size=64"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="run folder (default: the recipe's out)"),
    start: Optional[str] = typer.Option(None, "--from", help="rerun from this stage on"),
    until: Optional[str] = typer.Option(None, "--until", help="stop after this stage"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan: what runs, what is skipped and why"),
) -> None:
    """Run the whole chain of a recipe; stages whose fingerprint matches are skipped."""
    from hala.config import ConfigError, load_config
    from hala.data.manifest import OutputInUseError
    from hala.run.recipe import Recipe
    from hala.run.runner import StageFailed, execute, plan

    try:
        cfg = load_config(Recipe, recipe, list(overrides or []), {"out": out})
        steps = plan(cfg, str(recipe), start, until, overrides=list(overrides or []))
    except (ConfigError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if dry_run:
        for step in steps:
            typer.echo(f"{step.action:4} {step.stage.name:18} {step.why}")
            if step.folder:
                typer.echo(f"{'':4} {'':18} {step.folder}")
        return
    try:
        execute(steps, Path(cfg.out), log=typer.echo, launchers=cfg.launchers)
    except (StageFailed, OutputInUseError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    report = Path(cfg.out) / "report" / "report.html"
    if report.exists():
        typer.echo(f"report: {report}")


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help="a folder written by hala run"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="default: RUN_DIR/report"),
) -> None:
    """Write RUN_DIR/report/report.html: stages, QA reasons, translation metrics, benchmarks, samples."""
    from hala.run.report import ReportConfig, report

    target = out or run_dir / "report"
    report(ReportConfig(run=str(run_dir), out=str(target)))
    typer.echo(f"wrote {target / 'report.html'}")


@app.command("publish")
def publish_command(
    run_dir: Path = typer.Argument(..., help="a finished hala run folder"),
    repo_prefix: str = typer.Option(..., "--repo-prefix", help="e.g. my-org/hala-1.2b- (the folder name is appended)"),
) -> None:
    """Push the run's model folders and corpus to the Hugging Face Hub (needs HF_TOKEN; untested offline)."""
    from hala.run.release import MODELS, publish

    folders = [run_dir / f for f, _ in MODELS.values() if (run_dir / f / "README.md").exists()]
    folders += [run_dir / "release" / "corpus"] if (run_dir / "release" / "corpus").exists() else []
    for url in publish(folders, repo_prefix):
        typer.echo(url)


def _materialize(name: str):
    def command(out: Path = typer.Option(..., "--out", "-o", help="folder to write the HF checkpoint to")) -> None:
        BUILTIN_MODELS[name].materialize(out)
        typer.echo(f"{out}: {BUILTIN_MODELS[name].ready}")

    return command


for _name, _model in BUILTIN_MODELS.items():
    models_app.command(_name, help=_model.about)(_materialize(_name))


@models_app.command("tiny")
def models_tiny(
    out: Path = typer.Option(..., "--out", "-o"),
    arch: str = typer.Option("llama", "--arch", help="llama or lfm2"),
    hidden_size: int = typer.Option(128, "--hidden-size"),
    layers: int = typer.Option(2, "--layers"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """A tiny random model of any size with a local English+Arabic BPE tokenizer (tests, smoke runs)."""
    archs = [n.removeprefix("tiny-") for n in BUILTIN_MODELS if n.startswith("tiny-")]
    if arch not in archs:
        typer.echo(f"error: unknown arch {arch!r}; valid: {', '.join(archs)}", err=True)
        raise typer.Exit(2)
    BUILTIN_MODELS[f"tiny-{arch}"].materialize(out, hidden_size=hidden_size, layers=layers, seed=seed)
    typer.echo(f"wrote a tiny {arch} to {out}")


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
