"""The judge's scoring modes (choice, likelihood): the label arithmetic by hand, a score on every
row and never an unparseable one, threshold changes that never call the engine, resume after a
kill, calibration figures, the bundled gold set, and the OpenAI path against a local stub server."""

from __future__ import annotations

import json
from collections import Counter
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hala.engines
from hala.engines.fake import FakeEngine
from hala.engines.replies import Reply
from hala.judge import JudgeConfig, judge
from hala.judge.calibration import agreement, best_threshold, read_gold, roc_auc, roc_curve
from hala.judge.scores import GATED_SCORE, label_probability, mean_logprob
from tests.openai_stub import OpenAIStub, Request, Response

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "samples"


def seed_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / "seed_pairs.jsonl").read_text(encoding="utf-8").splitlines()[:n]]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_dir(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("*.jsonl")) for line in p.read_text(encoding="utf-8").splitlines()]


def judged_rows(out: Path) -> list[dict]:
    """Every judged pair, accepted (data/) or rejected (rejected/, the pair inside `raw`)."""
    accepted = read_dir(out / "data")
    rejected = [json.loads(r["raw"])["pair"] for r in read_dir(out / "rejected") if r["kind"].startswith("judge_")]
    return accepted + rejected


def cfg_for(data: Path, out: Path, **kw) -> JudgeConfig:
    return JudgeConfig(**{"inputs": [str(data)], "out": str(out), "engine": {"kind": "fake", "model": "m"},
                          "rows_per_unit": 4, **kw})  # fmt: skip


# --- the arithmetic ----------------------------------------------------------------------------------


def test_label_probability_by_hand():
    # ACCEPT is two tokens (-0.5, -0.2: -0.7 in all), REJECT one (-1.2): p = e^-0.7 / (e^-0.7 + e^-1.2)
    hand = math.exp(-0.7) / (math.exp(-0.7) + math.exp(-1.2))
    assert label_probability([-0.5, -0.2], [-1.2]) == pytest.approx(hand) == pytest.approx(0.6224593)
    assert label_probability([-3.0], [-3.0]) == 0.5
    assert label_probability([-1000.0], [-0.1]) == pytest.approx(0.0) and label_probability([-0.1], [-1000.0]) == 1.0
    assert mean_logprob([-1.0, -2.0, -3.0]) == -2.0


def test_roc_auc_kappa_and_best_threshold_by_hand():
    good, bad = [0.9, 0.8, 0.4], [0.5, 0.4, 0.1]
    # pairs (g > b): 0.9 beats 3, 0.8 beats 3, 0.4 beats 0.1 and ties 0.4: 3 + 3 + 1.5 = 7.5 of 9
    assert roc_auc(good, bad) == pytest.approx(7.5 / 9)
    scores, labels = good + bad, [1, 1, 1, 0, 0, 0]
    assert roc_curve(scores, labels)[0] == (0.0, 0.0) and roc_curve(scores, labels)[-1] == (1.0, 1.0)
    # at 0.6: accept 0.9, 0.8; reject the rest -> 2 good accepted, 1 good and 3 bad rejected
    figures = agreement([s >= 0.6 for s in scores], labels)
    assert figures["accuracy"] == pytest.approx(5 / 6)
    assert figures["reject_precision"] == pytest.approx(3 / 4) and figures["reject_recall"] == 1.0
    chance = (2 / 6) * (3 / 6) + (4 / 6) * (3 / 6)  # p(accept) p(good) + p(reject) p(bad)
    assert figures["kappa"] == pytest.approx((5 / 6 - chance) / (1 - chance))
    assert best_threshold(scores, labels) == pytest.approx(0.65)  # between 0.5 and 0.8: 2/3 and 1 -> 5/6


