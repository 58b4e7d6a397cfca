"""How good is the judge? Its scores on a labelled gold set, and the threshold they call for.

A gold set is JSONL, one pair a line: `src` and `tgt` (or `en` and `ar`), `label` (1 a good
translation, 0 a bad one) and optionally `kind` (how a bad pair was made: `swapped`, `truncated`,
...; see `hala.judge.gold`). The judge scores every gold pair exactly as it scores real ones (same
scorer, same cache). REJECT is the class we want to find, so:

- accuracy: the fraction of gold pairs whose verdict matches the label;
- precision of REJECT: of the pairs the judge rejects, the fraction that are bad; recall of
  REJECT: of the bad pairs, the fraction it rejects;
- Cohen's kappa: agreement beyond what chance would give with the same accept rate (0 chance,
  1 perfect);
- ROC AUC: the probability that a random good pair scores above a random bad one (ties count
  half); it does not depend on the threshold, and it is given per kind of corruption too;
- best threshold: the one that maximises balanced accuracy (the mean of the recalls of ACCEPT and
  REJECT), a midpoint between two neighbouring scores.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hala.data.records import ParallelPair
from hala.data.writers import atomic_write_text


@dataclass(frozen=True)
class GoldPair:
    pair: ParallelPair
    label: int
    kind: str


def read_gold(path: str | Path, src_lang: str = "en", tgt_lang: str = "ar") -> list[GoldPair]:
    """The gold set; a line that isn't a labelled pair stops with its file and line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            src, tgt = row.get("src", row.get(src_lang)), row.get("tgt", row.get(tgt_lang))
            label = row["label"]
            if not isinstance(src, str) or not isinstance(tgt, str) or label not in (0, 1):
                raise ValueError
        except (ValueError, KeyError, AttributeError):
            raise ValueError(f"{path}:{number}: a gold row needs src and tgt (or {src_lang} and {tgt_lang}) "
                             "as text and label 0 or 1") from None  # fmt: skip
        pair = ParallelPair(id=str(row.get("id", f"gold-{number}")), src=src, tgt=tgt, src_lang=src_lang, tgt_lang=tgt_lang)
        rows.append(GoldPair(pair, int(label), str(row.get("kind", "good" if label else "bad"))))
    if not {g.label for g in rows} >= {0, 1}:
        raise ValueError(f"{path}: a gold set needs both good (label 1) and bad (label 0) pairs")
    return rows


def first_of_each_kind(gold: list[GoldPair], n: int | None) -> list[GoldPair]:
    """The first `n` pairs of each kind, in file order (all of them for None)."""
    if n is None:
        return gold
    seen: dict[str, int] = {}
    kept = []
    for g in gold:
        seen[g.kind] = seen.get(g.kind, 0) + 1
        if seen[g.kind] <= n:
            kept.append(g)
    return kept


def roc_auc(good: list[float], bad: list[float]) -> float:
    """P(a good pair scores above a bad one), ties half: the Mann-Whitney statistic."""
    wins = sum((g > b) + 0.5 * (g == b) for g in good for b in bad)
    return wins / (len(good) * len(bad))


def roc_curve(scores: list[float], labels: list[int]) -> list[tuple[float, float]]:
    """(false accept rate, true accept rate) at every threshold, from accept-nothing to accept-all."""
    n_good, n_bad = labels.count(1), labels.count(0)
    points, tp, fp = [(0.0, 0.0)], 0, 0
    ordered = sorted(zip(scores, labels), key=lambda x: -x[0])
    for i, (score, label) in enumerate(ordered):
        tp, fp = tp + label, fp + (1 - label)
        if i + 1 == len(ordered) or ordered[i + 1][0] != score:
            points.append((fp / n_bad, tp / n_good))
    return points


def best_threshold(scores: list[float], labels: list[int]) -> float:
    """The midpoint threshold with the highest balanced accuracy (the lowest one on ties)."""
    values = sorted(set(scores))
    candidates = [values[0] - 1.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1.0]
    return max(candidates, key=lambda t: (balanced_accuracy(scores, labels, t), -t))


def balanced_accuracy(scores: list[float], labels: list[int], threshold: float) -> float:
    good = [s >= threshold for s, y in zip(scores, labels) if y == 1]
    bad = [s < threshold for s, y in zip(scores, labels) if y == 0]
    return (sum(good) / len(good) + sum(bad) / len(bad)) / 2


def agreement(accepted: list[bool], labels: list[int]) -> dict[str, float]:
    """Accuracy, precision and recall of REJECT, Cohen's kappa for verdicts against labels."""
    n = len(labels)
    hits = Counter((a, y) for a, y in zip(accepted, labels))
    rejected_bad, rejected_good = hits[(False, 0)], hits[(False, 1)]
    accuracy = (hits[(True, 1)] + rejected_bad) / n
    rejects, bad = rejected_bad + rejected_good, labels.count(0)
    p_accept, p_good = sum(accepted) / n, labels.count(1) / n
    chance = p_accept * p_good + (1 - p_accept) * (1 - p_good)
    kappa = (accuracy - chance) / (1 - chance) if chance < 1 else 0.0
    return {
        "accuracy": accuracy,
        "reject_precision": rejected_bad / rejects if rejects else 0.0,
        "reject_recall": rejected_bad / bad if bad else 0.0,
        "kappa": kappa,
    }


