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

The translate stage (segments) and the judge (verdicts) both ask through it; translate's units in
flight fetch through one `CachedChat` from several threads at once (see the class).
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
            self._warn_failures(errors, asked)

    def _warn_failures(self, errors: dict[str, str], asked: int) -> None:
        if errors:
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
    failed: int = 0  # keys whose request failed (sent by this fetch or by the one it waited for)
    real: Counter = field(default_factory=Counter)  # engine_ms, engine_errors: what this fetch's own calls took


class _Flight:
    """The requests one fetch is sending; a fetch asking one of them meanwhile waits for its answer."""

    def __init__(self):
        self.landed = threading.Event()
        self.replies: dict[str, Generation | str] = {}  # a reply, or its error text


NOT_SENT = "not sent: the unit that was sending this request stopped first"


class CachedChat(EngineAsker):
    """`ask`: cached answers, counted in `stats`. Several units may fetch at once, each in its own
    thread (`hala.data.in_order`), and settle their fetches when they land, in plan order.

    Fetching in threads: the cache lookups and writes run in the fetching thread (the cache is
    shared under its lock), the engine calls through `call` (`hala.engines.owner.EngineOwner.call`:
    in the thread that owns the engine, so it only generates). A request another fetch is already
    sending is not sent again: the fetch waits for that answer (a failure fails both).

    Counting as the serial run: it sends a request for the first unit (in plan order) asking it
    and finds it cached for every later one, while with units in flight a later unit may send it
    first. So each answer this run received waits in `sent` until a unit settles it: the first to
    settle the key (the first in plan order, since units settle in order) counts it as sent, with
    its tokens, and pops it; every later one counts a cache hit. `sent` holds only the answers of
    units not yet landed; a key cached by an earlier run was never in it, a hit for all.
    """

    def __init__(self, engine: EngineConfig, sampling: SamplingParams, cache_path: str | Path, **options):
        super().__init__(engine, cache_path, **options)
        self.sampling = sampling
        self.lock = threading.Lock()  # a lookup and its flight registered at once; `sent`
        self.flying: dict[str, _Flight] = {}
        self.sent: dict[str, Generation] = {}

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
        self, keys: list[str], chats: list[Chat], counter: str = "requests", sampling: SamplingParams | None = None,
        call: Callable[..., list] | None = None,
    ) -> tuple[list[Answer], Asked]:  # fmt: skip
        """`ask`, counted later: the answers, and what to `settle` into the asking unit's stats.
        `call(fn, *args)` makes the engine calls (default: here)."""
        call = call or (lambda fn, *args: fn(*args))
        unique = dict(zip(keys, chats))  # first chat per key, in order
        flight = _Flight()
        with self.lock:
            found = self.cache.get_many(list(unique))
            waits = {k: self.flying[k] for k in unique if k not in found and k in self.flying}
            misses = [k for k in unique if k not in found and k not in waits]
            self.flying.update(dict.fromkeys(misses, flight))
        asked = Asked(counter, len(keys), list(unique))
        try:
            for i in range(0, len(misses), self.batch_size):
                batch = misses[i : i + self.batch_size]
                chats_of = [unique[k] for k in batch]
                replies = call(self._chat, chats_of, sampling or self.sampling, asked.real)
                fresh = {k: r for k, r in zip(batch, replies) if isinstance(r, Generation)}
                with self.lock:
                    self.cache.put_many(fresh)
                    self.sent.update(fresh)
                    flight.replies.update(zip(batch, replies))
                    for k in batch:
                        del self.flying[k]
        finally:
            with self.lock:  # stopped midway: the requests not sent fail for whoever waits on them
                for k in misses:
                    if self.flying.get(k) is flight:
                        del self.flying[k]
            flight.landed.set()
        replies = dict(flight.replies)
        for k, other in waits.items():
            other.landed.wait()
            replies[k] = other.replies.get(k, NOT_SENT)
        found.update({k: r for k, r in replies.items() if isinstance(r, Generation)})
        errors = {k: r for k, r in replies.items() if isinstance(r, str)}
        asked.failed = len(errors)
        self._warn_failures({k: e for k, e in flight.replies.items() if isinstance(e, str)}, len(misses))
        answers = [
            Answer("", "error", errors[k]) if k in errors else Answer(found[k].text, found[k].finish_reason)
            for k in keys
        ]
        return answers, asked

    def settle(self, asked: Asked, stats: Counter) -> None:
        """Count a fetch into `stats` as the serial run would have (see the class docstring)."""
        with self.lock:
            claimed = [g for k in asked.keys if (g := self.sent.pop(k, None)) is not None]
        stats[asked.counter] += asked.requests
        stats["requests_unique"] += len(asked.keys)
        stats["cache_hits"] += len(asked.keys) - len(claimed) - asked.failed
        if claimed or asked.failed:
            stats["engine_requests"] += len(claimed) + asked.failed
            stats["tokens_in"] += sum(g.prompt_tokens for g in claimed)
            stats["tokens_out"] += sum(g.completion_tokens for g in claimed)
        if asked.failed:
            stats[FAILED_REQUESTS] += asked.failed
        stats.update(asked.real)
