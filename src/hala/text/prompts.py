"""The translator's prompt, and the check every prompt template gets when its config is read.

The Hala translator was trained on one user turn, `Translate everything that follows into
Arabic:\\n\\n{text}`, decoded greedily. Three stages render it: translate sends it, pairs writes the
translator's training rows with it, and the judge's `likelihood` mode scores a pair under it. So
it lives here, with the one field check: a template is read once, when its config is, and a field
it names that the stage does not fill (`{txt}`), or one it lacks (`{text}`), is an error there
instead of a KeyError, or a prompt without the text, in the middle of a run.
"""

from __future__ import annotations

import string
from typing import Annotated

from pydantic import AfterValidator

from hala.text.languages import language_name

PAPER_TEMPLATE = "Translate everything that follows into {language}:\n\n{text}"
TRANSLATOR_FIELDS = frozenset({"language", "source_language", "text"})


def check_template_fields(template: str, *, allowed: frozenset[str], required: frozenset[str], what: str) -> str:
    """`template` if it names every field of `required` and none outside `allowed`, else ValueError."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{what} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    if fields - allowed or not required <= fields:
        must = " and ".join(f"{{{name}}}" for name in sorted(required))
        found = ", ".join(sorted(fields)) or "no fields"
        raise ValueError(f"{what} template must use {must}, and only {', '.join(sorted(allowed))} (found {found})")
    return template


def check_translator_prompt(template: str) -> str:
    """A translator prompt: {text}, and optionally {language} (the target's name) and {source_language}."""
    required = frozenset({"text"})
    return check_template_fields(template, allowed=TRANSLATOR_FIELDS, required=required, what="translator prompt")


# a config field holding a translator prompt: checked when the config is read
TranslatorPrompt = Annotated[str, AfterValidator(check_translator_prompt)]


def render(template: str, text: str, source_lang: str, target_lang: str, system: str | None = None) -> list[dict]:
    """The chat asking for `text` in `target_lang`."""
    content = template.format(
        language=language_name(target_lang), source_language=language_name(source_lang), text=text
    )
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": content}]
