"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# --- output folders and runs ----------------------------------------------------------------------
#
# One run per folder (a second one fails at once, naming the holder), children that die with their
# parent, settings that can't change the output don't make a folder "another run", a changed stage
# folder is moved aside and never deleted, killed writes leave no temp folder behind for good, and
# a folder that can't be written is a user error.

HALA = [sys.executable, "-m", "hala.cli"]


def _rows(n: int) -> str:
    return "".join(
        json.dumps({"id": f"c{i:03d}", "messages": [
            {"role": "user", "content": f"Question {i}: what is {i % 7} plus {i % 5}?"},
            {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}. Here is why."},
        ]}) + "\n"
        for i in range(n)
    )  # fmt: skip


@pytest.fixture
def conversations(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(_rows(40))
    return path


def _translate(data: Path, out: Path, *extra: str) -> list[str]:
    return [*HALA, "translate", "-i", str(data), "-o", str(out), "--engine", "fake", "-m", "m",
            "rows_per_unit=5", "batch_size=4", "progress=false", *extra]  # fmt: skip


def _wait_for(predicate, proc=None, timeout: float = 120.0):
    """Poll until `predicate()`; fail if `proc` ends first or it never happens."""
    deadline = time.time() + timeout
    while not (found := predicate()):
        assert proc is None or proc.poll() is None, "the run ended before the point the test waits for"
        assert time.time() < deadline, "the point the test waits for never came"
        time.sleep(0.05)
    return found


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie waits for a reaper that may not come)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _lock_records(folder: Path) -> list[dict]:
    from hala.data.output_lock import lock_path

    path = lock_path(folder)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _children(pid: int, n: int = 1) -> list[int]:
    """The child processes of `pid` (once it has n)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found if len(found) >= n else []


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_holder(tmp_path, conversations):
    out = tmp_path / "out"
    first = subprocess.Popen(_translate(conversations, out, "engine.fake_delay_s=0.3"), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".hala-run.json").exists(), first)  # claimed, no unit finished yet
    second = subprocess.run(_translate(conversations, out, "sampling.max_tokens=8"), capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert second.returncode == 1, second.stderr
    assert f"in use by another run: pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["sampling"]["max_tokens"] == 512 and manifest["counts"]["rows_out"] == 40
    stamp = json.loads((out / ".hala-run.json").read_text())
    assert stamp["config"]["sampling"]["max_tokens"] == 512  # the refused run did not overwrite it


def test_local_workers_die_with_their_killed_parent_and_the_relaunch_resumes(tmp_path, conversations):
    out = tmp_path / "out"
    cmd = _translate(conversations, out, "--executor", "local", "--workers", "2", "batch_size=1")
    parent = subprocess.Popen([*cmd, "engine.fake_delay_s=5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = _wait_for(lambda: _children(parent.pid, 2), parent)
    _wait_for(lambda: (out / ".hala-run.json").exists(), parent)  # the workers are at work
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    # each worker has minutes of fake engine calls left: only the kernel's SIGTERM ends them this soon
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=60)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "merged" / "manifest.json").read_text())["counts"]["rows_out"] == 40


# hala run on the tiny recipe, made fast: fake engines, nothing before teacher_translate really runs
RUN_FAST = [
    "warmup.enabled=false", "quantize.verify.enabled=false", "teacher_fp8=false", "models.teacher=tiny-llama",
    "models.judge=tiny-llama", "teacher_translate.engine.kind=fake", "judge.engine.kind=fake",
    "eval_translation.engine.kind=fake", "translate.engine.kind=fake",
]  # fmt: skip


def _chain(tmp_path, *extra: str):
    from hala.config import load_config
    from hala.run.recipe import Recipe

    return load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path / 'run'}", *RUN_FAST, *extra])


def _finish(steps, run: Path) -> None:
    """Record steps as done with their settings, as a finished `hala run` does."""
    from hala.data.writers import atomic_write_text
    from hala.run.runner import records

    for step in steps:
        state = {"fingerprint": step.fingerprint, "state": "done", "settings": getattr(step, "settings", None)}
        atomic_write_text(records(run, step.stage.name)["state"], json.dumps(state))


def _run_until_translate(tmp_path, *extra: str) -> tuple[list[str], Path]:
    """A `hala run` command whose first real stage is a slow teacher_translate (fake engine)."""
    from hala.run.runner import plan

    slow = ["teacher_translate.engine.fake_delay_s=5", "teacher_translate.batch_size=1"]  # minutes of work
    overrides = [*RUN_FAST, *slow, *extra]
    recipe = _chain(tmp_path, *slow, *extra)
    _finish(plan(recipe, "r.yaml", until="quantize"), Path(recipe.out))
    cmd = [*HALA, "run", "recipes/tiny-cpu.yaml", "--out", recipe.out, "--until", "teacher_translate", *overrides]
    return cmd, Path(recipe.out)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_stopping_hala_run_stops_its_stage(tmp_path, stop):
    cmd, run = _run_until_translate(tmp_path)
    runner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (stage,) = _wait_for(lambda: _children(runner.pid), runner)
    _wait_for(lambda: (run / "teacher_translate" / ".hala-run.json").exists(), runner)  # the stage is at work
    os.kill(runner.pid, stop)
    code = runner.wait(timeout=600)
    assert code == (-9 if stop == signal.SIGKILL else 128 + signal.SIGTERM)
    _wait_for(lambda: not _alive(stage), timeout=60)  # minutes of work were left: it was stopped
    state = json.loads((run / "_stages" / "teacher_translate.json").read_text())
    assert state["state"] == "running"  # so the next run resumes it


def test_a_relaunch_while_a_stray_writer_holds_a_stage_folder_fails_cleanly(tmp_path):
    cmd, run = _run_until_translate(tmp_path)
    config = run / "_stages" / "stray.yaml"
    stage_cfg = {"inputs": [str(Path("src/hala/resources/samples/conversations_en.jsonl").resolve())],
                 "out": str(run / "teacher_translate"), "engine": {"kind": "fake", "model": "m", "fake_delay_s": 5},
                 "batch_size": 1, "progress": False}  # minutes of work: it outlives the relaunch  # fmt: skip
    config.write_text(json.dumps(stage_cfg))
    log = (run / "_stages" / "stray.log").open("w")
    stray = subprocess.Popen([*HALA, "translate", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _lock_records(run / "teacher_translate"), stray)
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert again.returncode == 1, again.stdout + again.stderr + (run / "_stages" / "stray.log").read_text()
        assert f"in use by another run: pid {stray.pid}" in again.stdout + again.stderr
        assert "Traceback" not in again.stdout + again.stderr
        assert stray.poll() is None and (run / "teacher_translate" / ".hala-run.json").exists()  # left alone
    finally:
        stray.kill()
        stray.wait()


def test_settings_that_cant_change_outputs_rerun_no_stage(tmp_path):
    from hala.run.runner import plan

    _finish(plan(_chain(tmp_path), "r.yaml"), tmp_path / "run")
    pace = ["translate.batch_size=64", "translate.engine.timeout_s=5", "translate.engine.max_retries=9",
            "translate.engine.max_concurrency=2", "translate.engine_retries=7", "translate.workers=3",
            "translate.executor=local", "translate.progress=false", "teacher_translate.engine.backoff_s=0",
            "judge.batch_size=3", "judge.engine_backoff_s=0", "pairs.batch_size=5", "quantize.chunk_mb=8",
            "merge.chunk_mb=8", "bench.batch_size=2", "sft.logging_steps=1"]  # fmt: skip
    steps = plan(_chain(tmp_path, *pace), "r.yaml")
    assert {s.stage.name: s.why for s in steps if s.action != "skip"} == {}


def test_a_finished_folder_is_not_another_run_for_pace_settings(tmp_path, conversations):
    from hala.engines import EngineConfig
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    def cfg(**kw):
        base = dict(inputs=[str(conversations)], out=str(tmp_path / "out"), rows_per_unit=5, progress=False)
        return TranslateConfig(**base, **kw)

    first = translate(cfg(engine=EngineConfig(kind="fake", model="m"), batch_size=4))
    again = translate(cfg(engine=EngineConfig(kind="fake", model="m", timeout_s=5, max_retries=9), batch_size=2,
                          engine_retries=5, engine_backoff_s=0))  # fmt: skip
    assert again.fingerprint == first.fingerprint and again.counts == first.counts  # up to date, not refused


def test_every_not_output_name_is_a_setting():
    from hala.config import StrictModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    import hala.run.stages as chain

    for stage in chain.STAGES:
        stage.load("config")  # import every stage config
    for cls in subclasses(StrictModel):
        assert cls.NOT_OUTPUT <= set(cls.model_fields), cls.__name__


def test_dry_run_names_the_changed_settings_and_what_happens_to_the_folder(tmp_path):
    from typer.testing import CliRunner

    from hala.cli import app
    from hala.run.runner import plan

    _finish(plan(_chain(tmp_path), "r.yaml"), tmp_path / "run")
    (tmp_path / "run" / "translate").mkdir(parents=True)
    (tmp_path / "run" / "translate" / "notes.txt").write_text("mine")
    args = ["run", "recipes/tiny-cpu.yaml", "--out", str(tmp_path / "run"), "--dry-run", *RUN_FAST]
    result = CliRunner().invoke(app, [*args, "translate.sampling.max_tokens=8", "translate.batch_size=64"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if " translate " in x)
    assert "its settings changed: sampling.max_tokens: 96 -> 8" in line and "batch_size" not in line
    assert f"{tmp_path / 'run' / 'translate'} holds another run's outputs: it will be moved to" in result.output
    assert (tmp_path / "run" / "translate" / "notes.txt").read_text() == "mine"  # a dry run touches nothing


def test_a_changed_stage_folder_is_moved_aside_never_deleted(tmp_path):
    from hala.run.runner import execute, plan

    def report_step(*extra):
        return next(s for s in plan(_chain(tmp_path, *extra), "r.yaml") if s.stage.name == "report")

    run = tmp_path / "run"
    _finish(plan(_chain(tmp_path, "report.samples=3"), "r.yaml"), run)  # the report of other settings
    (run / "report").mkdir(parents=True)
    (run / "report" / "notes.txt").write_text("mine")  # and a user's file
    step = report_step()
    assert step.why == "its settings changed: samples: 3 -> 20"
    said = []
    assert list(execute([step], run, log=said.append)) == ["report"]
    (old,) = (run / "_stages" / "old").iterdir()
    assert old.name.startswith("report-") and (old / "notes.txt").read_text() == "mine"
    assert (run / "report" / "report.html").exists() and not (run / "report" / "notes.txt").exists()
    assert any(f"moved to {old}" in line for line in said)


@pytest.mark.parametrize("stage", ["quantize", "merge"])
def test_a_rerun_removes_the_temp_folder_a_killed_model_write_left(tiny_llama, tmp_path, stage):
    from hala.merge import merge
    from hala.merge.config import MergeConfig
    from hala.quantize import QuantizeConfig, quantize

    out = tmp_path / "model-out"
    stale = tmp_path / f".{out.name}.k1ll3d.tmp"  # what atomic_folder leaves when SIGKILL hits mid-write
    stale.mkdir()
    (stale / "model-00001-of-00001.safetensors").write_bytes(b"\0" * (1 << 20))
    if stage == "quantize":
        quantize(QuantizeConfig(model=str(tiny_llama), out=str(out), verify={"enabled": False}))
    else:
        merge(MergeConfig(base=str(tiny_llama), model=str(tiny_llama), out=str(out), check={"enabled": False}))
    assert not stale.exists()
    assert (out / "manifest.json").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temp_files_of_a_live_writer_are_left_alone(tmp_path, conversations):
    out = tmp_path / "out"
    writer = subprocess.Popen(_translate(conversations, out, "engine.fake_delay_s=0.3"), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".hala-run.json").exists(), writer)
    live = out / "data" / ".unit.jsonl.l1v3.tmp"
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_text("half")
    second = subprocess.run(_translate(conversations, out, "engine.fake_delay_s=0.3"), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert second.returncode == 1 and "in use by another run" in second.stderr
    assert live.exists()  # refused, and removed nothing
    assert writer.wait(timeout=300) == 0, writer.stderr.read()


@pytest.fixture
def immutable(tmp_path):
    """Folders even root can't write to (`chattr +i`), made writable again afterwards."""
    made = []

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here (needs ext4/xfs and CAP_LINUX_IMMUTABLE)")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("where", ["the folder", "its parent"])
def test_a_read_only_output_folder_is_a_user_error(tmp_path, conversations, immutable, where):
    out = tmp_path / "ro" / "out"
    immutable(out if where == "the folder" else out.parent)
    result = subprocess.run([*HALA, "data", "convert", "-i", str(conversations), "-o", str(out)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {out}: can't write the output folder" in result.stderr
    assert "choose an output folder you can write to" in result.stderr
