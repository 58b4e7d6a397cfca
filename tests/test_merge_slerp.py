"""SLERP math and t resolution, tested directly on tensors and names (no checkpoints)."""

from __future__ import annotations

import math

import pytest
import torch

from hala.merge import slerp as slerp_module
from hala.merge.params import FilteredT, MergeSlice, check_slices, evaluate, resolve_t
from hala.merge.slerp import SlerpStats, coefficients, combine, intra_op_threads, parallel_sum, slerp


def _pair(n: int = 4096, dtype=torch.bfloat16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g).to(dtype), torch.randn(n, generator=g).to(dtype)


def _at_angle(theta: float, norm_a: float = 1.0, norm_b: float = 1.0, dtype=torch.float64):
    a = torch.tensor([norm_a, 0.0, 0.0], dtype=dtype)
    b = torch.tensor([norm_b * math.cos(theta), norm_b * math.sin(theta), 0.0], dtype=dtype)
    return a, b


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_t0_is_the_base_and_t1_the_model_bit_for_bit(dtype):
    a, b = _pair(dtype=dtype)
    assert torch.equal(slerp(0.0, a, b), a)
    assert torch.equal(slerp(1.0, a, b), b)
    colinear = 3 * a  # lerp branch
    assert torch.equal(slerp(0.0, a, colinear), a) and torch.equal(slerp(1.0, a, colinear), colinear)


@pytest.mark.parametrize("theta", [math.pi / 7, math.pi / 3, math.pi / 2, 2.5])
@pytest.mark.parametrize("t", [0.25, 0.5, 0.8])
def test_unit_vectors_rotate_by_t_theta(theta, t):
    a, b = _at_angle(theta)
    expected = torch.tensor([math.cos(t * theta), math.sin(t * theta), 0.0], dtype=torch.float64)
    torch.testing.assert_close(slerp(t, a, b), expected, rtol=0, atol=1e-12)


def test_norms_scale_the_endpoints_not_the_angle():
    theta, t = math.pi / 3, 0.3
    a, b = _at_angle(theta, norm_a=2.0, norm_b=5.0)
    expected = math.sin((1 - t) * theta) / math.sin(theta) * a + math.sin(t * theta) / math.sin(theta) * b
    torch.testing.assert_close(slerp(t, a, b), expected, rtol=0, atol=1e-12)
    assert abs(coefficients(t, math.cos(theta), torch.float64).dot - math.cos(theta)) < 1e-12


@pytest.mark.parametrize("factor", [2.0, -0.5])
def test_colinear_and_antipodal_fall_back_to_lerp(factor):
    a = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    b = factor * a
    assert coefficients(0.3, 1.0 if factor > 0 else -1.0, torch.float64).linear
    torch.testing.assert_close(slerp(0.3, a, b), 0.7 * a + 0.3 * b, rtol=0, atol=1e-12)


def test_threshold_is_0_9995_on_the_cosine():
    for theta, linear in [(math.acos(0.9996), True), (math.acos(0.9994), False)]:
        a, b = _at_angle(theta, dtype=torch.float64)
        got = slerp(0.5, a, b)
        lerp = 0.5 * a + 0.5 * b
        assert coefficients(0.5, math.cos(theta), torch.float64).linear is linear
        assert torch.allclose(got, lerp, atol=1e-15, rtol=0) is linear  # slerp and lerp differ by ~1e-4 here


def test_zero_norm_counts_as_one_and_stays_finite():
    a = torch.zeros(8)
    b = torch.ones(8)
    got = slerp(0.5, a, b)
    # cos θ = 0 (a's norm is replaced by 1): θ = π/2
    torch.testing.assert_close(got, math.sin(math.pi / 4) * b)


