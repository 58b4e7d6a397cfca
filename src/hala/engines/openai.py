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

    def score_replies(self, replies: list) -> list[list[float]]:
        """Teacher-forced reply scores from a vLLM-compatible server, in two steps:

        1. the server renders and tokenizes with its own chat template (vLLM's `/tokenize`, at the
           server root): the chat with its generation prompt, and the chat with the reply's turn
           (closed) or the reply text alone (open);
        2. `/completions` with those token ids, `echo: true`, `logprobs: 0` and `max_tokens: 0` (the
           OpenAI legacy completions API): `choices[0].logprobs.token_logprobs` scores every prompt
           token; the reply's are the ones after the common prefix, less the whitespace the template
           writes after the end-of-turn marker (the cut of `hala.engines.replies`).
        """
        if not replies:
            return []
        base = {"model": self.cfg.model}
        if self.cfg.chat_template:
            base["chat_template"] = self.cfg.chat_template
        prompts = [{**base, "messages": r.chat, "add_generation_prompt": True} for r in replies]
        wholes = [
            {**base, "messages": [*r.chat, {"role": "assistant", "content": r.text}], "add_generation_prompt": False}
            if r.closed else {"model": self.cfg.model, "prompt": r.text, "add_special_tokens": False}
            for r in replies
        ]  # fmt: skip
        tokens = asyncio.run(self._tokenize(prompts + wholes))
        cuts = []
        for r, prompt, whole in zip(replies, tokens[: len(replies)], tokens[len(replies) :]):
            ids = whole if r.closed else prompt + whole
            common = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
            if common == len(ids):
                raise ServerError(f"reply {r.text[:40]!r} has no tokens of its own after the prompt")
            cuts.append((ids, common))
        bodies = [{"model": self.cfg.model, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0,
                   "temperature": 0.0} for ids, _ in cuts]  # fmt: skip
        results = asyncio.run(self._gather("/completions", bodies))
        scores = []
        for r, (ids, common), reply in zip(replies, cuts, results):
            logprobs = reply["choices"][0].get("logprobs") or {}
            values, texts = logprobs.get("token_logprobs"), logprobs.get("tokens") or []
            if not values or len(values) < len(ids):
                raise ServerError("the server returned no prompt log-probabilities for echo: true, logprobs: 0")
            end = len(ids)
            while r.closed and end > common + 1 and end <= len(texts) and not texts[end - 1].strip():
                end -= 1  # the newline after the end-of-turn marker
            scores.append([float(v) for v in values[common:end]])
        return scores

    async def _tokenize(self, bodies: list[dict]) -> list[list[int]]:
        """vLLM's /tokenize (at the server root, beside /v1) for each body, round-robin over the servers."""
        import httpx

        roots = itertools.cycle(u[: -len("/v1")] if u.endswith("/v1") else u for u in self.base_urls)
        limit = asyncio.Semaphore(self.cfg.max_concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.cfg.timeout_s)) as client:

            async def one(root: str, body: dict) -> list[int]:
                async with limit:
                    reply = await self._post(client, root + "/tokenize", body)
                if "tokens" not in reply:
                    raise ServerError(f"{root}/tokenize returned no tokens (the server needs vLLM's /tokenize)")
                return list(reply["tokens"])

            return await asyncio.gather(*(one(next(roots), b) for b in bodies))


def _chosen_logprob(step: dict) -> float:
    """vLLM returns {token_id: {logprob, rank, decoded_token}} with the prompt token first."""
    entry = next(iter(step.values()))
    return entry["logprob"] if isinstance(entry, dict) else float(entry)
