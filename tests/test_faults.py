"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app

# --- checks before writing, inputs and configs ---


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _broken_copy(model: Path, dest: Path, *, drop: str | None = None, config: dict | None = None) -> Path:
    """A copy of `model` without tensor `drop`, or with config.json keys replaced (a config that lies)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, dest)
    if drop:
        state = load_file(dest / "model.safetensors")
        del state[drop]
        save_file(state, dest / "model.safetensors", metadata={"format": "pt"})
    if config:
        data = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**data, **config}))
    return dest


def test_quantize_no_verify_refuses_a_checkpoint_missing_a_tensor(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", drop="model.layers.1.mlp.down_proj.weight")
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.layers.1.mlp.down_proj.weight: missing (config.json implies [128, 256]" in result.output
    assert str(source / "config.json") in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.tmp"))


def test_quantize_no_verify_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", config={"intermediate_size": 512})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    expected = "model.layers.0.mlp.down_proj.weight: config.json implies [128, 512], model.safetensors holds [128, 256]"
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_quantize_refuses_a_weight_stored_as_integers(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    source = _broken_copy(tiny_llama, tmp_path / "src")
    state = load_file(source / "model.safetensors")
    state["model.norm.weight"] = state["model.norm.weight"].to(torch.int16)
    save_file(state, source / "model.safetensors", metadata={"format": "pt"})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.norm.weight: model.safetensors stores it as I16; the network expects floating point" in result.output


def test_merge_no_check_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    base = _broken_copy(tiny_llama, tmp_path / "base", config={"intermediate_size": 512})
    result = _cli("merge", "-b", str(base), "-m", str(tiny_llama), "-o", str(tmp_path / "out"), "--no-check")
    assert result.exit_code == 1, result.output
    assert str(base / "config.json") in result.output
    assert "model.layers.1.mlp.up_proj.weight: config.json implies [512, 128], model.safetensors holds [256, 128]" in result.output
    assert not (tmp_path / "out").exists()


def test_structure_check_accepts_tied_embeddings_stored_once(tiny_llama, tmp_path):
    from hala.quantize.checkpoint import tensor_refs, weight_files
    from hala.quantize.structure import StructureError, check_structure

    source = _broken_copy(tiny_llama, tmp_path / "tied", drop="lm_head.weight", config={"tie_word_embeddings": True})
    config = json.loads((source / "config.json").read_text())
    check_structure(tensor_refs(weight_files(source)), config, source / "config.json")  # one copy is enough
    untied = _broken_copy(tiny_llama, tmp_path / "untied", drop="lm_head.weight")
    with pytest.raises(StructureError, match=r"lm_head.weight: missing \(config.json implies \[1024, 128\]"):
        check_structure(tensor_refs(weight_files(untied)), json.loads((untied / "config.json").read_text()), untied)
