"""Bad input is never dropped silently.

Every row that can't become a record is reported as `file:line: reason`, its raw text is kept
under `rejected/` with the reason, and the run summary counts each kind. With `strict`, the first
bad row stops the run with the same message.

Two outcomes are not a success even though no step failed, and the `hala` commands exit 1 for
them: inputs that hold no row at all (stopped before anything is written: a wrong path, an
unfinished export), and inputs of which not one row could be read (every row a reject of
`BAD_KINDS`; the manifest and `rejected/` are kept so the reasons can be read). Rows all turned
down by a verdict (QA, filters, the judge) end with a loud warning and exit 0: that run did its
job. A row whose id is already used by an earlier row of the same unit of work with other content
is rejected as `duplicate_id` (the first wins; the same record twice is not a clash), naming that
row's line.

A verdict (a filter's `(name, reason)`, see `hala.text.filters`) is kept in the same record, file,
line, kind, reason and raw, through `RejectLog.verdict`: it is not bad input, so it logs nothing
and does not stop a strict run. Translate's QA rejects a conversation through `add`, as it always
has: each is logged, and `strict` stops at the first.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("hala.data")


class BadInputError(ValueError):
    """Raised in strict mode for the first bad row; the message is `file:line: reason`."""


@dataclass
class Reject:
    file: str
    line: int
    kind: str
    reason: str
    raw: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_row(self) -> dict:
        return {"file": self.file, "line": self.line, "kind": self.kind, "reason": self.reason, "raw": self.raw}


@dataclass
class RejectLog:
    """Collects rejects for one unit of work; the unit's writer saves them next to its output.

    Stages add to it through its methods, one for each kind of reject (`add` for bad input,
    `verdict` for a row turned down), and never edit `rejects` themselves."""

    strict: bool = False
    rejects: list[Reject] = field(default_factory=list)

    def add(self, file: str | Path, line: int, kind: str, reason: str, raw: str = "") -> None:
        """A row that can't become a record: logged as a warning; with `strict`, it stops the run."""
        reject = Reject(str(file), line, kind, reason, raw)
        if self.strict:
            raise BadInputError(f"{reject.where}: {reason}")
        log.warning("%s: %s", reject.where, reason)
        self.rejects.append(reject)

    def verdict(self, file: str | Path, line: int, kind: str, reason: str, raw: str = "") -> None:
        """A row a filter or the judge turned down (`hala.text.filters`): kept like any reject, but
        it is not bad input, so it neither logs a warning nor stops a `strict` run."""
        self.rejects.append(Reject(str(file), line, kind, reason, raw))

    def take(self) -> list[Reject]:
        """The rejects collected so far, leaving the log empty (for a stage that writes them as it goes)."""
        taken, self.rejects = self.rejects, []
        return taken

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.kind for r in self.rejects))

    def rows(self) -> list[dict]:
        return [r.to_row() for r in self.rejects]

    def __len__(self) -> int:
        return len(self.rejects)
