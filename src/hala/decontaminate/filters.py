"""Contamination as a filter of the one filter shape (`hala.text.filters`): a name, and a verdict for
each conversation of a batch, None or `("contaminated", reason)`.

The decontaminate stage and the audit run the same filter, so a corpus that passed one passes the
other. Every turn of every conversation of a batch goes to the index in one search
(`BenchIndex.search`); a conversation is contaminated when any turn holds an item, and its reason
names the first such turn, the item it holds best (a short item found verbatim, else the highest
share of n-grams) as task / subset / split row (id), how it matched, and how many other items the
conversation holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hala.data.records import Conversation
from hala.decontaminate.index import BenchIndex, Item
from hala.text.filters import Verdict


@dataclass(frozen=True)
class Match:
    """The benchmark item a conversation holds: where, how much of it, and how many others."""

    item: Item
    turn: int  # 1-based
    role: str
    share: float  # of the item's n-grams; 1.0 for a short item found verbatim
    ngram: int
    others: int  # other items the conversation holds

    @property
    def how(self) -> str:
        if self.item.words < self.ngram:
            return "verbatim"
        return f"{self.share:.0%} of its {self.ngram}-grams"

    @property
    def reason(self) -> str:
        more = f"; {self.others} more item{'s' * (self.others > 1)} in this conversation" if self.others else ""
        return (f"turn {self.turn} ({self.role}) holds the {self.item.field} of {self.item}, {self.how}: "
                f"«{self.item.excerpt}»{more}")  # fmt: skip


@dataclass(frozen=True)
class ContaminationFilter:
    """Conversations that hold a benchmark item of `index` fail, with the item named."""

    index: BenchIndex
    name: str = "contaminated"

    def matches(self, conversations: Sequence[Conversation]) -> list[Match | None]:
        """Each conversation's match (see the module docstring), or None when it holds no item."""
        turns = [(c, t) for c, conv in enumerate(conversations) for t in range(len(conv.messages))]
        hits = self.index.search([conversations[c].messages[t].content for c, t in turns])
        found: list[Match | None] = [None] * len(conversations)
        items: list[set[int]] = [set() for _ in conversations]
        for (c, t), turn_hits in zip(turns, hits):
            if not turn_hits:
                continue
            items[c].update(h.item for h in turn_hits)
            if found[c] is None:
                best = turn_hits[0]
                role = conversations[c].messages[t].role
                found[c] = Match(self.index.items[best.item], t + 1, role, best.share, self.index.ngram, 0)
        return [m if m is None else replace(m, others=len(items[c]) - 1) for c, m in enumerate(found)]

    def verdicts(self, conversations: Sequence[Conversation]) -> list[Verdict | None]:
        return [None if m is None else (self.name, m.reason) for m in self.matches(conversations)]
