"""Every shipped recipe parses, and every stage section and option in it exists."""

from __future__ import annotations

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
