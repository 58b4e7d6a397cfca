"""Records from rows: conversations and parallel pairs with their lines; bad rows to the reject log.

`hala.data.rows` streams the raw rows of any input; here each row becomes a `Conversation` (in
any of the formats of `hala.data.formats`) or a `ParallelPair`, and a row that can't (unreadable,
the wrong schema, an id already used for other content) goes to the `RejectLog` with its file and
line, so a run names every bad input where it is and goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from hala.data.formats import CONVERSATION_FORMATS, BadRecord, detect_format, from_validation_error, get_format, to_pair
from hala.data.records import Conversation, ParallelPair, content_id
from hala.data.rejects import RejectLog
from hala.data.rows import Row, iter_rows, source_label


def sniff_format(path: str | Path, split: str = "train", probe_rows: int = 100) -> str:
    """The format of an input, from its first row that parses (`messages` if none does)."""
    for row in iter_rows(path, stop=probe_rows, split=split):
        if row.data is not None:
            try:
                return detect_format(row.data)
            except BadRecord:
                continue
    return "messages"


class _IdCheck:
    """Ids name one record: a second row with a seen id but other content is rejected as
    `duplicate_id`, naming the first one's line (the first in input order wins). Checked within
    one read (a unit of work), so a resumed run rejects exactly what an uninterrupted one does."""

    def __init__(self):
        self.seen: dict[str, tuple[int, str]] = {}  # id -> (line, content hash)

    def clash(self, record_id: str, content: Any, line: int) -> str | None:
        key = content_id(content)
        first = self.seen.setdefault(record_id, (line, key))
        if first[1] == key:
            return None  # the first copy, or the same record again
        return f"id {record_id!r} is already used by line {first[0]} for other content; give each record its own id"


def read_conversations(path: str | Path, **kwargs) -> Iterator[Conversation]:
    """Stream conversations from one input; bad rows go to `rejects` (a fresh log if None)."""
    for _, conv in read_conversations_at(path, **kwargs):
        yield conv


def read_conversations_at(
    path: str | Path,
    *,
    fmt: str = "auto",
    rejects: RejectLog | None = None,
    lang: str = "en",
    source: str | None = None,
    start: int = 0,
    stop: int | None = None,
    split: str = "train",
    rename: dict[str, str] | None = None,
) -> Iterator[tuple[int, Conversation]]:
    """Like `read_conversations`, with each record's line (or row) number. `rename` maps a
    dataset's own column names onto hala's (e.g. OpenOrca's question -> instruction)."""
    get_format(fmt)
    rejects = rejects if rejects is not None else RejectLog()
    ids = _IdCheck()
    label = source if source is not None else source_label(path)

    def build(data: dict):
        data = {rename.get(k, k): v for k, v in data.items()} if rename else data
        row_fmt = detect_format(data) if fmt == "auto" else fmt
        if row_fmt not in CONVERSATION_FORMATS:
            raise BadRecord("wrong_schema", f"row is {row_fmt!r} data, not a conversation")
        conv = CONVERSATION_FORMATS[row_fmt](data, source=label, lang=lang)
        return conv, conv.id, [m.model_dump() for m in conv.messages]

    yield from _records(iter_rows(path, start=start, stop=stop, split=split), build, rejects, ids)


def _records(rows: Iterator[Row], build, rejects: RejectLog, ids: _IdCheck) -> Iterator[tuple[int, Any]]:
    """Each good row as `(line, record)`, where `build(data)` gives (record, its id, its content);
    an unreadable row, a bad record or an id used for other content goes to `rejects`."""
    for row in rows:
        if row.error is not None:
            rejects.add(row.file, row.line, row.error.kind, row.error.reason, row.raw)
            continue
        try:
            record, record_id, content = build(row.data)
            clash = ids.clash(record_id, content, row.line)
            if clash:
                raise BadRecord("duplicate_id", clash)
            yield row.line, record
        except ValidationError as exc:
            bad = from_validation_error(exc)
            rejects.add(row.file, row.line, bad.kind, bad.reason, row.raw)
        except BadRecord as exc:
            rejects.add(row.file, row.line, exc.kind, exc.reason, row.raw)


def read_pairs(path: str | Path, **kwargs) -> Iterator[ParallelPair]:
    """Stream parallel pairs (`{en, ar}`, `translation: {..}`, `{src, tgt}` or TSV)."""
    for _, pair in read_pairs_at(path, **kwargs):
        yield pair


def read_pairs_at(
    path: str | Path,
    *,
    rejects: RejectLog | None = None,
    src_lang: str = "en",
    tgt_lang: str = "ar",
    source: str | None = None,
    start: int = 0,
    stop: int | None = None,
    split: str = "train",
) -> Iterator[tuple[int, ParallelPair]]:
    """Like `read_pairs`, with each pair's line (or row) number."""
    rejects = rejects if rejects is not None else RejectLog()
    label = source if source is not None else source_label(path)
    rows = iter_rows(path, start=start, stop=stop, split=split, tsv_columns=(src_lang, tgt_lang))

    def build(data: dict):
        pair = to_pair(data, source=label, src_lang=src_lang, tgt_lang=tgt_lang)
        return pair, pair.id, [pair.src, pair.tgt]

    yield from _records(rows, build, rejects, _IdCheck())
