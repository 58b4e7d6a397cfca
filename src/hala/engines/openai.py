"""A client for any OpenAI-compatible server (vLLM, SGLang, TGI, hosted APIs).

Requests go out concurrently (at most `max_concurrency` in flight) over one or several base URLs,
round-robin, so a batch can fan out over a fleet of servers. Each request has a timeout and is
retried with exponential backoff on connection errors, timeouts, 429 and 5xx; other errors fail
at once with the server's message. Results come back in input order.

The API key is read only from the environment variable named by `api_key_env`. It is sent in the
Authorization header and is never logged, printed, stored in a manifest or shown in an error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random

from hala.engines.base import Chat, Engine, EngineConfig, Generation, SamplingParams

log = logging.getLogger("hala.engines.openai")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    """A request the server refused, or that still failed after every retry."""


class OpenAIEngine(Engine):
    def __init__(self, cfg: EngineConfig):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("engine.model is empty: give the model name the server serves")
        if not cfg.base_urls:
            raise ValueError("engine.base_urls is empty: give at least one http://host:port/v1")
        self.base_urls = [u.rstrip("/") for u in cfg.base_urls]

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _post(self, client, url: str, body: dict) -> dict:
        import httpx

        delay = self.cfg.backoff_s
        for attempt in range(self.cfg.max_retries + 1):
            last = attempt == self.cfg.max_retries
            try:
                response = await client.post(url, json=body, headers=self._headers())
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                if last:
                    raise ServerError(f"{url}: {type(exc).__name__} after {attempt + 1} tries") from None
                log.warning("%s: %s, retrying in %.1fs", url, type(exc).__name__, delay)
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in RETRY_STATUS or last:
                    raise ServerError(f"{url}: HTTP {response.status_code}: {response.text[:500]}")
                log.warning("%s: HTTP %d, retrying in %.1fs", url, response.status_code, delay)
            await asyncio.sleep(delay * (1 + random.random() * 0.1))
            delay *= 2
        raise AssertionError("unreachable")

    async def _gather(self, path: str, bodies: list[dict]) -> list[dict]:
        import httpx

        urls = itertools.cycle(self.base_urls)
        limit = asyncio.Semaphore(self.cfg.max_concurrency)
        timeout = httpx.Timeout(self.cfg.timeout_s)
        async with httpx.AsyncClient(timeout=timeout) as client:

            async def one(url: str, body: dict) -> dict:
                async with limit:
                    return await self._post(client, url + path, body)

            return await asyncio.gather(*(one(next(urls), b) for b in bodies))

    def _sampling(self, params: SamplingParams) -> dict:
        body = {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        return body

    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        if not conversations:
            return []
        sampling = self._sampling(params)
        bodies = [{"model": self.cfg.model, "messages": c, **sampling} for c in conversations]
        if self.cfg.chat_template:
            for body in bodies:
                body["chat_template"] = self.cfg.chat_template
        replies = asyncio.run(self._gather("/chat/completions", bodies))
        results = []
        for reply in replies:
            choice = reply["choices"][0]
            usage = reply.get("usage") or {}
            results.append(
                Generation(
                    text=choice["message"].get("content") or "",
                    finish_reason=choice.get("finish_reason") or "stop",
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                )
            )
        return results

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        """Uses vLLM's `prompt_logprobs` extension of /completions (other servers may lack it)."""
        if not prompts:
            return []
        bodies = [{"model": self.cfg.model, "prompt": p, "max_tokens": 1, "prompt_logprobs": 0} for p in prompts]
        replies = asyncio.run(self._gather("/completions", bodies))
        scores = []
        for reply in replies:
            steps = reply["choices"][0].get("prompt_logprobs") or reply.get("prompt_logprobs")
            if steps is None:
                raise ServerError("the server does not return prompt_logprobs (a vLLM extension)")
            scores.append([_chosen_logprob(step) for step in steps[1:]])
        return scores


def _chosen_logprob(step: dict) -> float:
    """vLLM returns {token_id: {logprob, rank, decoded_token}} with the prompt token first."""
    entry = next(iter(step.values()))
    return entry["logprob"] if isinstance(entry, dict) else float(entry)
