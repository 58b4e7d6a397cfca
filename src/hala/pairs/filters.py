"""Heuristic filters for parallel pairs: each one named, counted, and the first failure kept as the
reason a pair was rejected.

In order (cheap first; language ID runs once per batch, over the pairs still standing):

- `empty_side`: a side has no letter and no digit (blank, whitespace, punctuation only);
- `absurd_length`: a side is longer than `max_chars` characters;
- `language`: a side is not in its language. A side whose letters are all in a script only one of
  the two languages uses is decided by script (lingua's own first rule); otherwise lingua decides,
  restricted to the two languages (plus `extra_languages`, if set: then every side goes through
  lingua). URLs and inline code are removed first: they say nothing about the language. Sides with
  fewer than `language_id_min_letters` letters are not judged;
- `length_ratio`: target/source length in characters is outside [min, max] (when the longer side
  has at least `length_ratio_min_chars` characters; short lines vary too much);
- `numbers_mismatch`: the sides do not hold the same set of numbers (see `normalize.numbers`);
- `urls_mismatch`: the sides do not hold the same set of URLs;
- `duplicate`, `near_duplicate`: a pair already kept, exactly or after `normalize.normalize`
  (`Deduper`; stateful, so it runs last, over pairs that passed everything else: the first
  copy in input order wins).

Every threshold is ours: the paper does not publish its filtering rules.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from hala.config import StrictModel
from hala.data.records import ParallelPair
from hala.pairs.normalize import exact_key, near_key, numbers, urls
from hala.text.language_id import detected_languages, known_to_lingua
from hala.text.patterns import LETTER_RE
from hala.text.scripts import by_script, language_text

FILTERS = (
    "empty_side", "absurd_length", "language", "length_ratio", "numbers_mismatch", "urls_mismatch",
    "duplicate", "near_duplicate",
)  # fmt: skip
CONTENT_RE = re.compile(r"[^\W_]")  # a letter or a digit

Verdict = tuple[str, str]  # (filter, reason)


class FilterConfig(StrictModel):
    """Thresholds of the heuristic filters (all ours; the paper publishes none)."""

    max_chars: int = Field(2000, ge=1, description="absurd_length: longest side allowed, in characters")
    min_length_ratio: float = Field(0.35, ge=0, description="length_ratio: target/source characters, lower bound")
    max_length_ratio: float = Field(2.5, gt=0, description="length_ratio: upper bound")
    length_ratio_min_chars: int = Field(20, ge=0, description="length_ratio applies when the longer side has this many")
    language_id: bool = True
    language_id_min_letters: int = Field(8, ge=0, description="sides with fewer letters skip language ID")
    extra_languages: list[str] = Field(
        default_factory=list, description="other languages lingua may answer, e.g. [fr, fa]"
    )
    numbers: bool = True
    urls: bool = True
    dedup: bool = True

    @field_validator("extra_languages")
    @classmethod
    def _known_to_lingua(cls, value: list[str]) -> list[str]:
        return known_to_lingua(value)

    @model_validator(mode="after")
    def _bounds(self) -> FilterConfig:
        if self.min_length_ratio > self.max_length_ratio:
            low, high = self.min_length_ratio, self.max_length_ratio
            raise ValueError(f"min_length_ratio {low} is above max_length_ratio {high}")
        return self


def _letters(text: str) -> str:
    return "".join(LETTER_RE.findall(text))


def _basic(pair: ParallelPair, cfg: FilterConfig) -> Verdict | None:
    for lang, text in ((pair.src_lang, pair.src), (pair.tgt_lang, pair.tgt)):
        if not CONTENT_RE.search(text):
            return "empty_side", f"empty {lang} side (no letter or digit)"
    for lang, text in ((pair.src_lang, pair.src), (pair.tgt_lang, pair.tgt)):
        if len(text) > cfg.max_chars:
            return "absurd_length", f"{lang} side has {len(text)} characters (max {cfg.max_chars})"
    return None


def _languages(pairs: list[ParallelPair], cfg: FilterConfig) -> list[Verdict | None]:
    """`language` verdicts for a batch, lingua called once over the sides script can't decide."""
    sides = [(i, lang, language_text(text), (p.src_lang, p.tgt_lang))
             for i, p in enumerate(pairs) for lang, text in ((p.src_lang, p.src), (p.tgt_lang, p.tgt))]  # fmt: skip
    found: dict[tuple[int, str], str | None] = {}
    todo = []
    for i, lang, text, (src, tgt) in sides:
        letters = _letters(text)
        if len(letters) < cfg.language_id_min_letters:
            continue
        known = None if cfg.extra_languages else by_script(letters, src, tgt)
        if known is not None:
            found[i, lang] = known
        else:
            todo.append((i, lang, text, (src, tgt)))
    by_languages: dict[tuple[str, ...], list] = {}
    for item in todo:
        by_languages.setdefault((*item[3], *cfg.extra_languages), []).append(item)
    for languages, items in by_languages.items():
        for (i, lang, _, _), answer in zip(items, detected_languages([t for _, _, t, _ in items], languages)):
            found[i, lang] = answer
    verdicts: list[Verdict | None] = [None] * len(pairs)
    for i, lang, _, _ in sides:
        answer = found.get((i, lang))
        if verdicts[i] is None and answer is not None and answer != lang:
            verdicts[i] = "language", f"{lang} side looks like {answer}"
    return verdicts


