"""Streaming readers: JSONL, Parquet, TSV, local HF dataset folders and hub datasets.

Readers never hold a whole file in memory: JSONL and TSV are read line by line, Parquet batch by
batch, datasets row by row. Each row keeps its position (`line`: the 1-based line of a JSONL/TSV
file, or the 1-based row of a Parquet file or dataset), so a bad row is reported where it is, and
so work can be split into units of (file, row range) that any worker can read on its own.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from hala.data.formats import CONVERSATION_FORMATS, BadRecord, detect_format, from_validation_error, get_format, to_pair
from hala.data.records import Conversation, ParallelPair, content_id
from hala.data.rejects import RejectLog

log = logging.getLogger("hala.data")
HUB_PREFIX = "hf://"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".tsv")


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from; `data` is None when the row could not be parsed."""

    file: str
    line: int
    raw: str
    data: dict | None
    error: BadRecord | None = None


def _rows_jsonl(path: Path, start: int, stop: int | None) -> Iterator[Row]:
    with path.open("rb") as handle:
        for line_no, raw_bytes in enumerate(handle, start=1):
            if line_no <= start:
                continue
            if stop is not None and line_no > stop:
                break
            try:
                raw = raw_bytes.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                text = raw_bytes.decode("utf-8", errors="backslashreplace").rstrip("\n")
                yield Row(str(path), line_no, text, None, BadRecord("non_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            raw = raw.rstrip("\r\n")
            if line_no == 1 and raw.lstrip().startswith("["):
                raise ValueError(f"{path}:1: a JSON array; hala reads JSON Lines (one object per line), e.g. jq -c '.[]' {path.name}")
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Row(str(path), line_no, raw, None, BadRecord("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(data, dict):
                yield Row(str(path), line_no, raw, None, BadRecord("wrong_schema", f"expected a JSON object, got {type(data).__name__}"))
                continue
            yield Row(str(path), line_no, raw, data)


def _rows_tsv(path: Path, start: int, stop: int | None, columns: tuple[str, str]) -> Iterator[Row]:
    with path.open("rb") as handle:
        for line_no, raw_bytes in enumerate(handle, start=1):
            if line_no <= start:
                continue
            if stop is not None and line_no > stop:
                break
            try:
                raw = raw_bytes.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                text = raw_bytes.decode("utf-8", errors="backslashreplace").rstrip("\n")
                yield Row(str(path), line_no, text, None, BadRecord("non_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if not raw.strip() and "\t" not in raw:  # a blank line; a lone tab is a row with two empty sides
                continue
            fields = next(csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE))
            if line_no == 1 and tuple(fields) == columns:
                continue  # a header naming the language columns
            if len(fields) != 2:
                yield Row(str(path), line_no, raw, None, BadRecord("wrong_schema", f"expected 2 tab-separated columns, got {len(fields)}"))
                continue
            yield Row(str(path), line_no, raw, dict(zip(columns, fields)))


def _rows_parquet(path: Path, start: int, stop: int | None, batch_size: int = 1024) -> Iterator[Row]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    offset = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        n = batch.num_rows
        if offset + n <= start:
            offset += n
            continue
        for i, data in enumerate(batch.to_pylist()):
            row_no = offset + i + 1
            if row_no <= start:
                continue
            if stop is not None and row_no > stop:
                return
            yield Row(str(path), row_no, _raw_json(data), data)
        offset += n
        if stop is not None and offset >= stop:
            return


def _raw_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def _rows_dataset(dataset, label: str, start: int, stop: int | None) -> Iterator[Row]:
    if hasattr(dataset, "select"):  # a map-style Dataset: jump to the unit's rows
        end = len(dataset) if stop is None else min(stop, len(dataset))
        dataset = dataset.select(range(min(start, end), end))
    else:  # streaming: skip the rows before the unit
        dataset = dataset.skip(start)
        if stop is not None:
            dataset = dataset.take(stop - start)
    for row_no, data in enumerate(dataset, start=start + 1):
        yield Row(label, row_no, _raw_json(data), dict(data))


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists())


def _load_saved(path: Path, split: str):
    """A folder written by `save_to_disk`: the Dataset, or the named split of a DatasetDict."""
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"{path}: no split {split!r} (it has {', '.join(loaded)}); set split=NAME")
        loaded = loaded[split]
    return loaded


def expand_inputs(path: str | Path) -> list[str]:
    """A file, a hub id, a saved dataset folder, or a folder of data files (sorted) -> input list."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        return [text]
    p = Path(text)
    if p.is_file() or _is_saved_dataset(p):
        return [str(p)]
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix in FILE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{p}: folder holds no {', '.join(FILE_SUFFIXES)} files and is not a saved dataset")
        return files
    raise FileNotFoundError(f"{p}: no such file or folder (hub datasets are written {HUB_PREFIX}NAME)")


def iter_rows(
    path: str | Path,
    *,
    start: int = 0,
    stop: int | None = None,
    split: str = "train",
    tsv_columns: tuple[str, str] = ("en", "ar"),
) -> Iterator[Row]:
    """Stream raw rows `start < line <= stop` of one input (see `expand_inputs`)."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        import datasets

        name, _, config = text[len(HUB_PREFIX) :].partition(":")
        dataset = datasets.load_dataset(name, config or None, split=split, streaming=True)
        yield from _rows_dataset(dataset, text, start, stop)
        return
    p = Path(text)
    if _is_saved_dataset(p):
        yield from _rows_dataset(_load_saved(p, split), str(p), start, stop)
    elif p.suffix == ".parquet":
        yield from _rows_parquet(p, start, stop)
    elif p.suffix == ".tsv":
        yield from _rows_tsv(p, start, stop, tsv_columns)
    elif p.suffix in (".jsonl", ".json"):
        yield from _rows_jsonl(p, start, stop)
    else:
        raise ValueError(f"{p}: unknown file type {p.suffix!r}; expected {', '.join(FILE_SUFFIXES)}")


def count_rows(path: str | Path, split: str = "train") -> int:
    """Number of rows (lines for JSONL/TSV) without parsing them; used to plan units."""
    if str(path).startswith(HUB_PREFIX):
        import datasets

        name, _, config = str(path)[len(HUB_PREFIX) :].partition(":")
        info = datasets.load_dataset_builder(name, config or None).info
        return info.splits[split].num_examples
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(p).metadata.num_rows
    if _is_saved_dataset(p):
        return len(_load_saved(p, split))
    with p.open("rb") as handle:
        return sum(1 for _ in handle)


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
    label = source if source is not None else Path(str(path)).name

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
    label = source if source is not None else Path(str(path)).name
    rows = iter_rows(path, start=start, stop=stop, split=split, tsv_columns=(src_lang, tgt_lang))

    def build(data: dict):
        pair = to_pair(data, source=label, src_lang=src_lang, tgt_lang=tgt_lang)
        return pair, pair.id, [pair.src, pair.tgt]

    yield from _records(rows, build, rejects, _IdCheck())
