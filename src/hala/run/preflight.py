"""What a recipe is checked for before anything runs, beyond its configs, with no hub and no GPU.

`hala.run.runner.plan` validates every stage's config (keys and types) and calls these. A paper
recipe can still fail hours in on things no config sees; they are checked here, for `hala run` and
`hala run --dry-run` alike:

- **references** (`check_references`): local models and data exist, and so does the hub mirror's
  copy of every hub dataset when a mirror is set;
- **launchers**: the program is installed (on PATH, or beside this Python, as in a venv); an
  `accelerate launch` line names a `--config_file` that exists and that accelerate's own launch
  validation accepts, and a DeepSpeed one finds `deepspeed` installed.
- **data schemas**: the first rows of each input a stage reads from outside the run (a local file,
  or a hub dataset's copy in the hub mirror, `hala.data.rows.hub_mirror`) become records of that
  stage: conversations through the input's own `field_maps` entry, every column the map renames
  being there, or parallel pairs. A hub dataset with no mirror can't be read here: it is named as
  unchecked, not passed.

Launchers and schemas are checked after every stage's config is built, and every problem is named
at once. The one adapter to accelerate's launch parser is `accelerate_launch_problem`.
"""

from __future__ import annotations

import importlib.util
import logging
import shlex
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from hala.config import ConfigError
from hala.data.readers import read_conversations_at, read_pairs_at
from hala.data.rejects import RejectLog
from hala.data.rows import HUB_MIRROR_ENV, HUB_PREFIX, expand_inputs, hub_mirror, iter_rows
from hala.models.builtin import BUILTIN_MODELS
from hala.pairs.sources import resolve
from hala.run.recipe import Recipe, data_path

PROBE_ROWS = 20  # rows read of each input: the first ones, enough to meet its schema
READS = {  # stage -> (its config key naming data, what the rows must become)
    "teacher_translate": ("inputs", "conversations"),
    "translate": ("inputs", "conversations"),
    "judge": ("inputs", "pairs"),
    "eval_translation": ("data", "pairs"),
}
CONFIG_FLAGS = ("--config_file", "--config-file")


def check_references(recipe: Recipe, origin: str) -> None:
    """Local models and data the recipe names must exist before anything runs; so must the hub
    mirror's copy of each hub dataset when a mirror is set (hub ids can't be checked offline)."""
    for key, ref in recipe.models.model_dump().items():
        local = ref.startswith(("/", "./", "../", "~")) or Path(ref).exists()
        if ref not in BUILTIN_MODELS and local and not (Path(ref).expanduser() / "config.json").exists():
            raise ConfigError(f"{origin}: models.{key}: {ref} is not a model folder (no config.json); "
                              f"give a folder, a hub id or one of {', '.join(BUILTIN_MODELS)}")  # fmt: skip
    data = recipe.data.model_dump()
    for key, value in data.items():
        for ref in value if isinstance(value, list) else [value]:
            if ref is not None and (local := hub_mirror(str(ref))) is not None and not local.is_dir():
                raise ConfigError(f"{origin}: data.{key}: {ref}: the hub mirror ({HUB_MIRROR_ENV}) has no copy at {local}")
            if ref is None or str(ref).startswith(HUB_PREFIX):
                continue
            try:
                path = data_path(ref)
            except FileNotFoundError as exc:
                raise ConfigError(f"{origin}: data.{key}: {exc}") from None
            if not Path(path).exists():
                raise ConfigError(f"{origin}: data.{key}: {ref}: no such file or folder")
    if recipe.warmup.get("enabled") and not recipe.data.warmup_pairs:
        raise ConfigError(f"{origin}: warmup.enabled: the warm-up needs data.warmup_pairs")


def program(name: str) -> str | None:
    """Where a launcher's program is: on PATH, or in this Python's bin folder (a venv not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else None


def _config_file(words: list[str]) -> str | None:
    for i, word in enumerate(words):
        if word in CONFIG_FLAGS and i + 1 < len(words):
            return words[i + 1]
        for flag in CONFIG_FLAGS:
            if word.startswith(flag + "="):
                return word.partition("=")[2]
    return None


def accelerate_launch_problem(args: list[str]) -> str | None:
    """What accelerate's launch validation says about `accelerate launch ARGS -m ...`, None if it
    accepts them (accelerate 1.15: its parser, then `_validate_launch_command`, which reads the
    config file into the arguments), or that a DeepSpeed launch finds no `deepspeed`."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    try:
        parsed = launch_command_parser().parse_args([*args, "-m", "hala.run.stage_main"])
        parsed, _, _ = _validate_launch_command(parsed)
    except SystemExit:
        return "accelerate launch refuses its arguments"
    except (ValueError, TypeError, KeyError) as exc:
        return f"accelerate refuses it: {exc}"
    if parsed.use_deepspeed and importlib.util.find_spec("deepspeed") is None:
        return "it launches DeepSpeed, which is not installed here (pip install deepspeed on the GPU machines)"
    return None


