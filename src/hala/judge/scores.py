"""The judge's three modes, each turning a pair into a score and a verdict.

- `generate` (the paper's): the model writes an answer, `prompt.parse_verdict` reads it; the score
  is 1 for ACCEPT and 0 otherwise (a reject or an unparseable answer).
- `choice`: the judge prompt, then each label as the start of the assistant's answer, scored by
  teacher forcing: `p_accept = softmax(logp(ACCEPT), logp(REJECT))[0]`, where a label's
  log-probability is the sum over all its tokens (a label of several tokens is scored in full).
- `likelihood` (Prism-style reference-free QE): the mean log-probability per token of the target
  as the translator's answer to the translator prompt (`Translate everything that follows into
  Arabic:\\n\\n{src}`), its end-of-turn included, so a cut-off target pays for the end it did not
  expect. With `reverse`, the mean of both directions (the source given the target too), which
  also catches a target that adds text.

A scoring mode can't be unparseable: every pair gets a number, and is accepted when the number is at
least the threshold. Scores are cached without the threshold (`hala.engines.scored`).

In front of both scoring modes stands a script gate (`language_gate`, on by default): when the two
languages are written in different scripts and fewer than that share of the target's letters are in
the target's script, the pair gets the mode's floor score (`GATED_SCORE`) without asking the model.
It catches the English copied back as its own translation, which a translation model finds about as
likely as a translation (ROC AUC 0.41 for the warmed-up Gemma teacher without the gate). The gate is
a filter of the shape translate's QA and the pair filters share (`hala.text.filters`), and every
verdict takes that shape too (`Judged.rejection`: `(judge_<verdict>, reason)`, None when accepted).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import partial

from hala.data.records import ParallelPair
from hala.engines.cache import model_key, request_key
from hala.engines.replies import Reply
from hala.judge.prompt import ACCEPT, REJECT, parse_verdict, render_judge
from hala.text.filters import Filter, Rule, Verdict
from hala.text.prompts import render
from hala.text.scripts import language_text, same_script, script_share

MODES = ("generate", "choice", "likelihood")
DEFAULT_THRESHOLDS = {"generate": 0.5, "choice": 0.5, "likelihood": -2.0}
GATED_SCORE = {"choice": 0.0, "likelihood": -100.0}  # below any score the model gives (a mean log-prob per token)


def label_probability(accept: list[float], reject: list[float]) -> float:
    """p(ACCEPT) from the two labels' per-token log-probabilities (a two-way softmax of their sums)."""
    a, r = sum(accept), sum(reject)
    return 1.0 / (1.0 + math.exp(r - a)) if r - a < 700 else 0.0


def mean_logprob(tokens: list[float]) -> float:
    """Log-probability per token: the length-normalised score, comparable across lengths."""
    return sum(tokens) / len(tokens)


@dataclass(frozen=True)
class Judged:
    score: float | None
    verdict: str  # accept, reject, unparseable or engine_error
    answer: str | None = None  # generate mode: what the model wrote
    error: str | None = None
    gate: str | None = None  # why the script gate scored the pair without the model

    def rejection(self, threshold: float) -> Verdict | None:
        """The verdict in the shape of a filter's (`hala.text.filters`): None for an accepted pair,
        else `(judge_<verdict>, reason)`."""
        if self.verdict == ACCEPT:
            return None
        if self.gate is not None:
            reason = f"script gate: {self.gate}"
        elif self.error is not None:
            reason = f"judge failed {_short(self.error)!r}"
        elif self.answer is not None:
            reason = f"judge answered {_short(self.answer)!r}"
        else:
            reason = f"judge score {self.score:.4f} < threshold {threshold:.4f}"
        return f"judge_{self.verdict}", reason


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gate_reason(min_share: float, pair: ParallelPair) -> str | None:
    if same_script(pair.src_lang, pair.tgt_lang):
        return None
    share = script_share(language_text(pair.tgt), pair.tgt_lang)
    if share is None or share >= min_share:
        return None
    return f"{share:.0%} of the {pair.tgt_lang} side's letters are in its script (the gate needs {min_share:.0%})"


def script_gate(min_share: float) -> Filter:
    """The filter in front of the scoring modes: a pair fails when its target is not in the target's script."""
    return Rule("script_gate", partial(_gate_reason, min_share))


def _pair_text(pair: ParallelPair) -> str:
    return json.dumps([pair.src_lang, pair.tgt_lang, pair.src, pair.tgt], ensure_ascii=False)


