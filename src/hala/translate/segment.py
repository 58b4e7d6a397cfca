"""Split a message into translatable segments, and join translations back, exactly.

Translation models do best on paragraph-sized text and worst on code, math and markup, which they
"translate" into garbage. So a message is cut into a *template* of literal pieces (kept byte for
byte) and *segments* (sent to the model):

- fenced code blocks and multi-line display math are literal;
- blank-line runs, markdown structure (list markers, headings, quote markers, table pipes and
  separator rows) and the whitespace around each segment are literal;
- consecutive prose lines form one segment; each list item, heading, quote line and table cell is
  its own segment;
- inside a segment, protected spans (inline code, inline LaTeX, URLs, e-mail addresses, HTML tags,
  template placeholders like `{name}` and `%s`) are replaced by numbered placeholders `⟦0⟧`, `⟦1⟧`,
  ... and restored after translation; a translation that loses or alters one is rejected (the
  placeholder and the URL span are in `hala.text.patterns`: other stages read text with them too);
- a segment over the token budget (counted on the text sent, placeholders included) is split at
  sentence boundaries, then at spaces (unless `cut_words` is off: the retry ladder re-splits a
  segment at its sentences only), never inside a protected span; the whitespace between the
  pieces is literal.

Everything here is pure and exact: `join(split(text), [s.source for s in segments]) == text` for
every string, which the property tests check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from hala.text.patterns import (
    BLOCK_RE,
    EMAIL,
    HTML_TAG,
    INLINE_CODE,
    INLINE_MATH,
    LETTER_RE,
    PLACEHOLDER,
    PLACEHOLDER_RE,
    URL_SPAN,
)

# the multi-line regions that are never sent (fenced code, display math) are `BLOCK_RE`; these are
# the inline protected spans, tried in this order
INLINE_RE = re.compile(
    "|".join(
        [
            INLINE_CODE,
            INLINE_MATH,  # \( .. \), and $..$ without inner padding (so "$5 and $10" is prose)
            URL_SPAN,  # balanced parentheses in, trailing punctuation out
            EMAIL,
            HTML_TAG,
            r"\{\{[^{}\n]*\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}",  # {{jinja}}, {name}
            r"%(?:\([A-Za-z_]+\))?[-+#0]*\d*(?:\.\d+)?[sdifrx](?![A-Za-z])",  # %s, %(name)s, %5.2f
            r"⟦\d+⟧",  # text that already looks like our placeholder must come back unchanged
        ]
    )
)
STRUCTURE_RE = re.compile(r"^(?P<prefix>[ \t]*(?:[-*+][ \t]+|\d{1,3}[.)][ \t]+|#{1,6}[ \t]+|>[ \t]?)+)")
TABLE_ROW_RE = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
SENTENCE_END_RE = re.compile(r"(?:(?<=[.!?؟。])|(?<=[.!?؟。][\"')\]]))\s+")
SPACE_RE = re.compile(r"\s+")


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (~4 characters per token) used when no tokenizer is given."""
    return len(text) // 4 + 1


@dataclass(frozen=True)
class Segment:
    """Text sent to the model (`text`, with placeholders) and the spans those placeholders hold."""

    text: str
    spans: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """The original text of this segment."""
        return restore(self.text, self.spans)


@dataclass(frozen=True)
class Split:
    """A message as literal pieces (str) and segment slots (int index into `segments`)."""

    parts: tuple[str | int, ...]
    segments: tuple[Segment, ...]


class PlaceholderError(ValueError):
    """A translation lost, duplicated or invented a placeholder."""


def restore(text: str, spans: tuple[str, ...]) -> str:
    """Put the protected spans back; every placeholder must appear exactly once."""
    if not spans and "⟦" not in text:
        return text  # no span, and no placeholder (most segments)
    found = [int(m) for m in PLACEHOLDER_RE.findall(text)]
    if sorted(found) != list(range(len(spans))):
        missing = sorted(set(range(len(spans))) - set(found))
        extra = sorted(i for i in set(found) if found.count(i) > 1 or i >= len(spans))
        raise PlaceholderError(f"placeholders missing {missing}, duplicated or unknown {extra}")
    return PLACEHOLDER_RE.sub(lambda m: spans[int(m.group(1))], text)


def join(split_: Split, texts: list[str]) -> str:
    """The message with segment `i` replaced by `texts[i]` (already restored)."""
    if len(texts) != len(split_.segments):
        raise ValueError(f"{len(split_.segments)} segments but {len(texts)} texts")
    return "".join(texts[p] if isinstance(p, int) else p for p in split_.parts)


def split_at_spans(seg: Segment) -> Split:
    """`seg` cut at its protected spans: each run of text between them becomes a segment of its own
    (without placeholders) and the spans stay literal, so no translation can lose one."""
    parts: list[str | int] = []
    segments: list[Segment] = []
    for i, piece in enumerate(PLACEHOLDER_RE.split(seg.text)):  # text, index, text, ..., text
        if i % 2:
            parts.append(seg.spans[int(piece)])
            continue
        core = piece.strip()
        if not LETTER_RE.search(core):
            parts.append(piece)  # nothing to translate between two spans
            continue
        lead, trail = piece[: len(piece) - len(piece.lstrip())], piece[len(piece.rstrip()) :]
        parts += [lead, len(segments), trail]
        segments.append(Segment(core))
    return Split(tuple(p for p in parts if p != ""), tuple(segments))


