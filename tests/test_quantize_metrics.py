"""The comparison metrics of the quantization report, on inputs with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from hala.quantize import metrics


def test_greedy_agreement_counts_identical_outputs_and_shared_prefixes():
    ref = [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10]]
    cand = [[1, 2, 3, 4], [5, 0], [0, 8, 9, 10]]
    result = metrics.greedy_agreement(ref, cand)
    assert result["exact"] == pytest.approx(1 / 3)
    assert result["prefix"] == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError):
        metrics.greedy_agreement(ref, cand[:2])


def test_next_token_agreement_is_top1_share_and_kl_of_full_distributions():
    p = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]]), dim=-1)
    q = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0], [3.0, 0.0, 0.0]]), dim=-1)
    result = metrics.next_token_agreement([p], [q])
    assert result["top1"] == 0.5 and result["positions"] == 2
    kl_second = float(torch.sum(p[1].exp() * (p[1] - q[1])))
    assert result["mean_kl"] == pytest.approx(kl_second / 2) and result["max_kl"] == pytest.approx(kl_second)
    same = metrics.next_token_agreement([p, q], [p, q])
    assert same["top1"] == 1.0 and same["mean_kl"] == 0.0


def test_chrf_is_100_for_identical_text_lower_otherwise_and_undefined_for_blank_references():
    ar = ["يستغرق القمر نحو 27 يومًا لإكمال دورة واحدة حول الأرض."]
    assert metrics.chrf(ar, ar) == pytest.approx(100.0)
    assert 0 < metrics.chrf(["يستغرق القمر نحو شهر"], ar) < 100
    assert metrics.chrf(["\n\n"], ["\n"]) is None
    assert not math.isnan(metrics.chrf(["x"], ["y"]))
