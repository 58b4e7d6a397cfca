"""Teacher-forced scoring of a reply: which tokens of a chat are the assistant's answer.

Scoring modes (`hala judge --mode choice|likelihood`) ask an engine for the log-probability of a
given assistant reply after a chat, token by token. Every engine must cut the same tokens, so the
cut is defined once, here, on the rendered text:

- the chat is rendered with the model's chat template and the generation prompt (what the model
  sees before it answers);
- a *closed* reply is the assistant turn as the template writes it, end-of-turn marker included
  (`<|im_end|>`, `<end_of_turn>`, ...) and the whitespace after it dropped: a model that would go
  on talking, e.g. after a truncated target, pays for the end-of-turn it did not expect;
- an *open* reply is the text alone (a label such as `ACCEPT`: what follows it does not matter).

The whole text is tokenized once and the reply's tokens are those that end after the prompt, so a
token that straddles the boundary counts as the reply's.
"""

from __future__ import annotations

from dataclasses import dataclass

from hala.engines.base import Chat


@dataclass(frozen=True)
class Reply:
    """A reply to score: `text` as the assistant's answer to `chat`, its turn closed or left open."""

    chat: Chat
    text: str
    closed: bool = True


def render_reply(tokenizer, reply: Reply, chat_template: str | None = None) -> tuple[str, str]:
    """(prompt, reply text as the model sees it) for a Hugging Face tokenizer with a chat template."""
    prompt = tokenizer.apply_chat_template(
        reply.chat, add_generation_prompt=True, tokenize=False, chat_template=chat_template
    )
    if not reply.closed:
        return prompt, reply.text
    turn = reply.chat + [{"role": "assistant", "content": reply.text}]
    full = tokenizer.apply_chat_template(turn, tokenize=False, chat_template=chat_template)
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template writes the assistant turn differently from its generation prompt, so the "
            "reply's tokens can't be cut out; set engine.chat_template to a template where they agree"
        )
    return prompt, full[len(prompt) :].rstrip()


def reply_token_ids(tokenizer, reply: Reply, chat_template: str | None = None) -> tuple[list[int], int]:
    """(all token ids, how many of the last ones are the reply's)."""
    prompt, text = render_reply(tokenizer, reply, chat_template)
    encoded = tokenizer(prompt + text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    n_reply = sum(1 for _, end in offsets if end > len(prompt))
    if n_reply == 0 or n_reply == len(ids):
        raise ValueError(f"reply {reply.text[:40]!r} has no tokens of its own after the prompt")
    return ids, n_reply
