"""Heuristic filters for parallel pairs: each one named, counted, and the first failure kept as the
reason a pair was rejected.

Each is a filter of the shape translate's QA and the judge share (`hala.text.filters`: a name, and
a verdict per pair of a batch, None or `(name, reason)`); `check_pairs` runs them in order (cheap
first; language ID runs once per batch, over the pairs still standing):

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
from functools import partial

from pydantic import Field, field_validator, model_validator

from hala.config import StrictModel
from hala.data.records import ParallelPair
from hala.pairs.normalize import exact_key, near_key, numbers, urls
from hala.text.filters import BatchRule, Filter, Rule, Verdict, first_failures
from hala.text.language_id import known_to_lingua, languages_of
from hala.text.scripts import language_text

FILTERS = (
    "empty_side", "absurd_length", "language", "length_ratio", "numbers_mismatch", "urls_mismatch",
    "duplicate", "near_duplicate",
)  # fmt: skip
CONTENT_RE = re.compile(r"[^\W_]")  # a letter or a digit


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


def _sides(pair: ParallelPair) -> tuple[tuple[str, str], tuple[str, str]]:
    return (pair.src_lang, pair.src), (pair.tgt_lang, pair.tgt)


def _empty_side(pair: ParallelPair) -> str | None:
    for lang, text in _sides(pair):
        if not CONTENT_RE.search(text):
            return f"empty {lang} side (no letter or digit)"
    return None


def _absurd_length(max_chars: int, pair: ParallelPair) -> str | None:
    for lang, text in _sides(pair):
        if len(text) > max_chars:
            return f"{lang} side has {len(text)} characters (max {max_chars})"
    return None


def _languages(min_letters: int, extra: tuple[str, ...], pairs: list[ParallelPair]) -> list[str | None]:
    """`language`, for a batch: lingua is called once, over the sides the script can't decide."""
    sides = [(i, lang, language_text(text)) for i, p in enumerate(pairs) for lang, text in _sides(p)]
    languages = [(pairs[i].src_lang, pairs[i].tgt_lang) for i, _, _ in sides]
    found = languages_of([text for _, _, text in sides], languages, min_letters, extra)
    reasons: list[str | None] = [None] * len(pairs)
    for (i, lang, _), answer in zip(sides, found):
        if reasons[i] is None and answer is not None and answer != lang:
            reasons[i] = f"{lang} side looks like {answer}"
    return reasons


def _length_ratio(cfg: FilterConfig, pair: ParallelPair) -> str | None:
    if max(len(pair.src), len(pair.tgt)) < cfg.length_ratio_min_chars:
        return None
    ratio = len(pair.tgt) / max(len(pair.src), 1)
    if cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
        return None
    bounds = f"[{cfg.min_length_ratio:g}, {cfg.max_length_ratio:g}]"
    return f"{pair.tgt_lang}/{pair.src_lang} length ratio {ratio:.2f} outside {bounds}"


def _numbers(pair: ParallelPair) -> str | None:
    a, b = numbers(pair.src), numbers(pair.tgt)
    return None if a == b else f"numbers differ: {pair.src_lang} has {sorted(a)}, {pair.tgt_lang} has {sorted(b)}"


def _urls(pair: ParallelPair) -> str | None:
    a, b = urls(pair.src), urls(pair.tgt)
    return None if a == b else f"URLs differ: {pair.src_lang} has {sorted(a)}, {pair.tgt_lang} has {sorted(b)}"


def content_filters(cfg: FilterConfig) -> list[Filter]:
    """The filters a pair must pass on its own, in the order they run (see the module docstring)."""
    chain: list[Filter] = [Rule("empty_side", _empty_side)]
    chain.append(Rule("absurd_length", partial(_absurd_length, cfg.max_chars)))
    if cfg.language_id:
        lingua = partial(_languages, cfg.language_id_min_letters, tuple(cfg.extra_languages))
        chain.append(BatchRule("language", lingua))
    chain.append(Rule("length_ratio", partial(_length_ratio, cfg)))
    if cfg.numbers:
        chain.append(Rule("numbers_mismatch", _numbers))
    if cfg.urls:
        chain.append(Rule("urls_mismatch", _urls))
    return chain


def check_pairs(pairs: list[ParallelPair], cfg: FilterConfig, deduper: Deduper | None = None) -> list[Verdict | None]:
    """The first filter each pair fails (as `(filter, reason)`), or None if it passes all. With a
    `deduper`, the pairs that pass every content filter are then checked against the pairs it kept
    before (and the ones it keeps now), in order."""
    return first_failures([*content_filters(cfg), *([deduper] if deduper is not None else [])], pairs)


class Deduper:
    """Remembers the pairs kept so far (two 8-byte hashes each, ~100 bytes of memory per pair).
    A filter whose verdicts are named `duplicate` or `near_duplicate`."""

    name = "dedup"

    def __init__(self) -> None:
        self.exact: set[int] = set()
        self.near: set[int] = set()

    def verdicts(self, pairs: list[ParallelPair]) -> list[Verdict | None]:
        return [self.check(pair) for pair in pairs]

    def check(self, pair: ParallelPair) -> Verdict | None:
        """`pair`'s verdict; a pair that passes is remembered, so its copies that come later fail."""
        exact, near = exact_key(pair.src, pair.tgt), near_key(pair.src, pair.tgt)
        if exact in self.exact:
            return "duplicate", "exact duplicate of an earlier pair"
        if near in self.near:
            folded = "case, punctuation, spaces, Arabic variants"
            return "near_duplicate", f"same as an earlier pair after normalization ({folded})"
        self.exact.add(exact)
        self.near.add(near)
        return None
