"""`hala data audit`: the checks of `hala.audit.checks` over any conversation corpus, ours or one
released by others, and where each flagged row is.

It writes no copy of the data, only what it found: `flagged.jsonl` (one line per flagged row and
check: id, check, reason, file, line; clean rows are absent), `summary.json` (rows read, rows
flagged per check and their share, the bad input rows), `audit.html` (the counts, and a few
examples per check) and the manifest, through the stage frame like every stage. A row the readers
can't read is not audited: it is counted by kind and named by file and line (`hala.data.readers`).

The corpus is read once. The first pass runs every check but `length` on each batch and writes
their flags as it goes; it keeps each row's length, and where the row is, in a temporary index.
Only the end of that pass knows the corpus's median and MAD, so the second pass reads the index,
not the corpus, and flags the length outliers: in `flagged.jsonl` they follow the other flags.

Checks from elsewhere join through `audit(cfg, extra=[...])`: filters of the same shape over
conversations, run after the built-in ones and counted like them. Contamination is one:
`hala.decontaminate`'s `ContaminationFilter(index)` is passed in `extra` by the caller that built
the index. What such a filter depends on (the benchmark files) is not in this config, so the caller
names it in `extra_inputs`, hashed with the corpus: a rerun against other benchmarks is not taken
for the audit already done.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import islice

from hala.audit.checks import LengthStats, checks, length_reason
from hala.audit.config import AuditConfig
from hala.audit.page import write_page
from hala.data.manifest import Manifest
from hala.data.output_lock import holds_output
from hala.data.readers import read_conversations_at
from hala.data.records import Conversation
from hala.data.rejects import Reject, RejectLog
from hala.data.rows import expand_inputs
from hala.data.writers import atomic_path, atomic_write_text
from hala.evaluate.benchmarks import bundled_data_dir
from hala.frame import StageFrame
from hala.text.filters import Filter, Verdict

FLAGGED, SUMMARY, PAGE = "flagged.jsonl", "summary.json", "audit.html"
BAD_ROWS_LISTED = 1000  # summary.json names this many bad rows (all are counted, and logged as read)
EXAMPLE_CHARS = 400  # of each turn of an example on the page


class Tally:
    """What the audit found so far: flags per check, flagged rows, examples, bad input rows."""

    def __init__(self, names: list[str], examples: int):
        self.names, self.examples = names, examples
        self.rows = self.flagged_rows = 0
        self.flagged: Counter = Counter()
        self.shown: dict[str, list[dict]] = {name: [] for name in names}
        self.bad: Counter = Counter()
        self.bad_listed: list[str] = []

    def flag(self, out, name: str, reason: str, conv_id: str, file: str, line: int, conv: Conversation | None) -> None:
        out.write(json.dumps({"id": conv_id, "check": name, "reason": reason, "file": file, "line": line},
                             ensure_ascii=False) + "\n")  # fmt: skip
        self.flagged[name] += 1
        if len(self.shown[name]) < self.examples:
            turns = [(m.role, m.content[:EXAMPLE_CHARS]) for m in conv.messages] if conv else []
            self.shown[name].append({"id": conv_id, "where": f"{file}:{line}", "reason": reason, "turns": turns})

    def bad_input(self, rejects: list[Reject]) -> None:
        for r in rejects:
            self.bad[r.kind] += 1
            if len(self.bad_listed) < BAD_ROWS_LISTED:
                self.bad_listed.append(f"{r.where}: {r.reason}")

    def summary(self, files: list[str], stats: LengthStats | None) -> dict:
        share = {name: self.flagged[name] / self.rows if self.rows else 0.0 for name in self.names}
        return {
            "inputs": files, "rows": self.rows, "flagged_rows": self.flagged_rows,
            "clean_rows": self.rows - self.flagged_rows, "bad_rows": sum(self.bad.values()),
            "bad_row_kinds": dict(self.bad), "bad_rows_listed": self.bad_listed,
            "checks": {name: {"flagged": self.flagged[name], "share": round(share[name], 6)} for name in self.names},
            "length": None if stats is None else {"rows": stats.rows, "median": stats.median, "mad": stats.mad,
                                                  "k": stats.k, "limit": stats.limit},
        }  # fmt: skip


def _rows(cfg: AuditConfig, files: list[str], tally: Tally) -> Iterator[tuple[str, int, Conversation]]:
    """(file, line, conversation) of every readable row; the bad ones go to the tally."""
    for file in files:
        rejects = RejectLog()
        for line, conv in read_conversations_at(file, fmt=cfg.format, rejects=rejects, lang=cfg.lang, split=cfg.split):
            tally.bad_input(rejects.take())
            yield file, line, conv
        tally.bad_input(rejects.take())


def _longest(conv: Conversation) -> tuple[int, str, int]:
    """(index, role, characters) of the conversation's longest turn."""
    i = max(range(len(conv.messages)), key=lambda j: len(conv.messages[j].content))
    return i, conv.messages[i].role, len(conv.messages[i].content)


