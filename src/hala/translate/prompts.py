"""Translation prompts: the paper's translator prompt by default, configurable per direction.

The Hala translator was trained on one user turn, `Translate everything that follows into
Arabic:\n\n{text}`, decoded greedily. The target language is a setting: it names the language in
the prompt (and in the QA filters); Arabic is only the default.
"""

from __future__ import annotations

from pydantic import Field

from hala.config import StrictModel

PAPER_TEMPLATE = "Translate everything that follows into {language}:\n\n{text}"

LANGUAGE_NAMES = {
    "ar": "Arabic", "en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian",
    "pt": "Portuguese", "tr": "Turkish", "fa": "Persian", "ur": "Urdu", "he": "Hebrew", "ru": "Russian",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "hi": "Hindi", "id": "Indonesian", "sw": "Swahili",
}  # fmt: skip


def language_name(code: str) -> str:
    if code not in LANGUAGE_NAMES:
        raise ValueError(f"unknown language code {code!r}; known: {', '.join(sorted(LANGUAGE_NAMES))}")
    return LANGUAGE_NAMES[code]


class PromptConfig(StrictModel):
    """`template` uses {language} (target language name), {source_language} and {text}."""

    template: str = PAPER_TEMPLATE
    by_direction: dict[str, str] = Field(default_factory=dict, description='e.g. {"en-fr": "..."}')
    system: str | None = Field(None, description="an optional system message for every request")

    def template_for(self, source_lang: str, target_lang: str) -> str:
        return self.by_direction.get(f"{source_lang}-{target_lang}", self.template)


def render(template: str, text: str, source_lang: str, target_lang: str, system: str | None = None) -> list[dict]:
    content = template.format(
        language=language_name(target_lang), source_language=language_name(source_lang), text=text
    )
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]
