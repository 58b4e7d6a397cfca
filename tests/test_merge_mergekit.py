"""hala merge against mergekit itself (a dev dependency): the same t for every tensor, the same weights.

Slow: importing mergekit (it imports transformers' model code) takes ~10 s on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hala.merge import MergeConfig, load_merge_config, merge
from hala.merge.parity import compare_checkpoints
from hala.merge.plan import plan_merge
from tests.test_merge import finetune_of

pytest.importorskip("mergekit")
pytestmark = pytest.mark.slow

FILTERED = {
    "t": [
        {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
        {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
        {"value": 0.5},
    ]
}


def _slices(base, tuned, ranges, slice_t=None):
    return [
        {"sources": [{"model": str(base), "layer_range": list(r)}, {"model": str(tuned), "layer_range": list(r)}],
         **({"parameters": {"t": slice_t[i]}} if slice_t and slice_t[i] is not None else {})}
        for i, r in enumerate(ranges)
    ]  # fmt: skip


def _configs(base: Path, tuned: Path) -> dict[str, dict]:
    common = {"merge_method": "slerp", "base_model": str(base), "dtype": "bfloat16"}
    return {
        "filters-and-gradients": {**common, "slices": _slices(base, tuned, [(0, 5)]), "parameters": FILTERED},
        "models-form-gradient": {
            **common,
            "models": [{"model": str(base)}, {"model": str(tuned)}],
            "parameters": {"t": [0.1, 0.9, 0.4]},
        },
        "slices-with-own-t": {
            **common,
            "slices": _slices(
                base, tuned, [(0, 1), (1, 3), (3, 5)], [None, [{"filter": "mlp", "value": [0.9, 0.2]}], 0.35]
            ),
            "parameters": {"t": [0.0, 1.0]},
        },
    }


@pytest.fixture(scope="module")
def five_layers(tmp_path_factory) -> tuple[Path, Path]:
    from hala.models.tiny import make_tiny_llama

    root = tmp_path_factory.mktemp("five")
    base = make_tiny_llama(root / "base", layers=5)
    return base, finetune_of(base, root / "tuned", scale=0.3)


def _mergekit_t(config: dict) -> dict[str, float]:
    """The t mergekit's own planner gives each output tensor (planning writes nothing)."""
    from mergekit.architecture import get_architecture_info
    from mergekit.config import MergeConfiguration
    from mergekit.io.tasks import SaveTensor
    from mergekit.merge import _model_out_config
    from mergekit.options import MergeOptions
    from mergekit.plan import MergePlanner

    parsed = MergeConfiguration.model_validate(config)
    options = MergeOptions()
    arch = get_architecture_info(parsed, options)
    planner = MergePlanner(parsed, arch, options=options, out_model_config=_model_out_config(parsed, arch))
    tasks = planner.plan_to_disk("/nonexistent/never-written")
    return {task.tensor_name: task.tensor_task.parameters["t"] for task in tasks if isinstance(task, SaveTensor)}


def _hala(config: dict, out: Path, tmp_path: Path, **settings) -> MergeConfig:
    path = tmp_path / "mergekit.yml"
    path.write_text(yaml.safe_dump(config))
    return load_merge_config(path, {"out": str(out), **settings})


@pytest.mark.parametrize("name", ["filters-and-gradients", "models-form-gradient", "slices-with-own-t"])
def test_every_tensor_gets_mergekits_t(five_layers, tmp_path, name):
    config = _configs(*five_layers)[name]
    expected = _mergekit_t(config)
    plan = plan_merge(_hala(config, tmp_path / "m", tmp_path))
    got = {p.name: p.t for p in plan.tensors}
    assert set(got) == set(expected) and len(got) == 5 * 9 + 3
    assert got == expected  # exactly: the same float operations in the same order
    assert len(set(got.values())) > 4  # the configs really spread t


def _run_mergekit(config: dict, out: Path) -> None:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    os.environ["HF_HUB_OFFLINE"] = "1"
    run_merge(
        MergeConfiguration.model_validate(config),
        str(out),
        MergeOptions(copy_tokenizer=True, quiet=True, write_model_card=False),
    )


@pytest.mark.parametrize("name", ["filters-and-gradients", "slices-with-own-t"])
def test_weights_match_mergekit_within_one_bf16_ulp(five_layers, tmp_path, name):
    config = _configs(*five_layers)[name]
    _run_mergekit(config, tmp_path / "mergekit")
    manifest = merge(_hala(config, tmp_path / "hala", tmp_path))
    parity = compare_checkpoints(tmp_path / "hala", tmp_path / "mergekit")
    assert parity["tensors"] == manifest.counts["tensors"] == 48
    assert parity["max_ulps"] <= 1, parity  # the target
    assert parity["differing"] == 0, parity  # and in fact bit for bit: the same operations in the same order
    assert manifest.counts["slerp"] > 40 and manifest.check["new_tokens"] >= 1


def test_lfm2_matches_mergekit_within_one_bf16_ulp(tiny_lfm2, tmp_path):
    tuned = finetune_of(tiny_lfm2, tmp_path / "tuned", scale=0.3)
    config = {"merge_method": "slerp", "base_model": str(tiny_lfm2), "models": [{"model": str(tiny_lfm2)}, {"model": str(tuned)}],
              "parameters": {"t": 0.5}, "dtype": "bfloat16"}  # fmt: skip
    _run_mergekit(config, tmp_path / "mergekit")
    manifest = merge(_hala(config, tmp_path / "hala", tmp_path, check={"enabled": False}))
    parity = compare_checkpoints(tmp_path / "hala", tmp_path / "mergekit")
    assert parity["max_ulps"] == 0 and parity["tensors"] == manifest.counts["tensors"] > 15, parity


@pytest.mark.parametrize("t", [0.3, 1.0])
@pytest.mark.parametrize("relation", ["random", "close", "colinear", "antipodal", "zero"])
def test_slerp_is_mergekits_bit_for_bit(t, relation):
    """Several sub-chunks of 2^20 values, so the norm-of-norms and the chunked dot product are exercised."""
    import torch
    from mergekit.merge_methods.slerp import slerp as mergekit_slerp

    from hala.merge.slerp import slerp

    g = torch.Generator().manual_seed(7)
    a = torch.randn(1536, 2048, generator=g).to(torch.bfloat16)
    b = {
        "random": torch.randn(1536, 2048, generator=g),
        "close": a.float() + 0.02 * torch.randn(1536, 2048, generator=g),
        "colinear": 2 * a.float(),
        "antipodal": -a.float(),
        "zero": torch.zeros(1536, 2048),
    }[relation].to(torch.bfloat16)
    expected = mergekit_slerp(torch.tensor([t]), a.unsqueeze(0), b.unsqueeze(0))[0]
    got = slerp(t, a, b)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert torch.equal(got, expected)
