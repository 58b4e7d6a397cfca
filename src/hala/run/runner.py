"""Run a recipe: plan which stages are current, run the others in order, each in its own process.

Each stage gets a lineage fingerprint (`lineage_fingerprint`): the hash of its resolved config, the
lineage fingerprints of the stages it reads from, the content of the data files it names, and
hala's version. A stage whose folder holds a finished run with that fingerprint (`stage.json`) is
skipped; so changing one setting reruns exactly that stage and everything downstream of it. A
stage that was interrupted (same fingerprint, not finished) is run again in place and resumes with
its own unit-level resume; a stage whose fingerprint changed starts from an empty folder.

Stages run as subprocesses (`python -m hala.run.stage_main`): vLLM and training free all their
memory between stages, and a crash names its log. A stage's outputs are OUT/<stage>/; the run's own
records of it (state, resolved config, log) are OUT/_stages/<stage>.{json,config.json,log}.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hala import __version__
from hala.config import ConfigError, strings, validate
from hala.children import die_with_parent
from hala.data.manifest import FileEntry
from hala.data.output_lock import held_fds, hold_output
from hala.data.rows import hub_mirror
from hala.data.writers import atomic_write_text
from hala.run import preflight
from hala.run.recipe import Recipe
from hala.run.stages import STAGES, Stage, stage_config

RECORDS = "_stages"
OLD = "old"  # OUT/_stages/old/<stage>-<time>/: stage folders of earlier settings, moved aside


class StageFailed(RuntimeError):
    """A stage exited non-zero; the message names its log. `status` is what `hala run` exits with:
    the stage's own (1, 2 or 3, `hala.exit_status`), or 1 for a stage killed by a signal."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status if status in (1, 2, 3) else 1


@dataclass
class Step:
    stage: Stage
    config: dict  # the resolved config the stage's process reads
    fingerprint: str
    action: str  # "skip" or "run"
    why: str
    settings: dict | None = None  # the output-affecting part of `config`, which `fingerprint` covers
    folder: str = ""  # what happens to the stage's folder before it runs, when something does


def changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key: old -> new` for every dotted key whose value differs."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            lines += changed_settings(a, b, name + ".")
        elif a != b:
            lines.append(f"{name}: {_short(a)} -> {_short(b)}")
    return lines


def _short(value, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _data_files(config: dict, run: Path) -> list[str]:
    """Local data files a stage config names, outside the run folder (what is inside it comes
    from upstream stages, whose fingerprints already cover it), and the hub mirror's copy of each
    `hf://` dataset it names when a mirror is set (`hala.data.rows.hub_mirror`)."""
    found = []
    inside = str(run.resolve()) + "/"

    for value in strings(config):
        if (local := hub_mirror(value)) is not None:
            found.append(str(local))
        elif Path(value).is_file() and not str(Path(value).resolve()).startswith(inside):
            found.append(value)
    return sorted(set(found))


def lineage_fingerprint(config: dict, upstream: list[str], run: Path) -> str:
    """What a recipe's stage depends on, known before anything runs: its settings, the lineage
    fingerprints of the stages it reads from, and the data files it names outside the run.

    Not the stage's own fingerprint (`hala.data.manifest.fingerprint`, applied by `hala.frame`):
    that one hashes the files the stage actually reads, which for a stage fed by another do not
    exist until the upstream stage has run; this one stands in for them with the upstream's
    lineage, so the whole chain is planned (skip or run) up front. Each stage still checks its own
    when it runs."""
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


def plan(
    recipe: Recipe, origin: str, start: str | None = None, until: str | None = None, check_refs: bool = True,
    overrides: list[str] = (), unchecked: list[str] | None = None,
) -> list[Step]:
    """Validate every stage config up front, then decide what runs and why. With `check_refs`, the
    local references and the rest of what `hala.run.preflight` checks (launchers, data schemas) must hold too;
    the hub datasets it could not read (no mirror) are added to `unchecked`."""
    if check_refs:
        preflight.check_references(recipe, origin)
    run = Path(recipe.out)
    names = [s.name for s in STAGES]
    for bound in (start, until):
        if bound and bound not in names:
            raise ConfigError(f"unknown stage {bound!r}; stages in order: {', '.join(names)}")
    steps: dict[str, Step] = {}
    forced = False
    for stage in STAGES:
        data = stage_config(stage, recipe, run)
        validated = validate(stage.load("config"), data, origin, overrides, prefix=f"{stage.name}.")
        config, settings = validated.model_dump(mode="json"), validated.identity(mode="json")
        fp = lineage_fingerprint(settings, [steps[u].fingerprint for u in stage.upstream], run)
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
        elif state and "settings" in state:
            changed = changed_settings(state["settings"], settings)
            why = f"its settings changed: {'; '.join(changed)}" if changed else "its inputs changed"
            action = "run"
        elif state:
            action, why = "run", "its settings or inputs changed"
        else:
            action, why = "run", "not run yet"
        folder = run / stage.name
        fate = ""
        if action == "run" and state.get("fingerprint") != fp and _holds_files(folder):
            fate = f"{folder} holds another run's outputs: it will be moved to {run / RECORDS / OLD}/{stage.name}-<time>/"
        steps[stage.name] = Step(stage, config, fp, action, why, settings, fate)
        if until and stage.name == until:
            break
    if check_refs:
        configs = {name: step.config for name, step in steps.items()}
        left = preflight.check(recipe.launchers, configs, run, origin)
        if unchecked is not None:
            unchecked += left
    return list(steps.values())


