"""The paper's source filters: which rows of an English instruction set are translated at all.

The paper translates "Tulu-3 SFT mixture (English subsets)" and "Hermes-3 (code samples removed)"
without saying how either was chosen. These are our rules, named so a recipe can ask for them per
input (`translate.source_filters: {INPUT: [NAME, ...]}`) and a run counts what each removed: a
conversation a source filter turns down goes to `rejected/` as `source_<name>` with its reason, and
the manifest counts it as `rejected_source_<name>`. Each is a filter of the one shape
(`hala.text.filters`), over conversations.

`tulu3_english`: the Tulu-3 SFT mixture (allenai/tulu-3-sft-mixture) names each row's subset in
its `source` column. Its card lists 18 source datasets; by their own cards:
- Aya (CohereForAI/aya_dataset) is multilingual by construction: every row is dropped;
- WildChat (allenai/WildChat-1M) and OpenAssistant (OpenAssistant/oasst1) are real users in many
  languages: a row is kept when its user turns are English (by script first: mostly non-Latin
  letters are not English; then lingua among English and the Latin-script languages common there);
- the others (CoCoNot, FLAN v2, No Robots, the Tulu-3 persona sets, NuminaMath-TIR, WildGuardMix,
  WildJailbreak, the hard-coded set, Table-GPT, SciRIFF, Evol-CodeAlpaca) are English: kept;
- a `source` we don't know is dropped, naming it: a subset added upstream is not translated
  unread.

`no_code`: Hermes-3 (NousResearch/Hermes-3-Dataset) carries no column that marks code, so a
conversation counts as a code sample when any turn holds a fenced block (``` or ~~~), or when at
least `CODE_LINES` of a turn's lines look like code (a line ending in `{`, `}` or `;`, or starting
with a keyword of a common language: `def `, `class `, `import `, `#include`, `function `,
`public `, `SELECT `). A sentence that mentions `print()` in backticks is not code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hala.data.records import Conversation
from hala.text.filters import BatchRule, Filter, Rule
from hala.text.language_id import detected_languages
from hala.text.patterns import letters
from hala.text.scripts import script_share

TULU3_MULTILINGUAL = ("aya",)
TULU3_MIXED = ("wildchat", "oasst")
TULU3_ENGLISH = (
    "coconot", "flan_v2", "no_robots", "personahub", "personas", "numinamath", "wildguardmix",
    "wildjailbreak", "hard_coded", "table_gpt", "sciriff", "evol_codealpaca",
)  # fmt: skip
LATIN_LANGUAGES = ("en", "es", "fr", "de", "pt", "it", "nl", "tr", "id", "vi", "pl")
MIN_LETTERS = 12  # fewer letters than this in the user turns: too short to tell, kept

FENCE_RE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)
CODE_LINE_RE = re.compile(
    r"^\s*(def |class |import |from \S+ import |#include|function |public |private |SELECT |const |let |var )"
    r"|[{};]\s*$"
)
CODE_LINES = 3


def _user_text(conv: Conversation) -> str:
    return "\n".join(m.content for m in conv.messages if m.role == "user")


def _subset(source: str, names: tuple[str, ...]) -> bool:
    low = source.lower()
    return any(name in low for name in names)


def _tulu3_english(convs: Sequence[Conversation]) -> list[str | None]:
    reasons: list[str | None] = [None] * len(convs)
    ask: list[int] = []
    for i, conv in enumerate(convs):
        source = conv.source or ""
        if _subset(source, TULU3_MULTILINGUAL):
            reasons[i] = f"source {source!r} is Tulu-3's multilingual Aya subset"
        elif _subset(source, TULU3_MIXED):
            ask.append(i)
        elif not _subset(source, TULU3_ENGLISH):
            reasons[i] = f"source {source!r} is not one of Tulu-3's known English subsets"
    texts = [_user_text(convs[i]) for i in ask]
    latin = [_latin_share(t) for t in texts]
    to_lingua = [k for k, share in enumerate(latin) if share is not None and share >= 0.5]
    found = dict(zip(to_lingua, detected_languages([texts[k] for k in to_lingua], LATIN_LANGUAGES)))
    for k, i in enumerate(ask):
        source = convs[i].source
        if latin[k] is None:
            continue
        if latin[k] < 0.5:
            reasons[i] = f"source {source!r} (mixed languages): its user turns are mostly not in Latin script"
        elif found.get(k) not in (None, "en"):
            reasons[i] = f"source {source!r} (mixed languages): its user turns are {found[k]}, not English"
    return reasons


def _latin_share(text: str) -> float | None:
    """The share of the letters in Latin script (`hala.text.scripts`); None: too short to tell."""
    return script_share(text, "en") if len(letters(text)) >= MIN_LETTERS else None


def _code(conv: Conversation) -> str | None:
    for i, message in enumerate(conv.messages):
        if FENCE_RE.search(message.content):
            return f"message {i} ({message.role}) holds a fenced code block"
        lines = sum(1 for line in message.content.splitlines() if CODE_LINE_RE.search(line))
        if lines >= CODE_LINES:
            return f"message {i} ({message.role}) has {lines} lines that look like code"
    return None


SOURCE_FILTERS: dict[str, Filter] = {
    "tulu3_english": BatchRule("source_tulu3_english", _tulu3_english),
    "no_code": Rule("source_no_code", _code),
}


def source_filters(names: list[str]) -> list[Filter]:
    """The filters named, in order; ValueError naming the valid ones for a name we don't have."""
    unknown = [n for n in names if n not in SOURCE_FILTERS]
    if unknown:
        raise ValueError(f"unknown source filter {unknown[0]!r}; valid: {', '.join(SOURCE_FILTERS)}")
    return [SOURCE_FILTERS[n] for n in names]
