"""Segments to translations, through the cached engine (`hala.engines.cached.CachedChat`).

Each segment text becomes one translator prompt; its cache key is a hash of (model, template,
sampling, text), so a segment is sent once per model and prompt, across conversations, runs and
restarts. Stats keep translate's own names (segments, segments_unique, engine_segments); the
requests of the retry ladder (`hala.translate.retry`) are counted apart under the name it gives
(`retry_resplit_pieces`, `retry_sampled`). A sampled retry asks with its own sampling parameters
(temperature and seed), which are part of its key, so each attempt is cached as itself.

A unit asks through its own `UnitRequests` (`SegmentTranslator.for_unit`): the prompts, keys and
cache lookups are made in the unit's thread, the engine calls in the thread that owns the engine
(`hala.engines.owner`), and the unit's stats are settled when it lands (`settle`), so units
worked at once never share a counter and each counts its requests as the serial run would.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from functools import partial
from pathlib import Path

from hala.engines.base import SamplingParams
from hala.engines.cache import model_key, request_keys
from hala.engines.cached import Answer, Asked, CachedChat
from hala.engines.owner import EngineOwner
from hala.text.prompts import render
from hala.translate.config import TranslateConfig

Result = Answer  # text, finish_reason, error
RENAMED = {"requests": "segments", "requests_unique": "segments_unique", "engine_requests": "engine_segments"}


class SegmentTranslator:
    def __init__(self, cfg: TranslateConfig, model_sha256: str | None = None, owner: EngineOwner | None = None):
        """`model_sha256`: the content hash of a local model folder, part of every key, so a model
        retrained at the same path is asked again instead of answered from the cache. `owner`: the
        thread that makes the engine calls (default: the one building this)."""
        self.cfg = cfg
        self.owner = owner or EngineOwner()
        self.template = cfg.prompt.template_for(cfg.source_lang, cfg.target_lang)
        self.key_template = self.template if not cfg.prompt.system else f"{cfg.prompt.system}\n{self.template}"
        self.prompt_sha256 = hashlib.sha256(self.key_template.encode("utf-8")).hexdigest()
        self.model_sha256 = model_sha256
        self.sampling = cfg.sampling.model_dump()
        cache_path = cfg.cache_path or Path(cfg.out) / "cache" / "segments.sqlite"
        self.chat = CachedChat(cfg.engine, cfg.sampling, cache_path, batch_size=cfg.batch_size,
                               retries=cfg.engine_retries, backoff_s=cfg.engine_backoff_s)  # fmt: skip
        self.model_id = self.chat.model_id
        self.key_model = model_key(self.model_id, model_sha256)

    def for_unit(self, rank: tuple) -> UnitRequests:
        """A unit's requests; `rank` (its place in the plan) orders its engine calls before later units'."""
        return UnitRequests(self, rank)

    def fetch(
        self, texts: list[str], counter: str, sampling: SamplingParams | None, rank: tuple
    ) -> tuple[list[Answer], Asked]:
        cfg = self.cfg
        params = self.sampling if sampling is None else sampling.model_dump()
        keys = request_keys(self.key_model, self.key_template, params, texts)
        chats = [render(self.template, t, cfg.source_lang, cfg.target_lang, cfg.prompt.system) for t in texts]
        return self.chat.fetch(keys, chats, counter, sampling, call=partial(self.owner.call, rank=rank))

    def settle(self, asks: list[Asked]) -> dict:
        """A unit's stats: its requests, counted in the order it made them (call in plan order)."""
        stats: Counter = Counter()
        for asked in asks:
            self.chat.settle(asked, stats)
        return {RENAMED.get(k, k): v for k, v in stats.items()}

    def close(self) -> None:
        self.chat.close()


class UnitRequests:
    """One unit's requests: answered through the translator, kept apart from other units' until
    the unit lands and `SegmentTranslator.settle` counts them."""

    def __init__(self, translator: SegmentTranslator, rank: tuple):
        self.translator, self.rank = translator, rank
        self.asks: list[Asked] = []

    def translate(
        self, texts: list[str], counter: str = "requests", sampling: SamplingParams | None = None
    ) -> list[Answer]:
        """One result per text, in order, counted under `counter` ("requests" is `segments`), asked
        with `sampling` (default: `cfg.sampling`)."""
        answers, asked = self.translator.fetch(texts, counter, sampling, self.rank)
        self.asks.append(asked)
        return answers
