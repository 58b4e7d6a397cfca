"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hala.cli import app
from hala.data.units import RequestsFailed
from hala.engines.base import Generation
from hala.engines.cache import CacheError, RequestCache, fold, members
from hala.engines.fake import INSTRUCTION_RE, arabize
from hala.judge import JudgeConfig, judge
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate
from tests.openai_stub import OpenAIStub, Request, Response, chat_reply, free_port

# --- engine faults ---------------------------------------------------------------------------------
# A local OpenAI-compatible stub injects one fault per request, picked by a marker word in the text
# it is asked about; every other request gets a good reply (the fake engine's Arabic letters, or
# ACCEPT for the judge). The stages run for real with engine kind `openai` pointed at the stub.

SECRET = "sk-hala-fault-test-0123456789abcdef"


class FaultStub(OpenAIStub):
    """Answers each request by `faults[marker]`: a list of actions, one per request carrying the
    marker (the last one repeats). Actions: ok, truncated, empty, 400, 503, echo401."""

    def __init__(self, faults: dict[str, list[str]] | None = None, port: int = 0):
        super().__init__(port)
        self.faults = faults or {}
        self.tries: Counter = Counter()  # per marker

    @property
    def seen(self) -> list[str]:
        """The text of every request, in arrival order."""
        return [_asked(r) for r in self.requests]

    def respond(self, request: Request) -> Response:
        text = _asked(request)
        with self.lock:
            marker = next((m for m in self.faults if m in text), None)
            action = "ok"
            if marker:
                plan = self.faults[marker]
                action = plan[min(self.tries[marker], len(plan) - 1)]
                self.tries[marker] += 1
        content = request.body["messages"][-1]["content"]
        reply = chat_reply("ACCEPT" if "<English>" in content else arabize(text))
        if action == "truncated":
            data = json.dumps(reply).encode()
            return Response(data[: len(data) // 2])
        if action == "empty":
            return Response({"choices": [], "usage": {}})
        if action == "400":
            return Response({"error": {"message": "this request is too long"}}, 400)
        if action == "503":
            return Response({"error": "overloaded"}, 503)
        if action == "echo401":
            sent = request.headers.get("Authorization")
            return Response({"error": f"invalid key in 'Authorization: {sent}'", "key": SECRET}, 401)
        return Response(reply)


def _asked(request: Request) -> str:
    """The text a request asks about, without the instruction line before it."""
    return INSTRUCTION_RE.sub("", request.body["messages"][-1]["content"], count=1)


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


def _faulty_run(tmp_path, serve):
    server = serve(FaultStub(FAULTS))
    data = _convs(tmp_path / "in.jsonl", MARKED)
    out = tmp_path / "out"
    with pytest.raises(RequestsFailed) as failed:
        translate(_translate_cfg(data, out, _engine(server.url)))
    return server, data, out, failed.value


def test_each_bad_reply_rejects_only_its_own_conversation_with_its_own_error(tmp_path, serve):
    server, _, out, failed = _faulty_run(tmp_path, serve)
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
    cache = RequestCache(out / "cache" / "segments.sqlite")
    assert len(cache) == 24 - 3
    cache.close()
    assert not (out / "manifest.json").exists()


def test_a_rerun_sends_only_the_failed_requests_and_fills_them_in(tmp_path, serve):
    server, data, out, _ = _faulty_run(tmp_path, serve)
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


def test_a_5xx_then_ok_is_retried_and_kept(tmp_path, serve):
    server = serve(FaultStub({"FLAKY": ["503", "503", "ok"]}))
    data = _convs(tmp_path / "in.jsonl", {0: "FLAKY"}, n=2)
    manifest = translate(_translate_cfg(data, tmp_path / "out", _engine(server.url)))
    assert manifest.counts["rows_out"] == 2 and server.tries["FLAKY"] == 3


def test_a_dead_url_among_two_costs_each_request_one_try(tmp_path, serve):
    server = serve(FaultStub())
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    data = _convs(tmp_path / "in.jsonl", {}, n=20)
    manifest = translate(_translate_cfg(data, tmp_path / "out", _engine(dead, server.url, max_retries=1)))
    assert manifest.counts["rows_out"] == 20 and not _rows(tmp_path / "out" / "rejected")
    assert len(server.seen) == 40 == len(set(server.seen))  # every request reached the live URL once


def test_server_down_exits_3_with_every_row_rejected_and_a_rerun_fills_them_in(tmp_path, serve):
    port = free_port()
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
    server = serve(FaultStub(port=port))  # the server comes up at the same address
    up = CliRunner().invoke(app, args)
    assert up.exit_code == 0, up.output
    assert len(server.seen) == 12 and len(_rows(tmp_path / "out" / "data")) == 6
    assert not _rows(tmp_path / "out" / "rejected")


def test_an_api_key_echoed_by_the_server_reaches_no_file_log_or_error(tmp_path, serve, monkeypatch, caplog):
    monkeypatch.setenv("HALA_FAULT_KEY", SECRET)
    server = serve(FaultStub({"SECRET": ["echo401"]}))
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


def test_judge_rejects_only_the_pair_whose_request_failed_and_a_rerun_asks_only_it(tmp_path, serve):
    server = serve(FaultStub({"TRUNCATED": ["truncated"]}))
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


def test_the_engine_returns_one_result_per_request_and_a_dead_fleet_fails_fast(serve):
    from hala.engines import EngineConfig, SamplingParams, get_engine

    server = serve(FaultStub({"EMPTY": ["empty"]}))
    chats = [[{"role": "user", "content": f"Say {'EMPTY' if i == 1 else 'hi'} {i}."}] for i in range(3)]
    engine = get_engine(EngineConfig(**_engine(server.url)))
    results = engine.chat_each(chats, SamplingParams())
    assert [r.error is None for r in results] == [True, False, True] and "no choices" in results[1].error
    assert results[0].text == arabize("Say hi 0.") and results[1].text == ""
    dead = get_engine(EngineConfig(**_engine(f"http://127.0.0.1:{free_port()}/v1", max_retries=3, max_concurrency=1)))
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
    cfg = _translate_cfg(data, tmp_path / "out", _engine(f"http://127.0.0.1:{free_port()}/v1", max_retries=0))
    config = tmp_path / "stage.json"
    config.write_text(cfg.model_dump_json(), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "hala.run.stage_main", "teacher_translate", str(config)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 3 and "requests failed (engine errors)" in done.stderr
    assert "Traceback" not in done.stderr  # the stage log says what happened, in one line


def test_local_workers_that_lost_rows_to_engine_errors_exit_3_naming_the_shards(tmp_path):
    data = _convs(tmp_path / "in.jsonl", {}, n=4)
    args = ["translate", "-i", str(data), "-o", str(tmp_path / "out"), "--engine", "openai", "-m", "m",
            f"engine.base_urls=[http://127.0.0.1:{free_port()}/v1]", "engine.backoff_s=0", "engine.max_retries=0",
            "progress=false", "rows_per_unit=2", "executor=local", "workers=2"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "hala.cli", *args], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "local shards [0, 1] of 2 failed" in done.stderr and "Traceback" not in done.stderr


def test_a_redo_killed_midway_leaves_the_unit_unfinished(tmp_path):
    """The unit's output (its completion marker) goes before the redo starts, so a kill during the
    redo can't leave the old output standing beside newer rejects and stats."""
    from hala.data.plan import Unit
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

# --- checks before writing, inputs and configs ---


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _broken_copy(model: Path, dest: Path, *, drop: str | None = None, config: dict | None = None) -> Path:
    """A copy of `model` without tensor `drop`, or with config.json keys replaced (a config that lies)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, dest)
    if drop:
        state = load_file(dest / "model.safetensors")
        del state[drop]
        save_file(state, dest / "model.safetensors", metadata={"format": "pt"})
    if config:
        data = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**data, **config}))
    return dest


def test_quantize_no_verify_refuses_a_checkpoint_missing_a_tensor(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", drop="model.layers.1.mlp.down_proj.weight")
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.layers.1.mlp.down_proj.weight: missing (config.json implies [128, 256]" in result.output
    assert str(source / "config.json") in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.tmp"))


def test_quantize_no_verify_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    source = _broken_copy(tiny_llama, tmp_path / "src", config={"intermediate_size": 512})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    expected = "model.layers.0.mlp.down_proj.weight: config.json implies [128, 512], model.safetensors holds [128, 256]"
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_quantize_refuses_a_weight_stored_as_integers(tiny_llama, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    source = _broken_copy(tiny_llama, tmp_path / "src")
    state = load_file(source / "model.safetensors")
    state["model.norm.weight"] = state["model.norm.weight"].to(torch.int16)
    save_file(state, source / "model.safetensors", metadata={"format": "pt"})
    result = _cli("quantize", "-m", str(source), "-o", str(tmp_path / "out"), "--no-verify")
    assert result.exit_code == 1, result.output
    assert "model.norm.weight: model.safetensors stores it as I16; the network expects floating point" in result.output


def test_merge_no_check_refuses_a_config_that_lies_about_a_shape(tiny_llama, tmp_path):
    base = _broken_copy(tiny_llama, tmp_path / "base", config={"intermediate_size": 512})
    result = _cli("merge", "-b", str(base), "-m", str(tiny_llama), "-o", str(tmp_path / "out"), "--no-check")
    assert result.exit_code == 1, result.output
    assert str(base / "config.json") in result.output
    expected = "model.layers.1.mlp.up_proj.weight: config.json implies [512, 128], model.safetensors holds [256, 128]"
    assert expected in result.output
    assert not (tmp_path / "out").exists()


def test_structure_check_accepts_tied_embeddings_stored_once(tiny_llama, tmp_path):
    from hala.checkpoint import StructureError, check_structure, tensor_refs, weight_files

    source = _broken_copy(tiny_llama, tmp_path / "tied", drop="lm_head.weight", config={"tie_word_embeddings": True})
    config = json.loads((source / "config.json").read_text())
    check_structure(tensor_refs(weight_files(source)), config, source / "config.json")  # one copy is enough
    untied = _broken_copy(tiny_llama, tmp_path / "untied", drop="lm_head.weight")
    with pytest.raises(StructureError, match=r"lm_head.weight: missing \(config.json implies \[1024, 128\]"):
        check_structure(tensor_refs(weight_files(untied)), json.loads((untied / "config.json").read_text()), untied)


def test_convert_of_inputs_without_a_row_fails_and_writes_nothing(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    result = _cli("data", "convert", "-i", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "no rows in the inputs" in result.output and "empty.jsonl" in result.output
    assert not (tmp_path / "out").exists()


def test_convert_where_every_row_is_rejected_exits_1_naming_the_reasons(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"foo": [1, 2, 3]}), tmp_path / "bad.parquet")
    result = _cli("data", "convert", "-i", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "no row was kept: all 3 were rejected (wrong_schema=3)" in result.output
    assert len(list((tmp_path / "out" / "rejected").iterdir())) == 1  # the reasons stay readable


def test_a_run_whose_rows_were_all_turned_down_by_a_verdict_warns_loudly(tmp_path):
    rows = [{"en": f"Sentence number {i}.", "ar": f"الجملة رقم {i}."} for i in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    result = _cli("judge", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--engine", "fake")
    assert result.exit_code == 0, result.output  # the judge did its job: the fake engine's answers are unparseable
    assert "warning: no row was kept: all 3 were rejected (judge_unparseable=3)" in result.output


def test_strict_stop_at_the_first_row_leaves_no_output_folder(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"foo": 1}\n')
    result = _cli("data", "convert", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out"), "--strict")
    assert result.exit_code == 1 and "in.jsonl:1:" in result.output
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_with_other_content_are_rejected_naming_the_first_line(tmp_path):
    from hala.data.readers import read_conversations, read_pairs
    from hala.data.rejects import RejectLog

    rows = [{"id": "x", "messages": [{"role": "user", "content": text}]} for text in ("a", "b", "a")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects = RejectLog()
    kept = list(read_conversations(tmp_path / "c.jsonl", rejects=rejects))
    assert [c.messages[0].content for c in kept] == ["a", "a"]  # the same record twice is not a clash
    (reject,) = rejects.rejects
    assert (reject.line, reject.kind) == (2, "duplicate_id") and "line 1" in reject.reason
    (tmp_path / "p.jsonl").write_text('{"id": 1, "en": "a", "ar": "ب"}\n{"id": 1, "en": "c", "ar": "د"}\n')
    rejects = RejectLog()
    assert len(list(read_pairs(tmp_path / "p.jsonl", rejects=rejects))) == 1
    assert rejects.counts() == {"duplicate_id": 1}


def test_a_tsv_line_holding_only_a_tab_is_rejected_with_its_line(tmp_path):
    from hala.data.readers import read_pairs
    from hala.data.rejects import RejectLog

    (tmp_path / "p.tsv").write_text("a\tب\n\t\n\nc\tد\n")
    rejects = RejectLog()
    assert len(list(read_pairs(tmp_path / "p.tsv", rejects=rejects))) == 2
    assert [r.where for r in rejects.rejects] == [f"{tmp_path / 'p.tsv'}:2"]  # the blank line 3 is no row


def test_an_unknown_nested_key_lists_the_keys_of_its_own_section(tmp_path):
    from hala.config import ConfigError, load_config
    from hala.merge.config import MergeConfig

    recipe = tmp_path / "m.yaml"
    recipe.write_text("base: a\nmodel: b\nout: c\ncheck:\n  promt: hi\n")
    with pytest.raises(ConfigError) as err:
        load_config(MergeConfig, recipe)
    assert f"{recipe}: check.promt: unknown key" in str(err.value)
    assert "valid keys under check: enabled, prompt, max_new_tokens" in str(err.value)
    assert "top level" not in str(err.value)


def test_a_typo_in_an_override_is_blamed_on_the_override_not_the_file(tmp_path):
    from hala.config import ConfigError, load_config
    from hala.merge.config import MergeConfig

    recipe = tmp_path / "m.yaml"
    recipe.write_text("base: a\nmodel: b\nout: c\n")
    with pytest.raises(ConfigError) as err:
        load_config(MergeConfig, recipe, ["check.promt=hi"])
    assert str(err.value).startswith("command-line override 'check.promt=hi': check.promt: unknown key")

    from hala.run.recipe import Recipe
    from hala.run.runner import plan

    tiny = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
    overrides = ["translate.engine.kindd=fake", f"out={tmp_path / 'run'}"]
    with pytest.raises(ConfigError) as err:  # a stage's key, checked when `hala run` plans
        plan(load_config(Recipe, tiny, overrides), str(tiny), check_refs=False, overrides=overrides)
    assert str(err.value).startswith(
        "command-line override 'translate.engine.kindd=fake': translate.engine.kindd: unknown key"
    )
    assert "(valid keys under translate.engine: kind, model," in str(err.value)


def test_t_out_of_range_bad_launchers_and_duplicate_yaml_keys_are_refused(tmp_path):
    from hala.config import ConfigError, load_config, read_yaml
    from hala.merge.config import MergeConfig
    from hala.run.recipe import Recipe

    for t in ("1.5", "[0, 2]", "[{filter: mlp, value: -1}, {value: 0.5}]"):
        with pytest.raises(ConfigError, match="t must be between 0"):
            load_config(MergeConfig, None, ["base=a", "model=b", "out=c", f"t={t}"])
    recipe = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"
    for launchers, problem in (("{sftt: accelerate}", "'sftt' is not a stage"), ("{sft: ''}", "sft: empty"),
                               ('{sft: "a \\"b"}', "is not a command line")):  # fmt: skip
        with pytest.raises(ConfigError, match=problem):
            load_config(Recipe, recipe, [f"launchers={launchers}"])
    twice = tmp_path / "twice.yaml"
    twice.write_text("base: a\nt: 0.5\nout: c\nt: 0.7\n")
    with pytest.raises(ConfigError, match=r"twice.yaml:4: invalid YAML: duplicate key 't' \(first on line 2\)"):
        read_yaml(twice)


def test_a_copied_or_renamed_finished_translate_folder_is_accepted(tmp_path, monkeypatch):
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"Hello number {i}."}]}) + "\n" for i in range(4))
    )

    def run(out: str):
        return translate(TranslateConfig(inputs=["in.jsonl"], out=out, engine={"kind": "fake"}, progress=False))

    first = run("a")
    shutil.copytree("a", "copy")
    Path("a").rename("moved")
    for folder in ("copy", "moved"):
        again = run(folder)  # up to date: no OutputInUseError, nothing redone
        assert again.fingerprint == first.fingerprint and again.counts == first.counts

# --- request cache ---
# Probes: K writers opening one cache path at the same moment; another writer's damaged file; the
# file this run writes damaged or impossible to create; a cache from an older hala; a running and a
# killed writer when the shards' caches are folded.

WRITERS, ROUNDS, PER_WRITER = 4, 30, 12


def _entry(name: str) -> Generation:
    return Generation(f"text of {name}", "stop", 3, 5)


def _writer_rounds(root: str, index: int, barrier, results) -> None:
    """One writer process: each round, open the round's cache together with the others, write, read."""
    errors = []
    for r in range(ROUNDS):
        barrier.wait()
        try:
            cache = RequestCache(Path(root) / f"round-{r}" / "cache" / "segments.sqlite")
            mine = {f"{index}-{j}": _entry(f"{index}-{j}") for j in range(PER_WRITER)}
            cache.put_many(dict(list(mine.items())[: PER_WRITER // 2]))
            cache.get_many([f"{k}-0" for k in range(WRITERS)])  # others' entries: a hit or a miss, never an error
            cache.put_many(dict(list(mine.items())[PER_WRITER // 2 :]))
            if cache.get_many(list(mine)) != mine:
                errors.append(f"round {r}: writer {index} cannot read back its own entries")
            cache.close()
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            errors.append(f"round {r}: writer {index}: {type(exc).__name__}: {exc}")
    results.put(errors)


def test_k_writers_on_one_cache_at_once_never_fail_or_lose_an_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer_rounds, args=(str(tmp_path), i, barrier, results)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in results.get(timeout=300)]
    for p in procs:
        p.join()
    assert errors == []
    every = {f"{i}-{j}": _entry(f"{i}-{j}") for i in range(WRITERS) for j in range(PER_WRITER)}
    for r in range(ROUNDS):
        path = tmp_path / f"round-{r}" / "cache" / "segments.sqlite"
        fresh = RequestCache(path)
        assert fresh.get_many(list(every)) == every and len(fresh) == len(every)
        fresh.close()
        assert fold(path) == WRITERS and len(members(path)) == 1
        folded = RequestCache(path)
        assert folded.get_many(list(every)) == every
        folded.close()


def test_another_writers_damaged_file_is_a_miss_with_a_warning_naming_it(tmp_path, caplog):
    path = tmp_path / "segments.sqlite"
    other = RequestCache(path)
    other.put_many({"a": _entry("a"), "b": _entry("b")})
    other.close()
    other.own_path.write_bytes(b"not a database, " * 512)
    cache = RequestCache(path)
    cache.put_many({"c": _entry("c")})
    with caplog.at_level(logging.WARNING, logger="hala.engines"):
        assert cache.get_many(["a", "b", "c"]) == {"c": _entry("c")}
    assert str(other.own_path) in caplog.text and "delete it" in caplog.text
    cache.close()


def test_the_damaged_file_this_run_writes_is_an_error_naming_it(tmp_path):
    cache = RequestCache(tmp_path / "segments.sqlite")
    cache.put_many({"a": _entry("a")})
    cache.own_path.write_bytes(b"not a database, " * 512)
    with pytest.raises(CacheError, match=rf"{cache.own_path}.*delete it") as caught:
        cache.put_many({"b": _entry("b")})
    assert isinstance(caught.value, ValueError)  # so the CLI reports it as a user error


def _translate_cli(tmp_path: Path, out: Path, *settings: str) -> subprocess.CompletedProcess:
    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "hala.cli", "translate", "-i", str(data), "-o", str(out), "--engine", "fake",
           "-m", "m", "rows_per_unit=3", "progress=false", *settings]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def test_cli_a_garbage_cache_file_is_named_and_the_run_goes_on(tmp_path):
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    garbage = out / "cache" / "segments.sqlite"
    garbage.write_bytes(b"\x00garbage" * 1000)
    result = _translate_cli(tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert str(garbage) in result.stderr and "delete it" in result.stderr
    assert result.stderr.count(str(garbage)) == 1  # once, not once per batch
    assert json.loads((out / "manifest.json").read_text())["counts"]["rows_out"] == 6


def test_cli_a_cache_that_cannot_be_created_is_a_user_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _translate_cli(tmp_path, tmp_path / "out", f"cache_path={blocker}/cache/segments.sqlite")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and str(blocker) in result.stderr


def test_a_single_file_cache_from_an_older_hala_is_read_then_folded(tmp_path):
    path = tmp_path / "segments.sqlite"
    old = sqlite3.connect(path)  # what hala wrote before per-writer files: one WAL-mode file
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE segments (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL, "
                "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)")  # fmt: skip
    old.execute("INSERT INTO segments VALUES ('old', 'text of old', 'stop', 3, 5)")
    old.commit()
    old.close()
    cache = RequestCache(path)
    assert cache.get_many(["old"]) == {"old": _entry("old")}
    cache.put_many({"new": _entry("new")})
    cache.close()
    assert fold(path) == 2 and not path.exists() and len(members(path)) == 1
    again = RequestCache(path)
    assert again.get_many(["old", "new"]) == {"old": _entry("old"), "new": _entry("new")}


def _live_writer(path: str, wrote, go_on, finish: str) -> None:
    cache = RequestCache(path)
    cache.put_many({"early": _entry("early")})
    wrote.set()
    go_on.wait()
    cache.put_many({"late": _entry("late")})
    if finish == "close":
        cache.close()
    else:
        os._exit(0)  # killed: its file is never marked closed


@pytest.mark.parametrize("finish", ["close", "killed"])
def test_fold_never_removes_a_running_writers_file(tmp_path, finish):
    path = tmp_path / "segments.sqlite"
    ctx = multiprocessing.get_context("fork")
    wrote, go_on = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_live_writer, args=(str(path), wrote, go_on, finish))
    writer.start()
    assert wrote.wait(60)
    for name in ("done-1", "done-2"):
        done = RequestCache(path)
        done.put_many({name: _entry(name)})
        done.close()
    assert fold(path) == 2 and len(members(path)) == 2  # the finished writers' files; the running one is left alone
    go_on.set()
    writer.join()
    assert fold(path) == 2 and len(members(path)) == 1  # closed, or dead on this machine: folded now
    cache = RequestCache(path)
    assert set(cache.get_many(["early", "late", "done-1", "done-2"])) == {"early", "late", "done-1", "done-2"}


def _killed_mid_commit(path: str) -> None:
    cache = RequestCache(path)
    cache.put_many({"committed": _entry("committed")})
    cache.db.execute("PRAGMA cache_size = 5")  # spill the open transaction into the file: a hot journal
    cache.db.execute("BEGIN")
    cache.db.executemany("INSERT INTO segments VALUES (?, 'x', 'stop', 1, 1)", [(f"k{i}",) for i in range(20_000)])
    os._exit(0)


def test_a_writer_killed_mid_commit_keeps_its_committed_entries(tmp_path, caplog):
    path = tmp_path / "segments.sqlite"
    writer = multiprocessing.get_context("fork").Process(target=_killed_mid_commit, args=(str(path),))
    writer.start()
    writer.join()
    (member,) = members(path)
    assert member.with_name(member.name + "-journal").exists()
    with caplog.at_level(logging.WARNING, logger="hala.engines"):
        cache = RequestCache(path)
        assert cache.get_many(["committed", "k1"]) == {"committed": _entry("committed")}
        cache.close()
    assert caplog.text == ""
    assert fold(path) == 0 and members(path) == [member]  # one finished file: nothing to fold


def test_files_of_many_runs_are_folded_when_a_writer_closes(tmp_path):
    from hala.engines.cache import FOLD_AT

    path = tmp_path / "segments.sqlite"
    for run in range(FOLD_AT + 1):  # one file per run (or resume after a kill), until a close folds them
        cache = RequestCache(path)
        cache.put_many({f"run-{run}": _entry(f"run-{run}")})
        cache.close()
    assert len(members(path)) == 1
    every = {f"run-{r}": _entry(f"run-{r}") for r in range(FOLD_AT + 1)}
    assert RequestCache(path).get_many(list(every)) == every


def test_local_workers_write_their_own_files_and_the_merge_folds_them(tmp_path):
    from hala.engines import EngineConfig
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = dict(inputs=[str(data)], engine=EngineConfig(kind="fake", model="m"), rows_per_unit=3, progress=False)
    out = tmp_path / "local"
    manifest = translate(TranslateConfig(**base, out=str(out), executor="local", workers=3))
    cache = out / "cache" / "segments.sqlite"
    assert manifest.counts["num_shards"] == 3 and len(members(cache)) == 1
    again = translate(TranslateConfig(**base, out=str(tmp_path / "again"), cache_path=str(cache)))
    assert again.counts.get("engine_segments", 0) == 0 and again.counts["rows_out"] == 12


def test_a_cache_that_cannot_be_folded_leaves_the_merge_complete(tmp_path, monkeypatch, caplog):
    from hala.engines import EngineConfig
    from hala.launch import merge as shards
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": f"Q {i}?"}]}) + "\n"
                            for i in range(6)))  # fmt: skip
    out = tmp_path / "out"
    engine = EngineConfig(kind="fake", model="m")
    translate(TranslateConfig(inputs=[str(data)], out=str(out), engine=engine, progress=False))

    def no_room(path):
        raise CacheError(f"{path}: could not fold the cache's files (disk full); they stay as they are")

    monkeypatch.setattr(shards, "fold", no_room)
    with caplog.at_level(logging.WARNING, logger="hala.launch"):
        manifest = shards.merge_shards(out)
    assert manifest.counts["rows_out"] == 6 and "could not fold" in caplog.text

# --- output folders and runs ----------------------------------------------------------------------
#
# One run per folder (a second one fails at once, naming the holder), children that die with their
# parent, settings that can't change the output don't make a folder "another run", a changed stage
# folder is moved aside and never deleted, killed writes leave no temp folder behind for good, and
# a folder that can't be written is a user error.

HALA = [sys.executable, "-m", "hala.cli"]


def _conversation_lines(n: int) -> str:
    return "".join(
        json.dumps({"id": f"c{i:03d}", "messages": [
            {"role": "user", "content": f"Question {i}: what is {i % 7} plus {i % 5}?"},
            {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}. Here is why."},
        ]}) + "\n"
        for i in range(n)
    )  # fmt: skip


@pytest.fixture
def conversations(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(_conversation_lines(40))
    return path


def _translate(data: Path, out: Path, *extra: str) -> list[str]:
    return [*HALA, "translate", "-i", str(data), "-o", str(out), "--engine", "fake", "-m", "m",
            "rows_per_unit=5", "batch_size=4", "progress=false", *extra]  # fmt: skip


def _wait_for(predicate, proc=None, timeout: float = 120.0):
    """Poll until `predicate()`; fail if `proc` ends first or it never happens."""
    deadline = time.time() + timeout
    while not (found := predicate()):
        assert proc is None or proc.poll() is None, "the run ended before the point the test waits for"
        assert time.time() < deadline, "the point the test waits for never came"
        time.sleep(0.05)
    return found


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie waits for a reaper that may not come)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _lock_records(folder: Path) -> list[dict]:
    from hala.data.output_lock import lock_path

    path = lock_path(folder)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _children(pid: int, n: int = 1) -> list[int]:
    """The child processes of `pid` (once it has n)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return found if len(found) >= n else []


def test_a_second_run_into_a_busy_folder_fails_at_once_naming_the_holder(tmp_path, conversations):
    out = tmp_path / "out"
    first = subprocess.Popen(_translate(conversations, out, "engine.fake_delay_s=0.3"), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".hala-run.json").exists(), first)  # claimed, no unit finished yet
    second = subprocess.run(_translate(conversations, out, "sampling.max_tokens=8"), capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert second.returncode == 1, second.stderr
    assert f"in use by another run: pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["sampling"]["max_tokens"] == 512 and manifest["counts"]["rows_out"] == 40
    stamp = json.loads((out / ".hala-run.json").read_text())
    assert stamp["config"]["sampling"]["max_tokens"] == 512  # the refused run did not overwrite it


def test_local_workers_die_with_their_killed_parent_and_the_relaunch_resumes(tmp_path, conversations):
    out = tmp_path / "out"
    cmd = _translate(conversations, out, "--executor", "local", "--workers", "2", "batch_size=1")
    parent = subprocess.Popen([*cmd, "engine.fake_delay_s=5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = _wait_for(lambda: _children(parent.pid, 2), parent)
    _wait_for(lambda: (out / ".hala-run.json").exists(), parent)  # the workers are at work
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    # each worker has minutes of fake engine calls left: only the kernel's SIGTERM ends them this soon
    _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=60)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "merged" / "manifest.json").read_text())["counts"]["rows_out"] == 40


# hala run on the tiny recipe, made fast: fake engines, nothing before teacher_translate really runs
RUN_FAST = [
    "warmup.enabled=false", "quantize.verify.enabled=false", "teacher_fp8=false", "models.teacher=tiny-llama",
    "models.judge=tiny-llama", "models.translator=tiny-lfm2", "models.hala_base=tiny-lfm2",
    "teacher_translate.engine.kind=fake", "judge.engine.kind=fake",
    "eval_translation.engine.kind=fake", "translate.engine.kind=fake",
]  # fmt: skip


def _chain(tmp_path, *extra: str):
    from hala.config import load_config
    from hala.run.recipe import Recipe

    return load_config(Recipe, "recipes/tiny-cpu.yaml", [f"out={tmp_path / 'run'}", *RUN_FAST, *extra])


def _finish(steps, run: Path) -> None:
    """Record steps as done with their settings, as a finished `hala run` does."""
    from hala.data.writers import atomic_write_text
    from hala.run.runner import records

    for step in steps:
        state = {"fingerprint": step.fingerprint, "state": "done", "settings": getattr(step, "settings", None)}
        atomic_write_text(records(run, step.stage.name)["state"], json.dumps(state))


def _run_until_translate(tmp_path, *extra: str) -> tuple[list[str], Path]:
    """A `hala run` command whose first real stage is a slow teacher_translate (fake engine)."""
    from hala.run.runner import plan

    slow = ["teacher_translate.engine.fake_delay_s=5", "teacher_translate.batch_size=1"]  # minutes of work
    overrides = [*RUN_FAST, *slow, *extra]
    recipe = _chain(tmp_path, *slow, *extra)
    _finish(plan(recipe, "r.yaml", until="quantize"), Path(recipe.out))
    cmd = [*HALA, "run", "recipes/tiny-cpu.yaml", "--out", recipe.out, "--until", "teacher_translate", *overrides]
    return cmd, Path(recipe.out)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
def test_stopping_hala_run_stops_its_stage(tmp_path, stop):
    cmd, run = _run_until_translate(tmp_path)
    runner = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (stage,) = _wait_for(lambda: _children(runner.pid), runner)
    _wait_for(lambda: (run / "teacher_translate" / ".hala-run.json").exists(), runner)  # the stage is at work
    os.kill(runner.pid, stop)
    code = runner.wait(timeout=600)
    assert code == (-9 if stop == signal.SIGKILL else 128 + signal.SIGTERM)
    _wait_for(lambda: not _alive(stage), timeout=60)  # minutes of work were left: it was stopped
    state = json.loads((run / "_stages" / "teacher_translate.json").read_text())
    assert state["state"] == "running"  # so the next run resumes it


def test_sigterm_to_a_stage_command_cleans_up_as_an_error_does(tmp_path):
    # before: SIGTERM ended the process where it stood, so no `finally` ran: vLLM's engine processes
    # lived on as orphans (6 GB each for Gemma-3-270M), and the lock file stayed behind
    data = tmp_path / "in.jsonl"
    data.write_text(_conversation_lines(4))
    out = tmp_path / "out"
    config = tmp_path / "slow.yaml"
    config.write_text(json.dumps({"inputs": [str(data)], "out": str(out), "batch_size": 1, "progress": False,
                                  "engine": {"kind": "fake", "model": "m", "fake_delay_s": 5}}))  # fmt: skip
    proc = subprocess.Popen([*HALA, "translate", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _lock_records(out), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read()
    from hala.data.output_lock import lock_path

    assert not lock_path(out).exists()  # the holder let go of the lock, as on any error


def test_a_relaunch_while_a_stray_writer_holds_a_stage_folder_fails_cleanly(tmp_path):
    cmd, run = _run_until_translate(tmp_path)
    config = run / "_stages" / "stray.yaml"
    stage_cfg = {"inputs": [str(Path("src/hala/resources/samples/conversations_en.jsonl").resolve())],
                 "out": str(run / "teacher_translate"), "engine": {"kind": "fake", "model": "m", "fake_delay_s": 5},
                 "batch_size": 1, "progress": False}  # minutes of work: it outlives the relaunch  # fmt: skip
    config.write_text(json.dumps(stage_cfg))
    log = (run / "_stages" / "stray.log").open("w")
    stray = subprocess.Popen([*HALA, "translate", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _lock_records(run / "teacher_translate"), stray)
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert again.returncode == 1, again.stdout + again.stderr + (run / "_stages" / "stray.log").read_text()
        assert f"in use by another run: pid {stray.pid}" in again.stdout + again.stderr
        assert "Traceback" not in again.stdout + again.stderr
        assert stray.poll() is None and (run / "teacher_translate" / ".hala-run.json").exists()  # left alone
    finally:
        stray.kill()
        stray.wait()


def test_settings_that_cant_change_outputs_rerun_no_stage(tmp_path):
    from hala.run.runner import plan

    _finish(plan(_chain(tmp_path), "r.yaml"), tmp_path / "run")
    pace = ["translate.batch_size=64", "translate.engine.timeout_s=5", "translate.engine.max_retries=9",
            "translate.engine.max_concurrency=2", "translate.engine_retries=7", "translate.workers=3",
            "translate.executor=local", "translate.progress=false", "teacher_translate.engine.backoff_s=0",
            "translate.units_in_flight=1", "teacher_translate.units_in_flight=5",
            "judge.batch_size=3", "judge.engine_backoff_s=0", "pairs.batch_size=5", "quantize.chunk_mb=8",
            "merge.chunk_mb=8", "bench.batch_size=2", "sft.logging_steps=1"]  # fmt: skip
    steps = plan(_chain(tmp_path, *pace), "r.yaml")
    assert {s.stage.name: s.why for s in steps if s.action != "skip"} == {}


def test_a_finished_folder_is_not_another_run_for_pace_settings(tmp_path, conversations):
    from hala.engines import EngineConfig
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    def cfg(**kw):
        base = dict(inputs=[str(conversations)], out=str(tmp_path / "out"), rows_per_unit=5, progress=False)
        return TranslateConfig(**base, **kw)

    first = translate(cfg(engine=EngineConfig(kind="fake", model="m"), batch_size=4))
    again = translate(cfg(engine=EngineConfig(kind="fake", model="m", timeout_s=5, max_retries=9), batch_size=2,
                          engine_retries=5, engine_backoff_s=0))  # fmt: skip
    assert again.fingerprint == first.fingerprint and again.counts == first.counts  # up to date, not refused


def test_every_not_output_name_is_a_setting():
    from hala.config import StrictModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    import hala.run.stages as chain

    for stage in chain.STAGES:
        stage.load("config")  # import every stage config
    for cls in subclasses(StrictModel):
        assert cls.NOT_OUTPUT <= set(cls.model_fields), cls.__name__


def test_dry_run_names_the_changed_settings_and_what_happens_to_the_folder(tmp_path):
    from typer.testing import CliRunner

    from hala.cli import app
    from hala.run.runner import plan

    _finish(plan(_chain(tmp_path), "r.yaml"), tmp_path / "run")
    (tmp_path / "run" / "translate").mkdir(parents=True)
    (tmp_path / "run" / "translate" / "notes.txt").write_text("mine")
    args = ["run", "recipes/tiny-cpu.yaml", "--out", str(tmp_path / "run"), "--dry-run", *RUN_FAST]
    result = CliRunner().invoke(app, [*args, "translate.sampling.max_tokens=8", "translate.batch_size=64"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if " translate " in x)
    assert "its settings changed: sampling.max_tokens: 64 -> 8" in line and "batch_size" not in line
    assert f"{tmp_path / 'run' / 'translate'} holds another run's outputs: it will be moved to" in result.output
    assert (tmp_path / "run" / "translate" / "notes.txt").read_text() == "mine"  # a dry run touches nothing


def test_a_changed_stage_folder_is_moved_aside_never_deleted(tmp_path):
    from hala.run.runner import execute, plan

    def report_step(*extra):
        return next(s for s in plan(_chain(tmp_path, *extra), "r.yaml") if s.stage.name == "report")

    run = tmp_path / "run"
    _finish(plan(_chain(tmp_path, "report.samples=3"), "r.yaml"), run)  # the report of other settings
    (run / "report").mkdir(parents=True)
    (run / "report" / "notes.txt").write_text("mine")  # and a user's file
    step = report_step()
    assert step.why == "its settings changed: samples: 3 -> 20"
    said = []
    assert list(execute([step], run, log=said.append)) == ["report"]
    (old,) = (run / "_stages" / "old").iterdir()
    assert old.name.startswith("report-") and (old / "notes.txt").read_text() == "mine"
    assert (run / "report" / "report.html").exists() and not (run / "report" / "notes.txt").exists()
    assert any(f"moved to {old}" in line for line in said)


@pytest.mark.parametrize("stage", ["quantize", "merge"])
def test_a_rerun_removes_the_temp_folder_a_killed_model_write_left(tiny_llama, tmp_path, stage):
    from hala.merge import merge
    from hala.merge.config import MergeConfig
    from hala.quantize import QuantizeConfig, quantize

    out = tmp_path / "model-out"
    stale = tmp_path / f".{out.name}.k1ll3d.tmp"  # what atomic_folder leaves when SIGKILL hits mid-write
    stale.mkdir()
    (stale / "model-00001-of-00001.safetensors").write_bytes(b"\0" * (1 << 20))
    if stage == "quantize":
        quantize(QuantizeConfig(model=str(tiny_llama), out=str(out), verify={"enabled": False}))
    else:
        merge(MergeConfig(base=str(tiny_llama), model=str(tiny_llama), out=str(out), check={"enabled": False}))
    assert not stale.exists()
    assert (out / "manifest.json").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temp_files_of_a_live_writer_are_left_alone(tmp_path, conversations):
    out = tmp_path / "out"
    writer = subprocess.Popen(_translate(conversations, out, "engine.fake_delay_s=0.3"), stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / ".hala-run.json").exists(), writer)
    live = out / "data" / ".unit.jsonl.l1v3.tmp"
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_text("half")
    second = subprocess.run(_translate(conversations, out, "engine.fake_delay_s=0.3"), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert second.returncode == 1 and "in use by another run" in second.stderr
    assert live.exists()  # refused, and removed nothing
    assert writer.wait(timeout=300) == 0, writer.stderr.read()


@pytest.fixture
def immutable(tmp_path):
    """Folders even root can't write to (`chattr +i`), made writable again afterwards."""
    made = []

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here (needs ext4/xfs and CAP_LINUX_IMMUTABLE)")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("where", ["the folder", "its parent"])
def test_a_read_only_output_folder_is_a_user_error(tmp_path, conversations, immutable, where):
    out = tmp_path / "ro" / "out"
    immutable(out if where == "the folder" else out.parent)
    result = subprocess.run([*HALA, "data", "convert", "-i", str(conversations), "-o", str(out)],
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {out}: can't write the output folder" in result.stderr
    assert "choose an output folder you can write to" in result.stderr
