"""One stage command, generated from its entry in the command table (`hala.commands`).

`build` turns an entry into a typer command: `[ARGUMENT]`, the shortcut flags (their types and help
read from the config's fields), `--config FILE`, `KEY=VALUE` overrides and `--verbose`. `invoke`
runs it as every stage command runs: the config file, then the flags, then the overrides; the stage
function; one summary line of counts and the manifest it wrote; then the exit status of
`hala.exit_status`, the one rule for every command (`fail` applies it to an error).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

from hala.commands import Command, Flag, flag_help, load, setting, settings_help, value_type
from hala.exit_status import exit_code, nothing_kept, remove_if_unused

OVERRIDES = "KEY=VALUE settings, listed below; a key in a section is dotted (section.key=value)"


def _param(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def build(name: str, command: Command) -> TyperCommand:
    """The command of a table entry: [ARGUMENT], its flags, --config, KEY=VALUE overrides, --verbose."""
    config = command.load("config")
    params = []
    if command.argument:
        described = setting(config, command.argument)[0].description
        params.append(_param(command.argument, str, typer.Argument(..., help=described)))
    for i, flag in enumerate(command.flags):
        if flag.switch:
            params.append(_param(f"flag{i}", bool, typer.Option(False, *flag.names, help=flag_help(config, flag))))
            continue
        kind, repeats = value_type(setting(config, flag.key)[0].annotation)
        option = typer.Option(None, *flag.names, help=flag_help(config, flag))
        params.append(_param(f"flag{i}", Optional[list[kind]] if repeats else Optional[kind], option))
    params += [
        _param("config", Optional[Path], typer.Option(None, "--config", "-c", help=command.config_help)),
        _param("overrides", Optional[list[str]], typer.Argument(None, help=OVERRIDES)),
        _param("verbose", bool, typer.Option(False, "--verbose", "-v", help="log progress")),
    ]

    def callback(**values) -> None:
        invoke(command, values)

    callback.__signature__ = inspect.Signature(params)
    callback.__annotations__ = {p.name: p.annotation for p in params}
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name, help=command.help, epilog=settings_help(config))(callback)
    return typer.main.get_command(single)


def fail(error: Exception, created: Path | None = None) -> typer.Exit:
    """The exit for an error hala explains (one line, the status of `exit_status`); a bug raises on.
    A folder this command created is removed when the failure left nothing in it."""
    code = exit_code(error)
    if code is None:
        raise error
    if created is not None:
        remove_if_unused(created)
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code)


def _action_folder(command: Command, action: Flag, settings: dict, config: Path | None, overrides: list[str]) -> str:
    """The output folder an action works on: --out, else the --config's (with the overrides)."""
    from hala.config import ConfigError

    folder = settings.get("out") or (command.read_config(config, {}, overrides).out if config else None)
    if not folder:
        raise ConfigError(f"{action.names[0]} needs --out (or a --config with out)")
    return folder


def invoke(command: Command, values: dict) -> None:
    level = logging.INFO if values["verbose"] else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(values["overrides"] or [])
    if overrides and overrides[0] in command.words:  # `hala judge calibrate ...`
        command = command.words[overrides.pop(0)]
    settings = {command.argument: values[command.argument]} if command.argument else {}
    action = None
    for i, flag in enumerate(command.flags):
        value = values[f"flag{i}"]
        if flag.action:
            action = flag if value else action
        elif flag.switch:
            settings[flag.key] = flag.value if value else None
        else:
            settings[flag.key] = None if value == [] else value
    if command.input_from and not settings.get("inputs") and settings.get(command.input_from):
        settings["inputs"] = [settings[command.input_from]]
    try:
        if action:  # --merge-shards: a function of the output folder alone
            out = Path(_action_folder(command, action, settings, values["config"], overrides))
        else:
            cfg = command.read_config(values["config"], settings, overrides)
            out = Path(cfg.out)
    except Exception as error:
        raise fail(error) from None
    created = None if out.exists() else out
    try:
        manifest = load(action.action)(str(out)) if action else command.load("function")(cfg)
    except Exception as error:
        raise fail(error, created) from None
    typer.echo(f"{manifest.stage}: {', '.join(f'{k}={v}' for k, v in manifest.counts.items())}")
    # a shard's manifest is named after it, an executor's is the merge's; a launch (slurm) writes none
    for path in [manifest.path] if manifest.path else [o.path for o in manifest.outputs]:
        typer.echo(f"wrote {path}")
    nothing, fatal = nothing_kept(manifest.counts, out)
    if nothing:
        typer.echo(f"{'error' if fatal else 'warning'}: {nothing}", err=True)
        if fatal:
            raise typer.Exit(1)
    if command.shows:
        typer.echo(command.shows(manifest, out))