def test_math_runs_in_float32_and_comes_back_in_the_base_dtype():
    a, b = _pair(dtype=torch.bfloat16)
    got = slerp(0.37, a, b)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, slerp(0.37, a.float(), b.float()).to(torch.bfloat16))
    # the same SLERP done in bfloat16 arithmetic rounds differently: the test can see the difference
    coef = coefficients(0.37, _stats(a.float(), b.float()).cosine())
    in_bf16 = coef.a.to(torch.bfloat16) * a + coef.b.to(torch.bfloat16) * b
    assert not torch.equal(got, in_bf16)
    # the model's tensor is taken at the base's precision first (mergekit packs both in the base dtype)
    assert torch.equal(slerp(0.37, a, b.float()), got)
    # float64 inputs are merged in float64
    a64, b64 = a.double(), b.double()
    assert slerp(0.37, a64, b64).dtype == torch.float64
    assert not torch.equal(slerp(0.37, a64, b64), slerp(0.37, a.float(), b.float()).double())


def _stats(a, b) -> SlerpStats:
    stats = SlerpStats()
    stats.add_norms(a.reshape(-1), b.reshape(-1))
    stats.add_dot(a.reshape(-1).clone(), b.reshape(-1).clone())
    return stats


def test_streamed_steps_equal_the_whole_tensor(monkeypatch):
    monkeypatch.setattr(slerp_module, "SUBCHUNK", 1024)  # several sub-chunks in a small tensor
    a, b = _pair(n=50 * 1024 + 123, dtype=torch.float32, seed=3)
    step = 3 * 1024
    streamed = SlerpStats()
    for first in range(0, a.numel(), step):
        streamed.add_norms(a[first : first + step], b[first : first + step])
    for first in range(0, a.numel(), step):
        streamed.add_dot(a[first : first + step].clone(), b[first : first + step].clone())  # add_dot overwrites
    assert torch.equal(streamed.cosine(), _stats(a, b).cosine())
    exact = torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm())
    assert abs(streamed.cosine().item() - exact.item()) < 1e-6
    coef = coefficients(0.4, streamed.cosine())
    pieces = [
        combine(a[i : i + step].clone(), b[i : i + step].clone(), coef, torch.bfloat16)
        for i in range(0, a.numel(), step)
    ]
    assert torch.equal(torch.cat(pieces), slerp(0.4, a, b).to(torch.bfloat16))


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_one_thread_sums_and_norms_as_torch_does_on_several(threads):
    """The merge streams on one thread but must add as torch does on the process's threads (mergekit
    does): a parallel sum adds in another order, so its bits differ from a serial one."""
    g = torch.Generator().manual_seed(threads)
    serial_differs = 0
    for m in (1 << 20, 777_777, 65_537, 40_000, 32_769, 32_768, 5_000):
        x = (torch.randn(1, m, generator=g) * 0.01 + 1e-3).contiguous()
        with intra_op_threads(threads):
            summed, norm = x.sum(dim=1, keepdim=True), torch.linalg.vector_norm(x, dim=1, keepdim=True)
        with intra_op_threads(1):
            assert torch.equal(parallel_sum(x, threads), summed), m
            assert torch.equal(torch.linalg.vector_norm(x, dim=1, keepdim=True), norm), m
            serial_differs += not torch.equal(x.sum(dim=1, keepdim=True), summed)
    assert serial_differs, "no size where the thread count changes the sum: the test shows nothing"


def test_dot_chunks_in_any_order_add_as_in_order(monkeypatch):
    """The stream takes a large tensor's last chunk first (it is still in memory): same cos θ."""
    monkeypatch.setattr(slerp_module, "SUBCHUNK", 1024)
    a, b = _pair(n=10 * 1024 + 77, dtype=torch.float32, seed=5)
    step = 3 * 1024
    firsts = list(range(0, a.numel(), step))
    shuffled = SlerpStats()
    shuffled.add_norms(a, b)
    for first in firsts[-1:] + firsts[:-1]:
        shuffled.add_dot(a[first : first + step].clone(), b[first : first + step].clone(), first=first)
    in_order = _stats(a, b).cosine()
    assert torch.equal(shuffled.cosine(), in_order)
    unlabelled = SlerpStats()  # the same chunks out of order without `first`: another sum order
    unlabelled.add_norms(a, b)
    for first in firsts[::-1]:
        unlabelled.add_dot(a[first : first + step].clone(), b[first : first + step].clone())
    assert not torch.equal(unlabelled._dot_parts[0], shuffled._dot_parts[0])


