"""The benchmark index: every OALL v2 item a corpus must not hold, built once, searched per batch.

An **item** is one benchmark row's question or its passage (ArabicMMLU's and MadinahQA's
`Context`; AlGhafa's `query` holds the passage and the question on lines of their own), split at
line breaks and normalised (`hala.text.arabic.arabic_words`). Answer choices are not items:
alone they are a word or two ("صحيح", "المريخ") that any text may hold. Only the split a benchmark
is scored on is indexed (`test`, AraTrust's `train`): the few-shot rows are never scored 0-shot.
Items with fewer than `min_words` words are left out: a three-word question names no benchmark.
Items with the same normalised text (AlGhafa asks several questions about one passage) are one
item, named by its first row. The folder's layout is the one `hala eval bench` reads, found
through its public `hala.evaluate.benchmarks.find_task_data`.

**The match rule.** A turn holds an item when, both normalised,

- the item has fewer than `ngram` words and its words occur in the turn verbatim, as consecutive
  words;
- the item has `ngram` words or more and at least `threshold` of its distinct word n-grams occur
  in the turn.

Why 8-grams and 0.5: n-gram decontamination in the literature uses 8 to 13 words (PaLM: 8-grams,
GPT-3: 13-grams, both for English). Arabic attaches articles, prepositions, conjunctions and
pronouns to the word (`وبالكتاب` is four English words), so an Arabic text has a fifth fewer
words than its English source and 8 Arabic words carry about 10 English ones: long enough that
eight consecutive words shared with a benchmark item are not chance, short enough that a
question of ten words still has n-grams. An edited word breaks the n-grams holding it: with one
word in 16 changed, about half of an item's 8-grams survive, so 0.5 still flags an item copied
with light edits (a spelling fix, a changed number) and a turn quoting half of a long passage,
while a text on the same topic, which shares words but rarely eight in a row, stays far below it.
What n-grams can't see is the same English item translated twice, independently: the paper's
corpus translates MMLU-like English data, and ArbMMLU-HT is MMLU translated by people; two
translations seldom agree on eight words in a row. This index finds copies, not paraphrases.

**Speed.** A row must cost what its own words cost, not what the benchmark holds. Words become
ids through the index's vocabulary (a word the benchmarks never use ends every window holding it),
each id a random 64-bit key, and a window of L words hashes to `k1·P^(L-1) + ... + kL` (mod 2^64),
computed for all windows of a batch at once with numpy (L = 1..n, one pass per length). Item
n-grams are a sorted array of hashes with the items holding each (a CSR table), looked up with
`searchsorted` behind a bitmap of the hashes' top bits that turns most windows away first; the
short items are a sorted array per length, their exact hashes, each hit then checked word for
word. A hit costs work; a clean turn costs a few vector operations per word.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from hala.data.rows import iter_rows
from hala.evaluate.benchmarks import BENCHMARKS, MissingDataError, bundled_data_dir, find_task_data
from hala.text.arabic import arabic_words

log = logging.getLogger("hala.decontaminate")

# each benchmark's question and passage columns (the OALL v2 datasets' own names)
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "alghafa": ("query",),
    "arabic_mmlu": ("Question", "Context"),
    "arabic_exams": ("question",),
    "madinah_qa": ("Question", "Context"),
    "aratrust": ("Question",),
    "arabic_mmlu_ht": ("question",),
}
ID_FIELDS = ("ID", "id")  # a row's own id, where the dataset has one
PRIME = np.uint64(0x9E3779B97F4A7C15)  # odd: the window hash's base
EXCERPT = 60  # characters of an item quoted in a reason


@dataclass(frozen=True)
class Item:
    """One indexed benchmark text and the row it comes from."""

    task: str  # the paper's name of the benchmark (ArabicMMLU)
    subset: str
    split: str
    row: int  # the 1-based line (or Parquet row) of the split file
    row_id: str | None  # the row's own id column
    field: str
    excerpt: str  # its first words, as the benchmark writes them
    words: int  # normalised
    copies: int = 1  # rows holding the same normalised text

    def __str__(self) -> str:
        where, about = f"{self.task} / {self.subset} / {self.split} row {self.row}", []
        if self.row_id is not None:
            about.append(f"id {self.row_id}")
        if self.copies > 1:
            about.append(f"{self.copies - 1} more row{'s' * (self.copies > 2)} with this text")
        return f"{where} ({', '.join(about)})" if about else where


@dataclass(frozen=True)
class Hit:
    """An item found in one text: `share` of its n-grams (1.0 for a short item found verbatim)."""

    text: int  # which of the searched texts
    item: int
    share: float


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def bench_items(bench_dir: str | Path | None, min_words: int) -> dict[str, Item]:
    """Every item of the benchmarks present in `bench_dir` (default: the bundled mini data), by its
    normalised text. A benchmark missing from the folder is skipped; none at all is an error."""
    root = Path(bench_dir) if bench_dir else bundled_data_dir()
    items: dict[str, Item] = {}
    found = []
    for key, bench in BENCHMARKS.items():
        try:
            data = find_task_data(root, bench)
        except MissingDataError:
            continue
        found.append(bench.label)
        for subset, splits in data.files.items():
            for row in iter_rows(splits[bench.eval_split]):
                if row.data is None:
                    raise ValueError(f"{row.file}:{row.line}: {row.error.reason if row.error else 'unreadable row'}")
                row_id = next((str(row.data[f]) for f in ID_FIELDS if row.data.get(f) is not None), None)
                for field in TEXT_FIELDS[key]:
                    for part in str(row.data.get(field) or "").splitlines():
                        words = arabic_words(part)
                        if len(words) < max(min_words, 1):
                            continue
                        text = " ".join(words)
                        if text in items:
                            items[text] = replace(items[text], copies=items[text].copies + 1)
                        else:
                            items[text] = Item(bench.label, subset, bench.eval_split, row.line, row_id, field,
                                               _excerpt(part), len(words))  # fmt: skip
    if not found:
        names = ", ".join(b.hf_repo for b in BENCHMARKS.values())
        raise MissingDataError(f"{root}: holds none of the OALL v2 datasets ({names}) in the layout "
                               "`hala eval bench --data-dir` reads, <hf owner>/<hf name>/<subset>/<split>.jsonl")
    log.info("benchmark index: %d items from %s (%s)", len(items), root, ", ".join(found))
    return items


class _Table:
    """Sorted hashes, each with the items holding it (CSR: `items[starts[i]:starts[i + 1]]`), and a
    bitmap of their top bits that turns most lookups away before the binary search."""

    def __init__(self, hashes: np.ndarray, items: np.ndarray):
        order = np.lexsort((items, hashes))
        hashes, items = hashes[order], items[order].astype(np.int32)
        distinct = np.ones(len(hashes), bool)  # an item holding an n-gram twice is listed once
        distinct[1:] = (hashes[1:] != hashes[:-1]) | (items[1:] != items[:-1])
        hashes, items = hashes[distinct], items[distinct]
        first = np.flatnonzero(np.append(True, hashes[1:] != hashes[:-1]))
        self.keys, self.starts = hashes[first], np.append(first, len(hashes))
        self.items = items
        bits = int(np.clip(np.ceil(np.log2(max(len(self.keys), 1))) + 3, 10, 26))  # 1 bit in 8 set at most
        self.shift = np.uint64(64 - bits)
        self.present = np.zeros(1 << bits, bool)
        self.present[self.keys >> self.shift] = True

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the positions in `hashes` of those in the table, the matching key indices)."""
        maybe = np.flatnonzero(self.present[hashes >> self.shift])
        pos = np.minimum(np.searchsorted(self.keys, hashes[maybe]), len(self.keys) - 1)
        found = self.keys[pos] == hashes[maybe]
        return maybe[found], pos[found]

    def expand(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(for each item holding each key: which key, the item)."""
        counts = self.starts[keys + 1] - self.starts[keys]
        which = np.repeat(np.arange(len(keys)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return which, self.items[self.starts[keys][which] + offsets]


class BenchIndex:
    """The items of a benchmark folder, searchable by text (see the module docstring)."""

    def __init__(self, items: dict[str, Item], ngram: int = 8, threshold: float = 0.5):
        """`items`: by normalised text (`bench_items`); the texts are not kept, only their word ids."""
        if ngram < 2:
            raise ValueError(f"ngram must be at least 2, got {ngram}")
        self.items, self.ngram, self.threshold = list(items.values()), ngram, threshold
        self.vocab: dict[str, int] = {}
        ids, lengths = array("i"), np.array([item.words for item in self.items], np.int64)
        for text in items:  # one item's words at a time: all of them as strings at once take hundreds of MB
            ids.extend(self.vocab.setdefault(w, len(self.vocab)) for w in text.split())
        self.ids = np.frombuffer(ids, np.int32)
        self.first = np.cumsum(lengths) - lengths  # each item's first word in `ids`
        self.word_keys = np.random.default_rng(0).integers(0, 2**63, len(self.vocab) + 1, dtype=np.uint64) * 2 + 1
        self.short: dict[int, _Table] = {}
        for length, h, run in self._windows(self.ids, lengths, ngram):
            if length < ngram and len(short := np.flatnonzero(lengths == length)):
                self.short[length] = _Table(h[self.first[short]], short)  # a short item: its one whole window
            elif length == ngram:
                grams = np.flatnonzero(run >= ngram)
                self.long = _Table(h[grams], np.repeat(np.arange(len(lengths)), lengths)[grams])
        self.grams = np.bincount(self.long.items, minlength=len(lengths))  # each long item's distinct n-grams

    @classmethod
    def build(
        cls, bench_dir: str | Path | None = None, ngram: int = 8, threshold: float = 0.5, min_words: int = 4
    ) -> BenchIndex:
        """The index of the benchmarks in `bench_dir` (default: the bundled OALL mini data)."""
        return cls(bench_items(bench_dir, min_words), ngram, threshold)

    def _windows(self, ids: np.ndarray, lengths: np.ndarray, longest: int):
        """For L = 1..longest: (L, the hash of the window of L words starting at each word, how many
        words from there on are known and in the same text). A window of L words is a real one, inside
        one text and free of unknown words, where that run is at least L."""
        keys = self.word_keys[ids]
        ends = np.repeat(np.cumsum(lengths), lengths)  # where each word's text ends
        unknown = np.flatnonzero(ids == len(self.vocab))
        stop = np.full(len(ids), len(ids), np.int64)
        stop[unknown] = unknown
        stop = np.minimum(np.minimum.accumulate(stop[::-1])[::-1], ends)  # the first unknown word or the end
        run = stop - np.arange(len(ids))
        h = keys
        for length in range(1, longest + 1):
            if length > 1:
                h = h[:-1] * PRIME + keys[length - 1 :]
            yield length, h, run[: len(h)]

    def search(self, texts: Sequence[str]) -> list[list[Hit]]:
        """Every item each text holds (the match rule of the module docstring), best first: the highest
        share, then the longest item."""
        words = [arabic_words(t) for t in texts]
        flat = list(chain.from_iterable(words))
        hits: list[list[Hit]] = [[] for _ in texts]
        longest = self.ngram if len(self.long.keys) else max(self.short, default=0)
        if not flat or not longest:
            return hits
        ids = np.array(list(map(self.vocab.get, flat, repeat(len(self.vocab)))), np.int32)
        lengths = np.array([len(ws) for ws in words], np.int64)
        seg = np.repeat(np.arange(len(texts)), lengths)
        for length, h, run in self._windows(ids, lengths, longest):
            table = self.long if length == self.ngram else self.short.get(length)
            if table is None:
                continue
            valid = np.flatnonzero(run >= length)
            at, key = table.lookup(h[valid])
            if length == self.ngram:
                self._shares(seg[valid[at]], key, hits)
            else:
                self._exact(valid[at], key, table, length, ids, seg, hits)
        for found in hits:
            found.sort(key=lambda hit: (-hit.share, -self.items[hit.item].words))
        return hits

    def _exact(self, positions, keys, table: _Table, length: int, ids: np.ndarray, seg, hits) -> None:
        """Short items: each hash hit checked word for word (`positions`: where its window starts)."""
        which, items = table.expand(keys)
        seen = set()
        for start, item in zip(positions[which].tolist(), items.tolist()):
            text, first = int(seg[start]), self.first[item]
            same = np.array_equal(ids[start : start + length], self.ids[first : first + length])
            if same and (text, item) not in seen:
                seen.add((text, item))
                hits[text].append(Hit(text, item, 1.0))

    def _shares(self, texts: np.ndarray, keys: np.ndarray, hits) -> None:
        """Long items: the share of each one's n-grams found in each text (`keys`: the n-grams hit)."""
        pairs = np.unique(np.stack([texts, keys]), axis=1)  # each n-gram once per text
        which, items = self.long.expand(pairs[1])
        found, counts = np.unique(np.stack([pairs[0][which], items]), axis=1, return_counts=True)
        shares = counts / self.grams[found[1]]
        for k in np.flatnonzero(shares >= self.threshold).tolist():
            text, item = int(found[0][k]), int(found[1][k])
            hits[text].append(Hit(text, item, float(shares[k])))
