"""Batched, cached chat requests: no request is ever sent to the engine twice.

A stage gives `CachedChat.ask` a list of (key, chat) requests; the key is a content hash of
everything the answer depends on (model, prompt, sampling, the text; see
`hala.engines.cache.request_key`). Each distinct key the cache does not hold is sent once, in
batches of `batch_size`; each batch's answers are written to the cache as soon as they return (a
kill loses at most one batch), and every request is answered in order. The engine is built only
when the first miss needs it, so a fully cached rerun never starts it.

Requests fail one by one (`Engine.chat_each`): a request the engine gave up on (after its own
retries, see `hala.engines.openai`) comes back as an `Answer` with its own error, and every reply
that did arrive is cached. An engine call that raises (the backend itself failed) is retried
with exponential backoff; if it still fails, each request of the batch gets that error. Errors
are never cached and are counted as `requests_failed`, the stat by which `run_units` knows to
redo the unit on a rerun (`hala.data.units`), which then sends only the failed requests.

The translate stage (segments) and the judge (verdicts) both ask through it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hala.data.units import FAILED_REQUESTS
from hala.engines.base import Chat, Engine, EngineConfig, Generation, SamplingParams
from hala.engines.cache import RequestCache
from hala.engines.redact import api_key, redact

log = logging.getLogger("hala.engines")


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    error: str | None = None


class EngineAsker:
    """What every cached asker shares: the engine built at the first miss, an engine call retried
    while it raises (the backend itself failing), redacted error texts, stats, closing."""

    def __init__(self, engine: EngineConfig, cache_path: str | Path, *, batch_size: int = 4096, retries: int = 2,
                 backoff_s: float = 2.0):  # fmt: skip
        self.engine_cfg = engine
        self.batch_size, self.retries, self.backoff_s = batch_size, retries, backoff_s
        self.model_id = f"{engine.kind}:{engine.model}"
        self.cache = RequestCache(cache_path)
        self.engine: Engine | None = None
        self.stats: Counter = Counter()

    def _engine(self) -> Engine:
        if self.engine is None:
            from hala.engines import get_engine

            self.engine = get_engine(self.engine_cfg)
        return self.engine

    def _key(self) -> str | None:
        return api_key(self.engine_cfg.api_key_env) if self.engine_cfg.kind == "openai" else None

    def _call(self, call: Callable[[Engine], list], n: int, stats: Counter) -> list:
        """`call(engine)` (one result or error text per request), retried with backoff while it
        raises; if it keeps raising, each of the `n` requests gets that error. Counted in `stats`."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                started = time.perf_counter()
                results = call(self._engine())
                stats["engine_ms"] += int((time.perf_counter() - started) * 1000)
                return results
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - any engine failure is retried, then reported
                error = redact(f"{type(exc).__name__}: {exc}", self._key())
                stats["engine_errors"] += 1
                if attempt == self.retries:
                    return [error] * n
                log.warning("engine call failed (%s); retry %d in %.1fs", error, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _count_failures(self, errors: dict[str, str], asked: int, stats: Counter) -> None:
        if errors:
            stats[FAILED_REQUESTS] += len(errors)
            log.warning("%d of %d requests failed (not cached; a rerun retries them); first: %s",
                        len(errors), asked, next(iter(errors.values())))  # fmt: skip

    def take_stats(self) -> dict:
        numbers, self.stats = dict(self.stats), Counter()
        return numbers

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.cache.close()


@dataclass
class Asked:
    """What one `CachedChat.fetch` did, for the stats of the unit that asked (`CachedChat.settle`)."""

    counter: str
    requests: int
    keys: list[str]  # the distinct keys, in order
    failed: int = 0  # sent, and failed: not cached
    real: Counter = field(default_factory=Counter)  # engine_ms, engine_errors: what this fetch itself spent


class CachedChat(EngineAsker):
    """`ask`: cached answers, counted in `stats`. A stage that works several units at once fetches
    instead, in the thread that owns the engine (`hala.engines.owner`), and settles each unit's
    fetches when the unit lands, in plan order (`hala.data.in_order`): `settle` counts a request
    as the serial run would have, whoever sent it first.

    The serial run sends a request for the first unit (in plan order) that asks it and finds it
    in the cache for every later one. With units in flight, a later unit may send it first. So
    every answer this run received waits in `sent` until a unit settles it: the first unit to
    settle a key (the first in plan order, since units settle in that order) counts it as sent,
    with its tokens, and pops it; every later one finds it gone and counts a cache hit. A key kept
    from an earlier run was never in `sent`: a hit for all. `sent` holds only the answers of units
    not yet landed.
    """

    def __init__(self, engine: EngineConfig, sampling: SamplingParams, cache_path: str | Path, **options):
        super().__init__(engine, cache_path, **options)
        self.sampling = sampling
        self.sent: dict[str, Generation] = {}
        self.sent_lock = threading.Lock()  # fetch adds (the engine's thread), settle pops (a unit's)

    def _chat(self, chats: list[Chat], sampling: SamplingParams, stats: Counter) -> list[Generation | str]:
        """Per request, its reply or its error text."""
        gens = self._call(lambda engine: engine.chat_each(chats, sampling), len(chats), stats)
        return [redact(g.error, self._key()) if isinstance(g, Generation) and g.error is not None else g for g in gens]

    def ask(
        self, keys: list[str], chats: list[Chat], counter: str = "requests", sampling: SamplingParams | None = None
    ) -> list[Answer]:
        """One answer per request, in order; `counter` names the stat that counts them. `sampling`
        (default: the asker's own) must be part of every key: the cache can't tell them apart."""
        answers, asked = self.fetch(keys, chats, counter, sampling)
        self.settle(asked, self.stats)
        return answers

    def fetch(
        self, keys: list[str], chats: list[Chat], counter: str = "requests", sampling: SamplingParams | None = None
    ) -> tuple[list[Answer], Asked]:
        """`ask`, counted later: the answers, and what to `settle` into the asking unit's stats."""
        unique = dict(zip(keys, chats))  # first chat per key, in order
        found = self.cache.get_many(list(unique))
        misses = [k for k in unique if k not in found]
        asked = Asked(counter, len(keys), list(unique))
        errors: dict[str, str] = {}
        for i in range(0, len(misses), self.batch_size):
            batch = misses[i : i + self.batch_size]
            answers = dict(zip(batch, self._chat([unique[k] for k in batch], sampling or self.sampling, asked.real)))
            fresh = {k: a for k, a in answers.items() if isinstance(a, Generation)}
            errors.update({k: a for k, a in answers.items() if isinstance(a, str)})
            self.cache.put_many(fresh)
            with self.sent_lock:
                self.sent.update(fresh)
            found.update(fresh)
        asked.failed = len(errors)
        self._count_failures(errors, len(misses), asked.real)
        answers = [
            Answer("", "error", errors[k]) if k in errors else Answer(found[k].text, found[k].finish_reason)
            for k in keys
        ]
        return answers, asked

    def settle(self, asked: Asked, stats: Counter) -> None:
        """Count a fetch into `stats` as the serial run would have (see the class docstring)."""
        with self.sent_lock:
            claimed = [g for k in asked.keys if (g := self.sent.pop(k, None)) is not None]
        stats[asked.counter] += asked.requests
        stats["requests_unique"] += len(asked.keys)
        stats["cache_hits"] += len(asked.keys) - len(claimed) - asked.failed
        if claimed or asked.failed:
            stats["engine_requests"] += len(claimed) + asked.failed
            stats["tokens_in"] += sum(g.prompt_tokens for g in claimed)
            stats["tokens_out"] += sum(g.completion_tokens for g in claimed)
        stats.update(asked.real)
