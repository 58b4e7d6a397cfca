"""`hala pairs` end to end: inputs of every shape, the split by source id, the translator's
training rows, the manifest's mix, reruns and the CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hala.config import ConfigError, validate
from hala.data.manifest import Manifest, OutputInUseError
from hala.engines import EngineConfig
from hala.pairs import PairsConfig, build_pairs
from hala.pairs.split import SplitConfig, split_of

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hala" / "resources" / "samples"
SEED = SAMPLES / "seed_pairs.jsonl"
EN_WORDS = "river stone light garden window morning teacher music forest bridge letter summer".split()
AR_WORDS = "نهر حجر ضوء حديقة نافذة صباح معلم موسيقى غابة جسر رسالة صيف".split()


def seed_rows(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines()]
    return rows[:n] if n else rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def splits_of(out: Path) -> dict[str, list[dict]]:
    return {s: read_jsonl(out / "pairs" / f"{s}.jsonl") for s in ("train", "dev", "test")}


def segment_rows(sources: dict[str, int]) -> list[dict]:
    """Segment pairs as a translate run writes them: several per conversation (source id)."""
    rows = []
    for n, (source_id, segments) in enumerate(sources.items()):
        for seg in range(segments):
            k = n * 31 + seg
            en = f"The {EN_WORDS[k % 12]} and the {EN_WORDS[(k // 12) % 12]} near the {EN_WORDS[(k // 144) % 12]}, part {source_id} {seg}."
            ar = f"{AR_WORDS[k % 12]} و{AR_WORDS[(k // 12) % 12]} قرب {AR_WORDS[(k // 144) % 12]}، الجزء {source_id} {seg}."
            rows.append({"id": f"{source_id}/m0/s{seg}", "src": en, "tgt": ar, "src_lang": "en", "tgt_lang": "ar",
                         "meta": {"source_id": source_id, "message": 0, "segment": seg}})  # fmt: skip
    return rows


@settings(max_examples=8, deadline=None)
@given(st.dictionaries(st.integers(0, 10_000).map(lambda i: f"conv-{i}"), st.integers(1, 4), min_size=1, max_size=40))
def test_every_source_id_lands_in_exactly_one_split(tmp_path_factory, sources):
    tmp = tmp_path_factory.mktemp("split")
    data = write_jsonl(tmp / "segments.jsonl", segment_rows(sources))
    manifest = build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp / "out"), splits={"dev": 0.25, "test": 0.25}))
    assert manifest.counts["kept"] == sum(sources.values()), manifest.counts
    seen = defaultdict(set)
    for split, rows in splits_of(tmp / "out").items():
        for row in rows:
            seen[row["meta"]["source_id"]].add(split)
    assert set(seen) == set(sources)
    assert all(len(splits) == 1 for splits in seen.values()), seen
    for source_id, (split,) in seen.items():
        assert split == split_of(source_id, SplitConfig(dev=0.25, test=0.25))


def test_split_is_stable_and_growing_dev_never_moves_test():
    ids = [f"id-{i}" for i in range(3000)]
    base = {i: split_of(i, SplitConfig(dev=0.1, test=0.1)) for i in ids}
    assert base == {i: split_of(i, SplitConfig(dev=0.1, test=0.1)) for i in reversed(ids)}
    grown = {i: split_of(i, SplitConfig(dev=0.3, test=0.1)) for i in ids}
    assert {i for i in ids if base[i] == "test"} == {i for i in ids if grown[i] == "test"}
    assert {i for i in ids if base[i] == "dev"} < {i for i in ids if grown[i] == "dev"}
    share = sum(s == "test" for s in base.values()) / len(ids)
    assert 0.07 < share < 0.13
    other = {i: split_of(i, SplitConfig(dev=0.1, test=0.1, seed="other")) for i in ids}
    assert other != base
    with pytest.raises(ValueError, match="more than 1"):
        SplitConfig(dev=0.6, test=0.5)


def test_opus100_shaped_saved_dataset_tsv_and_parquet(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = seed_rows(60)
    opus = tmp_path / "opus"
    datasets.Dataset.from_list([{"translation": {"ar": r["ar"], "en": r["en"]}} for r in rows[:20]]).save_to_disk(str(opus))
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("en\tar\n" + "".join(f"{r['en']}\t{r['ar']}\n" for r in rows[20:40]) + "only one column\n", encoding="utf-8")
    parquet = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "en": r["en"], "ar": r["ar"]} for r in rows[40:60]]), parquet)
    manifest = build_pairs(PairsConfig(inputs=[str(opus), str(tsv), str(parquet)], out=str(tmp_path / "out")))
    counts = manifest.counts
    assert counts["kept"] == 60 and counts["rejected_wrong_schema"] == 1 and counts["inputs_corpus"] == 3
    for label, n in ((opus, 20), (tsv, 21), (parquet, 20)):
        assert counts[f"mix[corpus:{label}].read"] == n
    kept = [row for rows_ in splits_of(tmp_path / "out").values() for row in rows_]
    by_text = {row["src"]: row for row in kept}
    opus_row = by_text[rows[0]["en"]]
    assert opus_row["tgt"] == rows[0]["ar"] and opus_row["meta"]["source_id"] == opus_row["id"]
    assert opus_row["meta"]["origin"] == "corpus" and opus_row["id"].startswith("p-")  # no id: content id
    assert by_text[rows[45]["en"]]["meta"]["source_id"] == rows[45]["id"]
    [bad] = read_jsonl(tmp_path / "out" / "rejected" / "wrong_schema.jsonl")
    assert bad["file"] == str(tsv) and bad["line"] == 22


def test_pairs_from_a_translate_run_keep_conversation_and_segment_ids(tmp_path):
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    convs = tmp_path / "convs.jsonl"
    lines = (SAMPLES / "conversations_en.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    convs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = tmp_path / "translate-run"
    translated = translate(TranslateConfig(inputs=[str(convs)], out=str(run), engine=EngineConfig(kind="fake", model="m"),
                                           rows_per_unit=5, progress=False))  # fmt: skip
    conversation_ids = {json.loads(line)["id"] for line in lines}
    manifest = build_pairs(PairsConfig(inputs=[str(run)], out=str(tmp_path / "out"), splits={"dev": 0.3, "test": 0.3}))
    counts = manifest.counts
    assert counts["read"] == translated.counts["segment_pairs"] > 0
    assert counts["kept"] + counts["rejected"] == counts["read"] and counts["inputs_translate"] == 1
    assert counts[f"mix[translate:{run}].kept"] == counts["kept"] > 0
    where = defaultdict(set)
    for split, rows in splits_of(tmp_path / "out").items():
        for row in rows:
            meta = row["meta"]
            assert meta["source_id"] in conversation_ids and meta["origin"] == "translate"
            assert row["id"] == f"{meta['source_id']}/m{meta['message']}/s{meta['segment']}"
            where[meta["source_id"]].add(split)
    assert all(len(s) == 1 for s in where.values()) and len({next(iter(s)) for s in where.values()}) > 1


def test_unfinished_or_merged_translate_runs_are_refused(tmp_path):
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate
    from hala.launch.merge import IncompleteRunError, merge_shards

    convs = write_jsonl(tmp_path / "c.jsonl", [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Hello number {i}."}]} for i in range(4)])
    run = tmp_path / "run"
    translate(TranslateConfig(inputs=[str(convs)], out=str(run), engine=EngineConfig(kind="fake", model="m"),
                              rows_per_unit=2, shard="0/2", progress=False))  # fmt: skip
    with pytest.raises(IncompleteRunError, match=r"shards \[1\] of 2"):
        build_pairs(PairsConfig(inputs=[str(run)], out=str(tmp_path / "out")))
    translate(TranslateConfig(inputs=[str(convs)], out=str(run), engine=EngineConfig(kind="fake", model="m"),
                              rows_per_unit=2, shard="1/2", progress=False))  # fmt: skip
    assert build_pairs(PairsConfig(inputs=[str(run)], out=str(tmp_path / "out"))).counts["read"] == 4
    merge_shards(run)
    with pytest.raises(ValueError, match="give its run folder"):
        build_pairs(PairsConfig(inputs=[str(run / "merged")], out=str(tmp_path / "out2")))
    (run / "manifest.shard-00000-of-00002.json").unlink()
    (run / "manifest.shard-00001-of-00002.json").unlink()
    with pytest.raises(ValueError, match="has not finished"):
        build_pairs(PairsConfig(inputs=[str(run)], out=str(tmp_path / "out3")))


def test_prompt_completion_rows_in_both_directions_and_test_held_out(tmp_path):
    data = write_jsonl(tmp_path / "seed.jsonl", seed_rows(200))
    cfg = PairsConfig(inputs=[str(data)], out=str(tmp_path / "out"), splits={"dev": 0.1, "test": 0.1},
                      sft={"directions": ["en-ar", "ar-en"]})  # fmt: skip
    manifest = build_pairs(cfg)
    pairs = splits_of(tmp_path / "out")
    for split in ("train", "dev"):
        rows = read_jsonl(tmp_path / "out" / "sft" / f"{split}.jsonl")
        assert len(rows) == 2 * len(pairs[split]) == manifest.counts[f"sft_{split}"]
        expected = []
        for p in pairs[split]:
            expected.append({"prompt": [{"role": "user", "content": "Translate everything that follows into Arabic:\n\n" + p["src"]}],
                             "completion": [{"role": "assistant", "content": p["tgt"]}]})  # fmt: skip
            expected.append({"prompt": [{"role": "user", "content": "Translate everything that follows into English:\n\n" + p["tgt"]}],
                             "completion": [{"role": "assistant", "content": p["src"]}]})  # fmt: skip
        assert rows == expected
    assert not (tmp_path / "out" / "sft" / "test.jsonl").exists() and pairs["test"]
    trained_on = {r["completion"][0]["content"] for s in ("train", "dev") for r in read_jsonl(tmp_path / "out" / "sft" / f"{s}.jsonl")}
    assert not trained_on & {p["tgt"] for p in pairs["test"]}


def test_one_direction_or_none(tmp_path):
    data = write_jsonl(tmp_path / "seed.jsonl", seed_rows(30))
    build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp_path / "ar-en"), sft={"directions": ["ar-en"]}, splits={"dev": 0, "test": 0}))
    rows = read_jsonl(tmp_path / "ar-en" / "sft" / "train.jsonl")
    assert len(rows) == 30 and all(r["prompt"][0]["content"].startswith("Translate everything that follows into English:\n\n") for r in rows)
    assert rows[0]["completion"][0]["content"] == seed_rows(1)[0]["en"]
    manifest = build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp_path / "none"), sft={"directions": []}))
    assert not (tmp_path / "none" / "sft").exists() and manifest.counts["kept"] == 30
    with pytest.raises(ConfigError, match="can teach only"):
        validate(PairsConfig, {"inputs": ["x"], "out": "y", "sft": {"directions": ["en-fr"]}})
    with pytest.raises(ConfigError, match="SRC-TGT"):
        validate(PairsConfig, {"inputs": ["x"], "out": "y", "sft": {"directions": ["english"]}})


def test_pairs_written_the_other_way_round_are_turned_and_others_rejected(tmp_path):
    rows = [{"id": "r1", "src": "صباح الخير يا أصدقائي.", "tgt": "Good morning, my friends.", "src_lang": "ar", "tgt_lang": "en"},
            {"id": "r2", "src": "Bonjour mes amis.", "tgt": "صباح الخير يا أصدقائي.", "src_lang": "fr", "tgt_lang": "ar"}]  # fmt: skip
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    manifest = build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp_path / "out"), splits={"dev": 0, "test": 0}))
    [kept] = splits_of(tmp_path / "out")["train"]
    assert (kept["src"], kept["tgt"], kept["src_lang"]) == ("Good morning, my friends.", "صباح الخير يا أصدقائي.", "en")
    assert manifest.counts["rejected_wrong_languages"] == 1


def test_the_mix_is_recorded_and_duplicates_across_inputs_keep_the_first(tmp_path):
    rows = seed_rows(40)
    a = write_jsonl(tmp_path / "a.jsonl", rows[:30])
    b = write_jsonl(tmp_path / "b.jsonl", rows[20:40])  # 10 overlap with a
    manifest = build_pairs(PairsConfig(inputs=[str(a), str(b)], out=str(tmp_path / "out")))
    counts = manifest.counts
    assert counts[f"mix[corpus:{a}].kept"] == 30 and counts[f"mix[corpus:{b}].kept"] == 10
    assert counts[f"mix[corpus:{b}].rejected_duplicate"] == 10 and counts["kept"] == 40
    assert manifest.metrics["kept_fraction"] == pytest.approx(40 / 50)
    assert manifest.metrics[f"mix[corpus:{b}].kept_fraction"] == pytest.approx(0.5)
    assert manifest.config["filters"]["max_length_ratio"] == 2.5 and manifest.config["sft"]["directions"] == ["en-ar"]
    listed = {Path(o.path).relative_to(tmp_path / "out").as_posix(): o.rows for o in manifest.outputs}
    assert listed["rejected/duplicate.jsonl"] == 10 and sum(listed[f"pairs/{s}.jsonl"] for s in ("train", "dev", "test")) == 40


def test_rerun_is_skipped_and_a_new_config_rebuilds_without_stale_rejects(tmp_path):
    rows = seed_rows(20) + [{"id": "bad", "en": "I have 3 cats at home with me.", "ar": "لدي ٤ قطط في المنزل معي."}]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    first = build_pairs(PairsConfig(inputs=[str(data)], out=str(out)))
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = build_pairs(PairsConfig(inputs=[str(data)], out=str(out)))
    assert (out / "manifest.json").stat().st_mtime_ns == stamp and again.fingerprint == first.fingerprint
    assert (out / "rejected" / "numbers_mismatch.jsonl").exists()
    rebuilt = build_pairs(PairsConfig(inputs=[str(data)], out=str(out), filters={"numbers": False}))
    assert rebuilt.counts["kept"] == 21 and not list((out / "rejected").glob("*.jsonl"))
    assert Manifest.read(out).fingerprint == rebuilt.fingerprint != first.fingerprint


def test_a_folder_holding_another_stages_run_is_refused(tmp_path):
    from hala.engines.generate import GenerateConfig, generate

    data = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    generate(GenerateConfig(input=str(data), out=str(tmp_path / "gen"), engine=EngineConfig(kind="fake", model="m")))
    with pytest.raises(OutputInUseError):
        build_pairs(PairsConfig(inputs=[str(SEED)], out=str(tmp_path / "gen"), limit=5))


def test_strict_stops_at_the_first_unreadable_row_only(tmp_path):
    from hala.data.rejects import BadInputError

    data = write_jsonl(tmp_path / "in.jsonl", seed_rows(3) + [{"id": "x", "en": "I have 3 cats here.", "ar": "لدي ٤ قطط هنا."}])
    assert build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp_path / "a"), strict=True)).counts["rejected_numbers_mismatch"] == 1
    with data.open("a") as handle:
        handle.write("{broken\n")
    with pytest.raises(BadInputError, match=r"in\.jsonl:5: invalid JSON"):
        build_pairs(PairsConfig(inputs=[str(data)], out=str(tmp_path / "b"), strict=True))
    assert not (tmp_path / "b" / "manifest.json").exists() and not (tmp_path / "b" / "pairs" / "train.jsonl").exists()


def test_limit_reads_the_first_rows_of_each_input(tmp_path):
    manifest = build_pairs(PairsConfig(inputs=[str(SEED)], out=str(tmp_path / "out"), limit=25))
    assert manifest.counts["read"] == 25


def test_cli_pairs(tmp_path):
    from hala.cli import app

    data = write_jsonl(tmp_path / "seed.jsonl", seed_rows(50))
    out = tmp_path / "out"
    args = ["pairs", "-i", str(data), "-o", str(out), "--direction", "en-ar", "--direction", "ar-en", "--dev", "0.2", "--test", "0.2", "filters.numbers=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pairs: read=50, kept=50" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["sft"]["directions"] == ["en-ar", "ar-en"] and manifest["config"]["filters"]["numbers"] is False
    assert manifest["config"]["splits"] == {"dev": 0.2, "test": 0.2, "seed": "hala"}
    bad = CliRunner().invoke(app, ["pairs", "-i", str(data), "-o", str(out), "filters.max_ratio=3"])
    assert bad.exit_code == 2 and "filters.max_ratio: unknown key" in bad.output


def test_a_data_convert_run_of_pairs_is_an_input(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    convert(ConvertConfig(inputs=[str(SEED)], out=str(tmp_path / "converted"), format="pairs", rows_per_unit=100))
    manifest = build_pairs(PairsConfig(inputs=[str(tmp_path / "converted")], out=str(tmp_path / "out")))
    assert manifest.counts["read"] == 600 and manifest.counts["inputs_convert"] == 1
    kept = {row["id"] for rows in splits_of(tmp_path / "out").values() for row in rows}
    assert kept == {r["id"] for r in seed_rows()} and manifest.counts["kept"] == 600
