"""The paper recipes' own field maps and source filters on rows in each hub dataset's real layout.

The rows are tests/fixtures/paper_inputs (make.py writes them, README.md cites each layout), served
as a hub mirror (`HALA_HUB_MIRROR`), so the recipe's `hf://` keys apply unchanged. Each stage config
is built from recipes/hala-1.2b.yaml as `hala run` builds it; only the engine becomes the fake one.
What a row should become is written here from each dataset's own meaning (which column is the
question, which the answer), not from hala's readers. Last, the hub path itself: with no mirror,
`datasets.load_dataset` reads the same rows offline from a pre-populated HF datasets cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hala.config import load_config
from hala.data.manifest import Manifest
from hala.data.rows import HUB_MIRROR_ENV, expand_inputs, iter_rows
from hala.engines.fake import arabize
from hala.run.recipe import Recipe
from hala.run.stages import BY_NAME, stage_config
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate

FIXTURES = Path(__file__).parent / "fixtures" / "paper_inputs"
RECIPE = "recipes/hala-1.2b.yaml"
SHAREGPT = {"system": "system", "human": "user", "gpt": "assistant"}

EXPECTED = {  # hub id -> what a row of it is as a conversation: [(role, text), ...]
    "Open-Orca/OpenOrca": lambda r: [("system", r["system_prompt"])] * bool(r["system_prompt"])
    + [("user", r["question"]), ("assistant", r["response"])],
    "NousResearch/Hermes-3-Dataset": lambda r: [(SHAREGPT[t["from"]], t["value"]) for t in r["conversations"]],
    "allenai/tulu-3-sft-mixture": lambda r: [(m["role"], m["content"]) for m in r["messages"]],
    "EricLu/SCP-116K": lambda r: [("user", r["problem"]), ("assistant", r["matched_solution"])],
    "GAIR/ReAlign-Alpaca": lambda r: [(SHAREGPT[t["from"]], t["value"]) for t in r["items"]],
    "MBZUAI/LaMini-instruction": lambda r: [("user", r["instruction"]), ("assistant", r["response"])],
    "Dahoas/synthetic-instruct-gptj-pairwise": lambda r: [("user", r["prompt"]), ("assistant", r["chosen"])],
}
FILTERED = {  # (hub id, 1-based row) -> the reason it is not translated
    ("NousResearch/Hermes-3-Dataset", 2): "source_no_code", ("NousResearch/Hermes-3-Dataset", 4): "source_no_code",
    ("allenai/tulu-3-sft-mixture", 3): "source_tulu3_english", ("allenai/tulu-3-sft-mixture", 4): "source_tulu3_english",
    ("allenai/tulu-3-sft-mixture", 6): "source_tulu3_english", ("allenai/tulu-3-sft-mixture", 7): "source_tulu3_english",
}  # fmt: skip


def raw_rows(hub_id: str) -> list[dict]:
    """A fixture's rows as the Parquet file holds them, read without hala."""
    return pq.read_table(FIXTURES / "parquet" / hub_id / "train-00000-of-00001.parquet").to_pylist()


def stage(name: str, tmp_path: Path) -> TranslateConfig:
    """The recipe's stage config as `hala run` builds it, with the fake engine for the translator."""
    recipe = load_config(Recipe, RECIPE, [f"out={tmp_path / 'run'}"])
    data = stage_config(BY_NAME[name], recipe, Path(recipe.out))
    data["engine"] = {"kind": "fake", "model": "translator"}
    return TranslateConfig.model_validate({**data, "progress": False})


def output_rows(out: Path) -> list[dict]:
    rows = [r.data for f in sorted((out / "data").iterdir()) for r in iter_rows(f)]
    for row in rows:
        row["meta"] = json.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
    return rows


def turns(row: dict) -> list[tuple[str, str]]:
    """(role, text) of an output row, in either schema hala writes."""
    if "conversations" in row:
        return [(SHAREGPT[t["from"]], t["value"]) for t in row["conversations"]]
    return [(m["role"], m["content"]) for m in row["messages"]]


def hub_id_of(file: str, mirror: Path) -> str:
    """The hub id a file of the mirror holds: its folder (a Parquet file's) or itself (a saved dataset)."""
    relative = Path(file).relative_to(mirror)
    return (relative.parent if relative.suffix else relative).as_posix()


