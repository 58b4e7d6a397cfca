"""Text keys for deduplication, and what both sides of a pair must agree on (numbers, URLs).

Two pairs are near-duplicates when both sides are equal after normalization. Normalization
removes what changes the bytes of a pair but not what a translator learns from it:

- Unicode compatibility forms (NFKC: Arabic presentation forms, full-width Latin, ligatures);
- Arabic diacritics (harakat, tanween, shadda, sukun, superscript alef, Quranic marks) and tatweel;
- Arabic letter variants: alef with hamza or madda and alef wasla -> alef, alef maqsura and Farsi
  yeh -> yaa, taa marbuta -> haa, Farsi keheh -> kaf (the common Arabic IR folding);
- Arabic-Indic and Extended Arabic-Indic digits -> ASCII digits;
- case (casefold), punctuation and symbols, and whitespace (runs become one space).

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

from hala.text.patterns import URL_RE, URL_TRAILING

ARABIC_MARKS_RE = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # diacritics + tatweel
ARABIC_FOLD = str.maketrans(
    {"\u0623": "\u0627", "\u0625": "\u0627", "\u0622": "\u0627", "\u0671": "\u0627",  # أ إ آ ٱ -> ا
     "\u0649": "\u064a", "\u06cc": "\u064a",  # ى ی -> ي
     "\u0629": "\u0647",  # ة -> ه
     "\u06a9": "\u0643"}  # ک -> ك
)  # fmt: skip
ARABIC_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "0123456789" * 2)
NON_WORD_RE = re.compile(r"[\W_]+")

# a run of digits (any script) with inner separators, not glued to Latin letters
NUMBER_RE = re.compile(r"(?<![A-Za-z])\d+(?:[.,٫٬]\d+)*(?![A-Za-z\d])")
SEPARATORS_RE = re.compile(r"[.,٫٬]")


def normalize(text: str) -> str:
    """The comparison form of `text` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = ARABIC_MARKS_RE.sub("", text).translate(ARABIC_FOLD).translate(ARABIC_DIGITS).casefold()
    return NON_WORD_RE.sub(" ", text).strip()


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
