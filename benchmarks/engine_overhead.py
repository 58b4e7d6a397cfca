"""hala's vLLM engine vs `vllm.LLM.chat` called directly: same engine instance, same batch.

Both paths share one `vllm.LLM` (built once) and the same vLLM sampling params, so they generate
the same tokens and the ratio isolates what hala's layer adds (message conversion, result packing).

Usage: python benchmarks/engine_overhead.py [--model DIR] [--requests 64] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="HF model folder (default: a tiny random Llama)")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from hala.engines import EngineConfig, SamplingParams, get_engine
    from hala.models.tiny import make_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_tiny_llama(os.path.join(tmp, "tiny"), hidden_size=256, layers=4))
        cfg = EngineConfig(kind="vllm", model=model, max_model_len=512, enforce_eager=True)
        engine = get_engine(cfg)
        chats = [[{"role": "user", "content": f"Question number {i}: say something."}] for i in range(args.requests)]
        params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
        raw_params = engine._sampling(params)  # the exact vLLM params hala sends: same work
        engine.chat(chats[:4], params)  # warm-up

        timings = {"raw": [], "hala": []}
        for _ in range(3):
            start = time.perf_counter()
            raw_out = engine.llm.chat(chats, raw_params, use_tqdm=False)
            timings["raw"].append(time.perf_counter() - start)
            start = time.perf_counter()
            gens = engine.chat(chats, params)
            timings["hala"].append(time.perf_counter() - start)
        engine.close()
    raw, hala = min(timings["raw"]), min(timings["hala"])
    tokens = sum(g.completion_tokens for g in gens)
    assert [g.text for g in gens] == [o.outputs[0].text for o in raw_out], "paths generated different text"
    print(f"{args.requests} requests x {args.max_tokens} tokens: vllm.LLM.chat {raw:.2f}s, hala engine {hala:.2f}s")
    print(json.dumps({"requests": args.requests, "hala_tokens_per_s": round(tokens / hala, 1), "engine_overhead_ratio": round(hala / raw, 3)}))


if __name__ == "__main__":
    main()
