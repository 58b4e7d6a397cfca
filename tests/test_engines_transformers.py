"""The transformers engine against transformers itself, on a tiny random Llama.

Its answers and scores must be what a direct transformers computation gives, cut as the vLLM
engine cuts them (tests/test_engines_vllm.py holds the two engines to each other).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from hala.engines import EngineConfig, SamplingParams, get_engine
from hala.engines.replies import Reply, reply_token_ids

CHATS = [
    [{"role": "user", "content": "Translate everything that follows into Arabic:\n\nGood morning."}],
    [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "مرحبا، كيف حالك؟"}],
    [{"role": "user", "content": "Count to three."}],
]


@pytest.fixture(scope="module")
def engine(tiny_llama):
    engine = get_engine(EngineConfig(kind="transformers", model=str(tiny_llama), dtype="float32"))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def reference(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    return tokenizer, model


def _greedy(reference, chat, max_new_tokens) -> tuple[list[int], list[int]]:
    """(prompt ids, greedy completion ids) straight from transformers."""
    tokenizer, model = reference
    encoded = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = encoded["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return ids[0].tolist(), out[0, ids.shape[1] :].tolist()


def _logprobs(reference, ids: list[int]) -> list[float]:
    _, model = reference
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    return logprobs.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()


def test_greedy_chat_is_transformers_greedy_generation(engine, reference):
    gens = engine.chat(CHATS, SamplingParams(max_tokens=8))
    tokenizer, _ = reference
    for chat, gen in zip(CHATS, gens):
        prompt, ids = _greedy(reference, chat, 8)
        assert gen.token_ids == tuple(ids) and gen.prompt_tokens == len(prompt)
        # the text as vLLM's detokenizer gives it: a character left incomplete at the end is held back
        assert gen.text == tokenizer.decode(ids, skip_special_tokens=True).rstrip("\ufffd")
        assert (gen.finish_reason, gen.completion_tokens) == ("length", 8)
    cut_inside_a_character = gens[2]
    assert tokenizer.decode(cut_inside_a_character.token_ids).endswith("\ufffd")
    assert cut_inside_a_character.text and not cut_inside_a_character.text.endswith("\ufffd")
    # batch or not, the same answer
    assert engine.chat(CHATS[2:], SamplingParams(max_tokens=8)) == gens[2:]


def test_prompt_logprobs_are_transformers_log_softmax(engine, reference):
    prompt = "The teacher translates every segment into Arabic."
    [scores] = engine.prompt_logprobs([prompt])
    tokenizer, _ = reference
    expected = _logprobs(reference, tokenizer(prompt)["input_ids"])
    assert len(scores) == len(expected) > 3
    assert max(abs(a - b) for a, b in zip(scores, expected)) < 1e-5
    assert all(s <= 0 and math.isfinite(s) for s in scores)


def test_token_logprobs_rank_one_is_the_models_first_choice(engine, reference):
    _, model = reference
    [chat] = CHATS[:1]
    prompt, ids = _greedy(reference, chat, 4)
    sequence = prompt + ids
    [scored] = engine.token_logprobs([sequence])
    assert [lp for lp, _ in scored] == pytest.approx(_logprobs(reference, sequence), abs=1e-5)
    assert [rank for _, rank in scored[-len(ids) :]] == [1] * len(ids)  # greedy tokens are first choices
    with torch.no_grad():
        order = model(torch.tensor([sequence])).logits[0, :-1].argsort(dim=-1, descending=True)
    for position, (_, rank) in enumerate(scored):
        assert order[position, rank - 1] == sequence[position + 1]


def test_tail_logprobs_are_the_tails_of_token_logprobs_in_any_batch(engine, reference):
    """Sequences of different lengths share left-padded batches; each tail is scored as alone."""
    tokenizer, _ = reference
    texts = ["a short one", "a somewhat longer sequence of several more words", "mid length text here", "x"]
    sequences = [list(tokenizer(t)["input_ids"]) for t in texts] * 2
    sequences += [sequences[1][:-1] + [token] for token in (5, 6)]  # choices sharing a question: one row
    tails = [1, 3, 2, 5, 2, 1, 4, 1, 1, 1]  # the 8th asks more than its 1 scorable token: it gets that one
    alone = [engine.token_logprobs([s])[0] for s in sequences]
    for limits in ({}, {"batch_tokens": 1}, {"logit_rows": 6}):  # one batch; one sequence a batch; a few
        got = engine.tail_logprobs(sequences, tails, **limits)
        for row, full, n in zip(got, alone, tails):
            want = full[max(0, len(full) - n) :]
            assert len(row) == len(want) and [r for _, r in row] == [r for _, r in want]
            assert [lp for lp, _ in row] == pytest.approx([lp for lp, _ in want], abs=1e-5)


def test_tail_logprobs_of_a_model_with_conv_layers_are_not_padded(tiny_lfm2):
    """LFM2's short convolutions see the left padding of a batch (transformers masks their input):
    each tail scores as the sequence alone does."""
    lfm2 = get_engine(EngineConfig(kind="transformers", model=str(tiny_lfm2), dtype="float32"))
    sequences = [[5, 6, 7, 8, 9], [5, 6, 7], [9, 8, 7, 6, 5], [4, 4]]
    got = lfm2.tail_logprobs(sequences, [2, 1, 3, 1])
    for row, seq, n in zip(got, sequences, [2, 1, 3, 1]):
        want = lfm2.token_logprobs([seq])[0][-n:]
        assert [lp for lp, _ in row] == pytest.approx([lp for lp, _ in want], abs=1e-5)


def test_score_replies_cut_the_replies_tokens(engine, reference):
    tokenizer, _ = reference
    replies = [Reply(CHATS[0], "صباح الخير"), Reply(CHATS[1], "ACCEPT", closed=False)]
    scores = engine.score_replies(replies)
    for reply, got in zip(replies, scores):
        ids, n_reply = reply_token_ids(tokenizer, reply)
        assert got == pytest.approx(_logprobs(reference, ids)[-n_reply:], abs=1e-5)
    text_only = tokenizer("صباح الخير", add_special_tokens=False)["input_ids"]
    assert len(scores[0]) > len(text_only)  # and the end of the turn


def test_a_stop_token_is_counted_not_shown(tiny_llama, reference, tmp_path):
    _, [first, *_] = _greedy(reference, CHATS[0], 1)
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    config = json.loads((model / "generation_config.json").read_text())
    eos = config["eos_token_id"]
    stops = [first, *([eos] if isinstance(eos, int) else eos)]
    (model / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": stops}))
    with get_engine(EngineConfig(kind="transformers", model=str(model), dtype="float32")) as engine:
        [gen] = engine.chat(CHATS[:1], SamplingParams(max_tokens=8))
    assert (gen.text, gen.finish_reason, gen.completion_tokens, gen.token_ids) == ("", "stop", 1, (first,))


def test_a_stop_string_ends_the_text_before_it(engine):
    [full] = engine.chat(CHATS[:1], SamplingParams(max_tokens=8))
    stop = full.text[3:5]
    [gen] = engine.chat(CHATS[:1], SamplingParams(max_tokens=8, stop=[stop]))
    assert gen.finish_reason == "stop" and gen.text == full.text[: full.text.index(stop)]
    assert gen.completion_tokens < 8 and gen.token_ids == full.token_ids[: gen.completion_tokens]


def test_a_seed_gives_the_same_sample_batch_or_not(engine):
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=7)
    batch = engine.chat(CHATS, params)
    assert engine.chat(CHATS[1:2], params) == batch[1:2]
    other = engine.chat(CHATS, params.model_copy(update={"seed": 8}))
    assert [g.token_ids for g in other] != [g.token_ids for g in batch]
    greedy = engine.chat(CHATS, SamplingParams(max_tokens=8))
    assert [g.token_ids for g in batch] != [g.token_ids for g in greedy]


def test_a_model_without_a_chat_template_gets_the_plain_one(tiny_llama, reference, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    (model / "chat_template.jinja").unlink()
    settings = json.loads((model / "tokenizer_config.json").read_text())
    settings.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer, _ = reference
    with get_engine(EngineConfig(kind="transformers", model=str(model), dtype="float32")) as engine:
        assert engine.tokenizer.chat_template is None
        [gen] = engine.chat(CHATS[1:2], SamplingParams(max_tokens=2))
    plain = "You are brief.\nمرحبا، كيف حالك؟\n"
    assert gen.prompt_tokens == len(tokenizer(plain, add_special_tokens=False)["input_ids"])


def test_distributions_and_loaded_dtypes(engine, reference, tiny_llama):
    tokenizer, model = reference
    ids = tokenizer("Arabic machine translation.")["input_ids"]
    [logprobs] = engine.next_token_logprobs([ids])
    with torch.no_grad():
        expected = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    assert logprobs.shape == (len(ids), len(tokenizer)) and torch.allclose(logprobs, expected, atol=1e-5)
    assert engine.count_parameters(torch.float32) == len(list(model.parameters()))
    assert engine.count_parameters(torch.bfloat16) == 0
    assert engine.context_length == 2048


def test_frequency_penalty_counts_the_answers_tokens(engine):
    # the tiny random model repeats itself greedily; a penalty per earlier use in the answer ends that
    chat = [{"role": "user", "content": "Count to three."}]
    plain = engine.chat([chat], SamplingParams(max_tokens=24))[0]
    penalised = engine.chat([chat], SamplingParams(max_tokens=24, frequency_penalty=2.0))[0]
    assert len(set(penalised.token_ids)) > len(set(plain.token_ids))
    assert max(penalised.token_ids.count(t) for t in penalised.token_ids) <= max(plain.token_ids.count(t) for t in plain.token_ids)
