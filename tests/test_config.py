"""Configs: unknown keys are errors, dotted overrides work, errors name the file and the key."""

from __future__ import annotations

import pytest

from hala.config import ConfigError, apply_overrides, load_config, parse_override
from hala.engines.generate import GenerateConfig


def test_parse_override_reads_yaml_values():
    assert parse_override("translate.batch_size=512") == (["translate", "batch_size"], 512)
    assert parse_override("a.b=[x, y]") == (["a", "b"], ["x", "y"])
    assert parse_override("flag=true") == (["flag"], True)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("no-equals-sign")


def test_apply_overrides_creates_sections_and_copies():
    base = {"engine": {"kind": "vllm"}}
    result = apply_overrides(base, ["engine.model=/m", "sampling.max_tokens=8"])
    assert result == {"engine": {"kind": "vllm", "model": "/m"}, "sampling": {"max_tokens": 8}}
    assert base == {"engine": {"kind": "vllm"}}
    with pytest.raises(ConfigError, match="engine.kind is a value, not a section"):
        apply_overrides(base, ["engine.kind.x=1"])


def test_recipe_with_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("input: in.jsonl\nout: o\nengine:\n  kind: fake\n  model: m\nsampling:\n  max_tokens: 16\n")
    cfg = load_config(GenerateConfig, recipe, ["sampling.max_tokens=64", "engine.kind=openai"])
    assert cfg.sampling.max_tokens == 64 and cfg.engine.kind == "openai" and cfg.engine.model == "m"


def test_unknown_key_names_file_and_key(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("input: a\nout: b\nsampling:\n  max_token: 16\n")
    with pytest.raises(ConfigError) as err:
        load_config(GenerateConfig, recipe)
    assert f"{recipe}: sampling.max_token: unknown key" in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("input: a\nout: b\n")
    with pytest.raises(ConfigError) as err:
        load_config(GenerateConfig, recipe, ["sampling.max_tokens=lots"])
    message = str(err.value)
    assert "sampling.max_tokens" in message and "'lots'" in message and "integer" in message


def test_bad_literal_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        load_config(GenerateConfig, None, ["input=a", "out=b", "engine.kind=tgi"])
    assert "engine.kind" in str(err.value) and "'vllm', 'openai', 'fake' or 'transformers'" in str(err.value)


def test_missing_required_key():
    with pytest.raises(ConfigError, match="<command line>: out: Field required"):
        load_config(GenerateConfig, None, ["input=a"])


def test_yaml_syntax_error_names_the_line(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("input: a\nout: [b\nengine: {\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(GenerateConfig, recipe)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_config(GenerateConfig, tmp_path / "nope.yaml")
