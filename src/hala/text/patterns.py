"""The patterns several stages read text with: letters, URLs, inline code, translate's placeholders.

A letter is any Unicode letter, not a digit or an underscore: scripts are judged on letters only,
because digits and punctuation (the Arabic comma included) say nothing about the language.

A URL has two patterns, for two jobs. `URL_RE` finds a URL to remove it or compare it: it runs to
the next space or quote, and a caller strips what may trail it (`URL_TRAILING`). `URL_SPAN` is the
exact extent translate protects from the model: balanced parentheses are part of it (a Wikipedia
link), trailing punctuation is not (it belongs to the sentence, which is translated).
"""

from __future__ import annotations

import re

LETTER_RE = re.compile(r"[^\W\d_]")
URL_RE = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\"،؛؟"
URL_SPAN = (
    r"(?:(?:https?|ftp)://|www\.)(?:\([^\s<>()]*\)|[^\s<>()\[\]])*"
    r"(?:\([^\s<>()]*\)|[^\s<>()\[\].,;:!?'\"])"
)
INLINE_CODE_RE = re.compile(r"`[^`\n]*`")
# translate replaces each protected span (code, URLs, placeholders) of a segment by one of these
PLACEHOLDER = "⟦{}⟧"
PLACEHOLDER_RE = re.compile(r"⟦(\d+)⟧")
