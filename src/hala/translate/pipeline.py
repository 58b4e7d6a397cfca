"""`hala translate`: conversations in, translated conversations out, nothing lost.

For each unit of work (a file x a range of conversations, see `hala.data.plan.plan_units`):

1. read the conversations (bad rows go to `rejected/` as `file:line: reason`), and drop those an
   input's source filters turn down (`source_filters`, the paper's Tulu-3 English subsets and
   Hermes-3 without code: `hala.text.source_filters`), each as `source_<name>` with its reason;
2. cut every message into segments (`segment.split`); system prompts are translated, kept or
   dropped as configured;
3. translate all the unit's segments at once through the cache (`runner.SegmentTranslator`);
4. check every segment (`qa.verdicts`: the first filter it fails, and why); one that fails
   climbs the retry ladder (`retry`, set by `cfg.retry`) before it counts as failed: re-split into
   smaller pieces (a truncated one at half the budget, one of several sentences at its
   sentences), then sampled attempts at a fixed seed each, every rung one cached batch over the
   unit;
5. rebuild each conversation; it is accepted only if every segment passed, otherwise it goes to
   `rejected/` with each failing segment, its last filter, the filter's reason and the output, and
   the filter each of its tries ended with (`tries`; the reason says how many retries were made).

The unit's `qa_<filter>` and `qa_passed` counts are segment-level final verdicts (after the
ladder), one per segment of the unit; the `retry_*` counts say what the ladder tried and fixed
(see `retry`); `rejected_qa_<filter>` counts conversations.

The engine never waits for hala (`units_in_flight`, default 4): units are worked that many at a
time, each in a thread of its own, so that steps 1-2 of the next units and 4-5 of the ones
before run while the engine generates for another unit's batch. This thread makes every engine
call (`hala.engines.owner`: vLLM and its signals stay where they were), the earliest unit's in
the plan first (its retries hold up its landing and its thread), the units look up and
write the shared cache themselves, and a request one unit is sending is never sent again for
another (`hala.engines.cached`). They land, stats and files, one at a time in plan order
(`hala.data.in_order`), so the folder, the per-unit stats and the manifest are the serial run's,
byte for byte: each unit counts its requests as the serial run would, whichever unit reached the
engine first. An error in one unit lands the units before it and stops the rest; an interrupt
(SIGTERM, Ctrl-C) stops every thread before the engine is closed.

Units finish atomically (`hala.data.units.run_units`), so a killed run resumes to the same result;
shards are interleaved units (`--shard I/N`). The stage frame (`hala.frame`) claims the folder for
all shards of one run alike and gives each shard its manifest (`manifest.shard-I-of-N.json`),
which records N and the shard's units (after `limit`): `hala.launch.merge.merge_shards` assembles
those, and `hala.launch.executors` starts the shards as local workers, a Slurm array or Ray tasks.

A segment whose engine request failed (after the engine's retries) rejects only its own
conversation, as `qa_engine_error` with that request's error. Its unit is redone on a rerun (only
the failed requests reach the engine), and until then the shard has no manifest: `translate`
raises `hala.data.units.RequestsFailed` (the CLI exits 3) after every unit ran.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hala.audit.checks import checks as audit_checks
from hala.audit.config import AuditConfig
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.readers import read_conversations_at
from hala.data.rows import expand_inputs
from hala.data.plan import limit_units, plan_units, shard_units
from hala.data.records import Conversation, Message, ParallelPair
from hala.data.units import run_units
from hala.data.writers import write_jsonl
from hala.engines.owner import EngineOwner
from hala.frame import StageFrame
from hala.launch.executors import launch
from hala.text.filters import first_failures
from hala.text.source_filters import source_filters
from hala.translate import segment
from hala.translate.config import TranslateConfig
from hala.translate.progress import TranslateProgress
from hala.translate.retry import translate_checked
from hala.translate.runner import SegmentTranslator, UnitRequests

PAIRS = "pairs"  # OUT/pairs/<unit>.jsonl: segment-level pairs of the accepted conversations


@dataclass
class _Worked:
    """What a unit's work leaves for its landing: its QA and retry counts, its segment pairs, its
    requests (settled when it lands) and how many conversations it read."""

    counts: Counter
    pairs: list[ParallelPair]
    requests: UnitRequests
    conversations: int


@dataclass
class _Plan:
    """One conversation: per message, its Split (or None to keep it as is); dropped ones omitted."""

    line: int
    conv: Conversation
    messages: list[tuple[Message, segment.Split | None]]


class UnitTranslator:
    def __init__(self, cfg: TranslateConfig, runner: SegmentTranslator, progress: TranslateProgress):
        self.cfg, self.runner, self.progress = cfg, runner, progress
        self.refs = {f: ref for ref in cfg.inputs for f in expand_inputs(ref)}  # file -> the input it is of
        self.audit = audit_checks(AuditConfig(inputs=["-"], out="-", lang=cfg.target_lang)) if cfg.audit else []
        self.places = {f: i for i, f in enumerate(self.refs)}  # units are planned file by file
        self.renames = {f: cfg.field_maps[ref] for f, ref in self.refs.items() if ref in cfg.field_maps}
        self.filters = {f: source_filters(cfg.source_filters[ref]) for f, ref in self.refs.items()
                        if ref in cfg.source_filters}  # fmt: skip
        self.worked: dict[str, _Worked] = {}  # per unit in flight, from its work to its landing

    def plan(self, line: int, conv: Conversation) -> _Plan:
        messages = []
        for msg in conv.messages:
            if msg.role == "system" and self.cfg.system_prompts == "drop":
                continue
            keep = msg.role == "system" and self.cfg.system_prompts == "keep"
            messages.append((msg, None if keep else segment.split(msg.content, self.cfg.max_segment_tokens)))
        return _Plan(line, conv, messages)

    def __call__(self, unit, rejects) -> list:
        """The unit's accepted records, in order; its rejects go to `rejects`. Safe to run for several
        units at once: they share only the runner (its cache, under a lock, and the engine's thread)."""
        cfg = self.cfg
        counts: Counter = Counter()
        pairs: list[ParallelPair] = []
        requests = self.runner.for_unit(rank=(self.places.get(unit.file, len(self.places)), unit.start))
        records = []
        rows = list(read_conversations_at(
            unit.file, fmt=cfg.format, rejects=rejects, lang=cfg.source_lang,
            start=unit.start, stop=unit.stop, split=cfg.split, rename=self.renames.get(unit.file),
        ))  # fmt: skip
        conversations = len(rows)
        if unit.file in self.filters:  # the paper's source filters: not translated at all, each with its reason
            verdicts = first_failures(self.filters[unit.file], [conv for _, conv in rows])
            for (line, conv), verdict in zip(rows, verdicts):
                if verdict is not None:
                    rejects.verdict(unit.file, line, verdict[0], f"conversation {conv.id}: {verdict[1]}")
            rows = [row for row, verdict in zip(rows, verdicts) if verdict is None]
        plans = [self.plan(line, conv) for line, conv in rows]
        segs = [s for p in plans for _, sp in p.messages if sp for s in sp.segments]
        outcomes = translate_checked(requests, cfg, segs, counts)
        for o in outcomes:
            counts[f"qa_{o.verdict or 'passed'}"] += 1

        position = 0
        for plan in plans:
            out_messages, failures, unit_pairs, retried = [], [], [], []
            for mi, (msg, sp) in enumerate(plan.messages):
                if sp is None:
                    out_messages.append(msg)
                    continue
                n = len(sp.segments)
                own = outcomes[position : position + n]
                failures += [{"message": mi, "segment": si, "source": sp.segments[si].source, **o.failure()}
                             for si, o in enumerate(own) if o.verdict]  # fmt: skip
                retried += [{"message": mi, "segment": si, "tries": o.tries} for si, o in enumerate(own) if len(o.tries) > 1]
                if not failures:
                    texts = [o.text for o in own]
                    out_messages.append(Message(role=msg.role, content=segment.join(sp, texts)))
                    unit_pairs += [(mi, si, sp.segments[si].source, text) for si, text in enumerate(texts)]
                position += n
            if failures:
                first = failures[0]
                reason = f"conversation {plan.conv.id}: message {first['message']} segment {first['segment']} failed {first['filter']}"
                if "error" in first:
                    reason += f" ({first['error']})"
                if (retries := len(first["tries"]) - 1) > 0:
                    reason += f" after {retries} {'retry' if retries == 1 else 'retries'}"
                raw = json.dumps({"id": plan.conv.id, "failures": failures}, ensure_ascii=False)
                rejects.add(unit.file, plan.line, f"qa_{first['filter']}", reason, raw)
                continue
            pairs += [self._pair(plan.conv, *p) for p in unit_pairs]
            qa = {"segments": len(unit_pairs), "retried": retried}
            translated = plan.conv.model_copy(update={"messages": out_messages, "lang": cfg.target_lang})
            lineage = self._lineage(unit.file, plan.line, plan.conv, qa)
            if cfg.audit:  # every check the translation fails, by name (the audit's reasons say where)
                lineage["audit"] = [f.name for f in self.audit if f.why(translated) is not None]
                counts.update(f"audit_{name}" for name in lineage["audit"])
            records.append(self._record(translated, lineage))
        self.worked[unit.name] = _Worked(counts, pairs, requests, conversations)
        return records

    def _lineage(self, file: str, line: int, conv: Conversation, qa: dict) -> dict:
        """Where the row came from and what made it: the input and its row, the translator (and its
        content hash for a local folder), the prompt's hash and what QA did to its segments."""
        return {
            "dataset": self.refs.get(file, file), "file": file, "row": line, "id": conv.id,
            "translator": self.runner.model_id, "translator_sha256": self.runner.model_sha256,
            "prompt_sha256": self.runner.prompt_sha256, "qa": qa,
        }  # fmt: skip

    def _record(self, translated: Conversation, lineage: dict):
        meta = {**translated.meta, "source_id": translated.id, "source_lang": self.cfg.source_lang,
                "translated_by": self.runner.model_id, "lineage": lineage}  # fmt: skip
        record = translated.model_copy(update={"meta": meta})
        return record.to_sharegpt() | {"meta": meta} if self.cfg.output_schema == "sharegpt" else record

    def _pair(self, conv: Conversation, message: int, seg: int, src: str, tgt: str) -> ParallelPair:
        cfg = self.cfg
        meta = {"source_id": conv.id, "message": message, "segment": seg}
        return ParallelPair(id=f"{conv.id}/m{message}/s{seg}", src=src, tgt=tgt, src_lang=cfg.source_lang,
                            tgt_lang=cfg.target_lang, source=conv.source, meta=meta)  # fmt: skip

    def finish_unit(self, unit) -> dict:
        """Called by run_units when the unit lands (in plan order), before its output: writes the
        unit's segment pairs (source segment, accepted translation) for `hala pairs`, and returns
        the unit's stats, its requests counted as the serial run counts them (`runner.settle`)."""
        worked = self.worked.pop(unit.name)
        write_jsonl(Path(self.cfg.out) / PAIRS / f"{unit.name}.jsonl", worked.pairs)
        numbers = self.runner.settle(worked.requests.asks)
        numbers.update(worked.counts)
        numbers["segment_pairs"] = len(worked.pairs)
        self.progress.advance(conversations=worked.conversations)
        self.progress.update(numbers)
        return numbers


@holds_output(shared=TranslateConfig.one_of_shards)
def translate(cfg: TranslateConfig) -> Manifest:
    """Translate (shard `cfg.shard` of) the inputs into `cfg.out`; see the module docstring."""
    if cfg.executor != "none":
        return launch("translate", cfg)
    frame = StageFrame("translate", cfg, shard=cfg.shard)
    files = [f for path in cfg.inputs for f in expand_inputs(path)]
    model = cfg.engine.model if cfg.engine.model and Path(cfg.engine.model).is_dir() else None
    if done := frame.open([*files, *([model] if model else [])]):  # a local model's content is an input
        return done

    units = plan_units(files, cfg.rows_per_unit, cfg.split)
    if cfg.limit:
        units = limit_units(units, cfg.limit)
    units = shard_units(units, cfg.shard_index, cfg.num_shards)
    progress = TranslateProgress(sum(u.stop - u.start for u in units), enabled=cfg.progress)
    owner = EngineOwner()  # this thread makes every engine call, whichever unit asks
    runner = SegmentTranslator(cfg, next((i.sha256 for i in frame.inputs if i.path == model), None), owner)
    work = UnitTranslator(cfg, runner, progress)
    try:
        with progress:
            stats = run_units(units, frame.out, work, fmt=cfg.output_format, strict=cfg.strict,
                              unit_stats=work.finish_unit, in_flight=cfg.units_in_flight, host=owner)  # fmt: skip
    finally:
        runner.close()
    counts = {**stats.counts(), "units": len(units), "num_shards": cfg.num_shards}
    return frame.finish_units(stats, counts, rows="conversations", units=units)
