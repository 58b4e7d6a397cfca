"""Batched, cached chat requests: no request is ever sent to the engine twice.

A stage gives `CachedChat.ask` a list of (key, chat) requests; the key is a content hash of
everything the answer depends on (model, prompt, sampling, the text; see
`hala.engines.cache.request_key`). Each distinct key the cache does not hold is sent once, in
batches of `batch_size`; each batch's answers are written to the cache as soon as they return (a
kill loses at most one batch), and every request is answered in order. The engine is built only
when the first miss needs it, so a fully cached rerun never starts it. A failing engine call is
retried with exponential backoff; a batch that still fails comes back as errors (never cached), for
the stage to count and reject.

The translate stage (segments) and the judge (verdicts) both ask through it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hala.engines.base import Chat, Engine, EngineConfig, SamplingParams
from hala.engines.cache import Cached, SegmentCache

log = logging.getLogger("hala.engines")


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    error: str | None = None


class CachedChat:
    def __init__(
        self,
        engine: EngineConfig,
        sampling: SamplingParams,
        cache_path: str | Path,
        *,
        batch_size: int = 4096,
        retries: int = 2,
        backoff_s: float = 2.0,
    ):
        self.engine_cfg, self.sampling = engine, sampling
        self.batch_size, self.retries, self.backoff_s = batch_size, retries, backoff_s
        self.model_id = f"{engine.kind}:{engine.model}"
        self.cache = SegmentCache(cache_path)
        self.engine: Engine | None = None
        self.stats: Counter = Counter()

    def _engine(self) -> Engine:
        if self.engine is None:
            from hala.engines import get_engine

            self.engine = get_engine(self.engine_cfg)
        return self.engine

    def _chat(self, chats: list[Chat]) -> list[Cached] | str:
        """One engine call with retries; the error text if it keeps failing."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                started = time.perf_counter()
                gens = self._engine().chat(chats, self.sampling)
                self.stats["engine_ms"] += int((time.perf_counter() - started) * 1000)
                return [Cached(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in gens]
            except Exception as exc:  # noqa: BLE001 - any engine failure is retried, then reported
                error = f"{type(exc).__name__}: {exc}"
                self.stats["engine_errors"] += 1
                if attempt == self.retries:
                    return error
                log.warning("engine call failed (%s); retry %d in %.1fs", error, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def ask(self, keys: list[str], chats: list[Chat], counter: str = "requests") -> list[Answer]:
        """One answer per request, in order; `counter` names the stat that counts them."""
        unique = dict(zip(keys, chats))  # first chat per key, in order
        found = self.cache.get_many(list(unique))
        misses = [k for k in unique if k not in found]
        self.stats[counter] += len(keys)
        self.stats["requests_unique"] += len(unique)
        self.stats["cache_hits"] += len(unique) - len(misses)
        errors: dict[str, str] = {}
        for i in range(0, len(misses), self.batch_size):
            batch = misses[i : i + self.batch_size]
            answers = self._chat([unique[k] for k in batch])
            if isinstance(answers, str):
                errors.update(dict.fromkeys(batch, answers))
                continue
            fresh = dict(zip(batch, answers))
            self.cache.put_many(fresh)
            found.update(fresh)
            self.stats["engine_requests"] += len(batch)
            self.stats["tokens_in"] += sum(a.prompt_tokens for a in answers)
            self.stats["tokens_out"] += sum(a.completion_tokens for a in answers)
        return [
            Answer("", "error", errors[k]) if k in errors else Answer(found[k].text, found[k].finish_reason)
            for k in keys
        ]

    def take_stats(self) -> dict:
        numbers, self.stats = dict(self.stats), Counter()
        return numbers

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.cache.close()
