"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app
from hala.data.units import RequestsFailed
from hala.engines.cache import SegmentCache
from hala.engines.fake import INSTRUCTION_RE, arabize
from hala.judge import JudgeConfig, judge
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate

# --- engine faults ---------------------------------------------------------------------------------
# A local OpenAI-compatible stub injects one fault per request, picked by a marker word in the text
# it is asked about; every other request gets a good reply (the fake engine's Arabic letters, or
# ACCEPT for the judge). The stages run for real with engine kind `openai` pointed at the stub.

SECRET = "sk-hala-fault-test-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FaultStub:
    """Answers each request by `faults[marker]`: a list of actions, one per request carrying the
    marker (the last one repeats). Actions: ok, truncated, empty, 400, 503, echo401."""

    def __init__(self, faults: dict[str, list[str]] | None = None, port: int = 0):
        self.faults = faults or {}
        self.seen: list[str] = []  # the text of every request, in arrival order
        self.tries: Counter = Counter()  # per marker
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                content = body["messages"][-1]["content"]
                text = INSTRUCTION_RE.sub("", content, count=1)
                with stub.lock:
                    stub.seen.append(text)
                    marker = next((m for m in stub.faults if m in text), None)
                    action = "ok"
                    if marker:
                        plan = stub.faults[marker]
                        action = plan[min(stub.tries[marker], len(plan) - 1)]
                        stub.tries[marker] += 1
                answer = "ACCEPT" if "<English>" in content else arabize(text)
                reply = {"choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
                status, data = 200, json.dumps(reply).encode()
                if action == "truncated":
                    data = data[: len(data) // 2]
                elif action == "empty":
                    data = b'{"choices": [], "usage": {}}'
                elif action == "400":
                    status, data = 400, b'{"error": {"message": "this request is too long"}}'
                elif action == "503":
                    status, data = 503, b'{"error": "overloaded"}'
                elif action == "echo401":
                    sent = self.headers.get("Authorization")
                    said = {"error": f"invalid key in 'Authorization: {sent}'", "key": SECRET}
                    status, data = 401, json.dumps(said).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    servers = []

    def make(faults=None, port=0):
        servers.append(FaultStub(faults, port))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _convs(path: Path, markers: dict[int, str], n: int = 12) -> Path:
    ask = "Tell me about {} number {}."
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": ask.format(markers.get(i, "item"), i)},
                                         {"role": "assistant", "content": f"Answer {i} is short."}]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _engine(*urls: str, **kw) -> dict:
    return {"kind": "openai", "model": "m", "base_urls": list(urls), "backoff_s": 0.0, "max_retries": 2,
            "max_concurrency": 4, "timeout_s": 30.0, "api_key_env": "HALA_FAULT_KEY", **kw}  # fmt: skip


def _translate_cfg(data: Path, out: Path, engine: dict, **kw) -> TranslateConfig:
    return TranslateConfig(inputs=[str(data)], out=str(out), engine=engine, rows_per_unit=100, progress=False, **kw)


def _rows(folder: Path) -> list[dict]:
    lines = (line for p in sorted(folder.glob("*.jsonl")) for line in p.read_text(encoding="utf-8").splitlines())
    return [json.loads(line) for line in lines]


FAULTS = {"TRUNCATED": ["truncated"], "EMPTY": ["empty"], "REFUSED": ["400"], "FLAKY": ["503", "503", "ok"]}
MARKED = {3: "TRUNCATED", 5: "EMPTY", 7: "REFUSED", 9: "FLAKY"}


def _faulty_run(tmp_path, stub):
    server = stub(FAULTS)
    data = _convs(tmp_path / "in.jsonl", MARKED)
    out = tmp_path / "out"
    with pytest.raises(RequestsFailed) as failed:
        translate(_translate_cfg(data, out, _engine(server.url)))
    return server, data, out, failed.value


def test_each_bad_reply_rejects_only_its_own_conversation_with_its_own_error(tmp_path, stub):
    server, _, out, failed = _faulty_run(tmp_path, stub)
    assert (failed.failed, failed.lost) == (3, 3)  # three of 24 requests, in one unit of 12 conversations
    assert sorted(r["id"] for r in _rows(out / "data")) == sorted(f"c{i}" for i in range(12) if i not in (3, 5, 7))
    rejects = {json.loads(r["raw"])["id"]: r for r in _rows(out / "rejected")}
    assert sorted(rejects) == ["c3", "c5", "c7"] and {r["kind"] for r in rejects.values()} == {"qa_engine_error"}
    own = {"c3": "invalid JSON", "c5": "no choices", "c7": 'HTTP 400: {"error": {"message": "this request is too long"}}'}
    for cid, error in own.items():
        [failure] = json.loads(rejects[cid]["raw"])["failures"]
        assert error in failure["error"] and error in rejects[cid]["reason"]
        assert all(other not in failure["error"] for o, other in own.items() if o != cid)
    # transient faults are retried (max_retries=2: three tries); a 4xx is not; 503, 503, ok is kept
    assert server.tries == {"TRUNCATED": 3, "EMPTY": 3, "REFUSED": 1, "FLAKY": 3}
    # every reply that arrived is cached; the failed ones are not
    cache = SegmentCache(out / "cache" / "segments.sqlite")
    assert len(cache) == 24 - 3
    cache.close()
    assert not (out / "manifest.json").exists()


def test_a_rerun_sends_only_the_failed_requests_and_fills_them_in(tmp_path, stub):
    server, data, out, _ = _faulty_run(tmp_path, stub)
    server.faults = {}
    before = len(server.seen)
    manifest = translate(_translate_cfg(data, out, _engine(server.url)))
    resent = server.seen[before:]
    assert sorted(resent) == sorted(f"Tell me about {MARKED[i]} number {i}." for i in (3, 5, 7))
    assert sorted(r["id"] for r in _rows(out / "data")) == sorted(f"c{i}" for i in range(12))
    assert not _rows(out / "rejected") and manifest.counts["rows_out"] == 12
    assert manifest.counts["units_redone"] == 1 and "requests_failed" not in manifest.counts
    # now finished: a third run sends nothing
    translate(_translate_cfg(data, out, _engine(server.url)))
    assert len(server.seen) == before + 3


def test_a_5xx_then_ok_is_retried_and_kept(tmp_path, stub):
    server = stub({"FLAKY": ["503", "503", "ok"]})
    data = _convs(tmp_path / "in.jsonl", {0: "FLAKY"}, n=2)
    manifest = translate(_translate_cfg(data, tmp_path / "out", _engine(server.url)))
    assert manifest.counts["rows_out"] == 2 and server.tries["FLAKY"] == 3


def test_a_dead_url_among_two_costs_each_request_one_try(tmp_path, stub):
    server = stub()
    dead = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    data = _convs(tmp_path / "in.jsonl", {}, n=20)
    manifest = translate(_translate_cfg(data, tmp_path / "out", _engine(dead, server.url, max_retries=1)))
    assert manifest.counts["rows_out"] == 20 and not _rows(tmp_path / "out" / "rejected")
    assert len(server.seen) == 40 == len(set(server.seen))  # every request reached the live URL once


def test_server_down_exits_3_with_every_row_rejected_and_a_rerun_fills_them_in(tmp_path, stub):
    port = _free_port()
    data = _convs(tmp_path / "in.jsonl", {}, n=6)
    args = ["translate", "-i", str(data), "-o", str(tmp_path / "out"), "--engine", "openai", "-m", "m",
            f"engine.base_urls=[http://127.0.0.1:{port}/v1]", "engine.backoff_s=0", "engine.max_retries=1",
            "progress=false"]  # fmt: skip
    down = CliRunner().invoke(app, args)
    assert down.exit_code == 3, down.output
    assert "12 requests failed (engine errors)" in down.output and "rerun the same command" in down.output
    rejects = _rows(tmp_path / "out" / "rejected")
    assert len(rejects) == 6 and {r["kind"] for r in rejects} == {"qa_engine_error"}
    assert all(f"127.0.0.1:{port}" in r["reason"] for r in rejects)
    server = stub(port=port)  # the server comes up at the same address
    up = CliRunner().invoke(app, args)
    assert up.exit_code == 0, up.output
    assert len(server.seen) == 12 and len(_rows(tmp_path / "out" / "data")) == 6
    assert not _rows(tmp_path / "out" / "rejected")


def test_an_api_key_echoed_by_the_server_reaches_no_file_log_or_error(tmp_path, stub, monkeypatch, caplog):
    monkeypatch.setenv("HALA_FAULT_KEY", SECRET)
    server = stub({"SECRET": ["echo401"]})
    data = _convs(tmp_path / "in.jsonl", {1: "SECRET"}, n=3)
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG), pytest.raises(RequestsFailed) as failed:
        translate(_translate_cfg(data, out, _engine(server.url)))
    assert server.tries["SECRET"] == 1  # a 401 is not retried
    [reject] = _rows(out / "rejected")
    assert "HTTP 401" in reject["reason"] and "Bearer [redacted]" in reject["raw"]
    leaks = [p for p in out.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks and SECRET not in caplog.text and SECRET not in str(failed.value)


def _pairs(path: Path, n: int, marked: dict[int, str]) -> Path:
    rows = [{"id": f"p{i}", "en": f"The {marked.get(i, 'cat')} sat on mat {i}.", "ar": f"جلس القط على الحصيرة {i}."}
            for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_judge_rejects_only_the_pair_whose_request_failed_and_a_rerun_asks_only_it(tmp_path, stub):
    server = stub({"TRUNCATED": ["truncated"]})
    data = _pairs(tmp_path / "pairs.jsonl", 6, {4: "TRUNCATED"})
    cfg = JudgeConfig(inputs=[str(data)], out=str(tmp_path / "out"), engine=_engine(server.url))
    with pytest.raises(RequestsFailed, match="1 requests failed"):
        judge(cfg)
    [reject] = _rows(tmp_path / "out" / "rejected")
    assert reject["kind"] == "judge_engine_error" and "p4" in reject["reason"] and "invalid JSON" in reject["reason"]
    assert len(_rows(tmp_path / "out" / "data")) == 5
    server.faults, before = {}, len(server.seen)
    manifest = judge(cfg)
    assert len(server.seen) == before + 1 and "TRUNCATED" in server.seen[-1]
    assert manifest.counts["verdict_accept"] == 6 and len(_rows(tmp_path / "out" / "data")) == 6


def test_the_engine_returns_one_result_per_request_and_a_dead_fleet_fails_fast(stub):
    from hala.engines import EngineConfig, SamplingParams, get_engine

    server = stub({"EMPTY": ["empty"]})
    chats = [[{"role": "user", "content": f"Say {'EMPTY' if i == 1 else 'hi'} {i}."}] for i in range(3)]
    engine = get_engine(EngineConfig(**_engine(server.url)))
    results = engine.chat_each(chats, SamplingParams())
    assert [r.error is None for r in results] == [True, False, True] and "no choices" in results[1].error
    assert results[0].text == arabize("Say hi 0.") and results[1].text == ""
    dead = get_engine(EngineConfig(**_engine(f"http://127.0.0.1:{_free_port()}/v1", max_retries=3, max_concurrency=1)))
    first, *rest = dead.chat_each(chats, SamplingParams())
    assert "ConnectError" in first.error and "after 4 tries" in first.error
    assert all("refused 4 connections in a row" in r.error and "not tried in this batch" in r.error for r in rest)


def test_redact_hides_the_key_bearer_tokens_and_url_passwords():
    from hala.engines.redact import redact

    said = (f'{{"error": "bad key {SECRET}", "sent": "Authorization: Bearer abc.def-123", "api_key": "k-999"}} '
            "at http://user:pw@host:8000/v1, basic auth, 512 tokens")
    hidden = redact(said, SECRET)
    assert SECRET not in hidden and "abc.def-123" not in hidden and "k-999" not in hidden and "pw@" not in hidden
    assert "Bearer [redacted]" in hidden and "basic auth, 512 tokens" in hidden and "host:8000/v1" in hidden


def test_hala_run_does_not_go_past_a_stage_that_lost_rows_to_engine_errors(tmp_path):
    """`hala run` starts each stage as `python -m hala.run.stage_main`; it must exit non-zero."""
    data = _convs(tmp_path / "in.jsonl", {}, n=2)
    cfg = _translate_cfg(data, tmp_path / "out", _engine(f"http://127.0.0.1:{_free_port()}/v1", max_retries=0))
    config = tmp_path / "stage.json"
    config.write_text(cfg.model_dump_json(), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "hala.run.stage_main", "teacher_translate", str(config)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "requests failed (engine errors)" in done.stderr


def test_a_redo_killed_midway_leaves_the_unit_unfinished(tmp_path):
    """The unit's output (its completion marker) goes before the redo starts, so a kill during the
    redo can't leave the old output standing beside newer rejects and stats."""
    from hala.data.readers import Unit
    from hala.data.units import run_units

    unit, calls = Unit(str(tmp_path / "in.jsonl"), 0, 2), defaultdict(int)
    outcome = {"failed": 1}

    def work(u, rejects):
        calls["work"] += 1
        if outcome.get("die"):
            raise KeyboardInterrupt
        yield {"id": "x"}

    stats_of = lambda u: {"requests_failed": outcome["failed"]}  # noqa: E731
    run_units([unit], tmp_path / "out", work, unit_stats=stats_of)
    outcome["die"] = True
    with pytest.raises(KeyboardInterrupt):
        run_units([unit], tmp_path / "out", work, unit_stats=stats_of)
    assert not list((tmp_path / "out" / "data").glob("*"))
    outcome.update(die=False, failed=0)
    stats = run_units([unit], tmp_path / "out", work, unit_stats=stats_of)
    assert stats.done == 1 and stats.requests_failed == 0
    again = run_units([unit], tmp_path / "out", work, unit_stats=stats_of)
    assert again.skipped == 1 and calls["work"] == 3