# --- the judge stage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["choice", "likelihood"])
def test_every_row_has_a_score_and_none_is_unparseable(tmp_path, mode):
    rows = seed_rows(10)
    manifest = judge(cfg_for(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", mode=mode))
    c = manifest.counts
    assert c["judged"] == 10 and c["verdict_unparseable"] == 0 and c["verdict_accept"] + c["verdict_reject"] == 10
    judged = judged_rows(tmp_path / "out")
    assert sorted(r["id"] for r in judged) == sorted(r["id"] for r in rows)
    for row in judged:
        record = row["meta"]["judge"]
        assert record["mode"] == mode and record["model"] == "fake:m" and isinstance(record["score"], float)
        assert record["verdict"] == ("accept" if record["score"] >= record["threshold"] else "reject")
    if mode == "choice":
        assert all(0 <= r["meta"]["judge"]["score"] <= 1 for r in judged)


@pytest.mark.parametrize("mode", ["choice", "likelihood"])
def test_the_script_gate_scores_an_untranslated_copy_at_the_floor_without_the_model(tmp_path, mode):
    good = seed_rows(3)
    copy = {**good[0], "id": "copy", "ar": good[0]["en"]}  # the English copied back as its translation
    half = {**good[1], "id": "half", "ar": "مرحبا hello"}  # 5 of 10 letters Arabic: at the gate's 50%, passes
    data = write_jsonl(tmp_path / "in.jsonl", [*good, copy, half])
    manifest = judge(cfg_for(data, tmp_path / "out", mode=mode, threshold=-1e9 if mode == "likelihood" else 0.0))
    assert manifest.counts["gated_script"] == 1 and manifest.counts["engine_requests"] == 4
    by_id = {r["id"]: r["meta"]["judge"] for r in judged_rows(tmp_path / "out")}
    assert by_id["copy"]["score"] == GATED_SCORE[mode] and by_id["copy"]["verdict"] == "reject"
    assert by_id["copy"]["gate"] == "0% of the ar side's letters are in its script (the gate needs 50%)"
    assert all("gate" not in by_id[i] for i in by_id if i != "copy") and by_id["half"]["verdict"] == "accept"
    (reject,) = [r for r in read_dir(tmp_path / "out" / "rejected") if r["kind"] == "judge_reject"]
    assert reject["reason"].startswith("pair copy: script gate: 0% of the ar side's letters")
    # off: the model scores the copy too, and the folder's identity changed (judged again, not reused)
    off = judge(cfg_for(data, tmp_path / "off", mode=mode, language_gate=None, threshold=-1e9 if mode == "likelihood" else 0.0))
    assert off.counts["gated_script"] == 0 and off.counts["engine_requests"] == 5 and off.counts["verdict_accept"] == 5


def test_script_share_counts_letters_only():
    from hala.text.scripts import language_text, script_share

    assert script_share("مرحبا hello، 123!", "ar") == 0.5  # the Arabic comma and the digits are not letters
    assert script_share("123 !", "ar") is None and script_share("hello", "en") == 1.0
    assert script_share(language_text("انظر `print(x)` و https://example.com/path"), "ar") == 1.0


def test_changing_only_the_threshold_calls_no_engine(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(12))
    cache = str(tmp_path / "scores.sqlite")
    first = judge(cfg_for(data, tmp_path / "a", mode="likelihood", cache_path=cache, threshold=-100.0))
    assert first.counts["verdict_accept"] == 12 and first.counts["engine_requests"] == 12
    scores = sorted(r["meta"]["judge"]["score"] for r in judged_rows(tmp_path / "a"))
    middle = (scores[5] + scores[6]) / 2

    def no_engine(cfg):
        raise AssertionError("the engine was started although only the threshold changed")

    monkeypatch.setattr(hala.engines, "get_engine", no_engine)
    second = judge(cfg_for(data, tmp_path / "b", mode="likelihood", cache_path=cache, threshold=middle))
    assert second.counts.get("engine_requests", 0) == 0 and second.counts["cache_hits"] == 12
    assert (second.counts["verdict_accept"], second.counts["verdict_reject"]) == (6, 6)
    assert sorted(r["meta"]["judge"]["score"] for r in judged_rows(tmp_path / "b")) == scores
    rejected = [r for r in read_dir(tmp_path / "b" / "rejected") if r["kind"] == "judge_reject"]
    assert len(rejected) == 6 and all("< threshold" in r["reason"] for r in rejected)
    # the same folder with only a new threshold decides again from its own cache
    third = judge(cfg_for(data, tmp_path / "b", mode="likelihood", cache_path=cache, threshold=scores[2]))
    assert third.counts.get("engine_requests", 0) == 0 and third.counts["verdict_accept"] == 10
    assert len(judged_rows(tmp_path / "b")) == 12


def test_the_default_cache_in_the_output_folder_serves_a_new_threshold(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(8))
    judge(cfg_for(data, tmp_path / "out", mode="choice"))
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: (_ for _ in ()).throw(AssertionError("engine started")))
    again = judge(cfg_for(data, tmp_path / "out", mode="choice", threshold=0.0))
    assert again.counts["verdict_accept"] == 8 and again.counts["cache_hits"] == 8


class _DiesOnSecondCall(FakeEngine):
    calls, sent, die = 0, 0, True

    def score_replies(self, replies):
        type(self).calls += 1
        if type(self).calls == 2 and self.die:
            raise KeyboardInterrupt  # the closest a test gets to kill -9 between two units
        type(self).sent += len(replies)
        return super().score_replies(replies)


def test_a_killed_scoring_run_resumes_to_the_same_output(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(12))
    judge(cfg_for(data, tmp_path / "reference", mode="likelihood"))
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: _DiesOnSecondCall(cfg))
    with pytest.raises(KeyboardInterrupt):
        judge(cfg_for(data, tmp_path / "out", mode="likelihood"))
    assert len(list((tmp_path / "out" / "data").glob("*.jsonl"))) == 1
    _DiesOnSecondCall.die, _DiesOnSecondCall.sent = False, 0
    resumed = judge(cfg_for(data, tmp_path / "out", mode="likelihood"))
    assert resumed.counts["units_skipped"] == 1 and resumed.counts["units_done"] == 2
    assert _DiesOnSecondCall.sent == 8  # the first unit's pairs are not scored again
    assert resumed.counts["engine_requests"] == 12  # the counts are those of an uninterrupted run
    assert read_dir(tmp_path / "out" / "data") == read_dir(tmp_path / "reference" / "data")
    assert judged_rows(tmp_path / "out") == judged_rows(tmp_path / "reference")


