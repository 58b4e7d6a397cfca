"""Segments to translations: dedupe, cache, batch, retry.

Given the segment texts of a unit, `SegmentTranslator.translate` sends each *distinct* text that the
cache doesn't hold to the engine once, in batches of `batch_size`, writes each batch's results to
the cache as soon as it returns (so a kill loses at most one batch), and answers every segment in
order. The engine is started only when the first miss needs it. Engine failures are retried with
exponential backoff; a batch that still fails comes back as errors, which QA rejects.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hala.engines.base import Engine
from hala.translate.cache import Cached, SegmentCache, segment_key
from hala.translate.config import TranslateConfig
from hala.translate.prompts import render

log = logging.getLogger("hala.translate")


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: str
    error: str | None = None


class SegmentTranslator:
    def __init__(self, cfg: TranslateConfig):
        self.cfg = cfg
        self.template = cfg.prompt.template_for(cfg.source_lang, cfg.target_lang)
        self.sampling = cfg.sampling.model_dump()
        self.model_id = f"{cfg.engine.kind}:{cfg.engine.model}"
        cache_path = cfg.cache_path or Path(cfg.out) / "cache" / "segments.sqlite"
        self.cache = SegmentCache(cache_path)
        self.engine: Engine | None = None
        self.stats: Counter = Counter()

    def _key(self, text: str) -> str:
        template = self.template if not self.cfg.prompt.system else f"{self.cfg.prompt.system}\n{self.template}"
        return segment_key(self.model_id, template, self.sampling, text)

    def _engine(self) -> Engine:
        if self.engine is None:
            from hala.engines import get_engine

            self.engine = get_engine(self.cfg.engine)
        return self.engine

    def _chat(self, texts: list[str]) -> list[Cached] | str:
        """One engine call with retries; the error text if it keeps failing."""
        cfg = self.cfg
        chats = [render(self.template, t, cfg.source_lang, cfg.target_lang, cfg.prompt.system) for t in texts]
        delay = cfg.engine_backoff_s
        for attempt in range(cfg.engine_retries + 1):
            try:
                started = time.perf_counter()
                gens = self._engine().chat(chats, cfg.sampling)
                self.stats["engine_ms"] += int((time.perf_counter() - started) * 1000)
                return [Cached(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in gens]
            except Exception as exc:  # noqa: BLE001 - any engine failure is retried, then reported
                error = f"{type(exc).__name__}: {exc}"
                self.stats["engine_errors"] += 1
                if attempt == cfg.engine_retries:
                    return error
                log.warning("engine call failed (%s); retry %d in %.1fs", error, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def translate(self, texts: list[str], retry: bool = False) -> list[Result]:
        """One result per text, in order. `retry` counts them as re-split pieces, not segments."""
        keys = [self._key(t) for t in texts]
        unique = dict(zip(keys, texts))  # first text per key, in order
        found = self.cache.get_many(list(unique))
        misses = [k for k in unique if k not in found]
        self.stats["retry_pieces" if retry else "segments"] += len(texts)
        self.stats["segments_unique"] += len(unique)
        self.stats["cache_hits"] += len(unique) - len(misses)
        errors: dict[str, str] = {}
        size = self.cfg.batch_size
        for i in range(0, len(misses), size):
            batch = misses[i : i + size]
            answers = self._chat([unique[k] for k in batch])
            if isinstance(answers, str):
                errors.update(dict.fromkeys(batch, answers))
                continue
            fresh = dict(zip(batch, answers))
            self.cache.put_many(fresh)
            found.update(fresh)
            self.stats["engine_segments"] += len(batch)
            self.stats["tokens_in"] += sum(a.prompt_tokens for a in answers)
            self.stats["tokens_out"] += sum(a.completion_tokens for a in answers)
        results = []
        for key in keys:
            if key in errors:
                results.append(Result("", "error", errors[key]))
            else:
                hit = found[key]
                results.append(Result(hit.text, hit.finish_reason))
        return results

    def take_stats(self) -> dict:
        numbers, self.stats = dict(self.stats), Counter()
        return numbers

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.cache.close()
