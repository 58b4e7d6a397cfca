"""The one config of `hala data audit`: what to read, which checks run, and each check's threshold."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from hala.config import StrictModel
from hala.text.defects import MIN_DISTINCT_SHARE
from hala.text.languages import language_name

# the built-in checks, in the order they run and are reported (see hala.audit.checks)
CHECKS = (
    "empty_turn", "roles", "html_tags", "literal_escapes", "untranslated", "digits", "repetition", "contamination",
    "length",
)  # fmt: skip
Check = Literal[CHECKS]  # type: ignore[valid-type]


class AuditConfig(StrictModel):
    NOT_OUTPUT = frozenset({"batch_size"})  # the checks are per row: any batch gives the same flags
    inputs: list[str] = Field(
        min_length=1, description="corpus files, folders, saved datasets or hf://NAME (ShareGPT, messages, Alpaca)"
    )
    out: str = Field(description="output folder: summary.json, audit.html, flagged.jsonl, manifest.json")
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = Field(
        "auto", description="the corpus's format (auto: told apart per row)"
    )
    lang: str = Field("ar", description="the corpus's language, for rows that do not name theirs")
    split: str = Field("train", description="which split of a saved or hub dataset to read")
    checks: list[Check] = Field(default_factory=lambda: list(CHECKS), description="the checks to run")
    max_latin_share: float = Field(
        0.5, ge=0, le=1, description="untranslated: the most of a user or assistant turn's words in Latin script"
    )
    min_words: int = Field(5, ge=1, description="untranslated: turns with fewer words (outside code) are not judged")
    max_ngram_repeats: int = Field(
        4, ge=1, description="repetition: the most times one word 4-gram may repeat in a paragraph"
    )
    max_char_run: int = Field(30, ge=2, description="repetition: the longest run of one character in a paragraph")
    min_distinct_share: float = Field(
        MIN_DISTINCT_SHARE, ge=0, le=1, description="repetition: the least share of distinct word 4-grams in a paragraph that "
        "repeats one 3 times (a short loop)"
    )
    max_turn_chars: int = Field(50_000, ge=1, description="length: the most characters one turn may have")
    length_mad_k: float = Field(
        10.0, gt=0, description="length: a conversation longer than median + k * MAD of the corpus is an outlier"
    )
    length_min_rows: int = Field(
        20, ge=1, description="length: a corpus with fewer rows is too small for the MAD rule"
    )
    bench_dir: str | None = Field(
        None, description="contamination: local copies of the OALL v2 datasets in the layout `hala eval bench "
        "--data-dir` reads (default: the bundled OALL mini data); matched as `hala data decontaminate` does")
    examples: int = Field(5, ge=0, description="examples shown per check in audit.html")
    batch_size: int = Field(1024, ge=1, description="conversations per batch given to each check")

    @field_validator("lang")
    @classmethod
    def _known(cls, value: str) -> str:
        language_name(value)
        return value