def _contamination(bench: list[str]) -> list[Filter]:
    """The `contamination` check: `hala data decontaminate`'s match against the benchmark folder."""
    if not bench:
        return []
    from hala.decontaminate import BenchIndex, ContaminationFilter

    return [ContaminationFilter(BenchIndex.build(bench[0]), name="contamination")]


@holds_output()
def audit(cfg: AuditConfig, extra: Sequence[Filter] = (), extra_inputs: Sequence[str] = ()) -> Manifest:
    """Audit the corpus of `cfg.inputs` into `cfg.out`. `extra`: more checks over conversations, run
    after the built-in ones; `extra_inputs`: the files they depend on, hashed with the corpus."""
    frame = StageFrame("audit", cfg)
    files = [f for path in cfg.inputs for f in expand_inputs(path)]
    bench = [cfg.bench_dir or str(bundled_data_dir())] if "contamination" in cfg.checks else []
    if done := frame.open([*files, *bench, *extra_inputs]):
        return done
    filters = [*checks(cfg), *_contamination(bench), *extra]
    with_length = "length" in cfg.checks
    tally = Tally([f.name for f in filters] + (["length"] if with_length else []), cfg.examples)
    lengths, stats = array("q"), None
    with atomic_path(frame.out / FLAGGED) as tmp, tmp.open("w", encoding="utf-8") as out, \
            tempfile.TemporaryFile("w+", encoding="utf-8", dir=frame.out) as index:  # fmt: skip
        rows = _rows(cfg, files, tally)
        with frame.timer("checks_s"):
            while batch := list(islice(rows, cfg.batch_size)):
                convs = [conv for _, _, conv in batch]
                verdicts: list[list[Verdict | None]] = [f.verdicts(convs) for f in filters]
                for j, (file, line, conv) in enumerate(batch):
                    found = [v[j] for v in verdicts if v[j] is not None]
                    for name, reason in found:
                        tally.flag(out, name, reason, conv.id, file, line, conv)
                    tally.rows += 1
                    tally.flagged_rows += bool(found)
                    if with_length:
                        chars = sum(len(m.content) for m in conv.messages)
                        lengths.append(chars)
                        index.write(json.dumps([conv.id, file, line, chars, *_longest(conv), bool(found)]) + "\n")
        if not tally.rows:
            kinds = ", ".join(f"{k}={n}" for k, n in tally.bad.items()) or "no rows at all"
            raise ValueError(f"{', '.join(files)}: not one conversation could be read ({kinds})")
        if with_length:
            stats = LengthStats.of(lengths, cfg.length_mad_k, cfg.length_min_rows)
            index.seek(0)
            for entry in index:
                conv_id, file, line, chars, turn, role, turn_chars, flagged = json.loads(entry)
                if reason := length_reason(stats, cfg.max_turn_chars, chars, turn, role, turn_chars):
                    tally.flag(out, "length", reason, conv_id, file, line, None)
                    tally.flagged_rows += not flagged
    summary = tally.summary(files, stats)
    atomic_write_text(frame.out / SUMMARY, json.dumps(summary, ensure_ascii=False, indent=1) + "\n")
    write_page(frame.out / PAGE, summary, tally.shown, cfg.lang)
    counts = {"rows": tally.rows, "flagged": tally.flagged_rows, "clean": tally.rows - tally.flagged_rows,
              "rejected": sum(tally.bad.values()), **{f"rejected_{k}": n for k, n in tally.bad.items()},
              **{f"flagged_{name}": tally.flagged[name] for name in tally.names}}  # fmt: skip
    metrics = {f"share_{name}": c["share"] for name, c in summary["checks"].items()}
    return frame.finish(counts, metrics, [frame.out / name for name in (SUMMARY, PAGE, FLAGGED)])

