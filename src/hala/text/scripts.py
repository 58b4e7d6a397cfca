"""Which script each language is written in, and how much of a text is in it.

The script is the cheapest sign of a language, and the surest where the two languages in play
are written differently (English and Arabic): translate's QA (`target_script`), the pair filters
(`language`) and the judge's script gate all read it here. Letters alone are counted
(`patterns.LETTER_RE`), and a text is first stripped of what says nothing about its language
(`language_text`: URLs, inline code, placeholders).
"""

from __future__ import annotations

import re
from functools import lru_cache

from hala.text.patterns import INLINE_CODE_RE, PLACEHOLDER_RE, URL_RE, letters

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
SCRIPT_NAMES = {"arabic": "Arabic", "latin": "Latin", "cyrillic": "Cyrillic", "hebrew": "Hebrew",
                "devanagari": "Devanagari", "cjk": "CJK"}  # fmt: skip


def script_of(lang: str) -> str:
    return LANGUAGE_SCRIPT.get(lang, "latin")


@lru_cache(maxsize=32)
def script_re(lang: str) -> re.Pattern:
    """One letter of `lang`'s script."""
    return re.compile(f"[{SCRIPTS[script_of(lang)]}]")


@lru_cache(maxsize=32)
def _outside_re(lang: str) -> re.Pattern:
    """A run of characters not in `lang`'s script."""
    return re.compile(f"[^{SCRIPTS[script_of(lang)]}]+")


def script_share(text: str, lang: str) -> float | None:
    """The share of `text`'s letters in `lang`'s script (None: no letters). Digits and punctuation
    are not letters; an Arabic comma is in the Arabic block, so letters alone are counted."""
    found = letters(text)
    if not found:
        return None
    return len(_outside_re(lang).sub("", found)) / len(found)


def same_script(source_lang: str, target_lang: str) -> bool:
    return script_of(source_lang) == script_of(target_lang)


def by_script(text: str, source_lang: str, target_lang: str) -> str | None:
    """The answer lingua's own first rule gives: when every letter is in a script that only one of
    the languages in play uses, that language (lingua is then not asked, which saves ~50 us)."""
    if same_script(source_lang, target_lang):
        return None
    found = letters(text)  # letters only: Arabic punctuation is in the Arabic block too
    for lang in (target_lang, source_lang):
        if not _outside_re(lang).search(found):
            return lang
    return None


def language_text(text: str) -> str:
    """`text` without what says nothing about its language: URLs, inline code, placeholders."""
    return PLACEHOLDER_RE.sub(" ", INLINE_CODE_RE.sub(" ", URL_RE.sub(" ", text)))