def launcher_problems(launchers: dict[str, str]) -> list[str]:
    problems = []
    for stage, prefix in launchers.items():
        words = shlex.split(prefix)
        if program(words[0]) is None:
            problems.append(f"launchers.{stage}: {words[0]!r} is not installed (not on PATH, nor beside {sys.executable})")
            continue
        if words[:2] != ["accelerate", "launch"]:
            continue
        config = _config_file(words)
        if config is not None and not Path(config).is_file():
            problems.append(f"launchers.{stage}: {config}: no such accelerate config file (paths are from {Path.cwd()})")
        elif problem := accelerate_launch_problem(words[2:]):
            problems.append(f"launchers.{stage}: {config or prefix}: {problem}")
    return problems


def _local(ref: str, kind: str, run: Path) -> list[str] | None:
    """The files of an input that can be read now: None for a hub id with no mirror, or for what an
    upstream stage writes into the run."""
    if ref.startswith(HUB_PREFIX):
        if hub_mirror(ref) is None:
            return None
    elif Path(ref).resolve().is_relative_to(run.resolve()) or not Path(ref).exists():
        return None  # an upstream stage's output; a missing file is named by plan's own checks
    return list(resolve(ref).files) if kind == "pairs" else expand_inputs(ref)


def _columns(file: str, split: str) -> set[str]:
    return {key for row in iter_rows(file, stop=PROBE_ROWS, split=split) if row.data for key in row.data}


def _first_reason(rejects: RejectLog) -> str:
    first = rejects.rejects[0]
    return f"{first.where}: {first.reason}"


def conversation_problem(ref: str, file: str, rename: dict[str, str], fmt: str, split: str, where: str) -> str | None:
    """Why the first rows of `file` (of input `ref`) don't become conversations through `rename`."""
    columns = _columns(file, split)
    if missing := sorted(set(rename) - columns):
        return (f"{where}.field_maps[{ref!r}] renames {missing[0]!r}, a column {ref} does not have "
                f"(its columns: {', '.join(sorted(columns))})")  # fmt: skip
    rejects = RejectLog()
    read = list(read_conversations_at(file, fmt=fmt, rejects=rejects, stop=PROBE_ROWS, split=split, rename=rename or None))
    if read or not len(rejects):
        return None
    hint = f"map its columns onto hala's with {where}.field_maps[{ref!r}]" if not rename else f"fix {where}.field_maps[{ref!r}]"
    return f"{where}.inputs: {ref}: none of its first {len(rejects)} rows is a conversation ({_first_reason(rejects)}); {hint}"


def pairs_problem(ref: str, file: str, split: str, where: str, key: str) -> str | None:
    rejects = RejectLog()
    read = list(read_pairs_at(file, rejects=rejects, stop=PROBE_ROWS, split=split))
    if read or not len(rejects):
        return None
    return f"{where}.{key}: {ref}: none of its first {len(rejects)} rows is a parallel pair ({_first_reason(rejects)})"


@contextmanager
def _quiet():
    """A probe may read bad rows on purpose: their reason goes into the problem, not a warning each."""
    logger = logging.getLogger("hala.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def schema_problems(configs: dict[str, dict], run: Path) -> tuple[list[str], list[str]]:
    """(problems, hub datasets left unchecked) over the stages that read data from outside the run;
    `configs`: stage -> its resolved config."""
    problems, unchecked = [], []
    for stage, (key, kind) in READS.items():
        cfg = configs.get(stage)
        if cfg is None:
            continue
        refs = cfg[key] if isinstance(cfg[key], list) else [cfg[key]]
        split = cfg.get("split", "train")
        for ref in refs:
            files = _local(ref, kind, run)
            if files is None:
                if ref.startswith(HUB_PREFIX):
                    unchecked.append(f"{stage}.{key}: {ref}")
                continue
            with _quiet():
                if kind == "pairs":
                    problem = pairs_problem(ref, files[0], split, stage, key)
                else:
                    rename = cfg.get("field_maps", {}).get(ref, {})
                    problem = conversation_problem(ref, files[0], rename, cfg.get("format", "auto"), split, stage)
            if problem:
                problems.append(problem)
    return problems, unchecked


def check(launchers: dict[str, str], configs: dict[str, dict], run: Path, origin: str) -> list[str]:
    """Raise a ConfigError naming every launcher and schema problem at once; return the hub datasets
    left unchecked."""
    problems, unchecked = schema_problems(configs, run)
    problems = launcher_problems(launchers) + problems
    if problems:
        raise ConfigError("\n".join(f"{origin}: {p}" for p in problems))
    return unchecked
