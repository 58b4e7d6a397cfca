"""Every shipped recipe parses, and every stage section and option in it exists; `hala run --dry-run`
checks the paper recipes as far as a machine without the hub can (hala.run.preflight)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hala.config import ConfigError, load_config
from hala.run.recipe import Recipe
from hala.run.runner import plan
from hala.run.stages import STAGES

RECIPES = sorted(Path("recipes").glob("*.yaml"))
TRAIN_CONFIGS = sorted(Path("recipes/train").glob("*.yaml"))


def test_recipes_are_shipped():
    names = {p.name for p in RECIPES}
    assert {"tiny-cpu.yaml", "hala-350m.yaml", "hala-700m.yaml", "hala-1.2b.yaml", "hala-9b.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_every_stage(path, tmp_path):
    text = path.read_text()
    assert text.startswith("#") and "hala run" in text.split("\n\n")[0]  # opens with the exact command
    recipe = load_config(Recipe, path, [f"out={tmp_path / 'run'}"])
    # the paper recipes name hub models and local OALL copies that this machine can't have
    steps = plan(recipe, str(path), check_refs=path.name == "tiny-cpu.yaml")
    assert [s.stage.name for s in steps] == [s.name for s in STAGES]


def test_paper_recipes_use_the_paper_settings():
    for size, base in (("350m", "LiquidAI/LFM2-350M"), ("700m", "LiquidAI/LFM2-700M"), ("1.2b", "LiquidAI/LFM2-1.2B"),
                       ("9b", "QCRI/Fanar-1-9B-Instruct")):  # fmt: skip
        recipe = load_config(Recipe, f"recipes/hala-{size}.yaml")
        assert recipe.models.teacher == "CohereLabs/command-a-translate-08-2025"
        assert recipe.models.judge == "Qwen/Qwen2.5-3B-Instruct" and recipe.models.translator == "LiquidAI/LFM2-1.2B"
        assert recipe.models.hala_base == base and recipe.merge["t"] == 0.5 and len(recipe.data.instructions) == 7
        assert recipe.teacher_translate["limit"] == 405_000 and recipe.bench["paper_row"] == f"hala-{size}"


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_train_configs_validate(path):
    from hala.train.config import TrainConfig

    assert load_config(TrainConfig, path).model


def test_a_typo_in_a_stage_is_refused_with_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("recipes/tiny-cpu.yaml").read_text() + "\n" + "translate_extra: 1\n")
    with pytest.raises(ConfigError, match="translate_extra: unknown key"):
        load_config(Recipe, bad)
    recipe = load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path}", "translate.batch_sise=64"])
    with pytest.raises(ConfigError, match=r"recipes/tiny-cpu.yaml: translate.batch_sise: unknown key"):
        plan(recipe, "recipes/tiny-cpu.yaml")


def test_missing_local_model_and_data_are_refused(tmp_path):
    recipe = load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path}", f"models.judge={tmp_path}/nope"])
    with pytest.raises(ConfigError, match="models.judge: .*nope is not a model folder"):
        plan(recipe, "r.yaml")
    recipe = load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path}", "data.test_pairs=bundled:missing.jsonl"])
    with pytest.raises(ConfigError, match="data.test_pairs: bundled:missing.jsonl: no such bundled file"):
        plan(recipe, "r.yaml")
    recipe = load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path}", "data.warmup_pairs=null"])
    with pytest.raises(ConfigError, match="warmup.enabled: the warm-up needs data.warmup_pairs"):
        plan(recipe, "r.yaml")


def test_unknown_stage_bounds(tmp_path):
    recipe = load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path}"])
    with pytest.raises(ConfigError, match="unknown stage 'translat'; stages in order: models, warmup"):
        plan(recipe, "r.yaml", start="translat")


# --- `hala run --dry-run` on the paper recipes: everything that can be checked without the hub ---------

PAPER = [Path(f"recipes/hala-{size}.yaml") for size in ("350m", "700m", "1.2b", "9b")]
MIRROR = Path("tests/fixtures/paper_inputs/saved")  # the paper's hub datasets, a few rows each (README there)
HUB_IDS = 9  # Open-Orca twice (teacher and translator), the six other instruction sets, opus-100


def dry_run(recipe: Path, tmp_path: Path, *overrides: str):
    """`hala run RECIPE --dry-run`; OALL v2 copies are not on this machine, so the bundled mini data."""
    from typer.testing import CliRunner

    from hala.cli import app

    args = ["run", str(recipe), "--dry-run", f"out={tmp_path / 'run'}", "data.bench_data=null", *overrides]
    return CliRunner().invoke(app, args)


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_dry_run_checks_the_paper_recipe_on_the_mirror(path, tmp_path, monkeypatch):
    """Settings, launchers and every dataset's schema through the recipe's own field maps, with the
    hub mirror of tests/fixtures: nothing left unchecked. hala-9b's ZeRO-3 launcher needs DeepSpeed,
    which a CPU machine lacks: the dry run says so instead of passing."""
    from hala.data.rows import HUB_MIRROR_ENV

    monkeypatch.setenv(HUB_MIRROR_ENV, str(MIRROR.resolve()))
    result = dry_run(path, tmp_path)
    if path.name == "hala-9b.yaml" and not deepspeed_installed():
        assert result.exit_code == 2
        assert "launchers.sft: recipes/accelerate/deepspeed_zero3.yaml: it launches DeepSpeed, which is not " \
               "installed here" in result.output  # fmt: skip
        return
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines() if line.startswith("run ")] == [s.name for s in STAGES]
    assert "checked: every stage's settings" in result.output and "unchecked" not in result.output


def test_dry_run_without_a_mirror_names_each_hub_dataset_it_could_not_read(tmp_path, monkeypatch):
    monkeypatch.delenv("HALA_HUB_MIRROR", raising=False)
    result = dry_run(Path("recipes/hala-1.2b.yaml"), tmp_path)
    assert result.exit_code == 0, result.output
    unchecked = [line for line in result.output.splitlines() if line.startswith("unchecked")]
    assert len(unchecked) == HUB_IDS and unchecked[-1].endswith("judge.inputs: hf://Helsinki-NLP/opus-100:ar-en")


def test_dry_run_names_every_field_map_that_misses_its_schema_at_once(tmp_path, monkeypatch):
    """The two mistakes the shipped recipes made before the fixtures existed: a map naming a column
    SCP-116K does not have, and ReAlign-Alpaca (`items`) with no map at all."""
    from hala.data.rows import HUB_MIRROR_ENV

    monkeypatch.setenv(HUB_MIRROR_ENV, str(MIRROR.resolve()))
    result = dry_run(Path("recipes/hala-1.2b.yaml"), tmp_path,
                     "translate.field_maps.hf://EricLu/SCP-116K={problem: instruction, solution: output}",
                     "translate.field_maps.hf://GAIR/ReAlign-Alpaca={}")  # fmt: skip
    assert result.exit_code == 2
    assert "translate.field_maps['hf://EricLu/SCP-116K'] renames 'solution', a column hf://EricLu/SCP-116K does " \
           "not have (its columns: domain, matched_solution, o1_solution, problem)" in result.output  # fmt: skip
    assert re.search(r"translate.inputs: hf://GAIR/ReAlign-Alpaca: none of its first 2 rows is a conversation "
                     r"\(.*ReAlign-Alpaca:1: can't tell the format from the keys \(id, items\)", result.output)  # fmt: skip


def test_dry_run_checks_the_launchers(tmp_path):
    bad = tmp_path / "bad-accelerate.yaml"
    bad.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processess: 8\n")
    result = dry_run(Path("recipes/tiny-cpu.yaml"), tmp_path,
                     "launchers.sft=accelerate launch --config_file recipes/accelerate/dpp.yaml",
                     f"launchers.translator=accelerate launch --config_file {bad}",
                     "launchers.merge=torchrunx --nproc 2")  # fmt: skip
    assert result.exit_code == 2
    assert "launchers.sft: recipes/accelerate/dpp.yaml: no such accelerate config file" in result.output
    assert f"launchers.translator: {bad}: accelerate refuses it:" in result.output and "num_processess" in result.output
    assert "launchers.merge: 'torchrunx' is not installed" in result.output


def test_the_plan_fingerprints_a_mirrored_dataset_by_its_content(tmp_path, monkeypatch):
    import shutil

    import pyarrow.parquet as pq

    from hala.data.rows import HUB_MIRROR_ENV

    mirror = tmp_path / "mirror"
    shutil.copytree(Path("tests/fixtures/paper_inputs/parquet"), mirror)
    monkeypatch.setenv(HUB_MIRROR_ENV, str(mirror))
    recipe = load_config(Recipe, "recipes/hala-1.2b.yaml", [f"out={tmp_path / 'run'}", "data.bench_data=null"])

    def fingerprints() -> dict[str, str]:
        return {s.stage.name: s.fingerprint for s in plan(recipe, "r.yaml")}

    before = fingerprints()
    lamini = mirror / "MBZUAI" / "LaMini-instruction" / "train-00000-of-00001.parquet"
    pq.write_table(pq.read_table(lamini).slice(0, 1), lamini)
    after = fingerprints()
    assert before["teacher_translate"] == after["teacher_translate"]  # Open-Orca did not change
    assert before["translate"] != after["translate"] and before["sft"] != after["sft"]  # and downstream
