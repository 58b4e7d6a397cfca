"""lingua, the one language detector: every call to it goes through this module.

Detection is restricted to the languages in play (a pair's two, plus any a config adds): lingua
is far more accurate choosing among two languages than among seventy, and a wrong guess outside
them is no use to a filter. Detectors are built once per set of languages and kept.
"""

from __future__ import annotations

from functools import lru_cache


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


def known_to_lingua(codes: list[str]) -> list[str]:
    """`codes` if lingua knows each one (a config validator), else ValueError naming the first it doesn't."""
    from lingua import IsoCode639_1

    for code in codes:
        try:
            IsoCode639_1.from_str(code)
        except ValueError:
            raise ValueError(f"{code!r} is not an ISO 639-1 code lingua knows (e.g. fr, fa, ur)") from None
    return codes
