"""lingua, the one language detector: every call to it goes through this module.

Detection is restricted to the languages in play (a pair's two, plus any a config adds): lingua
is far more accurate choosing among two languages than among seventy, and a wrong guess outside
them is no use to a filter. Detectors are built once per set of languages and kept (under a lock:
units checked at once in threads, `hala.data.in_order`, would otherwise build one each); lingua's
detector itself is safe to share between threads.

`languages_of` is what translate's QA and the pair filters ask: a text too short to tell is not
judged, one whose letters are all in a script only one of its two languages uses is decided by
script (lingua's own first rule, without lingua), and lingua sees the rest once per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

from hala.text.patterns import letters
from hala.text.scripts import by_script


_BUILDING = threading.Lock()


def _detector(languages: tuple[str, ...]):
    with _BUILDING:
        return _built(languages)


@lru_cache(maxsize=8)
def _built(languages: tuple[str, ...]):
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


def languages_of(
    texts: Sequence[str], pairs: Sequence[tuple[str, str]], min_letters: int, extra: tuple[str, ...] = ()
) -> list[str | None]:
    """The language of each text among its pair's two (source, target) and `extra`; None for a text
    with fewer than `min_letters` letters, or one lingua can't place. With `extra`, every text goes
    to lingua: another language may share a script with one of the two."""
    found: list[str | None] = [None] * len(texts)
    todo: dict[tuple[str, ...], list[int]] = {}
    for i, (text, (source, target)) in enumerate(zip(texts, pairs, strict=True)):
        own = letters(text)
        if len(own) < min_letters:
            continue
        found[i] = None if extra else by_script(own, source, target)  # it reads the letters alone
        if found[i] is None:
            todo.setdefault((source, target, *extra), []).append(i)
    for languages, indices in todo.items():
        for i, lang in zip(indices, detected_languages([texts[i] for i in indices], languages)):
            found[i] = lang
    return found
