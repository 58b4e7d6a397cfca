"""Run a recipe: plan which stages are current, run the others in order, each in its own process.

Each stage gets a fingerprint: the hash of its resolved config, the fingerprints of the stages it
reads from, the content of the data files it reads, and hala's version. A stage whose folder holds
a finished run with that fingerprint (`stage.json`) is skipped; so changing one setting reruns
exactly that stage and everything downstream of it. A stage that was interrupted (same
fingerprint, not finished) is run again in place and resumes with its own unit-level resume; a
stage whose fingerprint changed starts from an empty folder.

Stages run as subprocesses (`python -m hala.run.stage_main`): vLLM and training free all their
memory between stages, and a crash names its log. A stage's outputs are OUT/<stage>/; the run's own
records of it (state, resolved config, log) are OUT/_stages/<stage>.{json,config.json,log}.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hala import __version__
from hala.config import ConfigError, validate
from hala.data.manifest import FileEntry
from hala.data.writers import atomic_write_text
from hala.run.recipe import Recipe
from hala.run.stages import STAGES, Stage, stage_config

RECORDS = "_stages"


class StageFailed(RuntimeError):
    """A stage exited non-zero; the message names its log."""


@dataclass
class Step:
    stage: Stage
    config: dict
    fingerprint: str
    action: str  # "skip" or "run"
    why: str


def _data_files(config: dict, run: Path) -> list[str]:
    """Local data files a stage config names, outside the run folder (what is inside it comes
    from upstream stages, whose fingerprints already cover it)."""
    found = []
    inside = str(run.resolve()) + "/"

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and Path(value).is_file() and not str(Path(value).resolve()).startswith(inside):
            found.append(value)

    walk(config)
    return sorted(set(found))


def fingerprint(config: dict, upstream: list[str], run: Path) -> str:
    files = [(f, FileEntry.of(f).sha256) for f in _data_files(config, run)]
    payload = json.dumps({"config": config, "upstream": upstream, "files": files, "hala": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def records(run: Path, stage: str) -> dict[str, Path]:
    """Where the run keeps its records of a stage: state, resolved config and log."""
    base = run / RECORDS / stage
    return {"state": base.with_suffix(".json"), "config": base.with_suffix(".config.json"), "log": base.with_suffix(".log")}


def status(run: Path, stage: str) -> dict:
    path = records(run, stage)["state"]
    return json.loads(path.read_text()) if path.exists() else {}


def check_references(recipe: Recipe, origin: str) -> None:
    """Local models and data the recipe names must exist before anything runs (hub ids can't be checked offline)."""
    from hala.run.recipe import BUILTIN_MODELS, data_path

    for key, ref in recipe.models.model_dump().items():
        local = ref.startswith(("/", "./", "../", "~")) or Path(ref).exists()
        if ref not in BUILTIN_MODELS and local and not (Path(ref).expanduser() / "config.json").exists():
            raise ConfigError(f"{origin}: models.{key}: {ref} is not a model folder (no config.json); "
                              f"give a folder, a hub id or one of {', '.join(BUILTIN_MODELS)}")  # fmt: skip
    data = recipe.data.model_dump()
    for key, value in data.items():
        for ref in value if isinstance(value, list) else [value]:
            if ref is None or str(ref).startswith("hf://"):
                continue
            try:
                path = data_path(ref)
            except FileNotFoundError as exc:
                raise ConfigError(f"{origin}: data.{key}: {exc}") from None
            if not Path(path).exists():
                raise ConfigError(f"{origin}: data.{key}: {ref}: no such file or folder")
    if recipe.warmup.get("enabled") and not recipe.data.warmup_pairs:
        raise ConfigError(f"{origin}: warmup.enabled: the warm-up needs data.warmup_pairs")


def plan(
    recipe: Recipe, origin: str, start: str | None = None, until: str | None = None, check_refs: bool = True,
    overrides: list[str] = (),
) -> list[Step]:
    """Validate every stage config up front, then decide what runs and why."""
    if check_refs:
        check_references(recipe, origin)
    run = Path(recipe.out)
    names = [s.name for s in STAGES]
    for bound in (start, until):
        if bound and bound not in names:
            raise ConfigError(f"unknown stage {bound!r}; stages in order: {', '.join(names)}")
    steps: dict[str, Step] = {}
    forced = False
    for stage in STAGES:
        data = stage_config(stage, recipe, run)
        model = validate(stage.load("config"), data, origin, overrides, prefix=f"{stage.name}.")
        config = model.model_dump(mode="json")
        fp = fingerprint(config, [steps[u].fingerprint for u in stage.upstream], run)
        state = status(run, stage.name)
        forced = forced or stage.name == start
        if forced:
            action, why = "run", f"--from {start}"
        elif state.get("fingerprint") == fp and state.get("state") == "done":
            action, why = "skip", f"cached ({fp})"
        elif state.get("fingerprint") == fp:
            action, why = "run", "resume an interrupted run"
        elif any(steps[u].action == "run" for u in stage.upstream):
            action, why = "run", "an upstream stage reruns"
        elif state:
            action, why = "run", "its settings or inputs changed"
        else:
            action, why = "run", "not run yet"
        steps[stage.name] = Step(stage, config, fp, action, why)
        if until and stage.name == until:
            break
    return list(steps.values())


def execute(steps: list[Step], run: Path, log=print, launchers: dict[str, str] | None = None) -> dict:
    """Run the steps that need it, in order; returns {stage: seconds} for the stages that ran."""
    ran = {}

    def launcher(stage: str) -> list[str]:
        """The stage's command prefix: python, or e.g. `accelerate launch --config_file ...` for training."""
        prefix = (launchers or {}).get(stage)
        return shlex.split(prefix) if prefix else [sys.executable]

    for step in steps:
        name, folder, paths = step.stage.name, run / step.stage.name, records(run, step.stage.name)
        if step.action == "skip":
            log(f"= {name}: skipped, {step.why}")
            continue
        if folder.exists() and status(run, name).get("fingerprint") != step.fingerprint:
            shutil.rmtree(folder)  # another config's outputs: start clean
        paths["state"].parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths["state"], json.dumps({"fingerprint": step.fingerprint, "state": "running"}))
        atomic_write_text(paths["config"], json.dumps(step.config, indent=1, ensure_ascii=False))
        log(f"> {name}: {step.stage.about} ({step.why})")
        started = time.perf_counter()
        command = [*launcher(step.stage.name), "-m", "hala.run.stage_main", name, str(paths["config"])]
        with open(paths["log"], "ab") as handle:
            code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
        seconds = round(time.perf_counter() - started, 1)
        if code != 0:
            raise StageFailed(f"stage {name} failed (exit {code}) after {seconds}s; log: {paths['log']}")
        state = {"fingerprint": step.fingerprint, "state": "done", "seconds": seconds}
        atomic_write_text(paths["state"], json.dumps(state, indent=1))
        ran[name] = seconds
        log(f"  {name}: done in {seconds}s")
    return ran
