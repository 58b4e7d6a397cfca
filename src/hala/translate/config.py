"""The one config of `hala translate`, shared by the CLI, the Python API and every executor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hala.config import StrictModel
from hala.engines.base import EngineConfig, SamplingParams
from hala.launch.config import ShardedConfig
from hala.translate.prompts import PromptConfig
from hala.translate.qa import QAConfig

class RetryConfig(StrictModel):
    """What a segment that fails QA gets before its conversation is rejected (`hala.translate.retry`).

    The ladder, in order, until the segment passes: `resplit` cuts it into smaller pieces (a
    truncated one at half `max_segment_tokens`, at sentences then spaces; any other of more than
    one sentence at its sentences, into pieces of about half its size), translated greedily; then
    `sampled` attempts ask each piece still failing again at `temperature`, attempt k (from 1)
    with seed `seed + k`; last, `spans` cuts a piece still failing `protected_spans` at its spans.
    Fixed seeds make every attempt deterministic and cached, so a killed run resumes to the same
    result. `resplit: false, sampled: 0, spans: false` turns the ladder off: a segment that
    fails any filter (truncated included, which hala re-split once before the ladder existed)
    rejects its conversation at once. Engine errors are never retried here: a rerun redoes them.
    """

    resplit: bool = Field(True, description="re-split a failing segment (truncated, or of several sentences)")
    sampled: int = Field(2, ge=0, description="sampled retries of a segment still failing after the re-split")
    temperature: float = Field(0.7, gt=0, description="temperature of the sampled retries")
    seed: int = Field(0, ge=0, description="sampled retry k is asked with seed + k")
    spans: bool = Field(True, description="last: cut a piece still failing protected_spans at its spans, "
                        "translate the text between them alone and keep the spans literal")


class TranslateConfig(ShardedConfig):
    # how a run is paced and launched, not what it produces (the shard count comes back in identity())
    NOT_OUTPUT = ShardedConfig.LAUNCH | {
        "batch_size", "cache_path", "engine_retries", "engine_backoff_s", "progress", "units_in_flight",
    }  # fmt: skip

    inputs: list[str] = Field(min_length=1, description="conversations: files, folders, saved datasets or hf://NAME")
    out: str = Field(description="output folder: data/, rejected/, stats/, cache/, manifest.json")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    sampling: SamplingParams = Field(default_factory=lambda: SamplingParams(max_tokens=512, temperature=0.0))
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    qa: QAConfig = Field(default_factory=QAConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    source_lang: str = Field("en", description="the language translated from")
    target_lang: str = Field("ar", description="the language translated into; named in the prompt and QA")
    system_prompts: Literal["translate", "keep", "drop"] = "translate"
    format: Literal["auto", "messages", "sharegpt", "alpaca"] = "auto"
    field_maps: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="per input (as written in inputs): its column -> hala's, e.g. "
        "{hf://Open-Orca/OpenOrca: {system_prompt: system, question: instruction, response: output}}")
    source_filters: dict[str, list[str]] = Field(
        default_factory=dict, description="per input (as written in inputs): the paper's source filters its rows "
        "pass before translation (tulu3_english, no_code; hala.text.source_filters)")
    audit: bool = Field(True, description="record in each row's meta.lineage.audit the checks of `hala data audit` "
                        "its translation fails (the corpus-level length check aside)")
    limit: int | None = Field(None, ge=1, description="only the first N conversations (over all inputs, in order)")
    split: str = "train"
    output_format: Literal["jsonl", "parquet"] = "jsonl"
    output_schema: Literal["messages", "sharegpt"] = "messages"
    max_segment_tokens: int = Field(256, ge=1, description="segments longer than this are split at sentences")
    rows_per_unit: int = Field(1000, ge=1, description="conversations per unit of work (resume granularity)")
    batch_size: int = Field(4096, ge=1, description="segments per engine call")
    units_in_flight: int = Field(
        4, ge=1, description="units worked at once, so the engine never waits for hala: while it generates for one, "
        "the next are read and segmented and the ones before checked, rebuilt and written, in order (1: one at a time)")
    cache_path: str | None = Field(None, description="default: OUT/cache/segments.sqlite")
    engine_retries: int = Field(2, ge=0)
    engine_backoff_s: float = Field(2.0, ge=0)
    strict: bool = Field(False, description="stop at the first bad input row")
    progress: bool = True

    @field_validator("source_filters")
    @classmethod
    def _source_filters(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        from hala.text.source_filters import source_filters

        for names in value.values():
            source_filters(names)
        return value

    @model_validator(mode="after")
    def _mapped_inputs(self) -> TranslateConfig:
        for name, mapping in (("field_maps", self.field_maps), ("source_filters", self.source_filters)):
            if stray := [ref for ref in mapping if ref not in self.inputs]:
                raise ValueError(f"{name} names {stray[0]!r}, which is not one of inputs ({', '.join(self.inputs)})")
        return self
