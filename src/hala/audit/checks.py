"""The audit's checks: each a filter of the one shape (`hala.text.filters`) over conversations.

A check's verdict for a conversation is None (clean) or `(check, reason)`, where the reason says
where: the turn (`turn 2 (assistant)`) and the text at fault, quoted as «…». Every check looks at
every row (the audit reports all of a row's defects, not its first), and each reads only prose
where code could mislead it (`hala.text.defects.prose`: fenced code, math, inline code, URLs and
e-mails blanked).

- `empty_turn`: a turn with nothing but whitespace;
- `roles`: a conversation opening with an assistant turn, a system turn after the first, two turns
  of one role in a row, or no assistant turn at all;
- `html_tags`, `literal_escapes`: translate's two QA rules, here on any turn (`hala.text.defects`);
- `untranslated`: a user or assistant turn with more than `max_latin_share` of its words (outside
  code, math and URLs; at least `min_words` of them) in Latin script, in a row whose language is
  written in another script (an Arabic corpus; the row's own `lang`, else the config's);
- `digits`: one turn writing numbers in two digit systems (Western 0-9, Arabic-Indic ٠-٩,
  Eastern Arabic-Indic ۰-۹); a word with Latin letters (`COVID-19`, `H2O`) is a name, not a number;
- `repetition`: translate's loop rule (`hala.text.defects.loop`) on each paragraph of a turn (a
  paragraph is about what translate sends as one segment);
- `length`: needs the whole corpus's lengths, so `hala.audit.stage` applies it after the other
  checks (`length_stats`, `length_reason`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from hala.audit.config import AuditConfig
from hala.data.records import Conversation, Message
from hala.text.defects import html_tags, literal_escapes, loop, prose
from hala.text.filters import Filter, Rule
from hala.text.patterns import LETTER_RE
from hala.text.scripts import script_of, script_re, script_share

PARAGRAPH_RE = re.compile(r"\n[ \t]*\r?\n")
DIGIT_SYSTEMS = {"Western": "0-9", "Arabic-Indic": "\u0660-\u0669", "Eastern Arabic-Indic": "\u06f0-\u06f9"}
_DIGIT_RES = {name: re.compile(f"[{chars}]") for name, chars in DIGIT_SYSTEMS.items()}
_LATIN_LETTER_RE = re.compile(r"[A-Za-z]")


def quote(text: str, start: int = 0, end: int | None = None, context: int = 24) -> str:
    """`text[start:end]` with up to `context` characters either side (whole words), on one line, as «…»."""
    end = len(text) if end is None else end
    lead, tail = text[max(0, start - context) : start], text[end : end + context]
    cut_lead, cut_tail = start > context, end + context < len(text)
    if cut_lead and " " in lead:
        lead = lead[lead.index(" ") + 1 :]
    if cut_tail and " " in tail:
        tail = tail[: tail.rindex(" ")]
    inner = " ".join((lead + text[start:end] + tail).split())
    return f"«{'…' if cut_lead else ''}{inner}{'…' if cut_tail else ''}»"


def where(i: int, msg: Message) -> str:
    return f"turn {i} ({msg.role})"


def _empty(conv: Conversation) -> str | None:
    return next((f"{where(i, m)} is empty" for i, m in enumerate(conv.messages) if not m.content.strip()), None)


def _roles(conv: Conversation) -> str | None:
    roles = [m.role for m in conv.messages]
    if roles[0] == "assistant":
        return "turn 0 is an assistant turn, with no system or user turn before it"
    for i in range(1, len(roles)):
        if roles[i] == "system":
            return f"turn {i} is a system turn: only the first turn may be one"
        if roles[i] == roles[i - 1]:
            return f"turns {i - 1} and {i} are both {roles[i]} turns"
    return None if "assistant" in roles else "no assistant turn"


def _markup(find: Callable[[str], list[re.Match]], group: str, what: str, conv: Conversation) -> str | None:
    """The first of `find`'s matches (html_tags, literal_escapes) in the conversation, and how many."""
    hits = [(i, m, found) for i, m in enumerate(conv.messages) for found in find(m.content)]
    if not hits:
        return None
    i, msg, found = hits[0]
    more = f" (and {len(hits) - 1} more in the conversation)" if len(hits) > 1 else ""
    return f"{where(i, msg)}: {what} {found.group(group)}{more}: {quote(found.string, found.start(), found.end())}"


