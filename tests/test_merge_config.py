"""The settings of `hala merge`: mergekit's slerp YAML subset, hala's own YAML, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hala.cli import app
from hala.config import ConfigError
from hala.merge.config import load_merge_config
from hala.merge.params import FilteredT

runner = CliRunner()

MODELS_FORM = """
models:
  - model: /m/base
  - model: /m/tuned
merge_method: slerp
base_model: /m/base
parameters:
  t: 0.3
dtype: bfloat16
"""

SLICES_FORM = """
slices:
  - sources:
      - model: /m/tuned
        layer_range: [0, 3]
      - model: /m/base
        layer_range: [0, 3]
    parameters:
      t: [0.2, 0.8]
  - sources:
      - model: /m/base
        layer_range: [3, 5]
      - model: /m/tuned
        layer_range: [3, 5]
merge_method: slerp
base_model: /m/base
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: float32
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "merge.yml"
    path.write_text(text)
    return path


def test_models_form_maps_to_base_model_t_and_dtype(tmp_path):
    cfg = load_merge_config(_write(tmp_path, MODELS_FORM), {"out": "o"})
    assert (cfg.base, cfg.model, cfg.t, cfg.dtype, cfg.slices) == ("/m/base", "/m/tuned", 0.3, "bfloat16", None)


def test_slices_form_keeps_layer_ranges_slice_t_and_filters(tmp_path):
    cfg = load_merge_config(_write(tmp_path, SLICES_FORM), {"out": "o"})
    assert (cfg.base, cfg.model, cfg.dtype) == ("/m/base", "/m/tuned", "float32")
    assert [s.layer_range for s in cfg.slices] == [(0, 3), (3, 5)]
    assert cfg.slices[0].t == [0.2, 0.8] and cfg.slices[1].t is None
    assert cfg.t == [
        FilteredT(filter="self_attn", value=[0, 0.5, 0.3, 0.7, 1]),
        FilteredT(filter="mlp", value=[1, 0.5, 0.7, 0.3, 0]),
        FilteredT(value=0.5),
    ]


def test_flags_and_overrides_apply_on_top_of_a_mergekit_file(tmp_path):
    cfg = load_merge_config(
        _write(tmp_path, MODELS_FORM), {"out": "o", "t": 0.9}, ["vocab_policy=truncate", "check.enabled=false"]
    )
    assert cfg.t == 0.9 and cfg.vocab_policy == "truncate" and not cfg.check.enabled


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda d: d.update(tokenizer_source="base"), "tokenizer_source: not supported"),
        (lambda d: d.update(out_dtype="float16"), "out_dtype: not supported"),
        (lambda d: d["parameters"].update(weight=0.5), "parameters.weight: not supported"),
        (lambda d: d["models"][1].update(parameters={"t": 0.1}), r"models\[1\].parameters: not supported"),
        (lambda d: d.update(merge_method="ties"), "merge_method: 'ties' is not supported; valid: slerp"),
        (lambda d: d.pop("base_model"), "base_model: slerp needs a base model"),
        (lambda d: d.update(dtype="int8"), "dtype: 'int8' is not supported"),
        (lambda d: d["models"].append({"model": "/m/third"}), "exactly one other model"),
        (lambda d: d.update(slices=[]), "either models or slices"),
    ],
)
def test_anything_outside_the_slerp_subset_is_named(tmp_path, edit, named):
    data = yaml.safe_load(MODELS_FORM)
    edit(data)
    with pytest.raises(ConfigError, match=named) as info:
        load_merge_config(_write(tmp_path, yaml.safe_dump(data)), {"out": "o"})
    assert "merge.yml" in str(info.value)


def test_slices_must_pair_the_base_with_one_model_over_one_range(tmp_path):
    data = yaml.safe_load(SLICES_FORM)
    data["slices"][1]["sources"][1]["layer_range"] = [3, 4]
    with pytest.raises(ConfigError, match=r"slices\[1\].sources: both models must use the same layer_range"):
        load_merge_config(_write(tmp_path, yaml.safe_dump(data)), {"out": "o"})
    data = yaml.safe_load(SLICES_FORM)
    data["slices"][1]["sources"][1]["model"] = "/m/other"
    with pytest.raises(ConfigError, match="same two models"):
        load_merge_config(_write(tmp_path, yaml.safe_dump(data)), {"out": "o"})


def test_hala_yaml_rejects_unknown_keys(tmp_path):
    path = _write(tmp_path, "base: a\nmodel: b\nout: o\nt: 0.5\ntee: 0.3\n")
    with pytest.raises(ConfigError, match="tee: unknown key"):
        load_merge_config(path)


def test_cli_merges_and_reports(tiny_llama, tmp_path):
    out = tmp_path / "m"
    args = [
        "merge",
        "--base",
        str(tiny_llama),
        "--model",
        str(tiny_llama),
        "--out",
        str(out),
        "--t",
        "0.25",
        "--no-check",
        "chunk_mb=0.5",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "merge: tensors=" in result.output and "manifest.json" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["config"]["t"] == 0.25
        and "chunk_mb" not in manifest["config"]  # a pace setting: not part of the folder's identity (issue 11)
        and not manifest["config"]["check"]["enabled"]
    )
    assert manifest["counts"]["lerp"] == manifest["counts"]["tensors"]  # a model merged with itself is colinear


def test_cli_reads_a_mergekit_file_and_reports_errors(tiny_llama, tiny_lfm2, tmp_path):
    config = _write(tmp_path, MODELS_FORM.replace("/m/base", str(tiny_llama)).replace("/m/tuned", str(tiny_lfm2)))
    result = runner.invoke(app, ["merge", "--config", str(config), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "different architectures" in result.output
    result = runner.invoke(app, ["merge", "--config", str(config), "--out", str(tmp_path / "m"), "t=[0.1, {x: 1}]"])
    assert result.exit_code == 2 and "t" in result.output
    assert not (tmp_path / "m").exists()