def test_calibrated_threshold_and_figures_in_the_manifest(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"en": r["en"], "ar": r["ar"], "label": 1, "kind": "good"} for r in seed_rows(6)] + [
        {"en": r["en"], "ar": r["en"], "label": 0, "kind": "untranslated"} for r in seed_rows(6)])  # fmt: skip
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(4))
    manifest = judge(cfg_for(data, tmp_path / "out", mode="likelihood", gold=str(gold), threshold="calibrated"))
    m = manifest.metrics
    figures = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert m["threshold"] == figures["best_threshold"] == pytest.approx(m["calibration_best_threshold"])
    assert set(figures["auc_by_kind"]) == {"untranslated"} and 0 <= m["calibration_auc"] <= 1
    assert figures["pairs"] == 12 and figures["roc"][0] == [0.0, 0.0] and figures["roc"][-1] == [1.0, 1.0]
    with pytest.raises(ValueError, match="calibrated needs gold"):
        JudgeConfig(inputs=["x"], out="y", mode="likelihood", threshold="calibrated")
    with pytest.raises(ValueError, match="labels must be two different"):
        JudgeConfig(inputs=["x"], out="y", mode="choice", labels=["ACCEPT", "ACCEPT"])


def test_gold_per_kind_calibrates_on_the_first_pairs_of_every_kind(tmp_path):
    from hala.cli import app
    from hala.judge.gold import KINDS

    result = CliRunner().invoke(app, ["judge", "calibrate", "--gold", str(SAMPLES / "judge_gold.jsonl"), "--engine", "fake",
                                      "-m", "m", "--mode", "choice", "-o", str(tmp_path / "cal"), "gold_per_kind=5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "cal" / "manifest.json").read_text())["counts"]
    kinds = {k.removeprefix("gold_"): n for k, n in counts.items() if k.startswith("gold_") and k != "gold_pairs"}
    assert kinds == {kind: 5 for kind in KINDS} and counts["gold_pairs"] == 5 * len(KINDS)
    expected, seen = [], Counter()
    for g in read_gold(SAMPLES / "judge_gold.jsonl"):
        seen[g.kind] += 1
        if seen[g.kind] <= 5:
            expected.append(g.pair.id)
    scored = [json.loads(line)["id"] for line in (tmp_path / "cal" / "calibration_scores.jsonl").read_text().splitlines()]
    assert scored == expected  # the first five of each kind, in the file's order


def test_cli_calibrate_and_judge_in_a_scoring_mode(tmp_path):
    from hala.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["judge", "calibrate", "--gold", str(SAMPLES / "judge_gold.jsonl"), "--engine", "fake",
                                 "-m", "m", "--mode", "choice", "-o", str(tmp_path / "cal")])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cal" / "manifest.json").read_text())
    assert manifest["stage"] == "judge_calibrate" and manifest["counts"]["gold_pairs"] == 477
    assert {"calibration_auc", "calibration_kappa", "calibration_auc_swapped"} <= set(manifest["metrics"])
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(6))
    result = runner.invoke(app, ["judge", "-i", str(data), "-o", str(tmp_path / "out"), "--engine", "fake", "-m", "m",
                                 "--mode", "likelihood", "--threshold", "-3.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "verdict_unparseable=0" in result.output and "threshold=-3.5000" in result.output


# --- the gold set --------------------------------------------------------------------------------------


def test_the_bundled_gold_set_is_what_its_script_writes_from_held_out_pairs():
    from hala.judge.gold import KINDS, bundled_gold

    committed = [json.loads(line) for line in (SAMPLES / "judge_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    assert committed == bundled_gold()
    seed = {json.dumps([r["en"], r["ar"]]) for r in seed_rows(600)}
    assert not any(json.dumps([r["en"], r["ar"]]) in seed for r in committed)  # never the warm-up pairs
    test_ids = [json.loads(line)["id"] for line in (SAMPLES / "test_pairs.jsonl").read_text().splitlines()]
    assert {r["source_id"] for r in committed} == set(test_ids[60:150])  # not the 60 eval_translation reads
    assert {r["kind"] for r in committed} == set(KINDS)
    gold = read_gold(SAMPLES / "judge_gold.jsonl")
    assert all((g.label == 1) == (g.kind == "good") for g in gold)
    for row in committed:
        if row["kind"] == "numbers":
            assert row["ar"] != next(r["ar"] for r in committed if r["id"] == row["source_id"] + "-good")


def test_a_bad_gold_row_names_its_line(tmp_path):
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"en": "a", "ar": "ب", "label": 1}, {"en": "a", "ar": "ب", "label": "yes"}])
    with pytest.raises(ValueError, match=r"gold.jsonl:2: .*label 0 or 1"):
        read_gold(gold)


# --- the OpenAI path, against a local stub ----------------------------------------------------------------


class LogprobStub(OpenAIStub):
    """vLLM's /tokenize and /v1/completions (echo + logprobs) over a word-level tokenizer.

    A chat renders as `<|role|> words <|end|> \\n` per message (+ `<|assistant|>` as generation
    prompt), and every token's log-probability is -len(token)/10, so a test can compute it by hand.
    """

    def __init__(self):
        super().__init__()
        self.vocab: dict[str, int] = {}
        self.refuse = ""  # a word: /completions of a prompt holding it get a 400

    def respond(self, request: Request) -> Response:
        if request.path == "/tokenize":
            return Response(self.tokenize(request.body))
        if self.refuse and self.refuse in self.text_of(request.body):
            return Response({"error": "refused by the test"}, 400)
        return Response(self.complete(request.body))

    def text_of(self, body: dict) -> str:
        words = {i: t for t, i in self.vocab.items()}
        return " ".join(words[i] for i in body["prompt"])

    def ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab.setdefault(t, len(self.vocab)) for t in tokens]

    def tokenize(self, body: dict) -> dict:
        if "prompt" in body:
            return {"tokens": self.ids(body["prompt"].split())}
        tokens = []
        for m in body["messages"]:
            tokens += [f"<|{m['role']}|>", *m["content"].split(), "<|end|>", "\n"]
        if body["add_generation_prompt"]:
            tokens.append("<|assistant|>")
        return {"tokens": self.ids(tokens)}

    def complete(self, body: dict) -> dict:
        assert body["echo"] is True and body["logprobs"] == 0 and body["max_tokens"] == 0
        words = {i: t for t, i in self.vocab.items()}
        tokens = [words[i] for i in body["prompt"]]
        values = [None] + [-len(t) / 10 for t in tokens[1:]]
        return {"choices": [{"text": "", "logprobs": {"tokens": tokens, "token_logprobs": values}}]}


