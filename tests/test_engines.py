"""Engine plumbing without a model: the fake engine, the OpenAI client against stub servers, and
the request cache's files as older hala versions wrote them."""

from __future__ import annotations

import logging
import threading

import pytest

from hala.engines import ENGINES, EngineConfig, Generation, SamplingParams, get_engine
from hala.engines.fake import arabize
from hala.engines.openai import ServerError
from tests.openai_stub import OpenAIStub, Request, Response, chat_reply


def test_registry_lists_valid_names_on_unknown_engine():
    cfg = EngineConfig.model_construct(kind="nope")
    with pytest.raises(ValueError, match="valid: vllm, openai, fake"):
        get_engine(cfg)
    assert set(ENGINES) == {"vllm", "openai", "fake", "transformers"}


def test_fake_engine_is_deterministic_and_arabic():
    engine = get_engine(EngineConfig(kind="fake", model="x"))
    chats = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello world 42!"}]]
    first = engine.chat(chats, SamplingParams())
    assert first == engine.chat(chats, SamplingParams())
    text = first[0].text
    assert "42!" in text and not any("a" <= ch.lower() <= "z" for ch in text)
    assert all("\u0600" <= ch <= "\u06ff" for ch in text if ch.isalpha())
    assert first[0].finish_reason == "stop"


def test_fake_engine_respects_max_tokens():
    engine = get_engine(EngineConfig(kind="fake", model="x"))
    [gen] = engine.chat([[{"role": "user", "content": "one two three four"}]], SamplingParams(max_tokens=2))
    assert gen.finish_reason == "length" and gen.completion_tokens == 2 and len(gen.text.split()) == 2


def test_arabize_keeps_non_letters():
    assert arabize("x = 3.5; `y`") == "ك = 3.5; `ي`"


class EchoStub(OpenAIStub):
    """Echoes the last message after `delay` seconds; the first `fail` requests get HTTP `status`."""

    def __init__(self, fail: int = 0, status: int = 503, delay: float = 0.0):
        super().__init__()
        self.fail, self.status, self.delay = fail, status, delay

    def respond(self, request: Request) -> Response:
        if self.delay:
            threading.Event().wait(self.delay)
        if len(self.requests) <= self.fail:
            return Response({"error": "try later"}, self.status)
        return Response(chat_reply("echo:" + request.body["messages"][-1]["content"]))


def _engine(urls, **kw):
    return get_engine(EngineConfig(kind="openai", model="m", base_urls=urls, backoff_s=0.01, **kw))


