"""The one shape of a filter: a name, and a verdict for each item of a batch.

A verdict is None when the item passes, or `(name, reason)` when it fails: the name is what the
runs count (`qa_<name>`, `rejected_<name>`), the reason is what a person reads in `rejected/`.
Translate's QA (`hala.translate.qa`), the pair filters (`hala.pairs.filters`) and the judge's
script gate (`hala.judge.scores`) are filters of this shape, and the judge's own verdicts take it
too (`Judged.rejection`), so every stage keeps its rejects the same way (`RejectLog.verdict`).

A filter sees a whole batch, so one that calls a model or a detector (lingua) calls it once for
the batch. `first_failures` runs filters in order, cheap first, each over the items every filter
before it passed, and keeps each item's first failure: an expensive filter never sees an item a
cheap one already turned down. Most filters look at one item at a time: `Rule` makes one of those
from a function that says why an item fails; `BatchRule` makes one from a function of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Verdict = tuple[str, str]  # (the filter's name, why the item failed it)


@runtime_checkable
class Filter(Protocol):
    name: str

    def verdicts(self, items: Sequence[Any]) -> list[Verdict | None]:
        """One verdict per item, in order: None (passes) or (name, reason)."""
        ...


@dataclass(frozen=True)
class Rule:
    """A filter that looks at one item at a time: `why(item)` is the reason it fails, or None."""

    name: str
    why: Callable[[Any], str | None]

    def verdicts(self, items: Sequence[Any]) -> list[Verdict | None]:
        return [None if (reason := self.why(item)) is None else (self.name, reason) for item in items]


@dataclass(frozen=True)
class BatchRule:
    """A filter that looks at the whole batch at once (to call a detector once): `why(items)` is
    each item's reason to fail, or None."""

    name: str
    why: Callable[[Sequence[Any]], list[str | None]]

    def verdicts(self, items: Sequence[Any]) -> list[Verdict | None]:
        return [None if reason is None else (self.name, reason) for reason in self.why(items)]


def first_failures(filters: Iterable[Filter], items: Sequence[Any]) -> list[Verdict | None]:
    """Each item's first failing filter, as (name, reason), or None when it passes them all. Each
    filter sees only the items that passed every filter before it, in their order."""
    verdicts: list[Verdict | None] = [None] * len(items)
    standing = list(range(len(items)))
    for f in filters:
        if not standing:
            break
        for i, verdict in zip(standing, f.verdicts([items[i] for i in standing]), strict=True):
            verdicts[i] = verdict
        standing = [i for i in standing if verdicts[i] is None]
    return verdicts
