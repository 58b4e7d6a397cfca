"""The language codes hala knows, their names, and the checks every config makes of them.

A language is an ISO 639-1 code everywhere (`en`, `ar`); its English name is what a prompt says
("Translate everything that follows into Arabic"). A code outside `LANGUAGE_NAMES` is refused when
the config is read, not when the first prompt is rendered hours into a run.
"""

from __future__ import annotations

LANGUAGE_NAMES = {
    "ar": "Arabic", "en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian",
    "pt": "Portuguese", "tr": "Turkish", "fa": "Persian", "ur": "Urdu", "he": "Hebrew", "ru": "Russian",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "hi": "Hindi", "id": "Indonesian", "sw": "Swahili",
}  # fmt: skip


def language_name(code: str) -> str:
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {code!r}; known: {', '.join(sorted(LANGUAGE_NAMES))}")
    return LANGUAGE_NAMES[code]


def check_language_pair(src_lang: str, tgt_lang: str) -> None:
    """A config's two languages: both known and not the same, else ValueError."""
    language_name(src_lang), language_name(tgt_lang)
    if src_lang == tgt_lang:
        raise ValueError(f"src_lang and tgt_lang are both {src_lang!r}")


def parse_direction(direction: str) -> tuple[str, str]:
    """`SRC-TGT` as (SRC, TGT), two known and different languages, else ValueError."""
    src, sep, tgt = direction.partition("-")
    if not sep or not src or not tgt or src == tgt:
        raise ValueError(f"direction {direction!r} should be SRC-TGT, e.g. en-ar")
    language_name(src), language_name(tgt)
    return src, tgt
