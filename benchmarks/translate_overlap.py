"""How long `hala translate` keeps a GPU-speed engine waiting: wall time / pure engine time, with
units in flight (hala's reading, QA, rebuilding and writing overlapped with generation) and
without (`units_in_flight=1`), side by side in one run.

The engine is the fake one made to take a GPU's time per batch: a call lasts `fixed + per_token
x tokens generated` (its own string work included), sleeping, so the interpreter lock is free as
vLLM's engine-core process leaves it. The defaults are our guess at a ~1B translator on one H100:
20,000 generated tokens/s at large batches, 30 ms per call. The sum of those times is the pure
engine time; whatever the wall time adds to it is hala's own work left in the engine's way.
Target (issue #16): <= 1.05 with overlap, at the default batch size (4096 segments: each unit of
1,000 synthetic conversations, ~3,000 segments, is one greedy call). A share of the greedy answers
(`--copy-share`, 5%) copy the source back, so QA fails them and the retry ladder adds its
smaller calls (re-split pieces, sampled attempts) to every unit, as real data does. Also printed: the
same ratio between the first engine call's start and the last one's end (`steady`), which leaves
out the ramp-up (the first unit read before the engine has work) and the drain (the last unit
checked and written after it has none): what a run of thousands of units sees.

Usage: python benchmarks/translate_overlap.py [--units 16] [--rows-per-unit 1000] [--in-flight 4]
       [--per-token-us 50] [--fixed-ms 30] [--copy-share 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from translate_scale import synth  # noqa: E402 - the same synthetic conversations


def paced_engine(fixed_s: float, per_token_s: float, copy_share: float, calls: list[tuple[float, float, float]]):
    from hala.engines.base import Generation
    from hala.engines.fake import INSTRUCTION_RE, FakeEngine

    def copied(text: str) -> bool:  # a fixed share of greedy answers copy the source back: QA fails them
        return zlib.crc32(text.encode()) % 10_000 < copy_share * 10_000

    class PacedFake(FakeEngine):
        def chat(self, conversations, params):
            start = time.perf_counter()
            results = super().chat(conversations, params)  # the fake's own string work is part of the call
            if params.temperature == 0:
                texts = [INSTRUCTION_RE.sub("", c[-1]["content"], count=1) for c in conversations]
                results = [Generation(t, "stop", r.prompt_tokens, r.completion_tokens) if copied(t) else r
                           for t, r in zip(texts, results)]  # fmt: skip
            delay = fixed_s + per_token_s * sum(r.completion_tokens for r in results)
            time.sleep(max(0.0, delay - (time.perf_counter() - start)))
            calls.append((delay, start, time.perf_counter()))
            return results

    return PacedFake


def run(data: Path, out: Path, rows_per_unit: int, in_flight: int, calls: list) -> dict:
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    calls.clear()
    cfg = TranslateConfig(inputs=[str(data)], out=str(out), engine={"kind": "fake", "model": "m"},
                          rows_per_unit=rows_per_unit, units_in_flight=in_flight, progress=False)  # fmt: skip
    start = time.perf_counter()
    manifest = translate(cfg)
    wall = time.perf_counter() - start
    engine = sum(delay for delay, _, _ in calls)
    between = calls[-1][2] - calls[0][1]  # the first call's start to the last one's end: ramp-up and drain left out
    return {"wall_s": wall, "engine_s": engine, "steady_s": between, "calls": len(calls), "counts": manifest.counts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=16)
    parser.add_argument("--rows-per-unit", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--per-token-us", type=float, default=50.0)
    parser.add_argument("--fixed-ms", type=float, default=30.0)
    parser.add_argument("--copy-share", type=float, default=0.05, help="greedy answers that copy the source back")
    args = parser.parse_args()

    import hala.engines

    calls: list = []
    engine = paced_engine(args.fixed_ms / 1000, args.per_token_us / 1e6, args.copy_share, calls)
    hala.engines.get_engine = lambda cfg: engine(cfg)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "in.jsonl"
        synth(data, args.units * args.rows_per_unit)
        for name, in_flight in (("serial", 1), ("overlap", args.in_flight)):
            results[name] = run(data, Path(tmp) / name, args.rows_per_unit, in_flight, calls)
    serial, overlap = results["serial"], results["overlap"]
    assert {k: v for k, v in serial["counts"].items() if k != "engine_ms"} == {
        k: v for k, v in overlap["counts"].items() if k != "engine_ms"
    }, "overlap changed the counts"
    for name, r in results.items():
        print(f"{name:>8}: wall {r['wall_s']:.2f}s, engine {r['engine_s']:.2f}s in {r['calls']} calls, "
              f"ratio {r['wall_s'] / r['engine_s']:.3f}")  # fmt: skip
    print(json.dumps({
        "overlap_wall_per_engine": round(overlap["wall_s"] / overlap["engine_s"], 3),
        "serial_wall_per_engine": round(serial["wall_s"] / serial["engine_s"], 3),
        "overlap_steady_per_engine": round(overlap["steady_s"] / overlap["engine_s"], 3),
        "speedup": round(serial["wall_s"] / overlap["wall_s"], 3),
        "units_in_flight": args.in_flight,
        "conversations": args.units * args.rows_per_unit,
        "rows_per_unit": args.rows_per_unit,
        "engine_calls": overlap["calls"],
        "per_token_us": args.per_token_us,
        "fixed_ms": args.fixed_ms,
        "copy_share": args.copy_share,
        "retried_segments": overlap["counts"].get("retry_resplit", 0) + overlap["counts"].get("retry_sampled", 0),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