def _chats(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_openai_results_come_back_in_input_order(serve):
    server = serve(EchoStub(delay=0.01))
    gens = _engine([server.url], max_concurrency=4).chat(_chats(12), SamplingParams(max_tokens=5))
    assert [g.text for g in gens] == [f"echo:q{i}" for i in range(12)]
    assert gens[0].prompt_tokens == 3 and gens[0].completion_tokens == 2
    assert server.requests[0].body["max_tokens"] == 5 and server.requests[0].body["model"] == "m"


def test_frequency_penalty_reaches_the_server_and_changes_keys_only_when_set(serve):
    from hala.engines.cache import request_key

    server = serve(EchoStub())
    _engine([server.url]).chat(_chats(2), SamplingParams(max_tokens=5, frequency_penalty=0.5))
    _engine([server.url]).chat(_chats(1), SamplingParams(max_tokens=5))
    assert [r.body.get("frequency_penalty") for r in server.requests] == [0.5, 0.5, None]
    # unset, the field is not in the dump, so caches and fingerprints written before it still match
    assert SamplingParams().model_dump() == {"max_tokens": 256, "temperature": 0.0, "top_p": 1.0, "seed": None, "stop": []}
    keys = {request_key("m", "t", SamplingParams(frequency_penalty=p).model_dump(), "x") for p in (0.0, 0.5)}
    assert len(keys) == 2


def test_request_keys_of_a_batch_are_each_texts_request_key():
    from hala.engines.cache import request_key, request_keys

    sampling = SamplingParams(seed=3, stop=["\n", "»"]).model_dump()
    texts = ["x", "", 'a "quote", a \\ and a / here', "سطر\nجديد\t⟦0⟧", "\x00\x1f\u2028\ud7ff", "é" * 3]
    template = 'Translate into {language} "{text}":\n\n'
    assert request_keys("fake:m@0123", template, sampling, texts) == [
        request_key("fake:m@0123", template, sampling, t) for t in texts
    ]


def test_openai_spreads_requests_over_base_urls(serve):
    a, b = serve(EchoStub()), serve(EchoStub())
    _engine([a.url, b.url]).chat(_chats(10), SamplingParams())
    assert len(a.requests) == 5 and len(b.requests) == 5


def test_openai_retries_with_backoff_on_503(serve):
    server = serve(EchoStub(fail=2, status=503))
    [gen] = _engine([server.url], max_retries=3).chat(_chats(1), SamplingParams())
    assert gen.text == "echo:q0" and len(server.requests) == 3


def test_openai_gives_up_after_max_retries(serve):
    server = serve(EchoStub(fail=10, status=503))
    with pytest.raises(ServerError, match="HTTP 503"):
        _engine([server.url], max_retries=2).chat(_chats(1), SamplingParams())
    assert len(server.requests) == 3


def test_openai_does_not_retry_client_errors(serve):
    server = serve(EchoStub(fail=10, status=400))
    with pytest.raises(ServerError, match="HTTP 400"):
        _engine([server.url], max_retries=3).chat(_chats(1), SamplingParams())
    assert len(server.requests) == 1


def test_openai_times_out_and_retries(serve):
    server = serve(EchoStub(delay=0.5))
    with pytest.raises(ServerError, match="ReadTimeout after 2 tries"):
        _engine([server.url], timeout_s=0.1, max_retries=1).chat(_chats(1), SamplingParams())


def test_openai_api_key_only_from_env_and_never_logged(serve, monkeypatch, caplog):
    secret = "sk-secret-123456"
    monkeypatch.setenv("HALA_TEST_KEY", secret)
    server = serve(EchoStub(fail=1, status=503))
    engine = _engine([server.url], api_key_env="HALA_TEST_KEY")
    with caplog.at_level(logging.DEBUG):
        engine.chat(_chats(1), SamplingParams())
    assert server.requests[-1].headers["Authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text and "retrying" in caplog.text
    assert secret not in repr(engine.cfg) and secret not in engine.cfg.model_dump_json()
    assert "api_key" not in EngineConfig.model_fields  # the key itself can't be put in a config


def test_openai_without_key_sends_no_authorization(serve, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = serve(EchoStub())
    _engine([server.url]).chat(_chats(1), SamplingParams())
    assert "Authorization" not in server.requests[0].headers


def test_a_request_cache_written_by_an_older_hala_still_reads(tmp_path):
    """The single WAL file of the first hala, and a per-writer member as hala wrote it since: the
    same `segments` table, read back as Generations (a segment, a judge verdict, a reply score)."""
    import sqlite3

    from hala.engines.cache import RequestCache

    table = """CREATE TABLE segments (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL,
               prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)"""
    path = tmp_path / "cache" / "segments.sqlite"
    path.parent.mkdir()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(table)
        db.execute("INSERT INTO segments VALUES ('segment', 'صباح الخير', 'stop', 12, 4)")
    db.close()
    with sqlite3.connect(path.with_name("segments.oldhost.41.0.sqlite")) as db:
        db.execute(table)
        db.execute("CREATE TABLE writer (machine TEXT NOT NULL, pid INTEGER NOT NULL, opened REAL NOT NULL, "
                   "closed REAL)")  # fmt: skip
        db.execute("INSERT INTO writer VALUES ('oldhost:boot:1', 41, 0, 1)")
        db.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?)",
                       [("verdict", "ACCEPT", "stop", 30, 1), ("score", "-0.25", "score", 6, 0)])  # fmt: skip
    db.close()
    cache = RequestCache(path)
    assert cache.get_many(["segment", "verdict", "score", "missing"]) == {
        "segment": Generation("صباح الخير", "stop", 12, 4),
        "verdict": Generation("ACCEPT", "stop", 30, 1),
        "score": Generation("-0.25", "score", 6, 0),
    }
    cache.put_many({"new": Generation("نص", "length", 3, 2)})
    cache.close()
    assert RequestCache(path).get_many(["new", "segment"]) == {
        "new": Generation("نص", "length", 3, 2), "segment": Generation("صباح الخير", "stop", 12, 4)
    }
