"""The request cache: no request is ever sent to an engine twice (segments, judge verdicts, ...).

Content-addressed: the key is a hash of (model id, prompt template, sampling parameters, source
text), so the same segment in another conversation, another run or after a restart is a lookup,
and changing any of those four makes a fresh key instead of a wrong hit. Every engine output is
kept, including ones QA rejects (QA is deterministic, so they'd be rejected again).

Storage is one SQLite file in WAL mode: concurrent readers, one writer at a time with a busy
timeout, which is what K local workers on one node need. SQLite over NFS is not safe; shards on
several nodes should point `cache_path` at node-local disk (or accept per-node caches).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class Cached:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def request_key(model_id: str, template: str, sampling: dict, text) -> str:
    payload = json.dumps([model_id, template, sampling, text], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SegmentCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=120)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)
        self.db.commit()

    def get_many(self, keys: list[str], chunk: int = 500) -> dict[str, Cached]:
        found = {}
        for i in range(0, len(keys), chunk):
            batch = keys[i : i + chunk]
            marks = ",".join("?" * len(batch))
            rows = self.db.execute(f"SELECT key, text, finish_reason, prompt_tokens, completion_tokens FROM segments WHERE key IN ({marks})", batch)
            for key, *values in rows:
                found[key] = Cached(*values)
        return found

    def put_many(self, entries: dict[str, Cached]) -> None:
        rows = [(k, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for k, c in entries.items()]
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO segments VALUES (?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]

    def close(self) -> None:
        self.db.close()
