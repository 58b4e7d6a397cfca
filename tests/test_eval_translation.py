"""`hala eval translation`: scores equal sacrebleu on the saved hypotheses; failures don't stop the rest."""

from __future__ import annotations

import json

import pytest

from hala.engines import EngineConfig
from hala.evaluate.bench import ModelsFailedError
from hala.evaluate.translation import TranslationEvalConfig, evaluate_translation, score


def pairs_file(tmp_path, n=12):
    from importlib import resources

    text = resources.files("hala.resources").joinpath("samples/test_pairs.jsonl").read_text(encoding="utf-8")
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(text.splitlines()[:n]) + "\n", encoding="utf-8")
    return path


def test_scores_equal_sacrebleu_on_saved_hypotheses(tmp_path):
    import sacrebleu

    data = pairs_file(tmp_path)
    cfg = TranslationEvalConfig(models=["a=m1", "b=m2"], data=str(data), out=str(tmp_path / "o"),
                                engine=EngineConfig(kind="fake"))  # fmt: skip
    manifest = evaluate_translation(cfg)
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    for label in ("a", "b"):
        rows = [json.loads(line) for line in (tmp_path / "o" / "hypotheses" / f"{label}.jsonl").read_text().splitlines()]
        hyps, refs = [r["hyp"] for r in rows], [r["ref"] for r in rows]
        assert results["models"][label]["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
        assert results["models"][label]["chrf++"] == round(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score, 2)
        assert len(rows) == 12 and rows[0]["src"] and rows[0]["ref"]
    assert "nrefs:1" in results["models"]["a"]["bleu_signature"] and "nw:2" in results["models"]["a"]["chrf_signature"]
    assert manifest.metrics["a.chrf++"] == results["models"]["a"]["chrf++"]
    assert "| a |" in (tmp_path / "o" / "results.md").read_text()


def test_perfect_and_empty_translations():
    assert score(["صباح الخير"], ["صباح الخير"])["chrf++"] == 100.0
    assert score([""], ["صباح الخير"])["bleu"] == 0.0


def test_a_failing_model_is_reported_and_the_others_run(tmp_path, monkeypatch):
    import hala.engines

    real = hala.engines.get_engine

    def engine_for(cfg):
        if cfg.model == "broken":
            raise OSError("no such model folder: broken")
        return real(cfg)

    monkeypatch.setattr(hala.engines, "get_engine", engine_for)
    cfg = TranslationEvalConfig(models=["ok=m", "bad=broken"], data=str(pairs_file(tmp_path)), out=str(tmp_path / "o"),
                                engine=EngineConfig(kind="fake"))  # fmt: skip
    with pytest.raises(ModelsFailedError, match="bad: OSError"):
        evaluate_translation(cfg)
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert "ok" in results["models"] and results["failed"][0]["label"] == "bad"
    monkeypatch.setattr(hala.engines, "get_engine", real)
    cfg = cfg.model_copy(update={"models": ["ok=m", "bad=m2"]})
    manifest = evaluate_translation(cfg)  # the finished model is kept, the failed one reruns
    assert manifest.counts["models"] == 2


def test_a_model_changed_at_the_same_path_is_evaluated_again(tmp_path, monkeypatch):
    import hala.evaluate.translation as evaluation

    def weights_as_translations(cfg, model, sources):  # a stand-in whose output is its model's weights
        asked.append(model)
        return [((tmp_path / model / "model.safetensors").read_text(), "stop") for _ in sources]

    asked: list[str] = []
    monkeypatch.setattr(evaluation, "_translate", weights_as_translations)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_text("صباح")
    cfg = TranslationEvalConfig(models=[f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}"], data=str(pairs_file(tmp_path)),
                                out=str(tmp_path / "o"), engine=EngineConfig(kind="fake"))  # fmt: skip
    evaluate_translation(cfg)
    evaluate_translation(cfg)
    assert asked == [str(tmp_path / "a"), str(tmp_path / "b")]  # unchanged models: not evaluated again
    (tmp_path / "a" / "model.safetensors").write_text("صباح الخير")  # retrained at the same path
    manifest = evaluate_translation(cfg)
    assert asked[2:] == [str(tmp_path / "a")]  # only the changed one
    rows = [json.loads(line) for line in (tmp_path / "o" / "hypotheses" / "a.jsonl").read_text().splitlines()]
    assert {r["hyp"] for r in rows} == {"صباح الخير"}
    assert manifest.metrics["a.chrf++"] == score([r["hyp"] for r in rows], [r["ref"] for r in rows])["chrf++"]
    evaluate_translation(cfg.model_copy(update={"limit": 5}))  # a setting changed: every model again
    assert asked[3:] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert json.loads((tmp_path / "o" / "results.json").read_text())["models"]["b"]["n"] == 5


@pytest.mark.slow
def test_with_the_real_vllm_engine(tmp_path, vllm_engine, monkeypatch):
    import hala.engines
    import sacrebleu

    monkeypatch.setattr(vllm_engine, "close", lambda: None)
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: vllm_engine)
    cfg = TranslationEvalConfig(models=[f"tiny={vllm_engine.cfg.model}"], data=str(pairs_file(tmp_path, 8)),
                                out=str(tmp_path / "o"), engine=EngineConfig(kind="vllm"), sampling={"max_tokens": 12})  # fmt: skip
    evaluate_translation(cfg)
    rows = [json.loads(line) for line in (tmp_path / "o" / "hypotheses" / "tiny.jsonl").read_text().splitlines()]
    result = json.loads((tmp_path / "o" / "results.json").read_text())["models"]["tiny"]
    assert result["chrf++"] == round(sacrebleu.corpus_chrf([r["hyp"] for r in rows], [[r["ref"] for r in rows]], word_order=2).score, 2)
    assert all(r["finish_reason"] in ("stop", "length") for r in rows)


def test_cli_eval_translation(tmp_path):
    from typer.testing import CliRunner

    from hala.cli import app

    data = pairs_file(tmp_path, 5)
    result = CliRunner().invoke(app, ["eval", "translation", "-m", "base=m", "-d", str(data), "-o", str(tmp_path / "o"),
                                      "--engine", "fake"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| base |" in result.output and "chrF++" in result.output
