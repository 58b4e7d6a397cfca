"""`hala quantize` on tiny local models: the FP8 checkpoint, its config, the copied files, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from hala.quantize import QuantizeConfig, quantize
from hala.quantize.fp8 import fp8_quantize

LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FAST_VERIFY = {"engines": ["transformers"], "translations": 3, "heldout": 3, "max_tokens": 8, "max_text_tokens": 32}


def read_checkpoint(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a folder, through the index when there is one (as loaders do)."""
    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    tensors = {}
    for name in files:
        with safe_open(folder / name, "pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    return tensors


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


@pytest.fixture(scope="module")
def llama_fp8(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantize") / "llama-fp8"
    manifest = quantize(QuantizeConfig(model=str(tiny_llama), out=str(out), verify=FAST_VERIFY))
    return out, manifest


def test_every_linear_weight_is_fp8_with_its_absmax_scale(tiny_llama, llama_fp8):
    out, manifest = llama_fp8
    source, result = read_checkpoint(tiny_llama), read_checkpoint(out)
    linear = [n for n in source if n.endswith(tuple(f"{p}.weight" for p in LLAMA_LINEAR))]
    assert len(linear) == 14 and manifest.counts["quantized"] == 14
    assert manifest.path == out / "manifest.json"  # where it lies, not the temporary folder
    for name in linear:
        w = source[name]
        assert result[name].dtype == torch.float8_e4m3fn and result[name].shape == w.shape
        scale = result[name + "_scale"]
        assert scale.shape == (w.shape[0], 1) and scale.dtype == w.dtype
        assert torch.equal(scale, (w.double().abs().amax(dim=1, keepdim=True) / 448).to(w.dtype))
        q, _ = fp8_quantize(w)
        assert same_bytes(result[name], q)


def test_embeddings_head_and_norms_are_byte_identical(tiny_llama, llama_fp8):
    out, _ = llama_fp8
    source, result = read_checkpoint(tiny_llama), read_checkpoint(out)
    kept = [n for n in source if not n.endswith(tuple(f"{p}.weight" for p in LLAMA_LINEAR))]
    assert {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"} <= set(kept)
    for name in kept:
        assert same_bytes(result[name], source[name]), name
    assert set(result) == set(source) | {n + "_scale" for n in source if n not in kept}


def test_quantization_config_is_read_back_by_compressed_tensors_and_transformers(llama_fp8):
    from compressed_tensors.quantization import QuantizationConfig, preset_name_to_scheme
    from transformers import CompressedTensorsConfig

    out, _ = llama_fp8
    data = json.loads((out / "config.json").read_text())["quantization_config"]
    parsed = QuantizationConfig.model_validate(data)
    assert parsed.quant_method == "compressed-tensors" and parsed.format == "float-quantized"
    assert parsed.quantization_status == "compressed" and parsed.ignore == ["lm_head"]
    [group] = parsed.config_groups.values()
    preset = preset_name_to_scheme("FP8_DYNAMIC", ["Linear"])
    assert group.weights == preset.weights and group.input_activations == preset.input_activations
    assert group.weights.strategy == "channel" and not group.weights.dynamic
    assert group.input_activations.strategy == "token" and group.input_activations.dynamic
    assert data["version"] == "0.17.0"
    hf = CompressedTensorsConfig.from_dict(data)  # what transformers builds when it loads the folder
    assert hf.quantization_config == parsed


def test_tokenizer_chat_template_and_generation_config_are_copied(tiny_llama, llama_fp8):
    out, _ = llama_fp8
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).read_bytes() == (tiny_llama / name).read_bytes(), name
    source_config = json.loads((tiny_llama / "config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert {k: v for k, v in config.items() if k != "quantization_config"} == source_config


def test_output_is_sharded_with_an_index_and_a_manifest(llama_fp8):
    out, manifest = llama_fp8
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert shards and set(index["weight_map"].values()) == set(shards)
    tensors = read_checkpoint(out)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    recorded = {Path(o.path).name for o in manifest.outputs}
    assert set(shards) | {"config.json", "quantization_report.json", "quantization_report.md"} <= recorded
    assert manifest.counts["shards"] == len(shards) and manifest.stage == "quantize"


def test_report_holds_the_measurements_as_json_and_markdown(tiny_llama, llama_fp8):
    from hala.quantize.fp8 import relative_error

    out, _ = llama_fp8
    report = json.loads((out / "quantization_report.json").read_text())
    weights = report["weights"]
    name = "model.layers.1.mlp.down_proj.weight"
    w = read_checkpoint(tiny_llama)[name]
    expected = relative_error(w, *fp8_quantize(w))
    worst = {item["tensor"]: item["relative_error"] for item in weights["worst"]}
    assert weights["tensors"] == 14 and weights["min"] <= weights["median"] <= weights["max"]
    if name in worst:
        assert worst[name] == pytest.approx(expected, rel=1e-4)
    assert weights["min"] <= expected <= weights["max"]
    hf = report["verification"]["transformers"]
    assert hf["fp8_tensors_loaded"] == 14
    assert 0 <= hf["greedy"]["exact"] <= hf["greedy"]["prefix"] <= 1
    assert 0 <= hf["next_token"]["top1"] <= 1 and hf["next_token"]["mean_kl"] >= 0
    assert hf["next_token"]["positions"] > 3 and 0 <= hf["chrf_fp8_vs_bf16"] <= 100
    assert hf["throughput"]["bf16_tokens_per_s"] > 0 and hf["throughput"]["fp8_tokens_per_s"] > 0
    assert report["sizes"]["bytes_out"] < report["sizes"]["bytes_in"]
    assert report["verification"]["device"]["kind"] in ("cpu", "cuda")
    markdown = (out / "quantization_report.md").read_text()
    assert "next-token top-1 agreement" in markdown and "chrF, FP8 vs BF16 output" in markdown
    assert report["verification"]["throughput_note"] in markdown
    if report["verification"]["device"]["kind"] == "cpu":
        assert "saves memory" in markdown and "Hopper" in markdown


def test_a_finished_run_is_skipped(tiny_llama, llama_fp8, monkeypatch):
    from hala.quantize import stage

    out, manifest = llama_fp8
    monkeypatch.setattr(stage, "quantize_checkpoint", lambda *a, **k: pytest.fail("re-quantized a finished run"))
    again = quantize(QuantizeConfig(model=str(tiny_llama), out=str(out), verify=FAST_VERIFY))
    assert again.fingerprint == manifest.fingerprint


def test_lfm2_quantizes_its_projections_and_keeps_the_short_conv(tiny_lfm2, tmp_path):
    out = tmp_path / "lfm2-fp8"
    manifest = quantize(QuantizeConfig(model=str(tiny_lfm2), out=str(out), verify=FAST_VERIFY))
    source, result = read_checkpoint(tiny_lfm2), read_checkpoint(out)
    fp8 = {n for n, t in result.items() if t.dtype == torch.float8_e4m3fn}
    leaves = {n.split(".")[-2] for n in fp8}
    assert leaves == {"in_proj", "out_proj", "q_proj", "k_proj", "v_proj", "w1", "w2", "w3"}
    assert same_bytes(result["model.layers.0.conv.conv.weight"], source["model.layers.0.conv.conv.weight"])
    assert "lm_head.weight" not in result  # tied to the embeddings, as in the source
    report = json.loads((out / "quantization_report.json").read_text())
    assert report["verification"]["transformers"]["fp8_tensors_loaded"] == len(fp8) == manifest.counts["quantized"]
    assert json.loads((out / "config.json").read_text())["quantization_config"]["ignore"] == ["lm_head"]


def test_cli_quantizes_with_ignore_patterns_and_no_verify(tiny_llama, tmp_path):
    from hala.cli import app

    out = tmp_path / "cli-fp8"
    args = ["quantize", "-m", str(tiny_llama), "-o", str(out), "--no-verify",
            "--ignore", "re:.*mlp\\.down_proj", "--ignore", "layers.0.self_attn.o_proj", "max_shard_size=300KB"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "quantized=11" in result.output and "ignored_linear=3" in result.output
    source, quantized = read_checkpoint(tiny_llama), read_checkpoint(out)
    ignored = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "model.layers.0.self_attn.o_proj"]
    for module in ignored:
        assert same_bytes(quantized[module + ".weight"], source[module + ".weight"])
        assert module + ".weight_scale" not in quantized
    assert quantized["model.layers.1.self_attn.o_proj.weight"].dtype == torch.float8_e4m3fn
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["ignore"] == sorted(["lm_head", *ignored])
    assert len(list(out.glob("model-*.safetensors"))) > 1  # 300KB shards: several, with an index
    report = json.loads((out / "quantization_report.json").read_text())
    assert report["verification"] is None and "turned off" in (out / "quantization_report.md").read_text()
