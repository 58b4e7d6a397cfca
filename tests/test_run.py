"""`hala run`: what is skipped, what reruns and why; a real chain on tiny models (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hala.config import load_config
from hala.data.writers import atomic_write_text
from hala.run.recipe import Recipe
from hala.run.runner import execute, plan, records

FAST = {  # the tiny recipe, made fast: fake engines, no warm-up, a few training steps, one small benchmark
    "warmup.enabled": "false",
    "quantize.verify.enabled": "false",
    "teacher_fp8": "false",
    "teacher_translate.engine.kind": "fake", "judge.engine.kind": "fake", "judge.limit": "40",
    "eval_translation.engine.kind": "fake", "translate.engine.kind": "fake",
    "translator.max_steps": "3", "translator.epochs": "1", "sft.max_steps": "2",
    "sft.freeze_layers": "0",  # tiny-lfm2 has 2 decoder layers, Gemma-3-270M 18
    "models.teacher": "tiny-llama", "models.judge": "tiny-llama",
    "models.translator": "tiny-lfm2", "models.hala_base": "tiny-lfm2",
    "bench.tasks": "[arabic_exams]", "bench.limit": "2",
}  # fmt: skip


def recipe(tmp_path, *extra: str) -> Recipe:
    overrides = [f"out={tmp_path / 'run'}"] + [f"{k}={v}" for k, v in FAST.items()] + list(extra)
    return load_config(Recipe, "recipes/tiny-cpu.yaml", overrides)


def finish(steps, run: Path) -> None:
    """Record every step as done, as a finished run would."""
    for step in steps:
        path = records(run, step.stage.name)["state"]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"fingerprint": step.fingerprint, "state": "done"}))


def actions(steps) -> dict[str, str]:
    return {s.stage.name: s.action for s in steps}


def test_a_finished_run_is_all_skipped(tmp_path):
    r = recipe(tmp_path)
    first = plan(r, "r.yaml")
    assert set(actions(first).values()) == {"run"}
    finish(first, Path(r.out))
    assert set(actions(plan(r, "r.yaml")).values()) == {"skip"}


def test_one_setting_reruns_its_stage_and_everything_downstream(tmp_path):
    r = recipe(tmp_path)
    finish(plan(r, "r.yaml"), Path(r.out))
    steps = plan(recipe(tmp_path, "translate.max_segment_tokens=16"), "r.yaml")
    ran = [name for name, action in actions(steps).items() if action == "run"]
    assert ran == ["translate", "decontaminate", "audit", "sft", "merge", "bench", "report"]
    why = {s.stage.name: s.why for s in steps}
    assert why["translate"] == "its settings or inputs changed" and why["sft"] == "an upstream stage reruns"

    steps = plan(recipe(tmp_path, "judge.limit=30"), "r.yaml")
    ran = [name for name, action in actions(steps).items() if action == "run"]
    assert ran == ["judge", "pairs", "translator", "eval_translation", "translate", "decontaminate", "audit", "sft", "merge",
                   "bench", "report"]


def test_interrupted_stage_resumes_and_from_forces(tmp_path):
    r = recipe(tmp_path)
    steps = plan(r, "r.yaml")
    finish(steps[:3], Path(r.out))
    state = records(Path(r.out), "teacher_translate")["state"]
    atomic_write_text(state, json.dumps({"fingerprint": steps[3].fingerprint, "state": "running"}))
    again = {s.stage.name: s.why for s in plan(r, "r.yaml")}
    assert again["quantize"].startswith("cached") and again["teacher_translate"] == "resume an interrupted run"
    forced = actions(plan(r, "r.yaml", start="warmup", until="quantize"))
    assert forced == {"models": "skip", "warmup": "run", "quantize": "run"}


def test_a_failing_stage_stops_the_chain_and_names_its_log(tmp_path):
    from hala.run.runner import StageFailed

    r = recipe(tmp_path, "models.translator=tiny-llama")
    steps = plan(r, "r.yaml", until="warmup")
    steps[0].config["names"] = ["no-such-builtin"]  # the models stage will raise
    with pytest.raises(StageFailed, match=r"stage models failed .*_stages/models.log"):
        execute(steps, Path(r.out), log=lambda *_: None)
    assert "no-such-builtin" in records(Path(r.out), "models")["log"].read_text()
    assert not (Path(r.out) / "warmup").exists()


@pytest.mark.slow
def test_the_whole_chain_runs_then_skips_then_reruns_only_what_changed(tmp_path):
    r = recipe(tmp_path)
    run = Path(r.out)
    ran = execute(plan(r, "r.yaml"), run, log=lambda *_: None)
    assert list(ran) == [s.name for s in __import__("hala.run.stages", fromlist=["STAGES"]).STAGES]
    page = (run / "report" / "report.html").read_text()
    assert "dir='rtl'" in page and "translator_base" in page and "Stages" in page
    assert json.loads((run / "eval_translation" / "results.json").read_text())["models"]
    for folder in ("translator/model", "sft/model", "merge"):  # HF-ready: weights, tokenizer, model card
        card = (run / folder / "README.md").read_text()
        assert (run / folder / "config.json").exists() and (run / folder / "tokenizer.json").exists()
        assert "base model: `" in card and "recipe: `run`" in card
    assert list((run / "release" / "corpus" / "data").glob("*.parquet"))
    assert "conversations translated" in (run / "release" / "corpus" / "README.md").read_text()
    assert set(actions(plan(r, "r.yaml")).values()) == {"skip"}
    assert execute(plan(r, "r.yaml"), run, log=lambda *_: None) == {}

    changed = recipe(tmp_path, "translate.max_segment_tokens=16")
    ran = execute(plan(changed, "r.yaml", until="translate"), run, log=lambda *_: None)
    assert list(ran) == ["translate"]
    assert json.loads((run / "translate" / "manifest.json").read_text())["config"]["max_segment_tokens"] == 16