@pytest.fixture
def logprob_server(serve):
    return serve(LogprobStub())


def test_openai_scores_replies_with_echo_logprobs(logprob_server):
    engine = hala.engines.get_engine(hala.engines.EngineConfig(kind="openai", model="m", base_urls=[logprob_server.url]))
    chat = [{"role": "user", "content": "Translate this"}]
    closed, label, two_words = engine.score_replies([Reply(chat, "a bb"), Reply(chat, "ACCEPT", closed=False),
                                                     Reply(chat, "NO WAY", closed=False)])  # fmt: skip
    assert closed == pytest.approx([-0.1, -0.2, -0.7])  # a, bb, <|end|>; the newline after it is not scored
    assert label == pytest.approx([-0.6]) and two_words == pytest.approx([-0.2, -0.3])
    paths = [r.path for r in logprob_server.requests]
    assert paths.count("/tokenize") == 6 and paths.count("/v1/completions") == 3
    # the label probability of a one-token and a two-token label, as by hand
    assert label_probability(label, two_words) == pytest.approx(1 / (1 + math.exp(-0.5 + 0.6)))


@pytest.mark.parametrize("mode", ["choice", "likelihood"])
def test_judge_through_the_openai_client(tmp_path, logprob_server, mode):
    rows = seed_rows(5)
    engine = {"kind": "openai", "model": "m", "base_urls": [logprob_server.url]}
    manifest = judge(cfg_for(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", mode=mode, engine=engine,
                             labels=["ACCEPT", "NO WAY"]))  # fmt: skip
    assert manifest.counts["judged"] == 5 and manifest.counts["verdict_unparseable"] == 0
    judged = judged_rows(tmp_path / "out")
    assert len(judged) == 5
    for row in judged:
        record = row["meta"]["judge"]
        if mode == "choice":  # the stub scores every judge prompt the same: only the labels differ
            assert record["score"] == pytest.approx(1 / (1 + math.exp(0.1))) and record["verdict"] == "reject"
        else:  # the Arabic words and <|end|>, -len/10 each, averaged
            tokens = row["tgt"].split() + ["<|end|>"]
            assert record["score"] == pytest.approx(sum(-len(t) / 10 for t in tokens) / len(tokens))


