"""The patterns several stages read text with: letters, URLs, code and math, translate's placeholders.

A letter is any Unicode letter, not a digit or an underscore: scripts are judged on letters only,
because digits and punctuation (the Arabic comma included) say nothing about the language.

A URL has two patterns, for two jobs. `URL_RE` finds a URL to remove it or compare it: it runs to
the next space or quote, and a caller strips what may trail it (`URL_TRAILING`). `URL_SPAN` is the
exact extent translate protects from the model: balanced parentheses are part of it (a Wikipedia
link), trailing punctuation is not (it belongs to the sentence, which is translated).

Code and math are not prose: translate never sends them to the model (`hala.translate.segment`)
and the defect checks never read them (`hala.text.defects`), by the same patterns. `BLOCK_RE` finds
the regions that span lines (fenced code to its closing fence, or to the end; display math on lines
of its own); `INLINE_CODE`, `INLINE_MATH`, `EMAIL` and `HTML_TAG` are pieces of one line.
"""

from __future__ import annotations

import re

LETTER_RE = re.compile(r"[^\W\d_]")
_NOT_LETTERS_RE = re.compile(r"[\W\d_]+")  # LETTER_RE's complement, a run at a time
URL_RE = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\"،؛؟"
URL_SPAN = (
    r"(?:(?:https?|ftp)://|www\.)(?:\([^\s<>()]*\)|[^\s<>()\[\]])*"
    r"(?:\([^\s<>()]*\)|[^\s<>()\[\].,;:!?'\"])"
)
INLINE_CODE_RE = re.compile(r"`[^`\n]*`")
CODE_BLOCK = (
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*\n(?:.*?\n)??[ \t]*(?P=fence)[ \t]*\r?$"
    r"|^[ \t]*(?:`{3,}|~{3,})[^\n]*(?:\n.*)?\Z"
)
DISPLAY_MATH = r"\$\$(?:(?!\n[ \t]*\r?\n).)+?\$\$|\\\[(?:(?!\n[ \t]*\r?\n).)+?\\\]"  # never across a blank line
BLOCK_RE = re.compile(f"{CODE_BLOCK}|{DISPLAY_MATH}", re.DOTALL | re.MULTILINE)
INLINE_CODE = r"`+[^`\n]+?`+"
INLINE_MATH = r"\\\(.+?\\\)|\$(?=\S)[^$\n]*?(?<=\S)\$"  # \( .. \), and $..$ without inner padding
EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
HTML_TAG = r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"


def letters(text: str) -> str:
    """The letters of `text`, in order: `"".join(LETTER_RE.findall(text))`, without a string per letter."""
    return _NOT_LETTERS_RE.sub("", text)


# translate replaces each protected span (code, URLs, placeholders) of a segment by one of these
PLACEHOLDER = "⟦{}⟧"
PLACEHOLDER_RE = re.compile(r"⟦(\d+)⟧")
