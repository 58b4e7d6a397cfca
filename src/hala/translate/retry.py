"""The retry ladder: a segment that fails QA is retried before its conversation is rejected.

One bad segment rejects a whole conversation, often dozens of good segments with it, while the
usual failures have a cheap fix: a segment too long for `max_tokens` fits in two halves, and a
greedy answer that copies the source, loops or drifts into the wrong language or script is often
right when sampled. So a segment that fails a QA filter climbs the ladder (`RetryConfig`) until
it passes:

1. re-split (`retry.resplit`): a truncated segment is cut at half `max_segment_tokens` (at
   sentences, then at spaces); any other failing segment of more than one sentence is cut at its
   sentences only, into pieces of about half its size (a sentence is never broken for a failure
   that is not about length). Each piece is translated greedily and checked; the text between
   pieces is literal, so they join back exactly. A segment that makes a single piece skips this;
2. sampled (`retry.sampled` attempts): every piece still failing (the whole segment, if it was
   not re-split) is asked again at `retry.temperature`, attempt k with seed `retry.seed + k`;
3. spans (`retry.spans`): a piece that still loses, duplicates or invents a placeholder (a model
   that never saw one drops inline code and URLs) is cut at its protected spans: each run of text
   between them is translated alone, greedily, and the spans stay literal, so none can be lost.

A segment passes when all its pieces pass; one that still fails keeps the verdict and output of
its last try, and the filter each try ended with. Every rung is one batch over the unit's
failing segments, through the request cache; the seeds are fixed and part of each request's key,
so a killed run resumes, and a rerun repeats, every attempt to the same answer. A segment whose
request failed (`engine_error`, at any rung) climbs no further: its unit is redone on a rerun
(`hala.data.units`), where the ladder picks up from the cache.

Counts (the unit's numbers): `retry_resplit` segments re-split, `retry_resplit_fixed` those that
passed after it, `retry_sampled_fixed` segments that passed after a sampled attempt; all
segment-level, as are `retry_spans` (segments cut at their spans) and `retry_spans_fixed`. The
request counts come from the runner: `retry_resplit_pieces` pieces sent, `retry_sampled` sampled
requests (one per failing piece per attempt), `retry_spans_pieces` runs of text between spans.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hala.data.units import ENGINE_ERROR
from hala.engines.cached import Answer
from hala.text.filters import Verdict
from hala.translate import qa, segment
from hala.translate.config import TranslateConfig
from hala.translate.runner import UnitRequests


@dataclass
class Outcome:
    """One segment after the ladder: its pieces (the segment itself, or its re-split), each piece's
    last answer and verdict (`(filter, reason)` or None), and what each try (greedy first) ended with."""

    split: segment.Split
    answers: list[Answer]
    verdicts: list[Verdict | None]
    tries: list[dict] = field(default_factory=list)

    @property
    def verdict(self) -> str | None:
        """The first failing piece's filter, or None: the segment passed."""
        return next((v[0] for v in self.verdicts if v), None)

    @property
    def climbing(self) -> bool:
        """Failing a QA filter, and no request of it failed (a rerun redoes those)."""
        return self.verdict is not None and all(v[0] != ENGINE_ERROR for v in self.verdicts if v)

    @property
    def text(self) -> str:
        """The translated segment, protected spans restored (only for one that passed)."""
        texts = [segment.restore(a.text, p.spans) for p, a in zip(self.split.segments, self.answers)]
        return segment.join(self.split, texts)

    def failure(self) -> dict:
        """What the rejected conversation's record keeps of this segment: its last failure, and why."""
        first = next(i for i, v in enumerate(self.verdicts) if v)
        (name, reason), answer = self.verdicts[first], self.answers[first]
        out = {"filter": name, "reason": reason, "output": answer.text or answer.error, "tries": self.tries}
        if answer.error is not None:
            out["error"] = answer.error
        return out

    def tried(self, rung: str) -> None:
        """Note the verdict a try (`greedy`, `resplit`, `sampled`) left the segment with."""
        self.tries.append({"try": rung, "filter": self.verdict})


def check(cfg: TranslateConfig, segs: list[segment.Segment], answers: list[Answer]) -> list[Verdict | None]:
    """Per segment, the first QA filter its answer fails and why (`engine_error` and the error, if
    its request failed)."""
    items = [qa.Translation(s.text, a.text, a.finish_reason) for s, a in zip(segs, answers)]
    verdicts = qa.verdicts(items, cfg.source_lang, cfg.target_lang, cfg.qa)
    return [(ENGINE_ERROR, a.error) if a.error is not None else v for a, v in zip(answers, verdicts)]