def _untranslated(max_share: float, min_words: int, conv: Conversation) -> str | None:
    if script_of(conv.lang) == "latin":
        return None  # a Latin-script language: untranslated English can't be told from it by script
    for i, msg in enumerate(conv.messages):
        if msg.role == "system":
            continue  # translate may keep system prompts as they were (system_prompts: keep)
        text = prose(msg.content)
        if not script_re("en").search(text):
            continue  # no Latin letter, so no Latin word: the share is 0 (most of a translated corpus)
        words = [w for w in text.split() if LETTER_RE.search(w)]
        if len(words) < min_words:
            continue
        latin = [w for w in words if script_re("en").search(w) and script_share(w, "en") > 0.5]
        share = len(latin) / len(words)
        if share > max_share:
            shown = " ".join(latin[:10]) + (" …" if len(latin) > 10 else "")
            return (f"{where(i, msg)}: {share:.0%} of its {len(words)} words are in Latin script "
                    f"(max_latin_share {max_share:g}): «{shown}»")  # fmt: skip
    return None


def _digits(conv: Conversation) -> str | None:
    for i, msg in enumerate(conv.messages):
        text = prose(msg.content)
        if sum(1 for digit in _DIGIT_RES.values() if digit.search(text)) < 2:
            continue  # numbers in one digit system at most, whichever words write them
        first: dict[str, str] = {}  # digit system -> the first word that writes a number in it
        for word in text.split():
            if _LATIN_LETTER_RE.search(word):
                continue
            for name, digit in _DIGIT_RES.items():
                if name not in first and digit.search(word):
                    first[name] = word
        if len(first) > 1:
            shown = " and ".join(f"{name} «{word}»" for name, word in first.items())
            return f"{where(i, msg)}: numbers in {len(first)} digit systems: {shown}"
    return None


def _repetition(cfg: AuditConfig, conv: Conversation) -> str | None:
    for i, msg in enumerate(conv.messages):
        for paragraph in PARAGRAPH_RE.split(prose(msg.content)):
            found = LETTER_RE.search(paragraph) and loop(
                paragraph, cfg.max_char_run, cfg.max_ngram_repeats, cfg.min_distinct_share
            )
            if found:
                what, why = found
                return f"{where(i, msg)}: {why}: {quote(what, 0, min(len(what), 60), 0)}"
    return None


def checks(cfg: AuditConfig) -> list[Filter]:
    """The checks of `cfg.checks` that look at one conversation at a time, in the order of `CHECKS`
    (`length` is the stage's: it needs the whole corpus)."""
    rules = {
        "empty_turn": _empty,
        "roles": _roles,
        "html_tags": partial(_markup, html_tags, 0, "HTML tag"),
        "literal_escapes": partial(_markup, literal_escapes, "escape", "literal escape"),
        "untranslated": partial(_untranslated, cfg.max_latin_share, cfg.min_words),
        "digits": _digits,
        "repetition": partial(_repetition, cfg),
    }
    return [Rule(name, why) for name, why in rules.items() if name in cfg.checks]


@dataclass(frozen=True)
class LengthStats:
    """The corpus's conversation lengths (characters of all turns): median, MAD, and the limit
    `median + k * MAD` above which one is an outlier (None: too few rows for the rule)."""

    rows: int
    median: float
    mad: float
    k: float
    limit: float | None

    @classmethod
    def of(cls, lengths: Sequence[int], k: float, min_rows: int) -> LengthStats:
        """A MAD of 0 (most rows of one length) counts as 1 character, so the limit stays above the median."""
        if not lengths:
            return cls(0, 0.0, 0.0, k, None)
        median = statistics.median(lengths)
        mad = statistics.median([abs(n - median) for n in lengths])
        limit = median + k * max(mad, 1.0) if len(lengths) >= min_rows else None
        return cls(len(lengths), float(median), float(mad), k, limit)


def length_reason(
    stats: LengthStats, max_turn_chars: int, chars: int, turn: int, role: str, turn_chars: int
) -> str | None:
    """Why a conversation of `chars` characters, whose longest turn is `turn` (`role`, `turn_chars`
    characters), is a length outlier; None when it is not."""
    if turn_chars > max_turn_chars:
        return f"turn {turn} ({role}) has {turn_chars:,} characters (max_turn_chars {max_turn_chars:,})"
    if stats.limit is not None and chars > stats.limit:
        return (f"{chars:,} characters, above the corpus's median {stats.median:,.0f} + {stats.k:g} x MAD "
                f"{stats.mad:,.0f} = {stats.limit:,.0f} (length_mad_k); its longest is turn {turn} ({role}), "
                f"{turn_chars:,}")  # fmt: skip
    return None
