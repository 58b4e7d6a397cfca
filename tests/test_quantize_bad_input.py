"""Bad input to `hala quantize`: refused with a message that says what to do, and nothing left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hala.checkpoint import CheckpointError, PickleRefusedError
from hala.data.manifest import OutputInUseError
from hala.quantize import QuantizeConfig, quantize
from hala.quantize.architectures import ArchitectureError
from tests.test_quantize import read_checkpoint, same_bytes

NO_VERIFY = {"enabled": False}


def _copy(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    return dest


def _cfg(model: Path, out: Path, **kw) -> QuantizeConfig:
    return QuantizeConfig(model=str(model), out=str(out), verify=NO_VERIFY, **kw)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_pickle_weights_are_refused_unless_allowed(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "pickled")
    state = load_file(model / "model.safetensors")
    (model / "model.safetensors").unlink()
    torch.save(state, model / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="--allow-pickle"):
        quantize(_cfg(model, tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    quantize(_cfg(model, tmp_path / "allowed", allow_pickle=True))
    quantize(_cfg(tiny_llama, tmp_path / "reference"))
    allowed, reference = read_checkpoint(tmp_path / "allowed"), read_checkpoint(tmp_path / "reference")
    assert set(allowed) == set(reference)
    assert all(same_bytes(allowed[k], reference[k]) for k in reference)


def test_already_quantized_input_is_refused(tiny_llama, tmp_path):
    quantize(_cfg(tiny_llama, tmp_path / "fp8"))
    with pytest.raises(CheckpointError, match="already quantized"):
        quantize(_cfg(tmp_path / "fp8", tmp_path / "twice"))
    stripped = _copy(tmp_path / "fp8", tmp_path / "no-config")  # FP8 tensors without the config block
    config = json.loads((stripped / "config.json").read_text())
    del config["quantization_config"]
    (stripped / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="holds quantized tensors"):
        quantize(_cfg(stripped, tmp_path / "twice"))
    assert not (tmp_path / "twice").exists()


def test_nan_and_inf_weights_are_reported_by_name_and_nothing_is_written(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "broken")
    state = load_file(model / "model.safetensors")
    state["model.layers.1.self_attn.q_proj.weight"][3, 5] = float("nan")
    state["model.norm.weight"][7] = float("inf")
    save_file(state, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        quantize(_cfg(model, tmp_path / "out"))
    message = str(err.value)
    assert "model.layers.1.self_attn.q_proj.weight" in message and "model.norm.weight" in message
    assert "2 tensor(s)" in message and "model.layers.0" not in message
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)


def test_unknown_architecture_is_refused_with_how_to_pass_patterns(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "mystery")
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "mystery"
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArchitectureError) as err:
        quantize(_cfg(model, tmp_path / "out"))
    assert "mystery" in str(err.value) and "llama" in str(err.value) and "--linear" in str(err.value)
    patterns = [r"layers\.\d+\.self_attn\.\w_proj"]  # attention only: the MLP stays BF16 and is listed in ignore
    manifest = quantize(_cfg(model, tmp_path / "out", linear_patterns=patterns))
    assert manifest.counts["quantized"] == 8
    ignore = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]["ignore"]
    assert "model.layers.0.mlp.down_proj" in ignore and "lm_head" in ignore
    assert "model.layers.0.self_attn.q_proj" not in ignore


def test_a_matrix_the_architecture_does_not_know_is_an_error(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "extra")
    state = load_file(model / "model.safetensors")
    state["model.layers.0.mlp.router.weight"] = torch.zeros(4, 128, dtype=torch.bfloat16)
    save_file(state, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ArchitectureError, match="model.layers.0.mlp.router.weight"):
        quantize(_cfg(model, tmp_path / "out"))


def test_ignore_patterns_must_match_and_keep_fused_layers_whole(tiny_llama, tmp_path):
    with pytest.raises(ArchitectureError, match="matches no tensor"):
        quantize(_cfg(tiny_llama, tmp_path / "a", ignore=["mlp.dwn_proj"]))
    with pytest.raises(ArchitectureError, match="fuses q_proj/k_proj/v_proj"):
        quantize(_cfg(tiny_llama, tmp_path / "b", ignore=["layers.1.self_attn.q_proj"]))
    manifest = quantize(_cfg(tiny_llama, tmp_path / "c", ignore=[r"re:.*layers\.1\.self_attn\.[qkv]_proj"]))
    assert manifest.counts["ignored_linear"] == 3 and manifest.counts["quantized"] == 11


def test_an_interrupted_run_leaves_no_output(tiny_llama, tmp_path, monkeypatch):
    from hala.quantize import stream

    original, calls = stream._quantize_tensor, {"n": 0}

    def dies_midway(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return original(*args)

    monkeypatch.setattr(stream, "_quantize_tensor", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        quantize(_cfg(tiny_llama, tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not _leftovers(tmp_path)
    monkeypatch.setattr(stream, "_quantize_tensor", original)
    assert quantize(_cfg(tiny_llama, tmp_path / "out")).counts["quantized"] == 14


def test_truncated_shard_and_busy_output_are_refused(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "truncated")
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        quantize(_cfg(model, tmp_path / "out"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputInUseError, match="another output folder"):
        quantize(_cfg(tiny_llama, busy))
    assert (busy / "notes.txt").read_text() == "mine"


def test_cli_reports_bad_input_without_a_traceback(tiny_llama, tmp_path):
    from hala.cli import app

    model = _copy(tiny_llama, tmp_path / "mystery")
    config = json.loads((model / "config.json").read_text())
    config["model_type"] = "mystery"
    (model / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["quantize", "-m", str(model), "-o", str(tmp_path / "out"), "--no-verify"])
    assert result.exit_code == 1 and "unknown architecture 'mystery'" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["quantize", "-m", str(model), "-o", str(tmp_path / "o"), "scheme=fp4"])
    assert result.exit_code == 2 and "scheme" in result.output


def test_a_hub_id_is_read_through_the_hugging_face_cache(tiny_llama, tmp_path, monkeypatch):
    import huggingface_hub

    asked = {}

    def cached(repo_id, allow_patterns):
        asked.update(repo_id=repo_id, patterns=allow_patterns)
        return str(tiny_llama)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    manifest = quantize(
        QuantizeConfig(model="CohereLabs/command-a-translate-08-2025", out=str(tmp_path / "o"), verify=NO_VERIFY)
    )
    assert asked["repo_id"] == "CohereLabs/command-a-translate-08-2025" and "*.safetensors" in asked["patterns"]
    assert not any(p.endswith(".bin") for p in asked["patterns"])  # pickles are not even downloaded
    assert manifest.counts["quantized"] == 14