def translate_checked(
    runner: UnitRequests, cfg: TranslateConfig, segs: list[segment.Segment], counts: Counter
) -> list[Outcome]:
    """One outcome per segment, in order: translated, checked, and retried up the ladder."""
    answers = runner.translate([s.text for s in segs])
    outcomes = [
        Outcome(segment.Split((0,), (s,)), [a], [v]) for s, a, v in zip(segs, answers, check(cfg, segs, answers))
    ]
    for o in outcomes:
        o.tried("greedy")
    climbing = [o for o in outcomes if o.climbing]  # a rung only ever takes segments off the ladder
    if cfg.retry.resplit:
        _resplit(runner, cfg, climbing, counts)
        climbing = [o for o in climbing if o.climbing]
    for attempt in range(1, cfg.retry.sampled + 1):
        _sample(runner, cfg, climbing, attempt)
        climbing = [o for o in climbing if o.climbing]
    if cfg.retry.spans:
        _split_at_spans(runner, cfg, climbing, counts)
    for o in outcomes:
        if o.verdict is None and len(o.tries) > 1:
            counts[f"retry_{o.tries[-1]['try']}_fixed"] += 1
    return outcomes


def _pieces(cfg: TranslateConfig, seg: segment.Segment, verdict: str) -> segment.Split | None:
    """The re-split of a failing segment, or None when it makes a single piece."""
    if verdict == "truncated":
        split = segment.split(seg.source, max(1, cfg.max_segment_tokens // 2))
    else:
        split = segment.split(seg.source, max(1, segment.approx_tokens(seg.text) // 2), cut_words=False)
    return split if len(split.segments) > 1 else None


def _resplit(runner: UnitRequests, cfg: TranslateConfig, outcomes: list[Outcome], counts: Counter) -> None:
    splits = [(o, sp) for o in outcomes if (sp := _pieces(cfg, o.split.segments[0], o.verdict))]
    if not splits:
        return
    counts["retry_resplit"] += len(splits)
    pieces = [p for _, sp in splits for p in sp.segments]
    answers = runner.translate([p.text for p in pieces], counter="retry_resplit_pieces")
    checked = iter(zip(answers, check(cfg, pieces, answers)))
    for o, sp in splits:
        own = [next(checked) for _ in sp.segments]
        o.split, o.answers, o.verdicts = sp, [a for a, _ in own], [v for _, v in own]
        o.tried("resplit")


def _split_at_spans(runner: UnitRequests, cfg: TranslateConfig, outcomes: list[Outcome], counts: Counter) -> None:
    """Each piece still failing `protected_spans` is cut at its spans (`segment.split_at_spans`):
    the runs of text between them are translated alone, greedily, and the spans stay literal."""
    todo = []
    for o in outcomes:
        for i in reversed(range(len(o.verdicts))):  # from the end: replacing a piece renumbers the later ones
            if o.verdicts[i] and o.verdicts[i][0] == "protected_spans":
                todo.append((o, i, segment.split_at_spans(o.split.segments[i])))
    if not todo:
        return
    counts["retry_spans"] += len({id(o) for o, _, _ in todo})
    pieces = [p for _, _, sub in todo for p in sub.segments]
    answers = runner.translate([p.text for p in pieces], counter="retry_spans_pieces")
    checked = iter(zip(answers, check(cfg, pieces, answers)))
    for o, i, sub in todo:
        own = [next(checked) for _ in sub.segments]
        o.split = segment.replace_segment(o.split, i, sub)
        o.answers[i : i + 1] = [a for a, _ in own]
        o.verdicts[i : i + 1] = [v for _, v in own]
    for o in {id(o): o for o, _, _ in todo}.values():
        o.tried("spans")


def _sample(runner: UnitRequests, cfg: TranslateConfig, outcomes: list[Outcome], attempt: int) -> None:
    todo = [(o, i) for o in outcomes for i, v in enumerate(o.verdicts) if v]
    if not todo:
        return
    sampling = cfg.sampling.model_copy(update={"temperature": cfg.retry.temperature, "seed": cfg.retry.seed + attempt})
    pieces = [o.split.segments[i] for o, i in todo]
    answers = runner.translate([p.text for p in pieces], counter="retry_sampled", sampling=sampling)
    for (o, i), answer, verdict in zip(todo, answers, check(cfg, pieces, answers)):
        o.answers[i], o.verdicts[i] = answer, verdict
    for o in outcomes:
        o.tried("sampled")
