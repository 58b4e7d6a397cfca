"""`hala data decontaminate`: rows of an Arabic SFT corpus that hold a benchmark item are taken out.

The paper's corpus translates MMLU-like English instruction data and the model is then scored on
ArbMMLU-HT (MMLU translated by people) and five other OALL v2 tasks, so a benchmark question in the
training data is a real risk. This stage checks every turn of every row against an index of the
benchmark items (`index`: the questions and passages, normalised, matched verbatim or by n-gram
overlap) and keeps the clean rows; a flagged row goes to `rejected/` naming the item it holds.

- `index`: the items of a benchmark folder and the match rule (`BenchIndex`);
- `filters`: the match as a filter of the one filter shape (`ContaminationFilter`), which
  `hala data audit` runs too;
- `stage`: the stage (`DecontaminateConfig`, `decontaminate`).
"""

from hala.decontaminate.filters import ContaminationFilter, Match
from hala.decontaminate.index import BenchIndex, Item

__all__ = ["BenchIndex", "ContaminationFilter", "Item", "Match"]
