"""Batched, cached reply scoring: a pair's score is computed once, whatever the threshold.

The judge's scoring modes turn each pair into a few replies to score (`hala.engines.replies.Reply`)
and reduce the engine's per-token log-probabilities to one number (a label probability, a mean
log-probability). `CachedScores.ask` keeps that number under a content key (model, mode, prompt,
the pair; see `hala.engines.cache.request_key`) in the request cache (`hala.engines.cache`, one
file per writer, so concurrent shards are safe): the threshold is not part of the key, so changing
only the threshold decides again without scoring again. Batches are written as they return. Each
request (a pair's replies) succeeds or fails on its own (`Engine.score_replies_each`): a failed one
comes back with its own error, is never cached and is counted as `requests_failed`, which makes
`run_units` redo its unit on a rerun. The engine is built at the first miss, so a fully cached run
never starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hala.engines.base import Generation
from hala.engines.cached import EngineAsker
from hala.engines.redact import redact
from hala.engines.replies import Reply

SCORE = "score"  # the finish_reason under which the request cache holds a score (its text is the number)


@dataclass(frozen=True)
class Score:
    value: float | None
    tokens: int = 0
    error: str | None = None


def _stored(score: Score) -> Generation:
    return Generation(repr(score.value), SCORE, score.tokens, 0)


def _loaded(entry: Generation) -> Score:
    return Score(float(entry.text), entry.prompt_tokens)


class CachedScores(EngineAsker):
    def _score(self, replies: list[Reply]) -> list[list[float] | str]:
        """Per reply, its log-probabilities or its error text."""
        scores = self._call(lambda engine: engine.score_replies_each(replies), len(replies), self.stats)
        return [redact(s, self._key()) if isinstance(s, str) else s for s in scores]

    def ask(self, keys: list[str], requests: list[list[Reply]], reduce: Callable[[list[list[float]]], float]) -> list[Score]:
        """One score per request (a pair's replies, reduced by `reduce`), in order."""
        unique = dict(zip(keys, requests))
        found = {k: _loaded(c) for k, c in self.cache.get_many(list(unique)).items() if c.finish_reason == SCORE}
        misses = [k for k in unique if k not in found]
        self.stats["requests"] += len(keys)
        self.stats["requests_unique"] += len(unique)
        self.stats["cache_hits"] += len(unique) - len(misses)
        errors: dict[str, str] = {}
        for i in range(0, len(misses), self.batch_size):
            batch = misses[i : i + self.batch_size]
            flat = [reply for key in batch for reply in unique[key]]
            scored = iter(self._score(flat))
            fresh = {}
            for key in batch:
                parts = [next(scored) for _ in unique[key]]
                failed = next((p for p in parts if isinstance(p, str)), None)
                if failed is not None:
                    errors[key] = failed
                else:
                    fresh[key] = Score(float(reduce(parts)), sum(len(p) for p in parts))
            self.cache.put_many({k: _stored(v) for k, v in fresh.items()})
            found.update(fresh)
            self.stats["engine_requests"] += len(batch)
            self.stats["engine_replies"] += len(flat)
            self.stats["tokens_scored"] += sum(s.tokens for s in fresh.values())
        self._count_failures(errors, len(misses), self.stats)
        return [Score(None, 0, errors[k]) if k in errors else found[k] for k in keys]
