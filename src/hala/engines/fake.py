"""A deterministic, instant engine for testing the plumbing, never the quality.

It "answers" with the last user message written in Arabic letters (a fixed letter-for-letter map),
so downstream filters that check for Arabic script pass, and the same input always gives the same
output. Digits, punctuation, whitespace and placeholders are kept. A leading instruction line that
ends with a colon and a blank line (as in the translator prompt) is treated as the instruction and
not echoed, so the fake "translates" exactly the text it was given. Of the sampling parameters
only `max_tokens` counts: a sampled request (any temperature or seed) gets the greedy answer.
"""

from __future__ import annotations

import hashlib
import math
import re
import time

from hala.engines.base import Chat, Engine, Generation, SamplingParams

_LATIN = "abcdefghijklmnopqrstuvwxyz"
_ARABIC = "ابكديفغهيجكلمنوبقرستوفوكيز"  # a->ا, b->ب, c->ك, ... z->ز
ARABIZE = str.maketrans(_LATIN + _LATIN.upper(), _ARABIC + _ARABIC)


INSTRUCTION_RE = re.compile(r"\A[^\n]*:\n\n")


def arabize(text: str) -> str:
    return text.translate(ARABIZE)


class FakeEngine(Engine):
    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        if self.cfg.fake_delay_s:
            time.sleep(self.cfg.fake_delay_s)
        results = []
        for messages in conversations:
            last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            words = arabize(INSTRUCTION_RE.sub("", last_user, count=1)).split(" ")
            text = " ".join(words[: params.max_tokens])
            finish = "length" if len(words) > params.max_tokens else "stop"
            prompt_tokens = sum(len(m["content"].split()) for m in messages)
            results.append(Generation(text, finish, prompt_tokens, min(len(words), params.max_tokens)))
        return results

    def score_replies(self, replies: list) -> list[list[float]]:
        """A made-up log-probability per word of the reply (and one for the end of a closed turn)."""
        scores = []
        for reply in replies:
            words = reply.text.split() + (["<end>"] if reply.closed else [])
            scores.append([-math.log(2 + hashlib.sha256(w.encode()).digest()[0]) for w in words] or [-1.0])
        return scores

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        scores = []
        for prompt in prompts:
            words = prompt.split()
            digests = (hashlib.sha256(w.encode()).digest()[0] for w in words[1:])
            scores.append([-math.log(2 + d) for d in digests])
        return scores
