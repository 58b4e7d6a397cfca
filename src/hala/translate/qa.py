"""Quality control of translated segments: named filters, each counted, each failure with its reason.

A segment passes only if every filter passes; a conversation passes only if every segment does.
The filters run in this order (`hala.text.filters.first_failures`), each over the segments every
one before it passed; the first that fails gives the verdict, `(name, reason)`, which goes with
the rejected conversation (a failing segment is retried first, see `hala.translate.retry`). The
name is what the runs count (`qa_<name>`); the reason says what was wrong, e.g. `20% of letters in
Arabic script (needs 60%)`. Filters look at the text without placeholders (protected spans say
nothing about the language).

- `empty_output`: nothing came back;
- `truncated`: the model hit max_tokens;
- `protected_spans`: a placeholder was lost, duplicated or invented;
- `html_tags`: the output has an HTML tag (`<br>`, `</div>`) the source does not: the paper's corpus
  shipped raw `<br>` (`hala.text.defects`, which the audit reads too). The source's own tags are
  protected spans: they come back as they were, and are not counted;
- `literal_escapes`: the output has a literal `\\n`, `\\t` or `\\r` (a backslash and a letter) the
  source does not, the paper's other known defect; LaTeX commands (`\\nabla`, `\\theta`) are not escapes;
- `untranslated_copy`: the output is the source again;
- `target_script`: too few letters in the target language's script;
- `target_language`: lingua, restricted to the languages in play, says it is not the target (run
  once over the batch; a text whose letters are all in a script only one of the two languages uses
  is decided by script, lingua's own first rule);
- `length_ratio`: output length / source length is out of bounds;
- `repetition`: the output loops (a word n-gram or a character run repeated too often; the rule
  is `hala.text.defects.loop`, which the audit applies too).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property, partial

from pydantic import Field

from hala.config import StrictModel
from hala.text.defects import MIN_DISTINCT_SHARE, html_tags, literal_escapes, loop
from hala.text.filters import BatchRule, Filter, Rule, Verdict, first_failures
from hala.text.language_id import languages_of
from hala.text.patterns import PLACEHOLDER_RE
from hala.text.scripts import SCRIPT_NAMES, script_of, script_share

FILTERS = (
    "empty_output", "truncated", "protected_spans", "html_tags", "literal_escapes", "untranslated_copy",
    "target_script", "target_language", "length_ratio", "repetition",
)  # fmt: skip


class QAConfig(StrictModel):
    html_tags: bool = Field(True, description="turn down an output with an HTML tag (<br>) its source lacks")
    literal_escapes: bool = Field(
        True, description="turn down an output with a literal \\n, \\t or \\r its source lacks"
    )
    min_target_script: float = Field(0.6, ge=0, le=1, description="share of letters in the target script")
    language_id: bool = True
    language_id_min_letters: int = Field(12, ge=0, description="shorter outputs skip language ID")
    min_length_ratio: float = Field(0.3, ge=0)
    max_length_ratio: float = Field(3.0, gt=0)
    length_ratio_min_chars: int = Field(20, ge=0, description="shorter sources skip the length check")
    max_ngram_repeats: int = Field(4, ge=1, description="max times one word 4-gram may repeat")
    max_char_run: int = Field(30, ge=2)
    min_distinct_share: float = Field(
        MIN_DISTINCT_SHARE, ge=0, le=1,
        description="a short loop: the least share of distinct word 4-grams (hala.text.defects.loop)",
    )


@dataclass(frozen=True)
class Translation:
    """What QA checks: a segment's text and the model's answer (both with placeholders), and why
    the model stopped."""

    source: str
    output: str
    finish_reason: str = "stop"

    @cached_property
    def src(self) -> str:
        return PLACEHOLDER_RE.sub(" ", self.source).strip()

    @cached_property
    def out(self) -> str:
        return PLACEHOLDER_RE.sub(" ", self.output).strip()


def _empty(t: Translation) -> str | None:
    return None if t.output.strip() else "nothing came back"


def _truncated(t: Translation) -> str | None:
    return "the model stopped at max_tokens" if t.finish_reason == "length" else None


def _placeholders(t: Translation) -> str | None:
    had, got = sorted(PLACEHOLDER_RE.findall(t.source)), sorted(PLACEHOLDER_RE.findall(t.output))
    if had == got:
        return None
    listed = [" ".join(f"⟦{n}⟧" for n in found) or "none" for found in (had, got)]
    return f"placeholders differ: the source has {listed[0]}, the output {listed[1]}"


def _added(found, what: str, t: Translation) -> str | None:
    """What the output has of `found` (html_tags, literal_escapes) more often than the source."""
    got = found(t.out)
    if not got:  # the source is read only when the output has one
        return None
    added = Counter(got) - Counter(found(t.src))
    return f"{what} {next(iter(added))} that the source does not have" if added else None


def _tags(text: str) -> list[str]:
    return [m.group() for m in html_tags(text)]


def _escapes(text: str) -> list[str]:
    return [m.group("escape") for m in literal_escapes(text)]


def _copy(t: Translation) -> str | None:
    return "the output is the source again" if t.out.split() == t.src.split() else None  # whitespace aside


def _script(target_lang: str, min_share: float, t: Translation) -> str | None:
    share = script_share(t.out, target_lang)
    if share is None or share >= min_share:
        return None
    return f"{share:.0%} of letters in {SCRIPT_NAMES[script_of(target_lang)]} script (needs {min_share:.0%})"


def _length_ratio(cfg: QAConfig, t: Translation) -> str | None:
    if len(t.src) < cfg.length_ratio_min_chars:
        return None
    ratio = len(t.out) / max(len(t.src), 1)
    if cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
        return None
    return f"output/source length {ratio:.2f} outside [{cfg.min_length_ratio:g}, {cfg.max_length_ratio:g}]"


def _repetition(cfg: QAConfig, t: Translation) -> str | None:
    found = loop(t.out, cfg.max_char_run, cfg.max_ngram_repeats, cfg.min_distinct_share)
    return found[1] if found else None


def _target_language(
    source_lang: str, target_lang: str, min_letters: int, items: list[Translation]
) -> list[str | None]:
    """`target_language`, for a batch: lingua is called once, over the outputs the script can't decide."""
    texts = [PLACEHOLDER_RE.sub(" ", t.output) for t in items]
    found = languages_of(texts, [(source_lang, target_lang)] * len(texts), min_letters)
    return [None if lang in (None, target_lang) else f"lingua says {lang}, not {target_lang}" for lang in found]