def same_source(translated: str, source: str) -> bool:
    """The fake engine writes Latin letters in Arabic ones and keeps everything else (protected
    spans such as LaTeX stay Latin), so a translation of `source` maps back onto it."""
    return arabize(translated) == arabize(source) and translated != source


@pytest.mark.parametrize("layout", ["saved", "parquet"])
def test_every_paper_instruction_set_becomes_conversations_through_the_recipes_own_maps(tmp_path, monkeypatch, layout):
    monkeypatch.setenv(HUB_MIRROR_ENV, str(FIXTURES / layout))
    cfg = stage("translate", tmp_path)
    assert cfg.output_schema == "sharegpt" and cfg.output_format == "parquet"  # the paper's corpus form
    manifest = translate(cfg)
    seen = set()
    for row in output_rows(Path(cfg.out)):
        lineage = row["meta"]["lineage"]
        hub_id, line = lineage["dataset"].removeprefix("hf://"), lineage["row"]
        assert (hub_id, line) not in FILTERED
        expected = EXPECTED[hub_id](raw_rows(hub_id)[line - 1])
        got = turns(row)
        assert [role for role, _ in got] == [role for role, _ in expected], (hub_id, line)
        assert all(same_source(text, source) for (_, text), (_, source) in zip(got, expected)), (hub_id, line, got)
        assert Path(lineage["file"]).is_relative_to(FIXTURES / layout / hub_id)  # the mirror's copy was read
        seen.add((hub_id, line))
    every = {(hub_id, i + 1) for hub_id in EXPECTED for i in range(len(raw_rows(hub_id)))}
    assert seen == every - set(FILTERED)  # no row lost to a schema the maps do not cover
    counts = manifest.counts
    assert counts["rejected_source_no_code"] == 2 and counts["rejected_source_tulu3_english"] == 4
    assert sum(n for k, n in counts.items() if k.startswith("rejected_")) == len(FILTERED)
    rejected = [json.loads(line) for f in (Path(cfg.out) / "rejected").glob("*.jsonl")
                for line in f.read_text(encoding="utf-8").splitlines()]  # fmt: skip
    assert {(hub_id_of(r["file"], FIXTURES / layout), r["line"]): r["kind"] for r in rejected} == FILTERED


def test_the_teacher_reads_open_orca_through_its_own_map(tmp_path, monkeypatch):
    monkeypatch.setenv(HUB_MIRROR_ENV, str(FIXTURES / "saved"))
    cfg = stage("teacher_translate", tmp_path)
    translate(cfg)
    rows = output_rows(Path(cfg.out))
    source = raw_rows("Open-Orca/OpenOrca")
    assert len(rows) == len(source)
    for row in rows:
        expected = EXPECTED["Open-Orca/OpenOrca"](source[row["meta"]["lineage"]["row"] - 1])
        got = turns(row)
        assert [role for role, _ in got] == [role for role, _ in expected]
        assert all(same_source(text, source) for (_, text), (_, source) in zip(got, expected))


def test_a_mirrored_input_is_hashed_by_content_and_a_missing_copy_is_an_error(tmp_path, monkeypatch):
    """A hub id alone is recorded by name; its mirror copy is hashed as a local input is, so a
    changed copy makes another run. A mirror without the dataset fails; it never downloads."""
    import shutil

    mirror = tmp_path / "mirror"
    shutil.copytree(FIXTURES / "parquet", mirror)
    monkeypatch.setenv(HUB_MIRROR_ENV, str(mirror))
    cfg = stage("teacher_translate", tmp_path)
    first = translate(cfg)
    assert [Path(i.path) for i in first.inputs] == [mirror / "Open-Orca" / "OpenOrca" / "train-00000-of-00001.parquet"]
    assert first.inputs[0].sha256 and translate(cfg).fingerprint == first.fingerprint
    rows = raw_rows("Open-Orca/OpenOrca")[:2]
    pq.write_table(pq.read_table(Path(first.inputs[0].path)).slice(0, 2), first.inputs[0].path)
    changed = translate(cfg.model_copy(update={"out": str(tmp_path / "other")}))
    assert changed.fingerprint != first.fingerprint and changed.counts["rows_out"] == len(rows)
    assert Manifest.read(tmp_path / "other").inputs[0].sha256 != first.inputs[0].sha256
    monkeypatch.setenv(HUB_MIRROR_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"hf://Open-Orca/OpenOrca: the hub mirror .* has no copy of it at "
                                                r".*empty/Open-Orca/OpenOrca"):  # fmt: skip
        expand_inputs("hf://Open-Orca/OpenOrca")
    monkeypatch.delenv(HUB_MIRROR_ENV)
    assert expand_inputs("hf://Open-Orca/OpenOrca") == ["hf://Open-Orca/OpenOrca"]  # no mirror: the hub


