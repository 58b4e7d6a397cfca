"""A client for any OpenAI-compatible server (vLLM, SGLang, TGI, hosted APIs).

Requests go out concurrently (at most `max_concurrency` in flight) over one or several base URLs,
round-robin, so a batch can fan out over a fleet of servers. Every request lives and fails on its
own: one bad reply costs that request, never the batch.

- Transient failures are retried, each retry on the next base URL (a dead server costs a request
  one try): connection errors, timeouts, HTTP 408/409/425/429/5xx, and a 200 whose body is not
  JSON (truncated) or has no usable `choices`. After a full round over the URLs the request waits
  (exponential backoff) before the next round; after `max_retries` retries it fails.
- Any other 4xx is the server refusing this request: it fails at once, with the server's message.
- A URL that refused `max_retries + 1` connections in a row is left out for the rest of the batch;
  when every URL is, the batch's remaining requests fail at once instead of each waiting through
  its backoff (a rerun retries them, see `hala.engines.cached`).

`chat_each` returns one result per request, a failed one carrying its own error; `chat` and
`prompt_logprobs` are all-or-nothing and raise `ServerError` naming the first failure. `_gather`
(any endpoint path, any reply parser) is the one request loop every method uses.

The API key is read only from the environment variable named by `api_key_env`. It is sent in the
Authorization header and every error text passes through `redact` first, so it is never logged,
printed, stored in a manifest or a reject, or shown in an exception, even when a server echoes it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

from hala.engines.base import Chat, Engine, EngineConfig, EngineError, Generation, SamplingParams
from hala.engines.openai_replies import (
    MalformedReply,
    chat_reply,
    chosen_logprob,
    echo_reply,
    prompt_logprobs_reply,
    tokens_reply,
)
from hala.engines.redact import api_key, redact

log = logging.getLogger("hala.engines.openai")
RETRY_STATUS = {408, 409, 425, 429}  # and every 5xx
BODY_CHARS = 300  # of a server's error body kept in the error text


class ServerError(EngineError):
    """A request the server refused, or that still failed after every retry."""


@dataclass(frozen=True)
class Failure:
    """One request's failure: what went wrong, and whether another try may succeed."""

    error: str
    transient: bool
    unreachable: bool = False  # the connection itself failed (the server looks down)


class _Fleet:
    """The base URLs of one batch and which of them keep refusing connections."""

    def __init__(self, urls: list[str], patience: int):
        self.urls, self.patience = urls, patience
        self.refusals = dict.fromkeys(urls, 0)
        self.last = ""  # the last refusal, as an error text

    def pick(self, start: int) -> str | None:
        """The first URL from `start` on (round-robin) that is still up; None when all are down."""
        for i in range(len(self.urls)):
            url = self.urls[(start + i) % len(self.urls)]
            if self.refusals[url] < self.patience:
                return url
        return None

    def record(self, url: str, failure: Failure | None) -> None:
        """A URL that answered at all (even with an error) is up; one that refused is one step closer to down."""
        refused = failure is not None and failure.unreachable
        self.refusals[url] = self.refusals[url] + 1 if refused else 0
        if refused:
            self.last = failure.error


