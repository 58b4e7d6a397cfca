"""Text keys for deduplication, and what both sides of a pair must agree on (numbers, URLs).

Two pairs are near-duplicates when both sides are equal after normalization, the comparison form
of `hala.text.arabic.normalize_arabic` (the one decontamination uses too). It removes what changes
the bytes of a pair but not what a translator learns from it: Unicode compatibility forms, Arabic
diacritics and tatweel, Arabic letter variants (alef, yaa, taa marbuta, hamza seats), digit
scripts, case, punctuation and whitespace.

Numbers are compared as sets of values: digits in any script, thousands and decimal separators
dropped (`1,000` = `١٬٠٠٠` = `1000`), leading zeros ignored. A number glued to Latin letters
(`3D`, `MP3`, `1st`) is a name or an ordinal, usually written differently in Arabic, so it is not
counted. Digits inside URLs are not numbers; URLs are compared on their own, case-insensitively and
without trailing punctuation or slash.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from hala.text.arabic import normalize_arabic
from hala.text.patterns import URL_RE, URL_TRAILING

# a run of digits (any script) with inner separators, not glued to Latin letters
NUMBER_RE = re.compile(r"(?<![A-Za-z])\d+(?:[.,٫٬]\d+)*(?![A-Za-z\d])")
SEPARATORS_RE = re.compile(r"[.,٫٬]")


normalize = normalize_arabic  # the comparison form of a side (see the module docstring)


def _digest(*parts: str) -> int:
    data = "\x00".join(parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def exact_key(src: str, tgt: str) -> int:
    """Same key for the same text on both sides (outer whitespace ignored)."""
    return _digest(src.strip(), tgt.strip())


def near_key(src: str, tgt: str) -> int:
    """Same key for pairs equal after `normalize` on both sides."""
    return _digest(normalize(src), normalize(tgt))


def urls(text: str) -> frozenset[str]:
    found = set()
    for match in URL_RE.finditer(text):
        url = match.group().rstrip(URL_TRAILING).rstrip("/").casefold()
        found.add(url.split("://", 1)[-1])  # http://x and https://x are the same link
    return frozenset(found)


def numbers(text: str) -> frozenset[str]:
    """The numbers written in digits in `text`, as canonical strings (see the module docstring)."""
    text = URL_RE.sub(" ", text)
    return frozenset(_canonical(SEPARATORS_RE.sub("", m.group())) for m in NUMBER_RE.finditer(text))


def _canonical(digits: str) -> str:
    if not digits.isascii():
        digits = "".join(str(unicodedata.digit(c)) for c in digits)  # any script's digits
    return digits.lstrip("0") or "0"
