"""Batched, cached reply scoring: a pair's score is computed once, whatever the threshold.

The judge's scoring modes turn each pair into a few replies to score (`hala.engines.replies.Reply`)
and reduce the engine's per-token log-probabilities to one number (a label probability, a mean
log-probability). `CachedScores.ask` keeps that number under a content key (model, mode, prompt,
the pair; see `hala.engines.cache.request_key`) in a `scores` table beside the segment cache: the
threshold is not part of the key, so changing only the threshold decides again without scoring
again. Batches are written as they return; a batch that keeps failing comes back as errors (never
cached). The engine is built at the first miss, so a fully cached run never starts it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hala.engines.base import Engine, EngineConfig
from hala.engines.replies import Reply

log = logging.getLogger("hala.engines")

SCHEMA = "CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL, tokens INTEGER NOT NULL)"


@dataclass(frozen=True)
class Score:
    value: float | None
    tokens: int = 0
    error: str | None = None


class ScoreCache:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=120)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.db.commit()

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, Score]:
        found = {}
        for i in range(0, len(keys), chunk):
            batch = keys[i : i + chunk]
            rows = self.db.execute(f"SELECT key, score, tokens FROM scores WHERE key IN ({','.join('?' * len(batch))})", batch)
            found.update({key: Score(score, tokens) for key, score, tokens in rows})
        return found

    def put_many(self, entries: dict[str, Score]) -> None:
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO scores VALUES (?, ?, ?)",
                                [(k, s.value, s.tokens) for k, s in entries.items()])  # fmt: skip

    def close(self) -> None:
        self.db.close()


class CachedScores:
    def __init__(self, engine: EngineConfig, cache_path: str | Path, *, batch_size: int = 4096, retries: int = 2,
                 backoff_s: float = 2.0):  # fmt: skip
        self.engine_cfg, self.batch_size, self.retries, self.backoff_s = engine, batch_size, retries, backoff_s
        self.model_id = f"{engine.kind}:{engine.model}"
        self.cache = ScoreCache(cache_path)
        self.engine: Engine | None = None
        self.stats: Counter = Counter()

    def _engine(self) -> Engine:
        if self.engine is None:
            from hala.engines import get_engine

            self.engine = get_engine(self.engine_cfg)
        return self.engine

    def _score(self, replies: list[Reply]) -> list[list[float]] | str:
        """One engine call with retries; the error text if it keeps failing."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                started = time.perf_counter()
                scores = self._engine().score_replies(replies)
                self.stats["engine_ms"] += int((time.perf_counter() - started) * 1000)
                return scores
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - any engine failure is retried, then reported
                error = f"{type(exc).__name__}: {exc}"
                self.stats["engine_errors"] += 1
                if attempt == self.retries:
                    return error
                log.warning("engine call failed (%s); retry %d in %.1fs", error, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def ask(self, keys: list[str], requests: list[list[Reply]], reduce: Callable[[list[list[float]]], float]) -> list[Score]:
        """One score per request (a pair's replies, reduced by `reduce`), in order."""
        unique = dict(zip(keys, requests))
        found = self.cache.get_many(list(unique))
        misses = [k for k in unique if k not in found]
        self.stats["requests"] += len(keys)
        self.stats["requests_unique"] += len(unique)
        self.stats["cache_hits"] += len(unique) - len(misses)
        errors: dict[str, str] = {}
        for i in range(0, len(misses), self.batch_size):
            batch = misses[i : i + self.batch_size]
            flat = [reply for key in batch for reply in unique[key]]
            scored = self._score(flat)
            if isinstance(scored, str):
                errors.update(dict.fromkeys(batch, scored))
                continue
            fresh, at = {}, 0
            for key in batch:
                parts = scored[at : at + len(unique[key])]
                at += len(parts)
                fresh[key] = Score(float(reduce(parts)), sum(len(p) for p in parts))
            self.cache.put_many(fresh)
            found.update(fresh)
            self.stats["engine_requests"] += len(batch)
            self.stats["engine_replies"] += len(flat)
            self.stats["tokens_scored"] += sum(s.tokens for s in fresh.values())
        return [Score(None, 0, errors[k]) if k in errors else found[k] for k in keys]

    def take_stats(self) -> dict:
        numbers, self.stats = dict(self.stats), Counter()
        return numbers

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.cache.close()
