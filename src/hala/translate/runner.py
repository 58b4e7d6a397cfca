"""Segments to translations, through the cached engine (`hala.engines.cached.CachedChat`).

Each segment text becomes one translator prompt; its cache key is a hash of (model, template,
sampling, text), so a segment is sent once per model and prompt, across conversations, runs and
restarts. Stats keep translate's own names (segments, segments_unique, engine_segments), and
segments re-split after truncation are counted apart as retry pieces.
"""

from __future__ import annotations

from pathlib import Path

from hala.engines.cache import request_key
from hala.engines.cached import Answer, CachedChat
from hala.translate.config import TranslateConfig
from hala.translate.prompts import render

Result = Answer  # text, finish_reason, error
RENAMED = {"requests": "segments", "requests_unique": "segments_unique", "engine_requests": "engine_segments"}


class SegmentTranslator:
    def __init__(self, cfg: TranslateConfig):
        self.cfg = cfg
        self.template = cfg.prompt.template_for(cfg.source_lang, cfg.target_lang)
        self.key_template = self.template if not cfg.prompt.system else f"{cfg.prompt.system}\n{self.template}"
        self.sampling = cfg.sampling.model_dump()
        cache_path = cfg.cache_path or Path(cfg.out) / "cache" / "segments.sqlite"
        self.chat = CachedChat(cfg.engine, cfg.sampling, cache_path, batch_size=cfg.batch_size,
                               retries=cfg.engine_retries, backoff_s=cfg.engine_backoff_s)  # fmt: skip
        self.model_id = self.chat.model_id

    @property
    def stats(self) -> dict:
        return {RENAMED.get(k, k): v for k, v in self.chat.stats.items()}

    def translate(self, texts: list[str], retry: bool = False) -> list[Answer]:
        """One result per text, in order. `retry` counts them as re-split pieces, not segments."""
        cfg = self.cfg
        keys = [request_key(self.model_id, self.key_template, self.sampling, t) for t in texts]
        chats = [render(self.template, t, cfg.source_lang, cfg.target_lang, cfg.prompt.system) for t in texts]
        return self.chat.ask(keys, chats, counter="retry_pieces" if retry else "requests")

    def take_stats(self) -> dict:
        return {RENAMED.get(k, k): v for k, v in self.chat.take_stats().items()}

    def close(self) -> None:
        self.chat.close()
