"""The translator's training data: one prompt-completion row per pair and direction.

Rows are TRL's conversational prompt-completion format, so `hala train` gives them completion-only
loss:

    {"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\\n\\n" + en}],
     "completion": [{"role": "assistant", "content": ar}]}

The prompt is the paper's (`translate.prompts.PAPER_TEMPLATE`, the one the translate stage sends
at inference); the reverse direction names the other language ("...into English"). Which
directions are written is a setting: the paper trains EN->AR only.
"""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from hala.config import StrictModel
from hala.data.records import ParallelPair
from hala.translate.prompts import PAPER_TEMPLATE, language_name, render

TEMPLATE_FIELDS = {"language", "source_language", "text"}


class SftConfig(StrictModel):
    directions: list[str] = Field(
        default_factory=lambda: ["en-ar"], description='e.g. ["en-ar", "ar-en"]; [] writes no sft/'
    )
    template: str = Field(PAPER_TEMPLATE, description="uses {language} (target name), {source_language} and {text}")

    @field_validator("directions")
    @classmethod
    def _directions(cls, value: list[str]) -> list[str]:
        for direction in value:
            src, sep, tgt = direction.partition("-")
            if not sep or not src or not tgt or src == tgt:
                raise ValueError(f"direction {direction!r} should be SRC-TGT, e.g. en-ar")
            language_name(src), language_name(tgt)
        if len(set(value)) != len(value):
            raise ValueError(f"directions repeat: {value}")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
        if "text" not in fields or fields - TEMPLATE_FIELDS:
            allowed, found = ", ".join(sorted(TEMPLATE_FIELDS)), ", ".join(sorted(fields))
            raise ValueError(f"template must use {{text}}, and only {allowed} (found {found})")
        return value


def prompt_completion(pair: ParallelPair, direction: str, template: str = PAPER_TEMPLATE) -> dict:
    """The training row that teaches `direction` (SRC-TGT) with this pair."""
    src_lang, _, tgt_lang = direction.partition("-")
    if (src_lang, tgt_lang) == (pair.src_lang, pair.tgt_lang):
        text, answer = pair.src, pair.tgt
    elif (src_lang, tgt_lang) == (pair.tgt_lang, pair.src_lang):
        text, answer = pair.tgt, pair.src
    else:
        raise ValueError(f"pair {pair.id} is {pair.src_lang}-{pair.tgt_lang}; it can't teach {direction}")
    return {
        "prompt": render(template, text, src_lang, tgt_lang),
        "completion": [{"role": "assistant", "content": answer}],
    }