def test_one_failed_scoring_request_costs_only_its_pair_and_a_rerun_asks_only_it(tmp_path, logprob_server):
    from hala.data.units import RequestsFailed

    rows = seed_rows(6)
    logprob_server.refuse = rows[2]["ar"].split()[0]  # the first Arabic word of pair 2 (unique among these six)
    assert sum(logprob_server.refuse in r["ar"].split() for r in rows) == 1
    engine = {"kind": "openai", "model": "m", "base_urls": [logprob_server.url], "backoff_s": 0}
    cfg = cfg_for(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out", mode="likelihood", engine=engine)
    with pytest.raises(RequestsFailed) as failed:
        judge(cfg)
    assert (failed.value.failed, failed.value.lost) == (1, 1)
    rejected = [r for r in read_dir(tmp_path / "out" / "rejected") if r["kind"] == "judge_engine_error"]
    assert len(rejected) == 1 and "HTTP 400" in rejected[0]["reason"]
    assert len(judged_rows(tmp_path / "out")) == 6 and len(rejected) == 1  # the other five scored and decided
    logprob_server.refuse, logprob_server.requests[:] = "", []
    manifest = judge(cfg)
    assert manifest.counts["judged"] == 6 and manifest.counts["verdict_unparseable"] == 0
    assert [r.path for r in logprob_server.requests].count("/v1/completions") == 1  # only the failed pair


def test_the_run_report_shows_the_calibration_with_a_roc_plot(tmp_path):
    from hala.judge import calibrate
    from hala.run.report import ReportConfig, report

    run = tmp_path / "run"
    calibrate(JudgeConfig(inputs=["x"], out=str(run / "judge"), engine={"kind": "fake", "model": "m"}, mode="likelihood",
                          gold=str(SAMPLES / "judge_gold.jsonl")))  # fmt: skip
    report(ReportConfig(run=str(run), out=str(run / "report")))
    page = (run / "report" / "report.html").read_text()
    for text in ("The judge: calibration on the gold set", "Cohen&#x27;s κ", "REJECT recall", "untranslated", "wrong_language",
                 "fake:m", "judge_roc.png"):  # fmt: skip
        assert text in page, text
    assert (run / "report" / "judge_roc.png").stat().st_size > 1000


def test_a_judge_model_changed_at_its_path_scores_again_despite_a_shared_cache(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(6))
    model = tmp_path / "judge-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"v1")
    cache = str(tmp_path / "shared" / "verdicts.sqlite")

    def run(out: str):
        return judge(cfg_for(data, tmp_path / out, mode="likelihood", engine={"kind": "fake", "model": str(model)},
                             cache_path=cache))  # fmt: skip

    assert run("a").counts["engine_requests"] == 6
    assert run("b").counts.get("engine_requests", 0) == 0  # the same content: cached
    (model / "model.safetensors").write_bytes(b"v2")  # retrained at the same path
    assert run("c").counts["engine_requests"] == 6
