"""A chat template that marks the assistant's tokens, for assistant-only loss.

TRL computes assistant-only loss from `{% generation %}` markers in the chat template. A template
that has them is used as is. Otherwise we take TRL's own training template for the families it
knows (LFM2, Llama 3, Gemma, Qwen, Cohere, ...), and for ChatML templates it doesn't know (SmolLM2,
our tiny models) we wrap the one expression that prints a turn. A patched template must render
every probe conversation to exactly the same text as the original: only the markers may differ,
or training would see a different format than inference. The model is saved with its original
template.
"""

from __future__ import annotations

import re

GENERATION_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")
# {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}} and spacing/quote variants
NL = r"(?:\\n|\n)"  # a newline written as \n or as a real newline inside the quotes
CHATML_TURN_RE = re.compile(
    r"""\{\{-?\s*(['"])<\|im_start\|>\1\s*\+\s*message\[(['"])role\2\]\s*\+\s*(['"])NL\3\s*\+\s*"""
    r"""message\[(['"])content\4\](?:\s*\|\s*trim)?\s*\+\s*(['"])<\|im_end\|>\5\s*(?P<nl>\+\s*(['"])NL\7\s*)?-?\}\}""".replace("NL", NL)
)
CHATML_ASSISTANT = (
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content']TRIM + '<|im_end|>' }}{% endgeneration %}NEWLINE"
    "{% else %}ORIGINAL{% endif %}"
)
PROBES = [
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "Q2"}, {"role": "assistant", "content": " A2 with spaces "}],
]  # fmt: skip


class TemplateError(ValueError):
    """No training template could be found or built that renders like the original."""


def has_markers(template: str) -> bool:
    return bool(GENERATION_RE.search(template))


def _patch_chatml(template: str) -> str | None:
    match = CHATML_TURN_RE.search(template)
    if not match:
        return None
    original = match.group(0)
    trim = " | trim" if "| trim" in original else ""
    newline = "{{ '\\n' }}" if match.group("nl") else ""
    replacement = CHATML_ASSISTANT.replace("TRIM", trim).replace("NEWLINE", newline).replace("ORIGINAL", original)
    return template[: match.start()] + replacement + template[match.end() :]


def _renders_alike(tokenizer, template: str) -> bool:
    for chat in PROBES:
        for prompt in (False, True):
            messages = chat[:-1] if prompt else chat
            ours = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=prompt)
            theirs = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
            if ours != theirs:
                return False
    return True


def training_template(tokenizer) -> str:
    """The template to train with (see the module docstring); raises TemplateError if none fits."""
    template = tokenizer.chat_template
    if not template:
        raise TemplateError("the tokenizer has no chat template; give one with train.chat_template=PATH")
    if isinstance(template, dict):
        template = template["default"]
    if has_markers(template):
        return template
    candidates = []
    try:
        from trl.chat_template_utils import get_training_chat_template

        candidates.append(get_training_chat_template(tokenizer))
    except Exception:  # noqa: BLE001 - TRL raises for templates it does not know
        pass
    candidates.append(_patch_chatml(template))
    for candidate in candidates:
        if candidate and has_markers(candidate) and _renders_alike(tokenizer, candidate):
            return candidate
    raise TemplateError(
        "the chat template has no {% generation %} markers and hala can't patch it safely; "
        "give a template with markers around the assistant turns: chat_template=PATH"
    )