def test_nan_and_inf_make_the_sums_non_finite():
    a, b = _pair(dtype=torch.float32)
    assert _stats(a, b).finite
    for bad in (float("nan"), float("inf")):
        c = a.clone()
        c[17] = bad
        assert not _stats(c, b).finite and not _stats(a, c).finite


# --- t: scalars, gradients over layers, filters ---------------------------------------------------

FIVE = [MergeSlice(layer_range=(0, 5))]
NAMES = [f"model.layers.{i}.self_attn.q_proj.weight" for i in range(5)]


@pytest.mark.parametrize(
    "gradient, expected",
    [
        ([0.0, 0.5, 0.3, 0.7, 1.0], [0.0, 0.5, 0.3, 0.7, 1.0]),  # one value per layer
        ([0.0, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0]),  # interpolated between the two ends
        ([0.2, 0.8, 0.4], [0.2, 0.5, 0.8, 0.6, 0.4]),
        ([0.7], [0.7] * 5),
    ],
)
def test_gradient_is_spread_over_the_layers(gradient, expected):
    got = [resolve_t(name, gradient, FIVE) for name in NAMES]
    assert got == pytest.approx(expected, abs=1e-12)


def test_filters_first_match_wins_and_unmatched_falls_through():
    t = [
        FilteredT(filter="self_attn", value=[0.0, 1.0]),
        FilteredT(filter="q_proj", value=0.9),  # never reached for q_proj: self_attn matched first
        FilteredT(filter="mlp", value=0.2),
        FilteredT(value=0.5),
    ]
    assert resolve_t("model.layers.4.self_attn.q_proj.weight", t, FIVE) == 1.0
    assert resolve_t("model.layers.1.mlp.up_proj.weight", t, FIVE) == 0.2
    assert resolve_t("model.layers.1.input_layernorm.weight", t, FIVE) == 0.5
    assert evaluate([FilteredT(filter="*", value=0.3)], "anything", 0.0) == 0.3
    assert evaluate([FilteredT(filter="mlp", value=0.3)], "model.norm.weight", 0.0) is None
    with pytest.raises(ValueError, match="no t for tensor model.norm.weight"):
        resolve_t("model.norm.weight", [FilteredT(filter="mlp", value=0.3)], FIVE)


def test_slices_restart_the_gradient_and_come_before_the_top_level():
    slices = [MergeSlice(layer_range=(0, 2), t=[FilteredT(filter="mlp", value=0.1)]), MergeSlice(layer_range=(2, 5))]
    top = [0.0, 1.0]
    assert resolve_t("model.layers.1.mlp.up_proj.weight", top, slices) == 0.1  # slice setting
    assert resolve_t("model.layers.1.self_attn.q_proj.weight", top, slices) == 1.0  # falls through, position 1/1
    assert [resolve_t(f"model.layers.{i}.mlp.up_proj.weight", top, slices) for i in (2, 3, 4)] == [0.0, 0.5, 1.0]
    # outside the layers: position 0; embeddings read the first slice, the rest the last
    assert resolve_t("model.embed_tokens.weight", 0.3, slices) == 0.3
    assert resolve_t("model.embed_tokens.weight", [0.4, 1.0], [MergeSlice(layer_range=(0, 5), t=[0.6, 0.0])]) == 0.6
    assert resolve_t("lm_head.weight", [0.4, 1.0], slices) == 0.4
    one = [MergeSlice(layer_range=(0, 1))]
    assert resolve_t("model.layers.0.mlp.up_proj.weight", [0.2, 0.8], one) == 0.8  # a one-layer slice sits at 1


def test_slices_must_tile_the_layers():
    check_slices([MergeSlice(layer_range=(0, 2)), MergeSlice(layer_range=(2, 5))], 5)
    for bad in ([(0, 2), (3, 5)], [(0, 4)], [(0, 3), (2, 5)]):
        with pytest.raises(ValueError, match="layer"):
            check_slices([MergeSlice(layer_range=r) for r in bad], 5)
