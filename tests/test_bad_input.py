"""Bad input is reported as `file:line: reason`, kept raw under rejected/, counted, and never stops a run
(unless `strict`, where the first bad row stops it with the same message)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from hala.data.convert import ConvertConfig, convert
from hala.data.readers import read_conversations, read_conversations_at, read_pairs
from hala.data.rejects import BadInputError, RejectLog

GOOD_1 = json.dumps({"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]})
GOOD_2 = json.dumps(
    {"messages": [{"role": "user", "content": "مرحبا"}, {"role": "assistant", "content": "أهلا وسهلا"}]},
    ensure_ascii=False,
)

# line number -> (raw bytes of the line, kind, a piece of the reason)
BAD_LINES: dict[int, tuple[bytes, str, str]] = {
    2: (b'{"messages": [{"role": "user", "content": "unterminated', "invalid_json", "invalid JSON"),
    3: (b"[1, 2, 3]", "wrong_schema", "expected a JSON object, got list"),
    4: (b'{"prompt": "x", "reply": "y"}', "wrong_schema", "can't tell the format from the keys (prompt, reply)"),
    5: (b'{"messages": []}', "empty_messages", "no messages"),
    6: (b'{"messages": [{"role": "user", "content": "caf\xe9 \xff"}]}', "non_utf8", "not valid UTF-8"),
    7: (b'{"messages": [{"role": "bot", "content": "hi"}]}', "unknown_role", "unknown role 'bot'"),
    8: (b'{"messages": [{"role": "user", "content": 42}]}', "wrong_type", "'content' should be str, got int"),
    9: (b'{"messages": [{"role": "user", "content": "x"}], "lang": 5}', "wrong_type", "'lang'"),
    10: (
        b'{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}]}',
        "empty_messages",
        "every message is empty",
    ),
    11: (b'{"messages": "hello"}', "wrong_type", "'messages' should be list, got str"),
    12: (b'{"messages": [{"role": "user", "content": "x"}], "meta": [1]}', "wrong_type", "'meta' should be dict"),
}
EXPECTED_COUNTS = {
    "invalid_json": 1,
    "wrong_schema": 2,
    "empty_messages": 2,
    "non_utf8": 1,
    "unknown_role": 1,
    "wrong_type": 4,
}


@pytest.fixture
def messy(tmp_path) -> Path:
    """Line 1 good, lines 2-12 each a different bad row, line 13 blank, line 14 good (Arabic)."""
    lines = [GOOD_1.encode()] + [BAD_LINES[n][0] for n in sorted(BAD_LINES)] + [b"", GOOD_2.encode("utf-8")]
    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_every_bad_kind_is_reported_and_the_run_continues(messy):
    rejects = RejectLog()
    got = list(read_conversations_at(messy, rejects=rejects))
    assert [line for line, _ in got] == [1, 14]
    assert got[1][1].messages[1].content == "أهلا وسهلا"
    assert rejects.counts() == EXPECTED_COUNTS
    assert len(rejects) == len(BAD_LINES)
    assert [r.line for r in rejects.rejects] == sorted(BAD_LINES)
    for reject in rejects.rejects:
        raw, kind, reason = BAD_LINES[reject.line]
        assert reject.file == str(messy)
        assert reject.where == f"{messy}:{reject.line}"
        assert reject.kind == kind, reject
        assert reason in reject.reason, reject


def test_raw_text_is_kept(messy):
    rejects = RejectLog()
    list(read_conversations(messy, rejects=rejects))
    by_line = {r.line: r for r in rejects.rejects}
    for line, (raw, kind, _) in BAD_LINES.items():
        if kind == "non_utf8":
            assert by_line[line].raw == raw.decode("utf-8", errors="backslashreplace")
            assert "\\xe9 \\xff" in by_line[line].raw
        else:
            assert by_line[line].raw == raw.decode("utf-8")


def test_non_utf8_reason_names_the_byte(messy):
    rejects = RejectLog()
    list(read_conversations(messy, rejects=rejects))
    (reject,) = [r for r in rejects.rejects if r.kind == "non_utf8"]
    offset = BAD_LINES[6][0].index(b"\xe9")
    assert f"at byte {offset}" in reject.reason


def test_unknown_role_lists_valid_roles(tmp_path):
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "bot", "value": "hi"}]}) + "\n")
    rejects = RejectLog()
    assert list(read_conversations(path, rejects=rejects)) == []
    (reject,) = rejects.rejects
    assert reject.kind == "unknown_role"
    assert "valid: assistant, gpt, human, system, user" in reject.reason


def test_each_reject_is_logged_as_file_line_reason(messy, caplog):
    with caplog.at_level(logging.WARNING, logger="hala.data"):
        list(read_conversations(messy))
    messages = [rec.getMessage() for rec in caplog.records if rec.name == "hala.data"]
    assert len(messages) == len(BAD_LINES)
    assert messages[0].startswith(f"{messy}:2: invalid JSON")
    assert messages[5] == f"{messy}:7: message 0 has unknown role 'bot' (valid: assistant, system, user)"


def test_strict_stops_at_the_first_bad_row(messy):
    seen = []
    with pytest.raises(BadInputError) as info:
        for conv in read_conversations(messy, rejects=RejectLog(strict=True)):
            seen.append(conv)
    assert len(seen) == 1  # the good first row came through before the stop
    assert str(info.value).startswith(f"{messy}:2: invalid JSON")


@pytest.mark.parametrize(
    "row,kind,reason",
    [
        ({"instruction": "x", "output": 3}, "wrong_type", "'output' should be str"),
        ({"instruction": "x", "input": ["a"], "output": "y"}, "wrong_type", "'input' should be str"),
        ({"instruction": " ", "output": ""}, "empty_messages", "both empty"),
        ({"instruction": "x"}, "wrong_schema", None),  # no `output`: not alpaca, no format fits
        ({"conversations": [{"from": "human"}]}, "wrong_schema", "missing field message 0 'value'"),
        ({"conversations": ["hi"]}, "wrong_type", "message 0 should be an object, got str"),
        ({"messages": [{"role": "user", "content": "x"}], "id": [1]}, "wrong_type", "'id'"),
        ({"messages": [{"role": "user", "content": "x"}], "source": 7}, "wrong_type", "'source'"),
        # present but of the wrong type, even when falsy: never silently replaced by the default
        ({"messages": [{"role": "user", "content": "x"}], "lang": 0}, "wrong_type", "'lang' should be str, got int"),
        ({"messages": [{"role": "user", "content": "x"}], "lang": False}, "wrong_type", "'lang'"),
        ({"messages": [{"role": "user", "content": "x"}], "lang": []}, "wrong_type", "'lang'"),
        ({"messages": [{"role": "user", "content": "x"}], "source": 0}, "wrong_type", "'source'"),
        ({"messages": [{"role": "user", "content": "x"}], "id": True}, "wrong_type", "'id'"),
        ({"messages": [{"role": "user", "content": "x"}], "meta": 0}, "wrong_type", "'meta' should be dict"),
        ({"messages": [{"role": "user", "content": "x"}], "meta": "[1]"}, "wrong_type", "'meta' should be dict"),
        ({"instruction": "x", "input": 0, "output": "y"}, "wrong_type", "'input' should be str, got int"),
        ({"conversations": [{"from": "human", "value": "x"}], "lang": 0}, "wrong_type", "'lang'"),
    ],
)
def test_more_bad_conversation_rows(tmp_path, row, kind, reason):
    path = tmp_path / "rows.jsonl"
    path.write_text(GOOD_1 + "\n" + json.dumps(row) + "\n" + GOOD_1 + "\n")
    rejects = RejectLog()
    assert [line for line, _ in read_conversations_at(path, rejects=rejects)] == [1, 3]
    (reject,) = rejects.rejects
    assert (reject.line, reject.kind) == (2, kind)
    if reason:
        assert reason in reject.reason


def test_meta_that_is_not_json_text_is_rejected(tmp_path):
    path = tmp_path / "rows.jsonl"
    bad = json.dumps({"messages": [{"role": "user", "content": "x"}], "meta": "not json"})
    path.write_text(GOOD_1 + "\n" + bad + "\n" + GOOD_2 + "\n", encoding="utf-8")
    rejects = RejectLog()
    assert [line for line, _ in read_conversations_at(path, rejects=rejects)] == [1, 3]
    assert [(r.line, r.kind) for r in rejects.rejects] == [(2, "wrong_type")]
    assert "'meta'" in rejects.rejects[0].reason


def test_pair_meta_that_is_not_json_text_is_rejected(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"en": "Hi", "ar": "مرحبا", "meta": "not json"},
        {"en": "Yes", "ar": "نعم", "meta": '{"score": 1}'},  # JSON text of an object is fine
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rejects = RejectLog()
    assert [(p.src, p.meta) for p in read_pairs(path, rejects=rejects)] == [("Yes", {"score": 1})]
    assert [(r.line, r.kind) for r in rejects.rejects] == [(1, "wrong_type")]


def test_missing_and_null_optional_fields_take_the_defaults(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "x"}], "lang": None, "source": None, "id": None, "meta": None},
        {"instruction": "x", "input": None, "output": "y"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rejects = RejectLog()
    convs = list(read_conversations(path, rejects=rejects, lang="ar"))
    assert len(rejects) == 0
    assert [(c.lang, c.source, c.meta) for c in convs] == [("ar", "rows.jsonl", {})] * 2
    assert convs[1].messages[0].content == "x"


def test_bad_pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        json.dumps({"en": "Hi", "ar": "مرحبا"}, ensure_ascii=False),
        json.dumps({"en": "Hi"}),  # no target
        json.dumps({"en": "Hi", "ar": "   "}),
        json.dumps({"translation": "Hi = مرحبا"}, ensure_ascii=False),
        json.dumps({"en": 1, "ar": "واحد"}, ensure_ascii=False),
        json.dumps({"en": "Hi", "ar": "مرحبا", "src_lang": 3}, ensure_ascii=False),
        "{not json",
        json.dumps({"en": "Hi", "ar": "مرحبا", "tgt_lang": 0}, ensure_ascii=False),
        json.dumps({"en": "Bye", "ar": "وداعا"}, ensure_ascii=False),
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rejects = RejectLog()
    assert [p.src for p in read_pairs(path, rejects=rejects)] == ["Hi", "Bye"]
    assert [(r.line, r.kind) for r in rejects.rejects] == [
        (2, "wrong_schema"),
        (3, "empty_messages"),
        (4, "wrong_type"),
        (5, "wrong_type"),
        (6, "wrong_type"),
        (7, "invalid_json"),
        (8, "wrong_type"),
    ]
    assert "missing field 'ar'" in rejects.rejects[0].reason
    assert "empty target side" in rejects.rejects[1].reason
    assert "'tgt_lang' should be str, got int" in rejects.rejects[6].reason


def test_a_json_array_on_line_1_stops_the_read_but_a_later_list_row_is_a_reject(tmp_path):
    """Line 1 starting with '[' means the file is a JSON array, not JSON Lines: nothing in it can be
    read row by row, so it is an error naming file:1 rather than one reject per line."""
    path = tmp_path / "array.jsonl"
    path.write_text("[\n" + GOOD_1 + ",\n" + GOOD_1 + "\n]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="^" + re.escape(f"{path}:1: ") + ".*JSON Lines"):
        list(read_conversations(path, rejects=RejectLog()))
    later = tmp_path / "later.jsonl"
    later.write_text(GOOD_1 + "\n[1, 2]\n", encoding="utf-8")
    rejects = RejectLog()
    assert len(list(read_conversations(later, rejects=rejects))) == 1
    assert [(r.line, r.kind) for r in rejects.rejects] == [(2, "wrong_schema")]


def test_bom_on_line_1_is_not_a_bad_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_1.encode() + b"\n" + GOOD_2.encode("utf-8") + b"\n")
    rejects = RejectLog(strict=True)
    assert [line for line, _ in read_conversations_at(path, rejects=rejects)] == [1, 2]


def test_tsv_header_is_not_a_pair(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("en\tar\nHi\tمرحبا\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = convert(ConvertConfig(inputs=[str(path)], out=str(out), format="pairs"))
    assert (manifest.counts["rows_out"], manifest.counts["rejected"]) == (1, 0)
    (data,) = (out / "data").glob("*.jsonl")
    (row,) = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    assert (row["src"], row["tgt"]) == ("Hi", "مرحبا")


def test_bad_tsv_lines(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_bytes("Hi\tمرحبا\none column\na\tb\tc\n".encode() + b"\xff\xfe\tx\n" + "Bye\tوداعا\n".encode())
    rejects = RejectLog()
    assert [p.tgt for p in read_pairs(path, rejects=rejects)] == ["مرحبا", "وداعا"]
    assert [(r.line, r.kind) for r in rejects.rejects] == [(2, "wrong_schema"), (3, "wrong_schema"), (4, "non_utf8")]
    assert rejects.rejects[1].reason == "expected 2 tab-separated columns, got 3"
    assert rejects.rejects[1].raw == "a\tb\tc"


def test_bad_parquet_row_is_reported_by_row_number(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"messages": [{"role": "user", "content": "أ"}]},
        {"messages": [{"role": "robot", "content": "ب"}]},
        {"messages": []},
        {"messages": [{"role": "assistant", "content": "ج"}]},
    ]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    rejects = RejectLog()
    assert [line for line, _ in read_conversations_at(path, rejects=rejects)] == [1, 4]
    assert [(r.where, r.kind) for r in rejects.rejects] == [
        (f"{path}:2", "unknown_role"),
        (f"{path}:3", "empty_messages"),
    ]
    assert json.loads(rejects.rejects[0].raw) == rows[1]


# --- through convert ---------------------------------------------------------------------------


def _rejected_rows(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "rejected").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return rows


def test_convert_keeps_rejects_and_counts_them(messy, tmp_path):
    out = tmp_path / "out"
    manifest = convert(ConvertConfig(inputs=[str(messy)], out=str(out), rows_per_unit=5))
    rejected = _rejected_rows(out)
    assert [r["line"] for r in rejected] == sorted(BAD_LINES)
    for row in rejected:
        raw, kind, reason = BAD_LINES[row["line"]]
        assert set(row) == {"file", "line", "kind", "reason", "raw"}
        assert row["file"] == str(messy)
        assert row["kind"] == kind
        assert reason in row["reason"]
        assert row["raw"] == raw.decode("utf-8", errors="backslashreplace")
    counts = manifest.counts
    assert counts["rows_out"] == 2
    assert counts["rejected"] == len(BAD_LINES)
    assert {k[len("rejected_") :]: v for k, v in counts.items() if k.startswith("rejected_")} == EXPECTED_COUNTS
    data = sorted((out / "data").glob("*.jsonl"))
    assert sum(len(p.read_text(encoding="utf-8").splitlines()) for p in data) == 2
    assert "أهلا وسهلا" in data[-1].read_text(encoding="utf-8")


def test_convert_strict_raises_and_writes_no_manifest(messy, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BadInputError, match="^" + re.escape(f"{messy}:2: invalid JSON")):
        convert(ConvertConfig(inputs=[str(messy)], out=str(out), strict=True))
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.jsonl"))


# --- through the CLI ---------------------------------------------------------------------------


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from hala.cli import app

    return CliRunner().invoke(app, args)


def test_cli_convert_prints_counts(messy, tmp_path):
    out = tmp_path / "out"
    result = _cli(["data", "convert", "-i", str(messy), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rows_out=2" in result.stdout
    assert f"rejected={len(BAD_LINES)}" in result.stdout
    assert "rejected_wrong_type=4" in result.stdout
    assert f"wrote {out / 'manifest.json'}" in result.stdout
    assert (out / "manifest.json").exists()


def test_cli_convert_strict_fails_with_file_and_line(messy, tmp_path):
    out = tmp_path / "out"
    result = _cli(["data", "convert", "-i", str(messy), "-o", str(out), "--strict"])
    assert result.exit_code != 0
    assert f"{messy}:2:" in result.output
    assert "invalid JSON" in result.output
    assert not (out / "manifest.json").exists()


def test_cli_convert_missing_input_is_an_error_not_a_traceback(tmp_path):
    result = _cli(["data", "convert", "-i", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "nope.jsonl: no such file or folder" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