class OpenAIEngine(Engine):
    def __init__(self, cfg: EngineConfig):
        super().__init__(cfg)
        if not cfg.model:
            raise ValueError("engine.model is empty: give the model name the server serves")
        if not cfg.base_urls:
            raise ValueError("engine.base_urls is empty: give at least one http://host:port/v1")
        self.base_urls = [u.rstrip("/") for u in cfg.base_urls]

    def _headers(self) -> dict[str, str]:
        key = api_key(self.cfg.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _redact(self, text: str) -> str:
        return redact(text, api_key(self.cfg.api_key_env))

    async def _try(self, client, url: str, body: dict, parse: Callable[[Any], Any]) -> Any:
        """One try of one request: the parsed reply, or a `Failure`."""
        import httpx

        try:
            response = await client.post(url, json=body, headers=self._headers())
        except httpx.TimeoutException as exc:
            return Failure(type(exc).__name__, True, unreachable=isinstance(exc, httpx.ConnectTimeout))
        except httpx.TransportError as exc:
            return Failure(f"{type(exc).__name__}: {exc}", True, unreachable=isinstance(exc, httpx.ConnectError))
        except Exception as exc:  # noqa: BLE001 - one request's odd failure must not fail the others
            return Failure(f"{type(exc).__name__}: {exc}", False)
        status, text = response.status_code, response.text
        if 200 <= status < 300:
            try:
                reply = response.json()
            except ValueError:  # a truncated or garbled body
                return Failure(f"HTTP {status} with invalid JSON: {text[:BODY_CHARS]!r}", True)
            try:
                return parse(reply)
            except Exception as exc:  # noqa: BLE001 - MalformedReply, or a field of the wrong type
                what = str(exc) if isinstance(exc, MalformedReply) else f"a malformed reply ({type(exc).__name__})"
                return Failure(f"HTTP {status} with {what}: {text[:BODY_CHARS]!r}", True)
        return Failure(f"HTTP {status}: {text[:BODY_CHARS]}", status in RETRY_STATUS or status >= 500)

    async def _post(self, client, fleet: _Fleet, first: int, path: str, body: dict, parse) -> Any:
        """One request with its retries, each on the next URL; the parsed reply, or a `Failure`
        whose error text is already redacted."""
        delay, tries, error = self.cfg.backoff_s, 0, ""
        for attempt in range(self.cfg.max_retries + 1):
            url = fleet.pick(first + attempt)
            if url is None:
                error = (f"{path}: every base URL refused {fleet.patience} connections in a row, so this request "
                         f"was not tried {'again ' if tries else ''}in this batch; last: {fleet.last}")  # fmt: skip
                return Failure(self._redact(error), True)
            if attempt and attempt % len(fleet.urls) == 0:  # every URL had a try: wait before the next round
                await asyncio.sleep(delay * (1 + random.random() * 0.1))
                delay *= 2
            outcome = await self._try(client, url + path, body, parse)
            tries += 1
            if not isinstance(outcome, Failure):
                fleet.record(url, None)
                return outcome
            error = self._redact(f"{url}: {outcome.error}")
            fleet.record(url, Failure(error, outcome.transient, outcome.unreachable))
            if not outcome.transient:
                return Failure(error, False)
            if attempt < self.cfg.max_retries:
                log.warning("%s; retrying (%d of %d)", error, attempt + 1, self.cfg.max_retries)
        urls = f" over {len(fleet.urls)} base URLs" if len(fleet.urls) > 1 else ""
        return Failure(f"{error} after {tries} tries{urls}", True)

    def _gather(self, path: str, bodies: list[dict], parse: Callable[[Any], Any], at_root: bool = False) -> list[Any]:
        """POST every body to `path` (e.g. "/chat/completions"), at most `max_concurrency` at once;
        one parsed reply or `Failure` per body, in order. Never raises for one request. `at_root`
        posts beside `/v1` instead of under it (vLLM's `/tokenize`)."""
        return asyncio.run(self._gather_async(path, bodies, parse, at_root))

    async def _gather_async(self, path: str, bodies: list[dict], parse, at_root: bool) -> list[Any]:
        import httpx

        urls = [u.removesuffix("/v1") for u in self.base_urls] if at_root else self.base_urls
        fleet = _Fleet(urls, patience=self.cfg.max_retries + 1)
        starts = itertools.cycle(range(len(self.base_urls)))
        limit = asyncio.Semaphore(self.cfg.max_concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.cfg.timeout_s)) as client:

            async def one(first: int, body: dict):
                async with limit:
                    return await self._post(client, fleet, first, path, body, parse)

            return await asyncio.gather(*(one(next(starts), b) for b in bodies))

    def _sampling(self, params: SamplingParams) -> dict:
        body = {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p}
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = params.stop
        return body

    def chat_each(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        if not conversations:
            return []
        sampling = self._sampling(params)
        bodies = [{"model": self.cfg.model, "messages": c, **sampling} for c in conversations]
        if self.cfg.chat_template:
            for body in bodies:
                body["chat_template"] = self.cfg.chat_template
        replies = self._gather("/chat/completions", bodies, chat_reply)
        return [Generation.failed(r.error) if isinstance(r, Failure) else r for r in replies]

    def chat(self, conversations: list[Chat], params: SamplingParams) -> list[Generation]:
        results = self.chat_each(conversations, params)
        errors = [g.error for g in results if g.error is not None]
        if errors:
            more = f" (and {len(errors) - 1} more failed requests)" if len(errors) > 1 else ""
            raise ServerError(errors[0] + more)
        return results

    def prompt_logprobs(self, prompts: list[str]) -> list[list[float]]:
        """Uses vLLM's `prompt_logprobs` extension of /completions (other servers may lack it)."""
        if not prompts:
            return []
        bodies = [{"model": self.cfg.model, "prompt": p, "max_tokens": 1, "prompt_logprobs": 0} for p in prompts]
        replies = self._gather("/completions", bodies, prompt_logprobs_reply)
        scores = []
        for reply in replies:
            if isinstance(reply, Failure):
                raise ServerError(reply.error)
            if reply is None:
                raise ServerError("the server does not return prompt_logprobs (a vLLM extension)")
            scores.append([chosen_logprob(step) for step in reply[1:]])
        return scores

    def score_replies_each(self, replies: list) -> list[list[float] | str]:
        """Teacher-forced reply scores from a vLLM-compatible server, one result per reply (its
        log-probabilities, or its own error text), in two steps:

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
        tokens = self._gather("/tokenize", prompts + wholes, tokens_reply, at_root=True)
        results: list = [None] * len(replies)
        cuts = {}
        for i, (r, prompt, whole) in enumerate(zip(replies, tokens[: len(replies)], tokens[len(replies) :])):
            failed = next((t for t in (prompt, whole) if isinstance(t, Failure)), None)
            if failed is not None:
                results[i] = failed.error
                continue
            ids = whole if r.closed else prompt + whole
            common = next((j for j, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
            if common == len(ids):
                results[i] = f"reply {r.text[:40]!r} has no tokens of its own after the prompt"
                continue
            cuts[i] = (ids, common)
        bodies = [{"model": self.cfg.model, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0,
                   "temperature": 0.0} for ids, _ in cuts.values()]  # fmt: skip
        for (i, (ids, common)), reply in zip(cuts.items(), self._gather("/completions", bodies, echo_reply)):
            if isinstance(reply, Failure):
                results[i] = reply.error
                continue
            values, texts = reply
            if len(values) < len(ids):
                results[i] = "the server returned no prompt log-probabilities for echo: true, logprobs: 0"
                continue
            end = len(ids)
            while replies[i].closed and end > common + 1 and end <= len(texts) and not texts[end - 1].strip():
                end -= 1  # the newline after the end-of-turn marker
            results[i] = [float(v) for v in values[common:end]]
        return results

    def score_replies(self, replies: list) -> list[list[float]]:
        results = self.score_replies_each(replies)
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            raise ServerError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        return results
