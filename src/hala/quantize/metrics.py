"""How far the FP8 model is from its BF16 source: pure functions over outputs and log-probs.

- greedy agreement: the share of prompts whose greedy continuation is token-for-token the same,
  and the mean share of tokens generated before the two first differ;
- next-token agreement on held-out text (teacher forcing): top-1 agreement over all positions and
  the mean KL(P_bf16 || P_fp8) of the full next-token distributions;
- chrF between the two models' translations (sacrebleu), the BF16 one taken as the reference.
"""

from __future__ import annotations

import statistics

import torch


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def greedy_agreement(reference: list[list[int]], candidate: list[list[int]]) -> dict[str, float]:
    """`exact`: share of identical outputs; `prefix`: mean share of tokens before they diverge."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"need as many outputs on both sides (got {len(reference)} and {len(candidate)})")
    exact = sum(a == b for a, b in zip(reference, candidate)) / len(reference)
    prefix = statistics.fmean(
        common_prefix(a, b) / max(len(a), len(b)) if max(len(a), len(b)) else 1.0 for a, b in zip(reference, candidate)
    )
    return {"exact": exact, "prefix": prefix}


def next_token_agreement(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> dict[str, float]:
    """Over texts given as [positions, vocab] log-probabilities: top-1 agreement and KL(ref || cand)."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"need as many texts on both sides (got {len(reference)} and {len(candidate)})")
    agree, kls = 0, []
    for p, q in zip(reference, candidate):
        if p.shape != q.shape:
            raise ValueError(f"log-prob shapes differ: {tuple(p.shape)} vs {tuple(q.shape)}")
        p, q = p.float(), q.float()
        agree += int((p.argmax(-1) == q.argmax(-1)).sum())
        kls.append(torch.sum(p.exp() * (p - q), dim=-1))
    kl = torch.cat(kls).clamp_min(0.0)  # tiny negatives are float rounding
    return {"top1": agree / kl.numel(), "mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "positions": kl.numel()}


def chrf(hypotheses: list[str], references: list[str]) -> float | None:
    """Corpus chrF (sacrebleu's default character n-gram F-score, 0-100); None when the references
    hold no characters at all (chrF ignores whitespace, so it would say 0 for identical blank outputs)."""
    from sacrebleu.metrics import CHRF

    if not any(r.strip() for r in references):
        return None
    return float(CHRF().corpus_score(hypotheses, [references]).score)