@dataclass
class Calibration:
    mode: str
    model: str
    gold: str
    pairs: int
    threshold: float  # the one the verdicts below use
    best_threshold: float
    auc: float
    accuracy: float
    reject_precision: float
    reject_recall: float
    kappa: float
    balanced_accuracy: float
    auc_by_kind: dict[str, float] = field(default_factory=dict)
    count_by_kind: dict[str, int] = field(default_factory=dict)
    engine_errors: int = 0
    roc: list[tuple[float, float]] = field(default_factory=list)

    def flat(self) -> dict[str, float]:
        """The figures for `Manifest.metrics` (numbers only, `calibration_` first)."""
        keys = ("auc", "accuracy", "reject_precision", "reject_recall", "kappa", "balanced_accuracy", "threshold",
                "best_threshold")  # fmt: skip
        figures = {f"calibration_{k}": round(getattr(self, k), 6) for k in keys}
        figures.update({f"calibration_auc_{k}": round(v, 6) for k, v in self.auc_by_kind.items()})
        return figures


def figures_of(scores: list[float], pairs: list[GoldPair], threshold: float | None, **about) -> Calibration:
    """The calibration figures for scored gold pairs (`threshold` None: the best one)."""
    gold = pairs
    labels = [g.label for g in gold]
    best = best_threshold(scores, labels)
    used = best if threshold is None else threshold
    good = [s for s, g in zip(scores, gold) if g.label == 1]
    kinds = sorted({g.kind for g in gold if g.label == 0})
    by_kind = {k: roc_auc(good, [s for s, g in zip(scores, gold) if g.kind == k and g.label == 0]) for k in kinds}
    return Calibration(
        **about, pairs=len(gold), threshold=used, best_threshold=best, auc=roc_auc(good, [s for s, y in zip(scores, labels) if y == 0]),
        **agreement([s >= used for s in scores], labels), balanced_accuracy=balanced_accuracy(scores, labels, used),
        auc_by_kind=by_kind, count_by_kind=dict(Counter(g.kind for g in gold)), roc=roc_curve(scores, labels),
    )  # fmt: skip


def calibrate_with(scorer, cfg, out: Path) -> Calibration:
    """Score `cfg.gold` with the judge's own scorer and write OUT/calibration.json (and a per-pair file)."""
    gold = first_of_each_kind(read_gold(cfg.gold, cfg.src_lang, cfg.tgt_lang), cfg.gold_per_kind)
    fixed = None if cfg.threshold == "calibrated" else cfg.decision_threshold()
    judged = scorer.judge([g.pair for g in gold], fixed if fixed is not None else 0.0)
    errors = sum(j.score is None for j in judged)
    kept = [(j.score, g) for j, g in zip(judged, gold) if j.score is not None]
    if not kept or {g.label for _, g in kept} != {0, 1}:
        raise ValueError(f"{cfg.gold}: the judge failed on {errors} of {len(gold)} gold pairs; no calibration possible")
    figures = figures_of([s for s, _ in kept], [g for _, g in kept], fixed, mode=cfg.mode, model=scorer.model_id,
                         gold=str(cfg.gold))  # fmt: skip
    figures.engine_errors = errors
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "calibration.json", json.dumps(asdict(figures), indent=1, ensure_ascii=False) + "\n")
    rows = [{"id": g.pair.id, "kind": g.kind, "label": g.label, "score": j.score,
             "accepted": j.score is not None and j.score >= figures.threshold, "gate": j.gate}
            for j, g in zip(judged, gold)]  # fmt: skip
    atomic_write_text(out / "calibration_scores.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return figures


def calibrate(cfg) -> "Manifest":
    """`hala judge calibrate`: score the gold set only; the figures in OUT/manifest.json and calibration.json."""
    import time

    from hala.data.manifest import FileEntry, Manifest
    from hala.judge.scores import make_scorer

    if not cfg.gold:
        raise ValueError("hala judge calibrate needs --gold FILE (a labelled gold set)")
    out = Path(cfg.out)
    started = time.perf_counter()
    scorer = make_scorer(cfg, cfg.cache_path or out / "cache" / "verdicts.sqlite")
    try:
        figures = calibrate_with(scorer, cfg, out)
        stats = scorer.take_stats()
    finally:
        scorer.close()
    counts = {"gold_pairs": figures.pairs, "engine_errors": figures.engine_errors,
              **{f"gold_{k}": n for k, n in sorted(figures.count_by_kind.items())},
              **{k: v for k, v in stats.items() if isinstance(v, int) and k != "engine_errors"}}  # fmt: skip
    manifest = Manifest(stage="judge_calibrate", config=cfg.model_dump(), inputs=[FileEntry.of(cfg.gold)],
                        outputs=[FileEntry.of(out / "calibration.json"), FileEntry.of(out / "calibration_scores.jsonl")],
                        counts=counts, metrics=figures.flat(), timings={"total_s": round(time.perf_counter() - started, 3)})  # fmt: skip
    manifest.write(out)
    return manifest