def replace_segment(split_: Split, index: int, sub: Split) -> Split:
    """`split_` with its segment `index` replaced by the parts and segments of `sub`."""
    parts: list[str | int] = []
    for part in split_.parts:
        if isinstance(part, str):
            parts.append(part)
        elif part < index:
            parts.append(part)
        elif part == index:
            parts += [p if isinstance(p, str) else index + p for p in sub.parts]
        else:
            parts.append(part + len(sub.segments) - 1)
    segments = split_.segments[:index] + sub.segments + split_.segments[index + 1 :]
    return Split(tuple(parts), segments)


class _Builder:
    def __init__(self, max_tokens: int, count: Callable[[str], int], cuts: tuple[re.Pattern, ...]):
        self.parts: list[str | int] = []
        self.segments: list[Segment] = []
        self.max_tokens, self.count, self.cuts = max_tokens, count, cuts

    def literal(self, text: str) -> None:
        if not text:
            return
        if self.parts and isinstance(self.parts[-1], str):
            self.parts[-1] += text
        else:
            self.parts.append(text)

    def segment(self, text: str) -> None:
        """Protect inline spans in `text`; keep surrounding whitespace literal; split if too long."""
        core = text.strip()
        if not core:
            self.literal(text)
            return
        self.literal(text[: len(text) - len(text.lstrip())])
        spans: list[str] = []

        def hold(match: re.Match) -> str:
            spans.append(match.group(0))
            return PLACEHOLDER.format(len(spans) - 1)

        # mask first, then cut: a budget cut can never fall inside a protected span
        masked = INLINE_RE.sub(hold, core)
        for i, piece in enumerate(_fit(masked, self.max_tokens, self.count, self.cuts)):
            if i % 2:  # the whitespace between pieces
                self.literal(piece)
            else:
                self._piece(piece, spans)
        self.literal(text[len(text.rstrip()) :])

    def _piece(self, masked: str, spans: list[str]) -> None:
        """One piece of a masked segment, its placeholders renumbered from 0."""
        own: list[str] = []

        def renumber(match: re.Match) -> str:
            own.append(spans[int(match.group(1))])
            return PLACEHOLDER.format(len(own) - 1)

        text = PLACEHOLDER_RE.sub(renumber, masked)
        if not LETTER_RE.search(PLACEHOLDER_RE.sub("", text)):
            self.literal(restore(text, tuple(own)))  # nothing to translate: code, numbers, punctuation
            return
        self.parts.append(len(self.segments))
        self.segments.append(Segment(text, tuple(own)))


def _fit(text: str, max_tokens: int, count: Callable[[str], int], patterns: tuple[re.Pattern, ...]) -> list[str]:
    """[piece, gap, piece, ...]: packed at the first pattern's cuts, longer pieces at the next ones."""
    if count(text) <= max_tokens or not patterns:
        return [text]
    out: list[str] = []
    for i, piece in enumerate(_pack(text, patterns[0], max_tokens, count)):
        out.extend([piece] if i % 2 else _fit(piece, max_tokens, count, patterns[1:]))
    return out


def _pack(text: str, pattern: re.Pattern, max_tokens: int, count: Callable[[str], int]) -> list[str]:
    """Greedily join the atoms between `pattern`'s matches into pieces within the budget."""
    atoms = pattern.split(text) if pattern.groups else _split_keep(text, pattern)
    out: list[str] = []
    current = atoms[0]
    for gap, atom in zip(atoms[1::2], atoms[2::2]):
        candidate = current + gap + atom
        if count(candidate) <= max_tokens:
            current = candidate
        else:
            out += [current, gap]
            current = atom
    out.append(current)
    return out


def _split_keep(text: str, pattern: re.Pattern) -> list[str]:
    """[atom, gap, atom, ...] (re.split without a capture group drops the gaps)."""
    out, pos = [], 0
    for m in pattern.finditer(text):
        out += [text[pos : m.start()], m.group(0)]
        pos = m.end()
    out.append(text[pos:])
    return out


def split(
    text: str, max_tokens: int = 512, count: Callable[[str], int] = approx_tokens, cut_words: bool = True
) -> Split:
    """Cut one message into literal pieces and segments (see the module docstring). With
    `cut_words` off, a sentence over the budget stays one segment."""
    builder = _Builder(max_tokens, count, (SENTENCE_END_RE, SPACE_RE) if cut_words else (SENTENCE_END_RE,))
    pos = 0
    for block in BLOCK_RE.finditer(text):
        _prose(text[pos : block.start()], builder)
        builder.literal(block.group(0))
        pos = block.end()
    _prose(text[pos:], builder)
    return Split(tuple(builder.parts), tuple(builder.segments))


def _prose(text: str, builder: _Builder) -> None:
    """Line by line: consecutive plain lines form one segment; structured lines stand alone."""
    run: list[str] = []  # plain lines (with their newlines) waiting to become one segment

    def flush() -> None:
        if run:
            builder.segment("".join(run))
            run.clear()

    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        newline = line[len(body) :]
        if not body.strip():
            flush()
            builder.literal(line)
        elif TABLE_ROW_RE.match(body):
            flush()
            _table_row(body, builder)
            builder.literal(newline)
        elif m := STRUCTURE_RE.match(body):
            flush()
            builder.literal(m.group("prefix"))
            builder.segment(body[m.end() :])
            builder.literal(newline)
        else:
            run.append(line)
    flush()


def _table_row(row: str, builder: _Builder) -> None:
    cells = re.split(r"(?<!\\)(\|)", row)
    for cell in cells:
        if cell == "|":
            builder.literal(cell)
        else:
            builder.segment(cell)
