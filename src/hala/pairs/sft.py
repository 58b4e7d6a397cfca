"""The translator's training data: one prompt-completion row per pair and direction.

Rows are TRL's conversational prompt-completion format, so `hala train` gives them completion-only
loss:

    {"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\\n\\n" + en}],
     "completion": [{"role": "assistant", "content": ar}]}

The prompt is the paper's (`hala.text.prompts.PAPER_TEMPLATE`, the one the translate stage sends
at inference); the reverse direction names the other language ("...into English"). Which
directions are written is a setting: the paper trains EN->AR only.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from hala.config import StrictModel
from hala.data.records import ParallelPair
from hala.text.languages import parse_direction
from hala.text.prompts import PAPER_TEMPLATE, TranslatorPrompt, render


class SftConfig(StrictModel):
    directions: list[str] = Field(
        default_factory=lambda: ["en-ar"], description='e.g. ["en-ar", "ar-en"]; [] writes no sft/'
    )
    template: TranslatorPrompt = Field(
        PAPER_TEMPLATE, description="uses {language} (target name), {source_language} and {text}"
    )

    @field_validator("directions")
    @classmethod
    def _directions(cls, value: list[str]) -> list[str]:
        for direction in value:
            parse_direction(direction)
        if len(set(value)) != len(value):
            raise ValueError(f"directions repeat: {value}")
        return value


def prompt_completion(pair: ParallelPair, direction: str, template: str = PAPER_TEMPLATE) -> dict:
    """The training row that teaches `direction` (SRC-TGT) with this pair."""
    src_lang, tgt_lang = parse_direction(direction)
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
