"""Quality control of translated segments: named filters, each counted.

A segment passes only if every filter passes; a conversation passes only if every segment does.
The first failing filter names the reason, which goes with the rejected conversation (a failing
segment is retried first, see `hala.translate.retry`). Filters look at the text without
placeholders (protected spans say nothing about the language).

- `empty_output`: nothing came back;
- `truncated`: the model hit max_tokens;
- `protected_spans`: a placeholder was lost, duplicated or invented;
- `untranslated_copy`: the output is the source again;
- `target_script`: too few letters in the target language's script;
- `target_language`: lingua, restricted to the languages in play, says it is not the target;
- `length_ratio`: output length / source length is out of bounds;
- `repetition`: the output loops (a word n-gram or a character run repeated too often).
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field

from hala.config import StrictModel
from hala.text.language_id import detected_languages
from hala.text.patterns import LETTER_RE, PLACEHOLDER_RE
from hala.text.scripts import by_script, script_share

FILTERS = (
    "empty_output", "truncated", "protected_spans", "untranslated_copy",
    "target_script", "target_language", "length_ratio", "repetition",
)  # fmt: skip


class QAConfig(StrictModel):
    min_target_script: float = Field(0.6, ge=0, le=1, description="share of letters in the target script")
    language_id: bool = True
    language_id_min_letters: int = Field(12, ge=0, description="shorter outputs skip language ID")
    min_length_ratio: float = Field(0.3, ge=0)
    max_length_ratio: float = Field(3.0, gt=0)
    length_ratio_min_chars: int = Field(20, ge=0, description="shorter sources skip the length check")
    max_ngram_repeats: int = Field(4, ge=1, description="max times one word 4-gram may repeat")
    max_char_run: int = Field(30, ge=2)


def _loops(text: str, cfg: QAConfig) -> bool:
    if re.search(r"(.)\1{%d,}" % (cfg.max_char_run - 1), text):
        return True
    words = text.split()
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    return bool(grams) and max(grams.values()) > cfg.max_ngram_repeats


def check_many(
    sources: list[str], outputs: list[str], finish_reasons: list[str], source_lang: str, target_lang: str, cfg: QAConfig
) -> list[str | None]:
    """`check` for a batch, with language ID run once over the batch (lingua, in parallel)."""
    detected: list[str | None] = [None] * len(outputs)
    if cfg.language_id:
        stripped = [PLACEHOLDER_RE.sub(" ", o) for o in outputs]
        todo = []
        for i, text in enumerate(stripped):
            if len(LETTER_RE.findall(text)) < cfg.language_id_min_letters:
                continue
            known = by_script(text, source_lang, target_lang)
            if known:
                detected[i] = known
            else:
                todo.append(i)
        for i, lang in zip(todo, detected_languages([stripped[i] for i in todo], (source_lang, target_lang))):
            detected[i] = lang
    return [
        check(s, o, f, source_lang, target_lang, cfg, detected=d)
        for s, o, f, d in zip(sources, outputs, finish_reasons, detected)
    ]


def check(
    source: str, output: str, finish_reason: str, source_lang: str, target_lang: str, cfg: QAConfig,
    detected: str | None = "",
) -> str | None:
    """The name of the first filter `output` fails, or None. `output` still has its placeholders.

    `detected` is the language lingua found (from `check_many`); "" means "run lingua here"."""
    if not output.strip():
        return "empty_output"
    if finish_reason == "length":
        return "truncated"
    if sorted(PLACEHOLDER_RE.findall(output)) != sorted(PLACEHOLDER_RE.findall(source)):
        return "protected_spans"
    src = PLACEHOLDER_RE.sub(" ", source).strip()
    out = PLACEHOLDER_RE.sub(" ", output).strip()
    if " ".join(out.split()) == " ".join(src.split()) and source_lang != target_lang:
        return "untranslated_copy"
    letters = LETTER_RE.findall(out)
    share = script_share(out, target_lang)
    if share is not None and share < cfg.min_target_script:
        return "target_script"
    if cfg.language_id and len(letters) >= cfg.language_id_min_letters:
        found = detected if detected != "" else detected_languages([out], (source_lang, target_lang))[0]
        if found is not None and found != target_lang:
            return "target_language"
    if len(src) >= cfg.length_ratio_min_chars:
        ratio = len(out) / max(len(src), 1)
        if not cfg.min_length_ratio <= ratio <= cfg.max_length_ratio:
            return "length_ratio"
    if _loops(out, cfg):
        return "repetition"
    return None