def _agreement(pair: ParallelPair, cfg: FilterConfig) -> Verdict | None:
    longer = max(len(pair.src), len(pair.tgt))
    if longer >= cfg.length_ratio_min_chars:
        ratio = len(pair.tgt) / max(len(pair.src), 1)
        if not cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
            bounds = f"[{cfg.min_length_ratio:g}, {cfg.max_length_ratio:g}]"
            return "length_ratio", f"{pair.tgt_lang}/{pair.src_lang} length ratio {ratio:.2f} outside {bounds}"
    if cfg.numbers:
        a, b = numbers(pair.src), numbers(pair.tgt)
        if a != b:
            reason = f"numbers differ: {pair.src_lang} has {sorted(a)}, {pair.tgt_lang} has {sorted(b)}"
            return "numbers_mismatch", reason
    if cfg.urls:
        a, b = urls(pair.src), urls(pair.tgt)
        if a != b:
            return "urls_mismatch", f"URLs differ: {pair.src_lang} has {sorted(a)}, {pair.tgt_lang} has {sorted(b)}"
    return None


def check_pairs(pairs: list[ParallelPair], cfg: FilterConfig) -> list[Verdict | None]:
    """The first content filter each pair fails (as `(filter, reason)`), or None if it passes all.
    Deduplication is separate (`Deduper`), because it depends on the pairs kept before."""
    verdicts = [_basic(p, cfg) for p in pairs]
    if cfg.language_id:
        standing = [i for i, v in enumerate(verdicts) if v is None]
        for i, verdict in zip(standing, _languages([pairs[i] for i in standing], cfg)):
            verdicts[i] = verdict
    return [v if v is not None else _agreement(p, cfg) for p, v in zip(pairs, verdicts)]


class Deduper:
    """Remembers the pairs kept so far (two 8-byte hashes each, ~100 bytes of memory per pair)."""

    def __init__(self) -> None:
        self.exact: set[int] = set()
        self.near: set[int] = set()

    def check(self, pair: ParallelPair) -> Verdict | None:
        exact, near = exact_key(pair.src, pair.tgt), near_key(pair.src, pair.tgt)
        if exact in self.exact:
            return "duplicate", "exact duplicate of an earlier pair"
        if near in self.near:
            folded = "case, punctuation, spaces, Arabic variants"
            return "near_duplicate", f"same as an earlier pair after normalization ({folded})"
        self.exact.add(exact)
        self.near.add(near)
        return None