class GenerateScorer:
    """The paper's judge: generate, then parse (cache keys as before this module existed)."""

    mode = "generate"

    def __init__(self, cfg, cache_path, model_sha256: str | None = None):
        from hala.engines.cached import CachedChat

        self.cfg = cfg
        self.asker = CachedChat(cfg.engine, cfg.sampling, cache_path, batch_size=cfg.batch_size,
                                retries=cfg.engine_retries, backoff_s=cfg.engine_backoff_s)  # fmt: skip
        template = cfg.prompt if not cfg.system else f"{cfg.system}\n{cfg.prompt}"
        self.key_prefix = (model_key(self.asker.model_id, model_sha256), template, cfg.sampling.model_dump())
        self.model_id = self.asker.model_id

    def judge(self, pairs: list[ParallelPair], threshold: float) -> list[Judged]:
        chats = [render_judge(self.cfg.prompt, pair, self.cfg.system) for pair in pairs]
        keys = [request_key(*self.key_prefix, _pair_text(pair)) for pair in pairs]
        results = []
        for answer in self.asker.ask(keys, chats):
            if answer.error is not None:
                results.append(Judged(None, "engine_error", error=answer.error))
                continue
            verdict = parse_verdict(answer.text)
            results.append(Judged(1.0 if verdict == ACCEPT else 0.0, verdict, answer=answer.text))
        return results

    def take_stats(self) -> dict:
        return self.asker.take_stats()

    def close(self) -> None:
        self.asker.close()


class _ScoringMode:
    """Shared by choice and likelihood: replies per pair, reduced to a score, cached, thresholded."""

    mode = ""

    def __init__(self, cfg, cache_path, model_sha256: str | None = None):
        from hala.engines.scored import CachedScores

        self.cfg = cfg
        self.scores = CachedScores(cfg.engine, cache_path, batch_size=cfg.batch_size, retries=cfg.engine_retries,
                                   backoff_s=cfg.engine_backoff_s)  # fmt: skip
        self.model_id = self.scores.model_id
        self.key_model = model_key(self.model_id, model_sha256)

    def settings(self) -> list:
        """Everything besides the model and the pair that the score depends on (part of the cache key)."""
        raise NotImplementedError

    def replies(self, pair: ParallelPair) -> list[Reply]:
        raise NotImplementedError

    def reduce(self, parts: list[list[float]]) -> float:
        raise NotImplementedError

    def judge(self, pairs: list[ParallelPair], threshold: float) -> list[Judged]:
        min_share = self.cfg.language_gate
        gates = script_gate(min_share).verdicts(pairs) if min_share is not None else [None] * len(pairs)
        results: list[Judged | None] = [
            None if gated is None else Judged(GATED_SCORE[self.mode], REJECT, gate=gated[1]) for gated in gates
        ]
        asked = [i for i, gate in enumerate(gates) if gate is None]
        settings = json.dumps([self.mode, *self.settings()], ensure_ascii=False)
        keys = [request_key(self.key_model, settings, {}, _pair_text(pairs[i])) for i in asked]
        for i, score in zip(asked, self.scores.ask(keys, [self.replies(pairs[i]) for i in asked], self.reduce)):
            if score.error is not None:
                results[i] = Judged(None, "engine_error", error=score.error)
            else:
                results[i] = Judged(score.value, ACCEPT if score.value >= threshold else REJECT)
        return results

    def take_stats(self) -> dict:
        return self.scores.take_stats()

    def close(self) -> None:
        self.scores.close()


class ChoiceScorer(_ScoringMode):
    mode = "choice"

    def settings(self) -> list:
        return [self.cfg.prompt, self.cfg.system, self.cfg.labels]

    def replies(self, pair: ParallelPair) -> list[Reply]:
        chat = render_judge(self.cfg.prompt, pair, self.cfg.system)
        return [Reply(chat, label, closed=False) for label in self.cfg.labels]

    def reduce(self, parts: list[list[float]]) -> float:
        accept, reject = parts
        return label_probability(accept, reject)


class LikelihoodScorer(_ScoringMode):
    mode = "likelihood"

    def settings(self) -> list:
        return [self.cfg.translate_prompt, self.cfg.system, self.cfg.reverse]

    def replies(self, pair: ParallelPair) -> list[Reply]:
        template, system = self.cfg.translate_prompt, self.cfg.system
        forward = [Reply(render(template, pair.src, pair.src_lang, pair.tgt_lang, system), pair.tgt.strip())]
        if not self.cfg.reverse:
            return forward
        return forward + [Reply(render(template, pair.tgt, pair.tgt_lang, pair.src_lang, system), pair.src.strip())]

    def reduce(self, parts: list[list[float]]) -> float:
        return sum(mean_logprob(p) for p in parts) / len(parts)


SCORERS = {"generate": GenerateScorer, "choice": ChoiceScorer, "likelihood": LikelihoodScorer}


def make_scorer(cfg, cache_path, model_sha256: str | None = None):
    """The scorer of `cfg.mode`; `model_sha256`: the content hash of a local judge model (see `model_key`)."""
    return SCORERS[cfg.mode](cfg, cache_path, model_sha256)
