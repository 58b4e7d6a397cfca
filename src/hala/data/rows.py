"""Raw rows, streamed: JSONL, Parquet, TSV, local HF dataset folders and hub datasets.

Nothing here holds a whole file in memory: JSONL and TSV are read line by line, Parquet batch by
batch, datasets row by row. Each row keeps its position (`line`: the 1-based line of a JSONL/TSV
file, or the 1-based row of a Parquet file or dataset), so a bad row is reported where it is, and
so work can be split into units of (file, row range) that any worker can read on its own
(`hala.data.plan`). A row that can't be parsed comes back with its error, never raised:
`hala.data.readers` turns rows into records and bad rows into rejects.

A hub dataset `hf://NAME[:CONFIG]` is read through `datasets.load_dataset` (streaming), unless the
environment names a hub mirror (`HALA_HUB_MIRROR=DIR`): then it is the local copy
`DIR/NAME[/CONFIG]` (a `save_to_disk` folder, or a folder of Parquet/JSONL files), resolved where
every stage turns its inputs into files (`expand_inputs`). So a recipe keeps its `hf://` keys
(`field_maps`, `source_filters`) and runs on local data with no edit, and the copy's content is
hashed as the input, as any local file is (a hub id itself is recorded by name only); its records
carry the hub dataset's name as their `source`, as a hub read's do (`source_label`). A mirror that
lacks a dataset the run names is an error, never a silent download.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hala.data.formats import BadRecord

HUB_PREFIX = "hf://"
HUB_MIRROR_ENV = "HALA_HUB_MIRROR"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".tsv")


@dataclass(frozen=True)
class Row:
    """One raw row and where it came from; `data` is None when the row could not be parsed."""

    file: str
    line: int
    raw: str
    data: dict | None
    error: BadRecord | None = None


def _lines(path: Path, start: int, stop: int | None) -> Iterator[tuple[int, str, BadRecord | None]]:
    """Lines `start < n <= stop` of a text file as (n, text without its line end, None), or, for a
    line that is not UTF-8, (n, the line with its bad bytes escaped, why)."""
    with path.open("rb") as handle:
        for line_no, raw_bytes in enumerate(handle, start=1):
            if line_no <= start:
                continue
            if stop is not None and line_no > stop:
                break
            try:
                yield line_no, raw_bytes.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n"), None
            except UnicodeDecodeError as exc:
                text = raw_bytes.decode("utf-8", errors="backslashreplace").rstrip("\n")
                yield line_no, text, BadRecord("non_utf8", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")


def _rows_jsonl(path: Path, start: int, stop: int | None) -> Iterator[Row]:
    for line_no, raw, error in _lines(path, start, stop):
        if error is not None:
            yield Row(str(path), line_no, raw, None, error)
            continue
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
    for line_no, raw, error in _lines(path, start, stop):
        if error is not None:
            yield Row(str(path), line_no, raw, None, error)
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


def hub_mirror(ref: str) -> Path | None:
    """Where the hub mirror keeps `hf://NAME[:CONFIG]`: `$HALA_HUB_MIRROR/NAME[/CONFIG]`; None when no
    mirror is set (or `ref` is no hub id). Whether the copy is there is `expand_inputs`' business."""
    root = os.environ.get(HUB_MIRROR_ENV)
    if not root or not ref.startswith(HUB_PREFIX):
        return None
    name, _, config = ref[len(HUB_PREFIX) :].partition(":")
    parts = [*name.split("/"), *([config] if config else [])]
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{ref}: not a hub dataset name (hf://ORG/NAME or hf://ORG/NAME:CONFIG)")
    return Path(root, *parts)


def source_label(path: str | Path) -> str:
    """The `source` a record read from `path` carries when its row names none: the file's (or saved
    dataset's) name; for a hub dataset its name on the hub, `NAME` of `hf://ORG/NAME[:CONFIG]`, the
    same whether the hub or the mirror's copy `MIRROR/ORG/NAME/...` is read."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        return text[len(HUB_PREFIX) :].partition(":")[0].split("/")[-1]
    if root := os.environ.get(HUB_MIRROR_ENV):
        resolved, mirror = Path(text).resolve(), Path(root).resolve()
        if resolved.is_relative_to(mirror) and len(parts := resolved.relative_to(mirror).parts) >= 2:
            return parts[1]
    return Path(text).name


def expand_inputs(path: str | Path) -> list[str]:
    """A file, a hub id, a saved dataset folder, or a folder of data files (sorted) -> input list.
    A hub id becomes its copy in the hub mirror when one is set (module docstring)."""
    text = str(path)
    if text.startswith(HUB_PREFIX):
        local = hub_mirror(text)
        if local is None:
            return [text]
        if not local.is_dir():
            raise FileNotFoundError(
                f"{text}: the hub mirror {os.environ[HUB_MIRROR_ENV]} ({HUB_MIRROR_ENV}) has no copy of it at {local}; "
                "put one there (a save_to_disk folder, or Parquet/JSONL files), or unset the mirror to read the hub"
            )
        return expand_inputs(local)
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