def move_aside(folder: Path, run: Path) -> Path:
    """Move a stage folder out of the way, whole, to OUT/_stages/old/<stage>-<UTC time>/."""
    when = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = run / RECORDS / OLD / f"{folder.name}-{when}"
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{folder.name}-{when}-{n}")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, target)
    return target


def _wait(proc: subprocess.Popen) -> tuple[int, int | None]:
    """Wait for the stage; a SIGTERM or Ctrl-C of `hala run` meanwhile stops the stage's whole
    process group first. Returns (exit code, the signal that stopped `hala run` or None)."""
    if threading.current_thread() is not threading.main_thread():
        return proc.wait(), None
    stopped: list[int] = []

    def forward(signum, _frame):
        stopped.append(signum)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code, (stopped[0] if stopped else None)


def execute(steps: list[Step], run: Path, log=print, launchers: dict[str, str] | None = None) -> dict:
    """Run the steps that need it, in order, holding the run folder's lock; returns {stage: seconds}
    for the stages that ran."""
    with hold_output(run / RECORDS):  # creates the run folder, or says why it can't
        return _execute(steps, run, log, launchers)


def _execute(steps: list[Step], run: Path, log, launchers: dict[str, str] | None) -> dict:
    ran = {}

    def launcher(stage: str) -> list[str]:
        """The stage's command prefix: python, or e.g. `accelerate launch --config_file ...` for training
        (its program found on PATH or beside this Python, `preflight.program`)."""
        prefix = (launchers or {}).get(stage)
        if not prefix:
            return [sys.executable]
        words = shlex.split(prefix)
        return [preflight.program(words[0]) or words[0], *words[1:]]

    for step in steps:
        name, folder, paths = step.stage.name, run / step.stage.name, records(run, step.stage.name)
        if step.action == "skip":
            log(f"= {name}: skipped, {step.why}")
            continue
        with hold_output(folder) as lock:  # the lock the stage itself takes: nobody else writes there now
            if _holds_files(folder) and status(run, name).get("fingerprint") != step.fingerprint:
                moved = move_aside(folder, run)  # another config's outputs: start clean, keep them
                log(f"  {name}: {folder} held another run's outputs; moved to {moved} (delete it when no longer needed)")
            seconds = _run_stage(step, run, paths, launcher(name), lock, log)
        state = {"fingerprint": step.fingerprint, "state": "done", "seconds": seconds, "settings": step.settings}
        atomic_write_text(paths["state"], json.dumps(state, indent=1))
        ran[name] = seconds
        log(f"  {name}: done in {seconds}s")
    return ran


def _run_stage(step: Step, run: Path, paths: dict[str, Path], prefix: list[str], lock: Path, log) -> float:
    name = step.stage.name
    paths["state"].parent.mkdir(parents=True, exist_ok=True)
    running = {"fingerprint": step.fingerprint, "state": "running", "settings": step.settings}
    atomic_write_text(paths["state"], json.dumps(running))
    atomic_write_text(paths["config"], json.dumps(step.config, indent=1, ensure_ascii=False))
    log(f"> {name}: {step.stage.about} ({step.why})")
    started = time.perf_counter()
    command = [*prefix, "-m", "hala.run.stage_main", name, str(paths["config"])]
    with open(paths["log"], "ab") as handle:
        # the stage shares the stage folder's lock (not the run's), runs in its own process group
        # (so it can be stopped whole) and gets SIGTERM if `hala run` dies
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, pass_fds=held_fds([lock]),
                                preexec_fn=die_with_parent, process_group=0)  # fmt: skip
        code, stopped = _wait(proc)
    seconds = round(time.perf_counter() - started, 1)
    if stopped is not None:
        log(f"  {name}: stopped by {signal.Signals(stopped).name} after {seconds}s; rerun to resume it")
        raise SystemExit(128 + stopped)
    if code != 0:
        raise StageFailed(f"stage {name} failed (exit {code}) after {seconds}s; log: {paths['log']}", code)
    return seconds
