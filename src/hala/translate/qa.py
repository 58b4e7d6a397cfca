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
from functools import lru_cache

from pydantic import Field

from hala.config import StrictModel
from hala.translate.segment import PLACEHOLDER_RE

SCRIPTS = {
    "arabic": "\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff",
    "latin": "A-Za-z\u00c0-\u024f",
    "cyrillic": "\u0400-\u04ff",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "cjk": "\u3040-\u30ff\u4e00-\u9fff\uac00-\ud7af",
}
LANGUAGE_SCRIPT = {
    "ar": "arabic", "fa": "arabic", "ur": "arabic", "he": "hebrew", "ru": "cyrillic", "hi": "devanagari",
    "zh": "cjk", "ja": "cjk", "ko": "cjk",
}  # fmt: skip  (every other known language: latin)
FILTERS = (
    "empty_output", "truncated", "protected_spans", "untranslated_copy",
    "target_script", "target_language", "length_ratio", "repetition",
)  # fmt: skip
LETTER_RE = re.compile(r"[^\W\d_]")
INLINE_CODE_RE = re.compile(r"`[^`\n]*`")


class QAConfig(StrictModel):
    min_target_script: float = Field(0.6, ge=0, le=1, description="share of letters in the target script")
    language_id: bool = True
    language_id_min_letters: int = Field(12, ge=0, description="shorter outputs skip language ID")
    min_length_ratio: float = Field(0.3, ge=0)
    max_length_ratio: float = Field(3.0, gt=0)
    length_ratio_min_chars: int = Field(20, ge=0, description="shorter sources skip the length check")
    max_ngram_repeats: int = Field(4, ge=1, description="max times one word 4-gram may repeat")
    max_char_run: int = Field(30, ge=2)


@lru_cache(maxsize=32)
def _script_re(lang: str) -> re.Pattern:
    return re.compile(f"[{SCRIPTS[LANGUAGE_SCRIPT.get(lang, 'latin')]}]")


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in languages]
    return LanguageDetectorBuilder.from_languages(*langs).build()


def detected_languages(texts: list[str], languages: tuple[str, ...]) -> list[str | None]:
    """ISO 639-1 code lingua picks among `languages` for each text (None: can't tell), in parallel."""
    if not texts:
        return []
    found = _detector(tuple(sorted(set(languages)))).detect_languages_in_parallel_of(texts)
    return [f.iso_code_639_1.name.lower() if f is not None else None for f in found]


def script_share(text: str, lang: str) -> float | None:
    """The share of `text`'s letters in `lang`'s script (None: no letters). Digits and punctuation
    are not letters; an Arabic comma is in the Arabic block, so letters alone are counted."""
    letters = LETTER_RE.findall(text)
    if not letters:
        return None
    return sum(1 for letter in letters if _script_re(lang).match(letter)) / len(letters)


def language_text(text: str) -> str:
    """`text` without what says nothing about its language: URLs, inline code, placeholders."""
    from hala.pairs.normalize import URL_RE

    return PLACEHOLDER_RE.sub(" ", INLINE_CODE_RE.sub(" ", URL_RE.sub(" ", text)))


def same_script(source_lang: str, target_lang: str) -> bool:
    return LANGUAGE_SCRIPT.get(source_lang, "latin") == LANGUAGE_SCRIPT.get(target_lang, "latin")


def _loops(text: str, cfg: QAConfig) -> bool:
    if re.search(r"(.)\1{%d,}" % (cfg.max_char_run - 1), text):
        return True
    words = text.split()
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    return bool(grams) and max(grams.values()) > cfg.max_ngram_repeats


def _by_script(text: str, source_lang: str, target_lang: str) -> str | None:
    """The answer lingua's own first rule gives: when every letter is in a script that only one of
    the languages in play uses, that language (lingua is then not asked, which saves ~50 us)."""
    if same_script(source_lang, target_lang):
        return None
    letters = "".join(LETTER_RE.findall(text))  # letters only: Arabic punctuation is in the Arabic block too
    for lang in (target_lang, source_lang):
        if len(_script_re(lang).findall(letters)) == len(letters):
            return lang
    return None


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
            known = _by_script(text, source_lang, target_lang)
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
