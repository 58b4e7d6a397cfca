"""`hala generate`: run an engine over a conversation dataset, resumably.

Each conversation is cut after its last user turn and the engine writes the next assistant turn.
This is the smallest complete use of the foundation (records in, engine, records out, rejects,
unit-level resume, the stage frame of `hala.frame` around it) and what the teacher and judge
stages build on. The engine starts only if some unit still has work, so a finished run reruns in
a second. It runs as shards as translate and judge do (`--shard I/N`, `--executor`, `--merge-shards`;
`hala.launch`).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field

from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.readers import read_conversations_at
from hala.data.rows import expand_inputs
from hala.data.plan import limit_units, plan_units, shard_units
from hala.data.records import Conversation, Message
from hala.data.units import run_units
from hala.engines.base import EngineConfig, SamplingParams
from hala.frame import StageFrame
from hala.launch.config import ShardedConfig
from hala.launch.executors import launch


class GenerateConfig(ShardedConfig):
    input: str = Field(description="conversations (any supported format)")
    out: str = Field(description="output folder: data/, rejected/, manifest.json")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = "auto"
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    rows_per_unit: int = Field(64, ge=1)
    limit: int | None = Field(None, ge=1, description="only the first N rows of the input")
    strict: bool = Field(False, description="stop at the first bad input row")


def prompt_of(conv: Conversation) -> list[Message]:
    """Everything up to and including the last user turn."""
    last_user = max((i for i, m in enumerate(conv.messages) if m.role == "user"), default=None)
    if last_user is None:
        return []
    return conv.messages[: last_user + 1]


@holds_output(shared=GenerateConfig.one_of_shards)
def generate(cfg: GenerateConfig) -> Manifest:
    """Generate (shard `cfg.shard` of) the next turns of `cfg.input` into `cfg.out`."""
    if cfg.executor != "none":
        return launch("generate", cfg)
    frame = StageFrame("generate", cfg, shard=cfg.shard)
    files = expand_inputs(cfg.input)
    if done := frame.open(files):
        return done

    engine = None
    tokens = Counter()

    def work(unit, rejects):
        nonlocal engine
        prompts = []
        for line, conv in read_conversations_at(unit.file, fmt=cfg.format, rejects=rejects, start=unit.start, stop=unit.stop):
            prompt = prompt_of(conv)
            if prompt:
                prompts.append((conv, prompt))
            else:
                rejects.add(unit.file, line, "no_user_turn", f"conversation {conv.id} has no user turn")
        if engine is None:
            from hala.engines import get_engine

            engine = get_engine(cfg.engine)
        chats = [[m.model_dump() for m in p] for _, p in prompts]
        for (conv, prompt), gen in zip(prompts, engine.chat(chats, cfg.sampling)):
            tokens["prompt_tokens"] += gen.prompt_tokens
            tokens["completion_tokens"] += gen.completion_tokens
            meta = {**conv.meta, "model": engine.model_id, "finish_reason": gen.finish_reason}
            messages = [*prompt, Message(role="assistant", content=gen.text)]
            yield conv.model_copy(update={"messages": messages, "meta": meta})

    units = plan_units(files, cfg.rows_per_unit)
    if cfg.limit:
        units = limit_units(units, cfg.limit)
    units = shard_units(units, cfg.shard_index, cfg.num_shards)

    def unit_stats(unit) -> dict:
        numbers = {"prompt_tokens": tokens["prompt_tokens"], "completion_tokens": tokens["completion_tokens"]}
        tokens.clear()
        return numbers

    try:
        stats = run_units(units, frame.out, work, fmt=cfg.output_format, strict=cfg.strict, unit_stats=unit_stats)
    finally:
        if engine is not None:
            engine.close()
    counts = {**stats.counts(), "units": len(units), "num_shards": cfg.num_shards}
    return frame.finish_units(stats, counts, units=units)

