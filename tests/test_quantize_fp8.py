"""`fp8_quantize` and friends: the pure math, checked against its definition."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hala.quantize.fp8 import FP8_MAX, fp8_dequantize, fp8_quantize, fp8_scale, relative_error

DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def _weight(rows: int, cols: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.logspace(-3, 1, rows).unsqueeze(1)  # rows of very different size
    return w.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_is_absmax_over_448_per_output_channel_in_model_dtype(dtype):
    w = _weight(64, 96, dtype)
    scale = fp8_scale(w)
    assert scale.shape == (64, 1) and scale.dtype == dtype
    expected = (w.double().abs().amax(dim=1, keepdim=True) / 448.0).to(dtype)  # exact quotient, rounded once
    assert torch.equal(scale, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_become_e4m3_and_each_row_reaches_the_fp8_range(dtype):
    w = _weight(32, 128, dtype, seed=1)
    q, scale = fp8_quantize(w)
    assert q.dtype == torch.float8_e4m3fn and q.shape == w.shape
    row_max = q.float().abs().amax(dim=1)
    assert torch.all(row_max == FP8_MAX)  # the largest element of every row maps onto ±448


@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantized_weight_is_within_e4m3_rounding(dtype):
    w = _weight(48, 80, dtype, seed=2)
    q, scale = fp8_quantize(w)
    err = (w.float() - fp8_dequantize(q, scale)).abs()
    # 3 mantissa bits: half an ulp is 2^-4 relative; below the normal range the step is scale * 2^-9
    bound = w.float().abs() * 2**-4 * 1.02 + scale.float() * 2**-9 + 1e-12
    assert torch.all(err <= bound)
    assert 0 < relative_error(w, q, scale) < 0.05


def test_a_zero_row_stays_zero_with_a_nonzero_scale():
    w = _weight(4, 16, torch.bfloat16)
    w[2] = 0
    q, scale = fp8_quantize(w)
    assert scale[2, 0] == torch.finfo(torch.bfloat16).eps  # never a division by zero downstream
    assert torch.all(q[2].float() == 0) and torch.all(fp8_dequantize(q, scale)[2] == 0)


def test_only_2d_floating_weights_are_accepted():
    with pytest.raises(ValueError, match="2-D"):
        fp8_scale(torch.ones(4, 4, 4))
    with pytest.raises(ValueError, match="floating"):
        fp8_scale(torch.ones(4, 4, dtype=torch.int32))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 24),
    cols=st.integers(1, 40),
    log_scale=st.floats(-6, 4),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_quantization_properties_hold_for_any_shape_and_magnitude(rows, cols, log_scale, dtype, seed):
    w = (torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 10**log_scale).to(dtype)
    q, scale = fp8_quantize(w)
    assert torch.equal(scale, fp8_scale(w))
    assert torch.all(q.float().abs() <= FP8_MAX)
    assert torch.equal(torch.sign(q.float()), torch.sign(w.float()) * (q.float() != 0))  # signs survive
    # quantizing is row-independent: any block of rows gives the same bits (what streaming relies on)
    half = rows // 2
    if half:
        q_top, s_top = fp8_quantize(w[:half])
        assert torch.equal(q_top.view(torch.uint8), q[:half].view(torch.uint8)) and torch.equal(s_top, scale[:half])
