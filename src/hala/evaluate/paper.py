"""The Hala Technical Report's OALL v2 scores, and which of them a local model is compared with.

Scores are percentages (0-shot acc_norm), copied from the report's table (Hammoud, Zbeeb, Ghanem,
arXiv 2509.14008); the Fanar-1-9B-Instruct row comes from a later paper by the same authors. The
report gives no scores for the LFM2 bases of the 350M/700M/1.2B models, so those rows show none.

A model is matched to a paper row by an explicit `paper_row`, or else by name: the model's label,
folder name and `config.json` `_name_or_path` are searched for a Hala model's name
(`hala-1.2b`) or its base's (`lfm2-1.2b`). Whichever family matches, both the Hala row and its
base row are shown, since the paper's claim is the comparison between them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PAPER = "Hala Technical Report (Hammoud, Zbeeb, Ghanem; arXiv 2509.14008), OALL v2, 0-shot acc_norm"
TASK_ORDER = ("alghafa", "arabic_mmlu", "arabic_exams", "madinah_qa", "aratrust", "arabic_mmlu_ht")


@dataclass(frozen=True)
class PaperRow:
    name: str
    scores: dict[str, float] | None  # task key -> percent; None where the report gives none
    average: float | None
    note: str = ""

    def average_over(self, tasks: list[str]) -> float | None:
        """The reported average for all six tasks; for fewer, the mean of those tasks' scores."""
        if self.scores is None:
            return None
        if sorted(tasks) == sorted(TASK_ORDER):
            return self.average
        return round(sum(self.scores[t] for t in tasks) / len(tasks), 2) if tasks else None


def _row(name: str, values: tuple[float, ...] | None, average: float | None = None, note: str = "") -> PaperRow:
    return PaperRow(name, dict(zip(TASK_ORDER, values)) if values else None, average, note)


# key -> (Hala model, its base)
PAPER_ROWS: dict[str, tuple[PaperRow, PaperRow]] = {
    "hala-350m": (
        _row("Hala-350M", (51.4, 41.2, 36.9, 34.5, 52.1, 35.4), 41.9),
        _row("LFM2-350M (base)", None, note="not reported"),
    ),
    "hala-700m": (
        _row("Hala-700M", (55.5, 45.9, 40.6, 34.7, 65.2, 39.4), 46.9),
        _row("LFM2-700M (base)", None, note="not reported"),
    ),
    "hala-1.2b": (
        _row("Hala-1.2B", (59.2, 48.6, 43.4, 41.6, 71.7, 44.2), 51.4),
        _row("LFM2-1.2B (base)", None, note="not reported"),
    ),
    "hala-9b": (
        _row("Hala-9B", (78.3, 65.6, 53.8, 70.4, 89.6, 61.4), 69.9),
        _row("Fanar-1-9B-Instruct (base)", (76.4, 65.8, 52.7, 73.4, 88.3, 58.6), 69.2, note="from a later paper"),
    ),
}

# Names that identify a family: the Hala model's and its base's, lower-case, '-' for '_' and ' '.
_FAMILY_NAMES = {
    "hala-350m": ("hala-350m", "lfm2-350m"),
    "hala-700m": ("hala-700m", "lfm2-700m"),
    "hala-1.2b": ("hala-1.2b", "lfm2-1.2b"),
    "hala-9b": ("hala-9b", "fanar-1-9b"),
}
PAPER_ROW_CHOICES = ("auto", "none", *PAPER_ROWS)


def _normalize(text: str) -> str:
    return re.sub(r"[\s_]+", "-", text.lower())


def model_names(label: str, path: str | Path) -> list[str]:
    """What a model is called: its label, folder name and `_name_or_path` (when config.json has one)."""
    names = [label, Path(path).name]
    config = Path(path) / "config.json"
    try:
        names.append(str(json.loads(config.read_text(encoding="utf-8")).get("_name_or_path") or ""))
    except (OSError, ValueError, AttributeError):
        pass
    return [n for n in names if n]


def match_family(names: list[str]) -> str | None:
    """The paper family (`hala-1.2b`, ...) whose Hala or base name occurs in one of `names`."""
    text = " ".join(_normalize(n) for n in names)
    for family, patterns in _FAMILY_NAMES.items():
        # the character after the name must not extend it (hala-1.2b must not match hala-1.2b0)
        if any(re.search(re.escape(p) + r"(?![0-9a-z.])", text) for p in patterns):
            return family
    return None


def paper_rows_for(choice: str, models: list[tuple[str, str | Path]]) -> list[PaperRow]:
    """The paper rows to show: those of `choice`, or for `auto` of every family a model matches."""
    if choice not in PAPER_ROW_CHOICES:
        raise ValueError(f"unknown paper row {choice!r}; valid: {', '.join(PAPER_ROW_CHOICES)}")
    if choice == "none":
        return []
    if choice != "auto":
        return list(PAPER_ROWS[choice])
    families = []
    for label, path in models:
        family = match_family(model_names(label, path))
        if family and family not in families:
            families.append(family)
    return [row for family in families for row in PAPER_ROWS[family]]