def filters(source_lang: str, target_lang: str, cfg: QAConfig) -> list[Filter]:
    """QA's filters for one direction, in the order they run (see the module docstring)."""
    chain: list[Filter] = [Rule("empty_output", _empty), Rule("truncated", _truncated),
                           Rule("protected_spans", _placeholders)]  # fmt: skip
    if cfg.html_tags:
        chain.append(Rule("html_tags", partial(_added, _tags, "an HTML tag")))
    if cfg.literal_escapes:
        chain.append(Rule("literal_escapes", partial(_added, _escapes, "a literal escape")))
    if source_lang != target_lang:  # translating into the same language may give the text back
        chain.append(Rule("untranslated_copy", _copy))
    chain.append(Rule("target_script", partial(_script, target_lang, cfg.min_target_script)))
    if cfg.language_id:
        lingua = partial(_target_language, source_lang, target_lang, cfg.language_id_min_letters)
        chain.append(BatchRule("target_language", lingua))
    return chain + [Rule("length_ratio", partial(_length_ratio, cfg)), Rule("repetition", partial(_repetition, cfg))]


def verdicts(items: list[Translation], source_lang: str, target_lang: str, cfg: QAConfig) -> list[Verdict | None]:
    """Per translation, the first filter it fails as `(name, reason)`, or None when it passes."""
    return first_failures(filters(source_lang, target_lang, cfg), items)


def check_many(
    sources: list[str], outputs: list[str], finish_reasons: list[str], source_lang: str, target_lang: str, cfg: QAConfig
) -> list[str | None]:
    """The name of the first filter each output fails, or None (outputs still have their placeholders)."""
    items = [Translation(s, o, f) for s, o, f in zip(sources, outputs, finish_reasons)]
    return [None if v is None else v[0] for v in verdicts(items, source_lang, target_lang, cfg)]


def check(
    source: str, output: str, finish_reason: str, source_lang: str, target_lang: str, cfg: QAConfig
) -> str | None:
    """`check_many` for one output."""
    return check_many([source], [output], [finish_reason], source_lang, target_lang, cfg)[0]
