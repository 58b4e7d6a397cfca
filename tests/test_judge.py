"""`hala judge`: answers parsed strictly (unparseable never becomes ACCEPT), verdicts kept with the
raw answer, a verdict cache, unit-level resume, the CLI, and the real vLLM engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import hala.engines
from hala.config import ConfigError, validate
from hala.data.units import RequestsFailed
from hala.engines.base import Engine, EngineConfig, Generation
from hala.judge import JudgeConfig, judge, parse_verdict
from hala.judge.prompt import JUDGE_PROMPT, PAPER_JUDGE_MODEL

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "samples"

ANSWERS = [
    ("ACCEPT", "accept"),
    ("accept", "accept"),
    ("Accept.", "accept"),
    ("ACCEPTED", "accept"),
    ("  \n\nACCEPT\n", "accept"),
    ("**ACCEPT**", "accept"),
    ("`ACCEPT`", "accept"),
    ('"ACCEPT"', "accept"),
    ("«ACCEPT»", "accept"),
    ("[ACCEPT]", "accept"),
    ("# ACCEPT", "accept"),
    ("- ACCEPT", "accept"),
    ("1. ACCEPT", "accept"),
    ("Answer: ACCEPT", "accept"),
    ("**Verdict:** accept", "accept"),
    ("Final answer is: ACCEPT", "accept"),
    ("ACCEPT - the translation is faithful and fluent.", "accept"),
    ("ACCEPT\n\nThe Arabic renders every clause.", "accept"),
    ("The meaning and numbers match.\n\n**ACCEPT**", "accept"),
    ("REJECT", "reject"),
    ("reject!", "reject"),
    ("REJECTED.", "reject"),
    ("**REJECT** – the second clause is missing.", "reject"),
    ("Verdict: REJECT\nReason: wrong language.", "reject"),
    ("The Arabic drops a number.\nREJECT", "reject"),
    ("", "unparseable"),
    ("   ", "unparseable"),
    ("ACCEPT or REJECT", "unparseable"),
    ("ACCEPT/REJECT", "unparseable"),
    ("ACCEPT\nREJECT", "unparseable"),
    ("REJECT. I cannot accept this.", "unparseable"),
    ("I would accept this translation.", "unparseable"),
    ("Not ACCEPT", "unparseable"),
    ("Do not accept.", "unparseable"),
    ("The translation is accepted.", "unparseable"),
    ("acceptable", "unparseable"),
    ("ACCEPTABLE", "unparseable"),
    ("unacceptable", "unparseable"),
    ("REJECTION", "unparseable"),
    ("Yes", "unparseable"),
    ("مقبول", "unparseable"),
    ("ACC EPT", "unparseable"),
    ("A: ACCEPT", "unparseable"),
    ("يوو اري ا ستريكت بيلينغوال", "unparseable"),
]


@pytest.mark.parametrize("answer, verdict", ANSWERS)
def test_parse_verdict(answer, verdict):
    assert parse_verdict(answer) == verdict


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ACEPTRJacceptrj *`:.!-\n\"'#")) | st.characters(), max_size=40))
def test_an_accept_is_never_ambiguous(text):
    verdict = parse_verdict(text)
    words = {w.lower() for w in re.findall(r"\b(accept|reject)(?:ed)?\b", text, re.IGNORECASE)}
    if verdict == "accept":
        assert words == {"accept"}
    if "accept" not in text.lower():
        assert verdict != "accept"


class ScriptedJudge(Engine):
    """Answers from a table keyed by the English text of the pair in the prompt; counts what it is sent."""

    def __init__(self, answers: dict[str, str], default: str = "ACCEPT", fail: Exception | None = None, fail_after: int | None = None):
        super().__init__(EngineConfig(kind="fake", model="judge"))
        self.answers, self.default, self.fail, self.fail_after = answers, default, fail, fail_after
        self.sent: list[str] = []
        self.calls = 0

    def chat(self, conversations, params):
        self.calls += 1
        if self.fail is not None and (self.fail_after is None or self.calls > self.fail_after):
            raise self.fail
        out = []
        for messages in conversations:
            english = re.search(r"<English>\n(.*?)\n</English>", messages[-1]["content"], re.S).group(1)
            self.sent.append(english)
            text = self.answers.get(english, self.default)
            out.append(Generation(text, "stop", 10, 2))
        return out


@pytest.fixture
def scripted(monkeypatch):
    engines = []

    def use(engine: ScriptedJudge) -> ScriptedJudge:
        engines.append(engine)
        monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: engines[-1])
        return engine

    return use


def seed_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / "seed_pairs.jsonl").read_text(encoding="utf-8").splitlines()[:n]]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_dir(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text(encoding="utf-8").splitlines()]


def cfg_for(data: Path, out: Path, **kw) -> JudgeConfig:
    return JudgeConfig(**{"inputs": [str(data)], "out": str(out), "engine": {"kind": "fake"}, "rows_per_unit": 4, **kw})


def test_verdicts_are_kept_with_the_raw_answer_and_counted(tmp_path, scripted):
    rows = seed_rows(8)
    said = {rows[1]["en"]: "**REJECT** - a clause is missing", rows[2]["en"]: "Maybe?", rows[3]["en"]: "ACCEPT or REJECT",
            rows[4]["en"]: "", rows[5]["en"]: "Verdict: accept."}  # fmt: skip
    engine = scripted(ScriptedJudge(said))
    data = write_jsonl(tmp_path / "in.jsonl", rows + ["{broken"])
    manifest = judge(cfg_for(data, tmp_path / "out"))
    c = manifest.counts
    assert (c["judged"], c["verdict_accept"], c["verdict_reject"], c["verdict_unparseable"]) == (8, 4, 1, 3)
    assert c["rows_out"] == 4 and c["rejected_judge_reject"] == 1 and c["rejected_judge_unparseable"] == 3
    assert c["rejected_invalid_json"] == 1 and c["engine_requests"] == 8 == len(engine.sent)
    assert manifest.metrics["kept_fraction"] == pytest.approx(4 / 8)
    assert manifest.metrics["unparseable_fraction"] == pytest.approx(3 / 8)
    accepted = read_dir(tmp_path / "out" / "data")
    assert sorted(r["id"] for r in accepted) == sorted(rows[i]["id"] for i in (0, 5, 6, 7))
    assert all(r["meta"]["judge"]["verdict"] == "accept" and r["meta"]["source_id"] == r["id"] for r in accepted)
    assert {r["meta"]["judge"]["answer"] for r in accepted} == {"ACCEPT", "Verdict: accept."}
    rejected = {r["kind"]: r for r in read_dir(tmp_path / "out" / "rejected") if r["kind"].startswith("judge_")}
    raw = json.loads(rejected["judge_reject"]["raw"])
    assert raw["answer"] == "**REJECT** - a clause is missing" and raw["pair"]["id"] == rows[1]["id"]
    assert rejected["judge_reject"]["line"] == 2 and "a clause is missing" in rejected["judge_reject"]["reason"]
    unparseable = [json.loads(r["raw"])["answer"] for r in read_dir(tmp_path / "out" / "rejected") if r["kind"] == "judge_unparseable"]
    assert sorted(unparseable) == sorted(["Maybe?", "ACCEPT or REJECT", ""])


def test_the_prompt_holds_the_pair_and_asks_for_one_word(tmp_path, monkeypatch):
    sent = []

    class Spy(ScriptedJudge):
        def chat(self, conversations, params):
            sent.extend(conversations)
            return super().chat(conversations, params)

    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: Spy({}))
    row = seed_rows(1)[0]
    judge(cfg_for(write_jsonl(tmp_path / "in.jsonl", [row]), tmp_path / "out", system="Be strict."))
    [chat] = sent
    assert chat[0] == {"role": "system", "content": "Be strict."}
    prompt = chat[1]["content"]
    assert f"<English>\n{row['en']}\n</English>" in prompt and f"<Arabic>\n{row['ar']}\n</Arabic>" in prompt
    assert prompt.endswith("Answer with one word: ACCEPT or REJECT.")


def test_a_second_run_sends_nothing_to_the_engine(tmp_path, scripted, monkeypatch):
    rows = seed_rows(10)
    data = write_jsonl(tmp_path / "in.jsonl", rows + rows[:3])  # repeats are asked once
    cache = tmp_path / "verdicts.sqlite"
    engine = scripted(ScriptedJudge({rows[0]["en"]: "REJECT"}))
    first = judge(cfg_for(data, tmp_path / "a", cache_path=str(cache)))
    assert len(engine.sent) == 10 and first.counts["judged"] == 13 and first.counts["verdict_reject"] == 2
    assert first.counts["cache_hits"] == 3  # the repeats sit in later units

    def no_engine(cfg):
        raise AssertionError("the engine was started although every pair is cached")

    monkeypatch.setattr(hala.engines, "get_engine", no_engine)
    second = judge(cfg_for(data, tmp_path / "b", cache_path=str(cache)))
    assert second.counts.get("engine_requests", 0) == 0 and second.counts["cache_hits"] == 13
    assert read_dir(tmp_path / "b" / "data") == read_dir(tmp_path / "a" / "data")
    # another prompt, model or sampling is another key
    engine = scripted(ScriptedJudge({}))
    judge(cfg_for(data, tmp_path / "c", cache_path=str(cache), sampling={"max_tokens": 4}))
    assert len(engine.sent) == 10


def test_a_killed_run_resumes_unit_by_unit_to_the_same_output(tmp_path, scripted):
    rows = seed_rows(12)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    said = {rows[i]["en"]: "REJECT" for i in (1, 6, 10)}
    scripted(ScriptedJudge(said))
    judge(cfg_for(data, tmp_path / "reference"))
    engine = scripted(ScriptedJudge(said, fail=KeyboardInterrupt(), fail_after=1))  # dies in the second unit
    with pytest.raises(KeyboardInterrupt):
        judge(cfg_for(data, tmp_path / "out"))
    assert len(list((tmp_path / "out" / "data").glob("*.jsonl"))) == 1 and not (tmp_path / "out" / "manifest.json").exists()
    engine = scripted(ScriptedJudge(said))
    resumed = judge(cfg_for(data, tmp_path / "out"))
    assert resumed.counts["units_skipped"] == 1 and resumed.counts["units_done"] == 2
    assert len(engine.sent) == 8  # the first unit's four pairs are not asked again
    assert read_dir(tmp_path / "out" / "data") == read_dir(tmp_path / "reference" / "data")
    assert resumed.counts["judged"] == 12 and resumed.counts["verdict_reject"] == 3 and resumed.counts["rows_out"] == 9
    assert judge(cfg_for(data, tmp_path / "out")).finished_at == resumed.finished_at  # finished: skipped


def test_engine_failures_are_rejected_not_accepted_and_not_cached(tmp_path, scripted):
    rows = seed_rows(3)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    cache = str(tmp_path / "cache.sqlite")
    scripted(ScriptedJudge({}, fail=RuntimeError("server down")))
    with pytest.raises(RequestsFailed) as failed:  # was: a manifest and rc 0
        judge(cfg_for(data, tmp_path / "a", cache_path=cache, engine_retries=1, engine_backoff_s=0))
    assert (failed.value.failed, failed.value.lost) == (3, 3) and not read_dir(tmp_path / "a" / "data")
    assert [r["kind"] for r in read_dir(tmp_path / "a" / "rejected")] == ["judge_engine_error"] * 3
    [stats] = [json.loads(p.read_text()) for p in (tmp_path / "a" / "stats").glob("*.json")]
    assert stats["engine_errors"] == 2 and not (tmp_path / "a" / "manifest.json").exists()
    assert "server down" in read_dir(tmp_path / "a" / "rejected")[0]["reason"]
    engine = scripted(ScriptedJudge({}))
    judge(cfg_for(data, tmp_path / "b", cache_path=cache))
    assert len(engine.sent) == 3


def test_judge_reads_a_pairs_run_and_pairs_reads_a_judge_run(tmp_path, scripted):
    from hala.pairs import PairsConfig, build_pairs

    rows = seed_rows(30)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    scripted(ScriptedJudge({rows[i]["en"]: "REJECT" for i in range(0, 30, 3)}))
    judged = judge(cfg_for(corpus, tmp_path / "judged", rows_per_unit=100))
    built = build_pairs(PairsConfig(inputs=[str(tmp_path / "judged")], out=str(tmp_path / "pairs")))
    assert built.counts["read"] == judged.counts["rows_out"] == 20 and built.counts["inputs_judge"] == 1
    train = [json.loads(line) for line in (tmp_path / "pairs" / "pairs" / "train.jsonl").read_text().splitlines()]
    assert train and all(r["meta"]["judge"]["verdict"] == "accept" for r in train)
    again = judge(cfg_for(tmp_path / "pairs", tmp_path / "rejudged", rows_per_unit=100))
    assert again.counts["judged"] == 20


def test_config_defaults_to_the_papers_judge():
    cfg = validate(JudgeConfig, {"inputs": ["x"], "out": "y"})
    assert (cfg.engine.kind, cfg.engine.model) == ("vllm", PAPER_JUDGE_MODEL) == ("vllm", "Qwen/Qwen2.5-3B-Instruct")
    assert cfg.sampling.temperature == 0 and cfg.prompt == JUDGE_PROMPT
    partial = validate(JudgeConfig, {"inputs": ["x"], "out": "y", "engine": {"tensor_parallel_size": 2}})
    assert partial.engine.model == PAPER_JUDGE_MODEL and partial.engine.tensor_parallel_size == 2
    with pytest.raises(ConfigError, match=r"prompt: .*must use \{src\} and \{tgt\}"):
        validate(JudgeConfig, {"inputs": ["x"], "out": "y", "prompt": "Judge {src} please"})
    with pytest.raises(ConfigError, match="not a valid template"):
        validate(JudgeConfig, {"inputs": ["x"], "out": "y", "prompt": "{src} {tgt} {"})


def test_cli_judge_with_the_fake_engine_accepts_nothing(tmp_path):
    """The fake engine answers garbage: every pair is unparseable, none is kept."""
    from hala.cli import app

    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(6))
    result = CliRunner().invoke(app, ["judge", "-i", str(data), "-o", str(tmp_path / "out"), "--engine", "fake", "rows_per_unit=4"])
    assert result.exit_code == 0, result.output
    assert "verdict_unparseable=6" in result.output and "rows_out=0" in result.output and "kept_fraction=0.0000" in result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["engine"]["model"] == PAPER_JUDGE_MODEL and manifest["counts"]["units"] == 2


@pytest.mark.slow
def test_judge_with_vllm_on_a_tiny_model(tmp_path, vllm_engine, monkeypatch):
    """A random model answers garbage: every pair ends up counted, and nothing garbage is accepted."""
    monkeypatch.setattr(vllm_engine, "close", lambda: None)
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: vllm_engine)
    rows = seed_rows(24)
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    engine = {"kind": "vllm", "model": str(vllm_engine.cfg.model)}
    cfg = cfg_for(data, tmp_path / "out", engine=engine, sampling={"max_tokens": 8}, rows_per_unit=12)
    manifest = judge(cfg)
    c = manifest.counts
    assert c["judged"] == 24 == c["verdict_accept"] + c["verdict_reject"] + c["verdict_unparseable"]
    assert c["rows_out"] == c["verdict_accept"] and c["rejected"] == 24 - c["verdict_accept"]
    assert c["engine_requests"] == 24 and c["tokens_out"] > 0
    for row in read_dir(tmp_path / "out" / "data"):
        assert parse_verdict(row["meta"]["judge"]["answer"]) == "accept"
    answers = [json.loads(r["raw"])["answer"] for r in read_dir(tmp_path / "out" / "rejected")]
    assert len(answers) == c["rejected"] and all(parse_verdict(a) != "accept" for a in answers)
    again = judge(cfg.model_copy(update={"out": str(tmp_path / "again"), "cache_path": str(tmp_path / "out" / "cache" / "verdicts.sqlite")}))
    assert again.counts.get("engine_requests", 0) == 0 and again.counts["rows_out"] == c["rows_out"]
