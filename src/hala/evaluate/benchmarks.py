"""The six OALL v2 benchmarks the paper reports, and where their data lives on disk.

Each benchmark is one lighteval task family (`alghafa:<subset>`, ..., or the single task
`arabic_exams`) over one Hugging Face dataset. hala never downloads a dataset: a data dir holds
local copies in the datasets' own column schema, laid out the way the hub names them,

    DATA_DIR/<hf owner>/<hf name>/<subset>/<split>.jsonl   (or <split>.parquet)

which is also the layout of the bundled mini data (`hala/resources/oall_mini`, the default). The
subsets that run are the ones present in the data dir; whether lighteval knows each one is checked
when its task definitions are built (`hala.evaluate.lighteval_adapter`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".parquet")


@dataclass(frozen=True)
class Benchmark:
    key: str  # hala's task name, which is also lighteval's task-name prefix
    label: str  # the paper's column head
    hf_repo: str
    eval_split: str
    fewshot_split: str | None
    example_subset: str  # named in error messages, to show the layout
    single_task: bool = False  # one lighteval task without a subset suffix (its HF config is "default")
    skip_subsets: tuple[str, ...] = ()  # never run: ArabicMMLU's "All" repeats every other subset

    def task_name(self, subset: str) -> str:
        """lighteval's name for one subset: `alghafa:meta_ar_msa`, or `arabic_exams`."""
        return self.key if self.single_task else f"{self.key}:{subset}"


# In the order of the paper's table. The splits are lighteval's (checked against its configs in tests).
BENCHMARKS: dict[str, Benchmark] = {
    b.key: b
    for b in (
        Benchmark("alghafa", "AlGhafa", "OALL/AlGhafa-Arabic-LLM-Benchmark-Native", "test", "validation", "mcq_exams_test_ar"),
        Benchmark("arabic_mmlu", "ArabicMMLU", "MBZUAI/ArabicMMLU", "test", "dev", "Driving Test", skip_subsets=("All",)),
        Benchmark("arabic_exams", "EXAMS", "OALL/Arabic_EXAMS", "test", "validation", "default", single_task=True),
        Benchmark("madinah_qa", "MadinahQA", "MBZUAI/MadinahQA", "test", "dev", "Arabic Language (General)"),
        Benchmark("aratrust", "AraTrust", "asas-ai/AraTrust-categorized", "train", None, "Trustfulness"),
        Benchmark("arabic_mmlu_ht", "ArbMMLU-HT", "MBZUAI/human_translated_arabic_mmlu", "test", None, "nutrition"),
    )
}  # fmt: skip


class UnknownTaskError(ValueError):
    """A task name that is none of the six benchmarks."""


class MissingDataError(FileNotFoundError):
    """The data dir lacks a file a benchmark needs; the message names the file."""


def valid_task_names() -> str:
    return ", ".join(f"{b.key} ({b.label})" for b in BENCHMARKS.values())


def resolve_tasks(names: list[str] | None) -> list[Benchmark]:
    """Benchmarks by hala name or paper label, case-insensitive, comma-separated or repeated.

    No names means all six. Order follows the paper's table; duplicates collapse.
    """
    wanted = [part.strip() for name in names or [] for part in name.split(",") if part.strip()]
    if not wanted:
        return list(BENCHMARKS.values())
    by_name = {b.key: b for b in BENCHMARKS.values()} | {b.label.lower(): b for b in BENCHMARKS.values()}
    chosen = set()
    for name in wanted:
        bench = by_name.get(name.lower())
        if bench is None:
            raise UnknownTaskError(f"unknown task {name!r}; valid tasks: {valid_task_names()}")
        chosen.add(bench.key)
    return [b for b in BENCHMARKS.values() if b.key in chosen]


def bundled_data_dir() -> Path:
    """The mini OALL v2 data shipped with hala (20-40 original items per task; plumbing only)."""
    return Path(str(resources.files("hala.resources").joinpath("oall_mini")))


@dataclass
class TaskData:
    """One benchmark's local files: subset -> split -> file."""

    bench: Benchmark
    root: Path
    files: dict[str, dict[str, Path]] = field(default_factory=dict)

    @property
    def subsets(self) -> list[str]:
        return list(self.files)


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in DATA_SUFFIXES:
        path = folder / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def find_task_data(data_dir: str | Path, bench: Benchmark) -> TaskData:
    """The subsets of `bench` present under `data_dir`, each with its eval split (required) and its
    few-shot split (kept when present; 0-shot runs never read it)."""
    root = Path(data_dir) / bench.hf_repo
    folders = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    subsets = [name for name in folders if not name.startswith(".") and name not in bench.skip_subsets]
    if not subsets:
        example = root / bench.example_subset / f"{bench.eval_split}.jsonl"
        raise MissingDataError(
            f"{bench.label} ({bench.key}): no data in {root}; expected one folder per subset holding "
            f"the {bench.eval_split!r} split, e.g. {example}"
        )
    data = TaskData(bench=bench, root=root)
    for subset in subsets:
        eval_file = _split_file(root / subset, bench.eval_split)
        if eval_file is None:
            expected = root / subset / f"{bench.eval_split}.jsonl"
            raise MissingDataError(
                f"{bench.label} ({bench.key}), subset {subset!r}: missing the {bench.eval_split!r} split; "
                f"expected {expected} (or .parquet)"
            )
        data.files[subset] = {bench.eval_split: eval_file}
        if bench.fewshot_split and (few := _split_file(root / subset, bench.fewshot_split)):
            data.files[subset][bench.fewshot_split] = few
    suffixes = sorted({f.suffix for splits in data.files.values() for f in splits.values()})
    if len(suffixes) > 1:
        raise ValueError(
            f"{bench.label} ({bench.key}): {root} mixes {' and '.join(suffixes)} files; "
            "keep one format per dataset (one reader loads all its subsets)"
        )
    return data
