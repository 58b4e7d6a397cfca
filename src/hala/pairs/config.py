"""The one config of `hala pairs`, shared by the CLI, the Python API and recipes."""

from __future__ import annotations

from pydantic import Field, model_validator

from hala.config import StrictModel
from hala.pairs.filters import FilterConfig
from hala.pairs.sft import SftConfig
from hala.pairs.split import SplitConfig
from hala.text.languages import check_language_pair


class PairsConfig(StrictModel):
    NOT_OUTPUT = frozenset({"batch_size"})  # language ID per batch: same verdicts
    inputs: list[str] = Field(
        min_length=1, description="translate/judge/pairs run folders, pair files or folders, saved datasets, hf://NAME"
    )
    out: str
    src_lang: str = "en"
    tgt_lang: str = "ar"
    split: str = Field("train", description="which split of a saved or hub dataset to read")
    limit: int | None = Field(None, ge=1, description="only the first N rows of each input file")
    filters: FilterConfig = Field(default_factory=FilterConfig)
    splits: SplitConfig = Field(default_factory=SplitConfig)
    sft: SftConfig = Field(default_factory=SftConfig)
    batch_size: int = Field(4096, ge=1, description="pairs per filter batch (language ID runs once per batch)")
    strict: bool = Field(False, description="stop at the first unreadable row (filtered pairs never stop the run)")

    @model_validator(mode="after")
    def _languages(self) -> PairsConfig:
        check_language_pair(self.src_lang, self.tgt_lang)
        allowed = {f"{self.src_lang}-{self.tgt_lang}", f"{self.tgt_lang}-{self.src_lang}"}
        wrong = [d for d in self.sft.directions if d not in allowed]
        if wrong:
            raise ValueError(f"sft.directions {wrong}: this run's pairs can teach only {sorted(allowed)}")
        return self
