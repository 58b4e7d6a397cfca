"""Every input shape and container reads into the one record, streamed, with row positions and units."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from pathlib import Path

import pytest

from hala.data.formats import BadRecord, detect_format, get_format
from hala.data.plan import Unit, plan_units, shard_units, unshard_units
from hala.data.readers import read_conversations, read_conversations_at, read_pairs
from hala.data.rows import _rows_parquet, count_rows, expand_inputs, iter_rows
from hala.data.records import Conversation, Message, ParallelPair
from hala.data.rejects import RejectLog

AR_Q = "ما هي عاصمة المغرب؟"
AR_A = "عاصمة المغرب هي الرباط."


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def numbered(n: int) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"سؤال {i}"}, {"role": "assistant", "content": f"جواب {i}"}]}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def datasets_quiet():
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    return datasets


# --- row formats -------------------------------------------------------------------------------


def test_openai_messages(tmp_path):
    row = {
        "id": "m-1",
        "messages": [
            {"role": "system", "content": "أنت مساعد."},
            {"role": "user", "content": AR_Q},
            {"role": "assistant", "content": AR_A},
        ],
        "lang": "ar",
        "meta": {"topic": "جغرافيا"},
        "unused_column": 3,
    }
    path = write_jsonl(tmp_path / "chat.jsonl", [row])
    (conv,) = read_conversations(path)
    assert conv == Conversation(
        id="m-1",
        messages=[Message(**m) for m in row["messages"]],
        source="chat.jsonl",
        lang="ar",
        meta={"topic": "جغرافيا"},
    )


def test_reader_defaults_source_and_lang(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    (conv,) = read_conversations(path, lang="ar", source="my-set")
    assert (conv.source, conv.lang) == ("my-set", "ar")
    assert conv.id == Conversation.create([{"role": "user", "content": "hi"}]).id  # content hash
    (conv,) = read_conversations(path)
    assert (conv.source, conv.lang) == ("chat.jsonl", "en")


def test_numeric_source_id_is_kept_as_text(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"id": 17, "messages": [{"role": "user", "content": "x"}]}])
    assert next(read_conversations(path)).id == "17"


def test_sharegpt(tmp_path):
    row = {
        "conversations": [
            {"from": "system", "value": "أنت مساعد."},
            {"from": "human", "value": AR_Q},
            {"from": "gpt", "value": AR_A},
        ]
    }
    path = write_jsonl(tmp_path / "sg.jsonl", [row])
    (conv,) = read_conversations(path, fmt="sharegpt")
    assert [(m.role, m.content) for m in conv.messages] == [
        ("system", "أنت مساعد."),
        ("user", AR_Q),
        ("assistant", AR_A),
    ]
    assert conv.to_sharegpt()["conversations"] == row["conversations"]  # round trip of the schema


def test_alpaca_with_and_without_input(tmp_path):
    rows = [
        {"instruction": "ترجم إلى الإنجليزية", "input": "صباح الخير", "output": "Good morning"},
        {"instruction": "اذكر عاصمة المغرب", "input": "", "output": "الرباط"},
        {"instruction": "Say hi", "output": "hi"},
    ]
    path = write_jsonl(tmp_path / "alpaca.jsonl", rows)
    convs = list(read_conversations(path, fmt="alpaca"))
    assert [[(m.role, m.content) for m in c.messages] for c in convs] == [
        [("user", "ترجم إلى الإنجليزية\n\nصباح الخير"), ("assistant", "Good morning")],
        [("user", "اذكر عاصمة المغرب"), ("assistant", "الرباط")],
        [("user", "Say hi"), ("assistant", "hi")],
    ]


def test_pairs_flat_and_opus_translation(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"en": "Good morning", "ar": "صباح الخير"},
            {"translation": {"en": "Thank you", "ar": "شكرا"}},
            {"id": "p9", "src": "Yes", "tgt": "نعم", "src_lang": "en", "tgt_lang": "ar", "source": "mine"},
        ],
    )
    pairs = list(read_pairs(path))
    assert [(p.src, p.tgt, p.src_lang, p.tgt_lang) for p in pairs] == [
        ("Good morning", "صباح الخير", "en", "ar"),
        ("Thank you", "شكرا", "en", "ar"),
        ("Yes", "نعم", "en", "ar"),
    ]
    assert pairs[0].id == ParallelPair.create("Good morning", "صباح الخير").id
    assert pairs[0].source == "pairs.jsonl"
    assert (pairs[2].id, pairs[2].source) == ("p9", "mine")


def test_pairs_reverse_direction(tmp_path):
    path = write_jsonl(tmp_path / "opus.jsonl", [{"translation": {"en": "Thank you", "ar": "شكرا"}}])
    (pair,) = read_pairs(path, src_lang="ar", tgt_lang="en")
    assert (pair.src, pair.tgt, pair.src_lang, pair.tgt_lang) == ("شكرا", "Thank you", "ar", "en")


def test_pairs_tsv(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text('Good morning\tصباح الخير\n"quoted" text\tنص\n\nBye\tمع السلامة\n', encoding="utf-8")
    rejects = RejectLog()
    pairs = list(read_pairs(path, rejects=rejects))
    assert [(p.src, p.tgt) for p in pairs] == [
        ("Good morning", "صباح الخير"),
        ('"quoted" text', "نص"),  # quotes are text, not CSV quoting
        ("Bye", "مع السلامة"),
    ]
    assert len(rejects) == 0
    assert [r.line for r in iter_rows(path)] == [1, 2, 4]


def test_tsv_header_naming_the_columns_is_skipped(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("en\tar\r\nGood morning\tصباح الخير\nen\tar\n", encoding="utf-8")
    rejects = RejectLog()
    pairs = list(read_pairs(path, rejects=rejects))
    # line 1 is a header; the same text later in the file is data
    assert [(p.src, p.tgt) for p in pairs] == [("Good morning", "صباح الخير"), ("en", "ar")]
    assert len(rejects) == 0
    assert [r.line for r in iter_rows(path)] == [2, 3]
    assert count_rows(path) == 3  # units are planned over lines, header included


def test_tsv_header_follows_the_language_columns(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("fr\tar\nMerci\tشكرا\n", encoding="utf-8")
    assert [(p.src, p.tgt) for p in read_pairs(path, src_lang="fr")] == [("Merci", "شكرا")]
    assert [(p.src, p.tgt) for p in read_pairs(path)] == [("fr", "ar"), ("Merci", "شكرا")]  # not a header for en/ar


def test_tsv_first_line_that_is_data_is_kept(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("en\tعربي\nBye\tمع السلامة\n", encoding="utf-8")
    assert [(p.src, p.tgt) for p in read_pairs(path)] == [("en", "عربي"), ("Bye", "مع السلامة")]


def test_utf8_bom_on_the_first_line_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    rows = [json.dumps(r, ensure_ascii=False) for r in numbered(2)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode("utf-8") + b"\n")
    rejects = RejectLog()
    got = list(read_conversations_at(path, rejects=rejects))
    assert [line for line, _ in got] == [1, 2]
    assert [c.messages[0].content for _, c in got] == ["سؤال 0", "سؤال 1"]
    assert len(rejects) == 0
    assert not next(iter_rows(path)).raw.startswith("\ufeff")


@pytest.mark.parametrize("first_line", ['[{"messages": []}]', '  [{"en": "a", "ar": "ب"},', "[]"])
def test_json_array_file_is_refused_naming_line_1(tmp_path, first_line):
    path = tmp_path / "array.jsonl"
    path.write_text(first_line + "\n" + json.dumps(numbered(1)[0], ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:1: .*JSON array"):
        list(iter_rows(path))
    with pytest.raises(ValueError, match=re.escape(f"{path}:1:")):
        list(read_conversations(path, rejects=RejectLog()))


def test_json_array_file_with_a_bom_is_refused(tmp_path):
    path = tmp_path / "array.json"
    path.write_bytes(b"\xef\xbb\xbf[\n" + json.dumps(numbered(1)[0]).encode() + b"\n]\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:1:")):
        list(iter_rows(path))


def test_convert_refuses_a_json_array_file(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    path = tmp_path / "array.jsonl"
    path.write_text(json.dumps(numbered(2), ensure_ascii=False) + "\n", encoding="utf-8")
    for fmt in ("auto", "messages"):
        out = tmp_path / f"out-{fmt}"
        with pytest.raises(ValueError, match=re.escape(f"{path}:1:")):
            convert(ConvertConfig(inputs=[str(path)], out=str(out), format=fmt))
        assert not (out / "manifest.json").exists()
        assert not list(out.rglob("*.jsonl"))


def test_pairs_written_by_us_read_back(tmp_path):
    from hala.data.writers import write_jsonl as hala_write_jsonl

    pairs = [
        ParallelPair.create("One", "واحد", source="opus", meta={"score": 0.9}),
        ParallelPair.create("Two", "اثنان", id="x", source="opus"),
    ]
    path = tmp_path / "pairs.jsonl"
    hala_write_jsonl(path, pairs)
    assert list(read_pairs(path)) == pairs


# --- containers --------------------------------------------------------------------------------


def test_parquet_file(tmp_path):
    rows = [
        {"conversations": [{"from": "human", "value": f"س{i}"}, {"from": "gpt", "value": f"ج{i}"}], "lang": "ar"}
        for i in range(5)
    ]
    path = write_parquet(tmp_path / "train.parquet", rows)
    got = list(read_conversations_at(path))
    assert [line for line, _ in got] == [1, 2, 3, 4, 5]
    assert [c.messages[0].content for _, c in got] == [f"س{i}" for i in range(5)]
    assert all(c.lang == "ar" for _, c in got)
    assert count_rows(path) == 5
    assert [r.line for r in iter_rows(path, start=1, stop=3)] == [2, 3]


@pytest.mark.parametrize("start,stop", [(0, None), (0, 3), (2, 7), (3, 6), (5, 11), (9, 11), (11, None), (4, 4)])
def test_parquet_ranges_across_batches(tmp_path, start, stop):
    path = write_parquet(tmp_path / "p.parquet", [{"n": i} for i in range(1, 12)])
    rows = list(_rows_parquet(path, start, stop, batch_size=3))
    end = 11 if stop is None else stop
    assert [r.line for r in rows] == list(range(start + 1, end + 1))
    assert [r.data["n"] for r in rows] == [r.line for r in rows]
    assert all(json.loads(r.raw) == r.data for r in rows)


def test_saved_dataset_folder(tmp_path, datasets_quiet):
    folder = tmp_path / "ds"
    datasets_quiet.Dataset.from_list(numbered(4)).save_to_disk(str(folder))
    assert expand_inputs(folder) == [str(folder)]
    assert count_rows(folder) == 4
    got = list(read_conversations_at(folder))
    assert [line for line, _ in got] == [1, 2, 3, 4]
    assert [c.messages[1].content for _, c in got] == [f"جواب {i}" for i in range(4)]
    assert [r.line for r in iter_rows(folder, start=1, stop=3)] == [2, 3]
    assert all(r.file == str(folder) for r in iter_rows(folder))


def test_saved_dataset_dict_splits(tmp_path, datasets_quiet):
    folder = tmp_path / "dd"
    datasets_quiet.DatasetDict(
        {
            "train": datasets_quiet.Dataset.from_list(numbered(3)),
            "test": datasets_quiet.Dataset.from_list([{"messages": [{"role": "user", "content": "اختبار"}]}]),
        }
    ).save_to_disk(str(folder))
    assert expand_inputs(folder) == [str(folder)]
    assert len(list(read_conversations(folder))) == 3  # train by default
    (test_conv,) = read_conversations(folder, split="test")
    assert test_conv.messages[0].content == "اختبار"
    with pytest.raises(ValueError, match=r"no split 'validation' \(it has ") as info:
        list(read_conversations(folder, split="validation"))
    assert str(folder) in str(info.value)
    assert "train" in str(info.value) and "test" in str(info.value)  # the splits it does have
    with pytest.raises(ValueError, match="validation"):
        count_rows(folder, split="validation")


def test_saved_dataset_dict_units_cover_the_split(tmp_path, datasets_quiet):
    folder = tmp_path / "dd"
    datasets_quiet.DatasetDict(
        {
            "train": datasets_quiet.Dataset.from_list(numbered(5)),
            "test": datasets_quiet.Dataset.from_list(numbered(1)),
        }
    ).save_to_disk(str(folder))
    assert count_rows(folder, split="train") == 5
    assert plan_units([str(folder)], 10, split="train") == [Unit(str(folder), 0, 5)]


def test_folder_of_files(tmp_path):
    folder = tmp_path / "in"
    write_jsonl(folder / "b.jsonl", numbered(2))
    write_jsonl(folder / "a.jsonl", numbered(1))
    write_parquet(folder / "sub" / "c.parquet", numbered(1))
    (folder / "sub" / "d.tsv").write_text("x\tس\n", encoding="utf-8")
    (folder / "notes.txt").write_text("not data")
    (folder / ".b.jsonl.abc.tmp").write_text("half a file")
    assert expand_inputs(folder) == [str(folder / n) for n in ("a.jsonl", "b.jsonl", "sub/c.parquet", "sub/d.tsv")]


def test_expand_inputs_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="no .jsonl"):
        expand_inputs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="hf://"):
        expand_inputs(tmp_path / "missing.jsonl")
    assert expand_inputs("hf://org/name:config") == ["hf://org/name:config"]


def test_unknown_file_type(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown file type '.csv'"):
        list(iter_rows(path))


# --- format detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row,fmt",
    [
        ({"messages": []}, "messages"),
        ({"conversations": []}, "sharegpt"),
        ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
        ({"en": "a", "ar": "b"}, "pairs"),
        ({"translation": {"en": "a", "ar": "b"}}, "pairs"),
        ({"src": "a", "tgt": "b"}, "pairs"),
    ],
)
def test_detect_format(row, fmt):
    assert detect_format(row) == fmt


def test_detect_format_names_keys_and_formats():
    with pytest.raises(BadRecord) as info:
        detect_format({"prompt": "x", "answer": "y"})
    assert info.value.kind == "wrong_schema"
    assert "answer, prompt" in info.value.reason and "alpaca" in info.value.reason


def test_auto_detects_each_row_of_a_mixed_file(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"messages": [{"role": "user", "content": "واحد"}]},
            {"conversations": [{"from": "human", "value": "اثنان"}]},
            {"instruction": "ثلاثة", "output": "٣"},
        ],
    )
    assert [c.messages[0].content for c in read_conversations(path)] == ["واحد", "اثنان", "ثلاثة"]


def test_declared_format_is_enforced(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", numbered(1))
    rejects = RejectLog()
    assert list(read_conversations(path, fmt="alpaca", rejects=rejects)) == []
    assert rejects.counts() == {"wrong_schema": 1}
    assert "'instruction'" in rejects.rejects[0].reason


def test_pairs_are_not_conversations(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"en": "a", "ar": "ب"}])
    rejects = RejectLog()
    assert list(read_conversations(path, rejects=rejects)) == []
    assert rejects.counts() == {"wrong_schema": 1}


def test_unknown_format_name():
    assert get_format("auto") == "auto"
    with pytest.raises(ValueError, match="valid: auto, messages, sharegpt, alpaca, pairs"):
        get_format("chatml")


def test_convert_auto_detects_pairs(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    path = write_jsonl(tmp_path / "opus.jsonl", [{"translation": {"en": "Thank you", "ar": "شكرا"}}])
    manifest = convert(ConvertConfig(inputs=[str(path)], out=str(tmp_path / "out")))
    assert manifest.counts["rows_out"] == 1
    assert manifest.counts["rejected"] == 0


# --- positions, ranges and units ---------------------------------------------------------------


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "gaps.jsonl"
    rows = [json.dumps(r, ensure_ascii=False) for r in numbered(3)]
    path.write_text(f"{rows[0]}\n\n   \n{rows[1]}\r\n{rows[2]}", encoding="utf-8")  # no final newline
    assert [line for line, _ in read_conversations_at(path)] == [1, 4, 5]
    assert count_rows(path) == 5


@pytest.mark.parametrize("start,stop", [(0, None), (0, 2), (2, 5), (4, 9), (9, None), (3, 3)])
def test_jsonl_and_tsv_row_ranges(tmp_path, start, stop):
    jsonl = write_jsonl(tmp_path / "r.jsonl", [{"n": i} for i in range(1, 10)])
    tsv = tmp_path / "r.tsv"
    tsv.write_text("".join(f"{i}\tرقم {i}\n" for i in range(1, 10)), encoding="utf-8")
    expected = list(range(start + 1, (9 if stop is None else stop) + 1))
    assert [r.data["n"] for r in iter_rows(jsonl, start=start, stop=stop)] == expected
    assert [int(r.data["en"]) for r in iter_rows(tsv, start=start, stop=stop)] == expected
    assert [r.line for r in iter_rows(tsv, start=start, stop=stop)] == expected


def _make_inputs(tmp_path: Path) -> list[str]:
    write_jsonl(tmp_path / "a.jsonl", [{"n": f"a{i}"} for i in range(7)])
    write_jsonl(tmp_path / "b.jsonl", [{"n": f"b{i}"} for i in range(3)])
    write_parquet(tmp_path / "c.parquet", [{"n": f"c{i}"} for i in range(5)])
    (tmp_path / "d.jsonl").write_text("")  # empty file: no units, no error
    return [str(tmp_path / n) for n in ("a.jsonl", "b.jsonl", "c.parquet", "d.jsonl")]


ALL_ROWS = sorted([f"a{i}" for i in range(7)] + [f"b{i}" for i in range(3)] + [f"c{i}" for i in range(5)])


@pytest.mark.parametrize("rows_per_unit", [1, 2, 3, 5, 7, 100])
def test_units_cover_every_row_exactly_once(tmp_path, rows_per_unit):
    units = plan_units(_make_inputs(tmp_path), rows_per_unit)
    assert all(0 < u.stop - u.start <= rows_per_unit for u in units)
    seen = [r.data["n"] for u in units for r in iter_rows(u.file, start=u.start, stop=u.stop)]
    assert sorted(seen) == ALL_ROWS  # nothing twice, nothing missing
    assert plan_units(_make_inputs(tmp_path), rows_per_unit) == units  # stable plan


def test_plan_units_shape(tmp_path):
    inputs = _make_inputs(tmp_path)
    assert [(Path(u.file).name, u.start, u.stop) for u in plan_units(inputs, 3)] == [
        ("a.jsonl", 0, 3),
        ("a.jsonl", 3, 6),
        ("a.jsonl", 6, 7),
        ("b.jsonl", 0, 3),
        ("c.parquet", 0, 3),
        ("c.parquet", 3, 5),
    ]
    with pytest.raises(ValueError, match="at least 1"):
        plan_units(inputs, 0)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 20])
def test_shards_are_disjoint_and_cover_all_units(tmp_path, count):
    units = plan_units(_make_inputs(tmp_path), 2)
    shards = [shard_units(units, i, count) for i in range(count)]
    flat = [u for shard in shards for u in shard]
    assert len(flat) == len(set(flat)) == len(units)
    assert set(flat) == set(units)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # similar work
    assert unshard_units(shards) == units  # the plan back, in order


def test_units_of_shards_of_different_plans_are_refused():
    a, b, c = Unit("f", 0, 1), Unit("f", 1, 2), Unit("f", 2, 3)
    with pytest.raises(ValueError, match=r"shards hold \[1, 2\] units"):
        unshard_units([[a], [b, c]])  # shard 1 of 2 can't hold more units than shard 0


def test_shard_index_out_of_range():
    units = [Unit("f", 0, 1)]
    for index, count in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError, match="shard index"):
            shard_units(units, index, count)


def test_unit_is_plain_data():
    unit = Unit("/data/train.jsonl", 10, 20)
    assert pickle.loads(pickle.dumps(unit)) == unit
    digest = hashlib.sha256(b"/data/train.jsonl").hexdigest()[:8]  # of the full path, not the stem
    assert unit.name == f"train-{digest}-000000010-000000020"


def test_unit_names_are_unique_across_folders_and_ranges():
    en, ar = Unit("/data/en/train.jsonl", 0, 5), Unit("/data/ar/train.jsonl", 0, 5)
    assert en.name != ar.name
    assert en.name.startswith("train-") and ar.name.startswith("train-")  # still readable
    assert en.name.endswith("-000000000-000000005") and ar.name.endswith("-000000000-000000005")
    assert Unit("/data/en/train.jsonl", 0, 5).name == en.name  # stable
    assert Unit("/data/en/train.jsonl", 5, 10).name != en.name


# --- streaming ---------------------------------------------------------------------------------


def test_jsonl_is_streamed_not_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    line = json.dumps({"messages": [{"role": "user", "content": "نص " * 300}]}, ensure_ascii=False) + "\n"
    path.write_text(line * 2000, encoding="utf-8")  # ~3.6 MB
    size = path.stat().st_size

    def refuse(*args, **kwargs):
        raise AssertionError("the reader must not load the whole file")

    monkeypatch.setattr(Path, "read_text", refuse)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    handles: list[io.BufferedReader] = []
    real_open = Path.open

    def spy_open(self, *args, **kwargs):
        handle = real_open(self, *args, **kwargs)
        handles.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", spy_open)
    rows = read_conversations(path)
    first = next(rows)
    assert first.messages[0].content.startswith("نص")
    (handle,) = handles
    assert handle.raw.tell() < size // 10  # only a buffer's worth has been read from disk
    rows.close()


def test_reading_stops_at_stop_without_reading_the_rest(tmp_path):
    path = tmp_path / "tail.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "أ"}]}, ensure_ascii=False)
    path.write_bytes((good + "\n").encode() * 2 + b"\xff garbage\n")
    rejects = RejectLog(strict=True)  # a bad row past `stop` would raise if it were read
    assert len(list(read_conversations(path, stop=2, rejects=rejects))) == 2
