"""The translate stage's prompt settings: the paper's translator prompt by default, one per direction.

The prompt itself and its rendering live in `hala.text.prompts` (pairs and the judge render it
too). The target language is a setting: it names the language in the prompt (and in the QA
filters); Arabic is only the default. Every template is checked when the config is read.
"""

from __future__ import annotations

from pydantic import Field

from hala.config import StrictModel
from hala.text.prompts import PAPER_TEMPLATE, TranslatorPrompt


class PromptConfig(StrictModel):
    """`template` uses {language} (target language name), {source_language} and {text}."""

    template: TranslatorPrompt = PAPER_TEMPLATE
    by_direction: dict[str, TranslatorPrompt] = Field(default_factory=dict, description='e.g. {"en-fr": "..."}')
    system: str | None = Field(None, description="an optional system message for every request")

    def template_for(self, source_lang: str, target_lang: str) -> str:
        return self.by_direction.get(f"{source_lang}-{target_lang}", self.template)