# --- the hub path itself: datasets.load_dataset, offline, from a pre-populated HF datasets cache ------


def file_in_hub_cache(cache: Path, hub_id: str, repos: Path) -> None:
    """Leave `hub_id`'s fixture rows in the HF datasets cache `cache` as a download from the hub
    leaves them (datasets 5.2: `NAMESPACE___name/CONFIG/VERSION/HASH/` with the prepared Arrow files
    and dataset_info.json), which datasets' offline mode reads back. They are prepared from a local
    copy of the repository (data files, and a card naming the config as the real one does), then
    filed under the hub namespace."""
    import shutil

    import datasets

    name, _, config = hub_id.partition(":")
    repo = repos / name
    (repo / config).mkdir(parents=True)
    shutil.copy(FIXTURES / "parquet" / name / config / "train-00000-of-00001.parquet", repo / config)
    if config:
        (repo / "README.md").write_text(
            f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: train\n    path: {config}/train-*\n---\n"
        )
    builder = datasets.load_dataset_builder(str(repo), config or None, cache_dir=str(cache))
    builder.download_and_prepare()
    (cache / builder.dataset_name).rename(cache / f"{name.split('/')[0]}___{builder.dataset_name}")


def offline_hala(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """`hala ARGS` in its own process with the HF cache `cache` and every hub offline switch on."""
    env = {k: v for k, v in os.environ.items() if k != HUB_MIRROR_ENV}
    env.update(HF_DATASETS_CACHE=str(cache), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))  # fmt: skip
    return subprocess.run([sys.executable, "-m", "hala.cli", *args], env=env, capture_output=True, text=True, timeout=300)


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in r.data.items() if k != "meta"} for f in sorted((out / "data").iterdir()) for r in iter_rows(f)]


@pytest.mark.slow
def test_hub_ids_read_through_datasets_load_dataset_offline_match_the_mirror(tmp_path, monkeypatch):
    """No mirror: `hf://NAME[:CONFIG]` goes to `datasets.load_dataset(..., streaming=True)` (rows) and
    `load_dataset_builder` (row counts, to plan units), served by the cache with HF_DATASETS_OFFLINE=1.
    The records equal those read from the mirror (their `source` too: the hub dataset's name, not
    the copy's file name); a dataset the cache lacks fails, never downloads.
    Only the network itself is left untested."""
    import yaml

    cache = tmp_path / "hf-cache"
    for hub_id in ("Open-Orca/OpenOrca", "Helsinki-NLP/opus-100:ar-en"):
        file_in_hub_cache(cache, hub_id, tmp_path / "repos")
    teacher = stage("teacher_translate", tmp_path).model_copy(update={"out": str(tmp_path / "hub"), "rows_per_unit": 2})
    config = tmp_path / "teacher.yaml"
    config.write_text(yaml.safe_dump(teacher.model_dump(mode="json")))
    ran = offline_hala(["translate", "-c", str(config)], cache)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert Manifest.read(tmp_path / "hub").counts["units"] == 2  # 3 rows counted by the builder's split info
    ran = offline_hala(["data", "convert", "-i", "hf://Helsinki-NLP/opus-100:ar-en", "-o", str(tmp_path / "opus")], cache)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    monkeypatch.setenv(HUB_MIRROR_ENV, str(FIXTURES / "parquet"))  # its files are named train-*.parquet
    translate(teacher.model_copy(update={"out": str(tmp_path / "mirrored")}))
    assert records(tmp_path / "hub") == records(tmp_path / "mirrored") and len(records(tmp_path / "hub")) == 3
    from hala.data.convert import ConvertConfig, convert

    convert(ConvertConfig(inputs=["hf://Helsinki-NLP/opus-100:ar-en"], out=str(tmp_path / "opus-mirrored")))
    assert records(tmp_path / "opus") == records(tmp_path / "opus-mirrored") and len(records(tmp_path / "opus")) == 3

    missing = offline_hala(["data", "convert", "-i", "hf://MBZUAI/LaMini-instruction", "-o", str(tmp_path / "x")], cache)
    assert missing.returncode != 0 and "MBZUAI/LaMini-instruction" in missing.stdout + missing.stderr
