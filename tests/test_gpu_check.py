"""The prepared GPU check (`benchmarks/gpu/check.sh`), checked on the CPU with its smoke shapes.

The check is meant for a borrowed H100/H200 whose image has torch and transformers but neither
pydantic, TRL, datasets nor compressed-tensors, and where nothing can be installed. These tests run
it that way (those packages hidden), and through the shell script with everything installed, so
that the one run a GPU gets is not spent on a bug of the script.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_failure

GPU = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu"
DEVICE_IMAGE_LACKS = ("pydantic", "trl", "datasets", "compressed_tensors")


@pytest.fixture
def gemma_check(monkeypatch):
    monkeypatch.syspath_prepend(str(GPU))
    return importlib.import_module("gemma3_270m")


def test_on_the_device_image_the_check_runs_plain_paths_and_says_why(gemma_check, monkeypatch, capsys):
    for name in DEVICE_IMAGE_LACKS:
        monkeypatch.setitem(sys.modules, name, None)  # not importable, as on the borrowed machine
    monkeypatch.setattr(sys, "argv", ["gemma3_270m.py", "--smoke"])
    assert gemma_check.main() == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert figures["model"]["source"] == "random-init" and figures["failed"] == []
    sft = figures["sft"]
    assert sft["path"].startswith("plain PyTorch") and "trl, datasets, pydantic" in sft["why"]
    assert sft["tokens_per_step"] == 2 * 64 and sft["timed_steps"] == 2 and sft["tokens_per_s"] > 0
    assert sft["loss_finite"] and sft["loss_last"] < sft["loss_first"]  # one fixed batch: the steps learn it
    assert "compressed_tensors not importable" in figures["quantize_roundtrip"]["skipped"]
    w8a8 = figures["fp8_w8a8"]
    assert w8a8["linears_in_fp8"] == 2 * 7  # q, k, v, o, gate, up, down per layer; the tied head stays BF16
    assert 0 <= w8a8["top1_agreement"] <= 1 and 0 <= w8a8["greedy_exact"] <= 1


def test_a_part_that_raises_is_reported_and_fails_the_check(gemma_check, capsys):
    def broken():
        raise FloatingPointError("the model gives NaN or Inf logits")

    result, failed = {}, []
    gemma_check.run_part("fp8_w8a8", result, failed, broken)
    assert failed == ["fp8_w8a8"]
    assert result["fp8_w8a8"]["error"] == "FloatingPointError: the model gives NaN or Inf logits"
    assert "seconds" in result["fp8_w8a8"]


def test_without_a_gpu_check_sh_measures_nothing_and_says_so():
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(GPU / "check.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, subprocess_failure(result.stderr)
    assert "no CUDA GPU here" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1])["measured"] is False


@pytest.mark.slow
def test_check_sh_cpu_smoke_runs_every_part_through_hala_and_ends_with_one_json_line():
    env = {**os.environ, "PYTHON": sys.executable}
    cmd = ["bash", str(GPU / "check.sh"), "--cpu-smoke"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, subprocess_failure(result.stderr)
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    assert figures["mode"] == "cpu-smoke" and figures["ok"] and figures["failed"] == []
    expected = {"gemm", "device", "versions", "settings", "model", "sft", "bf16_reference", "quantize_roundtrip",
                "fp8_w8a8", "seconds"}  # fmt: skip
    assert expected <= figures.keys()
    assert figures["gemm"]["measured"] and all(v > 0 for v in figures["gemm"]["fp8_over_bf16"].values())
    assert figures["sft"]["path"].startswith("hala.train.sft") and figures["sft"]["loss_finite"]
    assert figures["sft"]["tokens_per_step"] > 0
    assert figures["quantize_roundtrip"]["fp8_tensors_loaded"] == 2 * 7
