"""The `hala` command line, generated from the command table in `hala.commands`.

Each stage command is built from its entry (`hala.stage_command`): its shortcut flags, `--config
FILE`, `KEY=VALUE` overrides and `--verbose`, calling the same stage function the tests and `hala
run` call. A command is built only when it runs or shows its own help, so `hala --help` imports no
stage config and no heavy library (torch, vllm, trl, lighteval). `hala run`, `hala publish` and
`hala models` are written out below: they run a chain, push folders and write models (one command
per entry of `hala.models.builtin`), not one stage.

Exit status, one rule for every command, by the type of the error (`hala.exit_status`): 0 done;
1 an error, named in one line (bad, empty or missing input, a folder in use, a failed check or
shard, a run that read no row); 2 a bad config, override, flag or recipe; 3 the run went through,
but engine requests failed after their retries (their rows are in rejected/ and the folder has no
manifest): rerun the same command to retry only those. `hala run` exits as the stage that failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from hala.commands import COMMANDS, GROUPS
from hala.models.builtin import BUILTIN_MODELS
from hala.stage_command import build, fail


class _Table(TyperGroup):
    """A group whose commands come from the table: a stand-in with the command's help until one
    runs (or shows its own help), which is then built from its entry."""

    def __init__(self, *args, prefix: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.prefix = prefix  # "eval " for `hala eval ...`
        table: dict = {}
        for key in COMMANDS:
            word = key.removeprefix(prefix).split(" ")[0]
            if not key.startswith(prefix) or word in table:
                continue
            if prefix + word in COMMANDS:
                table[word] = TyperCommand(word, help=COMMANDS[key].help)
            else:
                table[word] = _Table(name=word, help=GROUPS[word], prefix=f"{prefix}{word} ", no_args_is_help=True)
        self.commands = {**table, **self.commands}

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if name and self.prefix + name in COMMANDS:
            command = build(name, COMMANDS[self.prefix + name])
        return name, command, rest


app = typer.Typer(
    cls=_Table,
    name="hala",
    help="hala: build Arabic-centric instruction and translation LLMs with the translate-and-tune recipe.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Materialize models for tests and the tiny recipe.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command("run")
def run_command(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/tiny-cpu.yaml"),
    overrides: Optional[list[str]] = typer.Argument(None, help="KEY=VALUE, e.g. translate.batch_size=64"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="run folder (default: the recipe's out)"),
    start: Optional[str] = typer.Option(None, "--from", help="rerun from this stage on"),
    until: Optional[str] = typer.Option(None, "--until", help="stop after this stage"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check everything that can be checked without the hub (settings, launchers, data schemas), then print the plan: what runs, what is skipped and why"),
) -> None:
    """Run the whole chain of a recipe; stages whose fingerprint matches are skipped."""
    from hala.config import load_config
    from hala.run.recipe import Recipe
    from hala.run.runner import execute, plan

    try:
        cfg = load_config(Recipe, recipe, list(overrides or []), {"out": out})
        unchecked: list[str] = []
        steps = plan(cfg, str(recipe), start, until, overrides=list(overrides or []), unchecked=unchecked)
        if dry_run:
            for step in steps:
                typer.echo(f"{step.action:4} {step.stage.name:18} {step.why}")
                if step.folder:
                    typer.echo(f"{'':4} {'':18} {step.folder}")
            typer.echo("checked: every stage's settings, local models and data, launchers, the schemas of the data read")
            for item in unchecked:
                typer.echo(f"unchecked (a hub dataset with no mirror, HALA_HUB_MIRROR): {item}")
            return
        execute(steps, Path(cfg.out), log=typer.echo, launchers=cfg.launchers)
    except Exception as error:
        raise fail(error) from None
    report = Path(cfg.out) / "report" / "report.html"
    if report.exists():
        typer.echo(f"report: {report}")


@app.command("publish")
def publish_command(
    run_dir: Path = typer.Argument(..., help="a finished hala run folder"),
    repo_prefix: str = typer.Option(..., "--repo-prefix", help="e.g. my-org/hala-1.2b- (the folder name is appended)"),
) -> None:
    """Push the run's model folders and corpus to the Hugging Face Hub (needs HF_TOKEN; untested offline)."""
    from hala.run.release import MODELS, publish

    folders = [run_dir / f for f, _ in MODELS.values() if (run_dir / f / "README.md").exists()]
    folders += [run_dir / "release" / "corpus"] if (run_dir / "release" / "corpus").exists() else []
    try:
        urls = publish(folders, repo_prefix)
    except Exception as error:
        raise fail(error) from None
    for url in urls:
        typer.echo(url)


def _materialize(name: str):
    def command(
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="folder to write the HF checkpoint to "
                                           "(default: this machine's copy, which `hala run` links from)"),
    ) -> None:  # fmt: skip
        from hala.models.builtin import cache_dir

        out = out or cache_dir() / name
        try:
            BUILTIN_MODELS[name].materialize(out)
        except Exception as error:
            raise fail(error) from None
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
    from hala.config import ConfigError

    archs = [n.removeprefix("tiny-") for n in BUILTIN_MODELS if n.startswith("tiny-")]
    try:
        if arch not in archs:
            raise ConfigError(f"unknown arch {arch!r}; valid: {', '.join(archs)}")
        BUILTIN_MODELS[f"tiny-{arch}"].materialize(out, hidden_size=hidden_size, layers=layers, seed=seed)
    except Exception as error:
        raise fail(error) from None
    typer.echo(f"wrote a tiny {arch} to {out}")


def main() -> None:
    from hala.children import exit_on_sigterm

    exit_on_sigterm()  # `kill PID` cleans up like an exception: the engine's processes, the lock, temp files
    sys.exit(app())


if __name__ == "__main__":
    main()
