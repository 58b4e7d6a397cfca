"""The judge's scoring modes on real vLLM (slow): reply scores equal transformers' on a tiny model."""

from __future__ import annotations

import json

import pytest

import hala.engines
from hala.engines.replies import Reply, reply_token_ids

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "Translate everything that follows into Arabic:\n\nGood morning, my friend."}]


def _transformers_scores(model_dir, reply: Reply) -> list[float]:
    """The same cut, computed by hand: the rendered text, the reply's tokens, log-softmax of the logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    text = reply.text
    if reply.closed:
        text = f"{reply.text}<|im_end|>"  # the tiny models' ChatML turn end, the newline after it not scored
    ids = tokenizer(prompt + text, add_special_tokens=False).input_ids
    n_prompt = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    return [logprobs[i - 1, ids[i]].item() for i in range(n_prompt, len(ids))]


def test_vllm_reply_scores_match_transformers(vllm_engine, tiny_llama):
    from transformers import AutoTokenizer

    replies = [Reply(CHAT, "صباح الخير يا صديقي."), Reply(CHAT, "ACCEPT", closed=False)]
    scores = vllm_engine.score_replies(replies)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    for reply, got in zip(replies, scores):
        expected = _transformers_scores(tiny_llama, reply)
        assert len(got) == len(expected) == reply_token_ids(tokenizer, reply)[1]
        assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-3


def test_judge_likelihood_on_vllm_scores_every_row(tmp_path, vllm_engine, monkeypatch):
    from hala.judge import JudgeConfig, judge
    from tests.test_judge_scoring import judged_rows, seed_rows, write_jsonl

    monkeypatch.setattr(vllm_engine, "close", lambda: None)
    monkeypatch.setattr(hala.engines, "get_engine", lambda cfg: vllm_engine)
    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(12))
    for mode in ("likelihood", "choice"):
        cfg = JudgeConfig(inputs=[str(data)], out=str(tmp_path / mode), mode=mode, rows_per_unit=6,
                          engine={"kind": "vllm", "model": str(vllm_engine.cfg.model)})  # fmt: skip
        manifest = judge(cfg)
        assert manifest.counts["judged"] == 12 and manifest.counts["verdict_unparseable"] == 0
        rows = judged_rows(tmp_path / mode)
        assert len(rows) == 12 and all(isinstance(r["meta"]["judge"]["score"], float) for r in rows)
        assert json.loads((tmp_path / mode / "manifest.json").read_text())["counts"]["engine_replies"] == 12 * (1 + (mode == "choice"))
