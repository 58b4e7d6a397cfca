"""The judge's prompt and the reading of its answers.

The paper judged OPUS-100 with Qwen2.5-3B-Instruct as a "strict bilingual judge" answering ACCEPT
or REJECT, but did not publish the prompt. `JUDGE_PROMPT` is ours: the pair in labelled blocks, the
reasons to reject spelled out, the one-word answer asked for last (small models follow the last
instruction best).

Reading the answer is strict where it matters: a verdict counts only if it is unambiguous.

- the verdict word (ACCEPT/ACCEPTED, REJECT/REJECTED, any case) must open the answer, after
  optional markdown (`**`, backticks, `#`, `>`), quotes, brackets, list markers and a label such as
  `Answer:` or `Verdict:`; or stand alone on a line of its own (explanation first, verdict last);
- anything may follow it (punctuation, a short explanation);
- an answer naming both verdicts anywhere (`ACCEPT or REJECT`, `REJECT. I can't accept it`), or
  neither, or not opening with one (`I would accept`, `Not ACCEPT`) is `unparseable`.

`unparseable` is counted and treated as a rejection: it never becomes ACCEPT.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from hala.data.records import ParallelPair
from hala.engines.base import Chat
from hala.text.languages import language_name
from hala.text.prompts import check_template_fields

PAPER_JUDGE_MODEL = "Qwen/Qwen2.5-3B-Instruct"
ACCEPT, REJECT, UNPARSEABLE = "accept", "reject", "unparseable"
VERDICTS = (ACCEPT, REJECT, UNPARSEABLE)

# ours: the paper's prompt is not published
JUDGE_PROMPT = """You are a strict bilingual judge of {source_language}-{target_language} translation pairs.

<{source_language}>
{src}
</{source_language}>

<{target_language}>
{tgt}
</{target_language}>

Is the {target_language} text a complete, faithful and fluent translation of the {source_language} text?
Answer REJECT if the meaning differs; if anything is added, missing or left untranslated; if either text is in the wrong language, cut off or garbled; or if numbers, names or links differ.
Answer ACCEPT only if none of these problems is present.

Answer with one word: ACCEPT or REJECT."""
PROMPT_FIELDS = frozenset({"source_language", "target_language", "src", "tgt"})

MARKUP = str.maketrans("", "", "*_`#>~\"'“”‘’«»[](){}|")
WORD_RE = re.compile(r"\b(accept|reject)(?:ed)?\b", re.IGNORECASE)
LEAD_RE = re.compile(r"^[\W\d_]+")
TRAIL_RE = re.compile(r"[\W\d_]+$")
LABEL_RE = re.compile(
    r"^(?:final\s+)?(?:answer|verdict|decision|judge?ment|output|result|label)(?:\s+is)?\s*[:=\-–—]?\s*", re.IGNORECASE
)


def check_template(template: str) -> str:
    """`template` if it names {src} and {tgt} and no field but PROMPT_FIELDS, else ValueError."""
    required = frozenset({"src", "tgt"})
    return check_template_fields(template, allowed=PROMPT_FIELDS, required=required, what="judge prompt")


JudgePrompt = Annotated[str, AfterValidator(check_template)]  # a config field holding a judge prompt


def render_judge(template: str, pair: ParallelPair, system: str | None = None) -> Chat:
    content = template.format(
        source_language=language_name(pair.src_lang), target_language=language_name(pair.tgt_lang),
        src=pair.src, tgt=pair.tgt,
    )  # fmt: skip
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]


def _bare(line: str) -> str:
    """A line without markup, leading list markers or punctuation, and a leading label."""
    line = LEAD_RE.sub("", line.translate(MARKUP))
    return LEAD_RE.sub("", LABEL_RE.sub("", line)).strip()


def parse_verdict(answer: str) -> str:
    """`accept`, `reject` or `unparseable` (see the module docstring)."""
    kinds = {m.group(1).lower() for m in WORD_RE.finditer(answer)}
    if len(kinds) != 1:
        return UNPARSEABLE
    kind = kinds.pop()
    lines = [bare for line in answer.splitlines() if (bare := _bare(line))]
    if not lines:
        return UNPARSEABLE
    if WORD_RE.match(lines[0]) or any(WORD_RE.fullmatch(TRAIL_RE.sub("", line)) for line in lines):
        return kind
    return UNPARSEABLE
