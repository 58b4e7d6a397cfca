"""Writers land whole files or nothing; manifests record a run and tell a rerun whether it is current."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from hala import __version__
from hala.data.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    OutputInUseError,
    Timer,
    claim_output,
    fingerprint,
    is_current,
    sha256_file,
)
from hala.data.readers import read_conversations, read_pairs
from hala.data.plan import Unit
from hala.data.records import Conversation, ParallelPair
from hala.data.units import unit_paths
from hala.data.writers import (
    ShardedLines,
    ShardedWriter,
    atomic_path,
    atomic_write_text,
    write_jsonl,
    write_parquet,
    write_rows,
)


def convs(n: int = 3) -> list[Conversation]:
    return [
        Conversation.create(
            [{"role": "user", "content": f"سؤال رقم {i}"}, {"role": "assistant", "content": f"الجواب {i}"}],
            source="unit-test",
            lang="ar",
            meta={"i": i, "tags": ["عربي", "test"], "nested": {"score": i / 2}},
        )
        for i in range(n)
    ]


def failing_rows(good: int):
    for row in convs(good):
        yield row
    raise RuntimeError("killed mid-way")


# --- atomic writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_jsonl, write_parquet], ids=["jsonl", "parquet"])
def test_failed_write_leaves_nothing(tmp_path, writer):
    target = tmp_path / "out" / f"part.{'jsonl' if writer is write_jsonl else 'parquet'}"
    with pytest.raises(RuntimeError, match="killed mid-way"):
        writer(target, failing_rows(2))
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # no temp file either


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "part.jsonl"
    write_jsonl(target, convs(1))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        write_jsonl(target, failing_rows(2))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["part.jsonl"]


def test_atomic_path_failure_in_body(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("half")
            assert not target.exists()  # nothing visible under the final name while writing
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer,suffix", [(write_jsonl, "jsonl"), (write_parquet, "parquet")])
def test_success_leaves_exactly_the_final_file(tmp_path, writer, suffix):
    target = tmp_path / "deep" / "er" / f"part.{suffix}"
    assert writer(target, convs(3)) == 3
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_atomic_write_text(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "note.txt", "سلام\n")
    assert path.read_text(encoding="utf-8") == "سلام\n"
    assert [p.name for p in path.parent.iterdir()] == ["note.txt"]


# --- JSONL and Parquet -------------------------------------------------------------------------


def test_jsonl_keeps_arabic_unescaped(tmp_path):
    path = tmp_path / "ar.jsonl"
    write_jsonl(path, convs(2))
    raw = path.read_bytes()
    assert "سؤال رقم 0".encode("utf-8") in raw
    assert b"\\u0" not in raw
    lines = raw.decode("utf-8").splitlines()
    assert len(lines) == 2
    assert Conversation.model_validate(json.loads(lines[1])) == convs(2)[1]


def test_jsonl_round_trip_through_the_readers(tmp_path):
    path = tmp_path / "rt.jsonl"
    write_jsonl(path, convs(4))
    assert list(read_conversations(path)) == convs(4)


def test_parquet_round_trip_keeps_meta_dicts(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "rt.parquet"
    originals = convs(4) + [Conversation.create([{"role": "system", "content": "س"}], source="s", meta={})]
    assert write_parquet(path, originals) == 5
    assert str(pq.read_schema(path).field("meta").type) == "string"  # fixed schema: meta is JSON text
    back = list(read_conversations(path))
    assert back == originals
    assert back[2].meta == {"i": 2, "tags": ["عربي", "test"], "nested": {"score": 1.0}}


def test_parquet_round_trip_of_pairs(tmp_path):
    path = tmp_path / "pairs.parquet"
    pairs = [
        ParallelPair.create("Thank you", "شكرا", source="opus", meta={"score": 0.75}),
        ParallelPair.create("Yes", "نعم", id="p-2", source="opus"),
    ]
    write_parquet(path, pairs)
    assert list(read_pairs(path)) == pairs


def test_write_rows_picks_writer_by_suffix(tmp_path):
    import pyarrow.parquet as pq

    assert write_rows(tmp_path / "a.parquet", convs(2)) == 2
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_rows == 2
    assert write_rows(tmp_path / "b.out", [{"k": "ق"}], fmt="jsonl") == 1
    assert (tmp_path / "b.out").read_text(encoding="utf-8") == '{"k": "ق"}\n'
    with pytest.raises(ValueError, match="valid: jsonl, parquet"):
        write_rows(tmp_path / "c.csv", convs(1))


# --- sharded writer ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,size,expected", [(7, 3, [3, 3, 1]), (6, 3, [3, 3]), (2, 5, [2]), (0, 3, []), (3, 1, [1, 1, 1])]
)
def test_sharded_writer_splits_rows(tmp_path, n, size, expected):
    rows = [{"n": i, "text": f"سطر {i}"} for i in range(n)]
    with ShardedWriter(tmp_path, prefix="shard", rows_per_shard=size) as writer:
        for row in rows:
            writer.write(row)
    assert [p.name for p in writer.paths] == [f"shard-{i:05d}.jsonl" for i in range(len(expected))]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in writer.paths]
    per_shard = [[json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for p in writer.paths]
    assert [len(s) for s in per_shard] == expected
    assert [row for s in per_shard for row in s] == rows  # order kept
    assert writer.rows == n


def test_sharded_writer_parquet(tmp_path):
    writer = ShardedWriter(tmp_path, fmt="parquet", rows_per_shard=2)
    for conv in convs(5):
        writer.write(conv)
    paths = writer.close()
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [c for p in paths for c in read_conversations(p)] == convs(5)


def test_sharded_writer_does_not_flush_a_failed_tail(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardedWriter(tmp_path, rows_per_shard=2) as writer:
            for row in failing_rows(3):
                writer.write(row)
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.jsonl"]  # full shard only


@pytest.mark.parametrize("n,size", [(7, 3), (6, 3), (2, 5), (0, 3), (3, 1)])
def test_sharded_lines_are_the_sharded_writers_files_byte_for_byte(tmp_path, n, size):
    rows = [{"n": i, "text": f"سطر {i}\n\"x\"", "meta": {"f": 0.1 * i, "none": None}} for i in range(n)]
    with ShardedWriter(tmp_path / "rows", rows_per_shard=size) as writer:
        for row in rows:
            writer.write(row)
    write_jsonl(tmp_path / "unit.jsonl", rows)
    with ShardedLines(tmp_path / "lines", rows_per_shard=size) as lines:
        for line in (tmp_path / "unit.jsonl").read_bytes().splitlines(keepends=True):
            lines.write(line)
    assert [p.name for p in lines.paths] == [p.name for p in writer.paths]
    assert [p.read_bytes() for p in lines.paths] == [p.read_bytes() for p in writer.paths]
    assert lines.rows == writer.rows == n


def test_sharded_lines_do_not_land_a_failed_tail(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardedLines(tmp_path, rows_per_shard=2) as lines:
            for i in range(3):
                lines.write(b'{"n": %d}\n' % i)
            raise RuntimeError("killed mid-way")
    assert [p.name for p in tmp_path.iterdir()] == ["part-00000.jsonl"]  # full shard only, no temporary file left


def test_sharded_writer_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown output format 'csv'"):
        ShardedWriter(tmp_path, fmt="csv")


# --- manifest ----------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path):
    """A finished run: two inputs, one output, a manifest."""
    inputs = [tmp_path / "in" / "a.jsonl", tmp_path / "in" / "b.jsonl"]
    write_jsonl(inputs[0], convs(2))
    write_jsonl(inputs[1], convs(3))
    out = tmp_path / "out"
    output = out / "data" / "part.jsonl"
    write_jsonl(output, convs(5))
    config = {"lang": "ar", "rows_per_unit": 10, "nested": {"k": [1, 2]}}
    entries = [FileEntry.of(p) for p in inputs]
    manifest = Manifest(
        stage="convert",
        config=config,
        inputs=entries,
        outputs=[FileEntry.of(output, rows=5)],
        counts={"rows_out": 5, "rejected": 0},
    )
    manifest.write(out)
    return out, config, inputs, output


def test_manifest_records_hashes_counts_versions(run):
    out, config, inputs, output = run
    data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert data["stage"] == "convert"
    assert data["config"] == config
    for entry, path in zip(data["inputs"], inputs):
        assert entry["path"] == str(path)
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
    (out_entry,) = data["outputs"]
    assert out_entry["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert out_entry["rows"] == 5
    assert data["counts"] == {"rows_out": 5, "rejected": 0}
    assert {"pydantic", "pyarrow"} <= set(data["versions"])
    assert data["hala_version"] == __version__
    assert data["finished_at"]
    assert data["fingerprint"] == fingerprint(config, [FileEntry.of(p) for p in inputs])
    assert len(data["fingerprint"]) == 64
    assert Manifest.read(out).model_dump() == data
    assert {p.name for p in out.iterdir()} == {"data", MANIFEST}  # no temp file left behind


def test_manifest_read_absent(tmp_path):
    assert Manifest.read(tmp_path) is None
    assert is_current(tmp_path, {}, []) is False


def test_is_current_same_config_and_inputs(run):
    out, config, inputs, _ = run
    assert is_current(out, dict(config), [FileEntry.of(p) for p in reversed(inputs)])  # order-free


@pytest.mark.parametrize(
    "change",
    [
        {"lang": "en"},
        {"rows_per_unit": 11},
        {"nested": {"k": [1, 3]}},
        {"extra": None},
    ],
)
def test_is_current_false_after_a_config_change(run, change):
    out, config, inputs, _ = run
    assert not is_current(out, {**config, **change}, [FileEntry.of(p) for p in inputs])


def test_is_current_false_after_one_input_byte_changes(run):
    out, config, inputs, _ = run
    data = bytearray(inputs[1].read_bytes())
    data[5] ^= 0x01  # same size, one bit different
    inputs[1].write_bytes(bytes(data))
    assert not is_current(out, config, [FileEntry.of(p) for p in inputs])


def test_is_current_false_when_an_input_is_added_or_dropped(run):
    out, config, inputs, _ = run
    assert not is_current(out, config, [FileEntry.of(inputs[0])])


def test_is_current_false_when_a_listed_output_is_gone(run):
    out, config, inputs, output = run
    assert is_current(out, config, [FileEntry.of(p) for p in inputs])
    output.unlink()
    assert not is_current(out, config, [FileEntry.of(p) for p in inputs])


@pytest.mark.parametrize("edit", [lambda b: b + b"{}\n", lambda b: b[: len(b) // 2]], ids=["grown", "truncated"])
def test_is_current_false_when_a_listed_output_changed_size(run, edit):
    out, config, inputs, output = run
    output.write_bytes(edit(output.read_bytes()))
    assert not is_current(out, config, [FileEntry.of(p) for p in inputs])


def test_is_current_false_when_a_listed_output_became_a_folder(run):
    out, config, inputs, output = run
    output.unlink()
    output.mkdir()
    assert not is_current(out, config, [FileEntry.of(p) for p in inputs])


def test_claim_output_accepts_the_same_run_and_refuses_another(tmp_path):
    src = tmp_path / "in.jsonl"
    write_jsonl(src, convs(1))
    out = tmp_path / "out"
    config = {"lang": "ar", "rows_per_unit": 10}
    entries = [FileEntry.of(src)]
    first = claim_output(out, config, entries)
    assert first == fingerprint(config, entries)
    assert claim_output(out, dict(config), [FileEntry.of(src)]) == first  # a resume of the same run
    (out / "data").mkdir()
    (out / "data" / "unit-0.jsonl").write_text("{}\n")  # the run has finished a unit
    with pytest.raises(OutputInUseError, match="different settings lang, rows_per_unit"):
        claim_output(out, {"lang": "en", "rows_per_unit": 5}, entries)
    src.write_bytes(src.read_bytes() + b"\n")
    with pytest.raises(OutputInUseError, match="different inputs"):
        claim_output(out, config, [FileEntry.of(src)])
    assert not (out / MANIFEST).exists()  # a claim is not a finished run
    assert not is_current(out, config, entries)


def test_file_entry_of_folder_and_hub(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "a.arrow").write_bytes(b"abc")
    (folder / "state.json").write_text("{}")
    first = FileEntry.of(folder)
    assert first.bytes == 5 and len(first.sha256) == 64
    assert FileEntry.of(folder).sha256 == first.sha256
    (folder / "a.arrow").write_bytes(b"abd")
    assert FileEntry.of(folder).sha256 != first.sha256
    hub = FileEntry.of("hf://org/name")
    assert (hub.path, hub.sha256, hub.bytes) == ("hf://org/name", "", 0)


def test_sha256_file_streams_in_blocks(tmp_path):
    path = tmp_path / "blob"
    payload = os.urandom(10_000)
    path.write_bytes(payload)
    assert sha256_file(path, block=333) == hashlib.sha256(payload).hexdigest()


def test_timer_accumulates():
    timings: dict[str, float] = {}
    timer = Timer(timings)
    with timer("read"):
        pass
    with timer("read"):
        pass
    assert set(timings) == {"read"} and timings["read"] >= 0.0


def test_convert_writes_manifest_last_and_lists_outputs(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    src = tmp_path / "in.jsonl"
    write_jsonl(src, convs(5))
    out = tmp_path / "out"
    manifest = convert(ConvertConfig(inputs=[str(src)], out=str(out), rows_per_unit=2))
    written = Manifest.read(out)
    assert written == manifest
    expected = [unit_paths(out, Unit(str(src), start, stop), "jsonl")[0] for start, stop in [(0, 2), (2, 4), (4, 5)]]
    assert [o.path for o in written.outputs] == [str(p) for p in expected]
    assert [Path(o.path).parent.name for o in written.outputs] == ["data"] * 3  # no rejects, so no rejected/
    assert all(p.name.startswith("in-") for p in expected)
    assert sorted(p for p in (out / "data").iterdir()) == sorted(expected)
    for entry in written.outputs:
        assert entry.sha256 == sha256_file(entry.path)
    assert written.inputs[0].sha256 == sha256_file(src)
    manifest_time = (out / MANIFEST).stat().st_mtime_ns
    assert all(Path(o.path).stat().st_mtime_ns <= manifest_time for o in written.outputs)
    assert written.counts["rows_out"] == 5
    assert "total_s" in written.timings


def test_convert_killed_before_the_end_leaves_no_manifest(tmp_path):
    """The manifest marks a finished run: a failure in a later unit must leave it absent."""
    from hala.data.convert import ConvertConfig, convert
    from hala.data.rejects import BadInputError

    src = tmp_path / "in.jsonl"
    write_jsonl(src, convs(3))
    with src.open("a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    out = tmp_path / "out"
    with pytest.raises(BadInputError):
        convert(ConvertConfig(inputs=[str(src)], out=str(out), rows_per_unit=2, strict=True))
    first, _ = unit_paths(out, Unit(str(src), 0, 2), "jsonl")
    second, _ = unit_paths(out, Unit(str(src), 2, 4), "jsonl")
    assert first.exists()  # first unit finished
    assert not second.exists()
    assert not (out / MANIFEST).exists()


def _bad_rows_file(path: Path) -> Path:
    """Five rows, two units of 2 rows and one of 1: line 2 (unit 1) and line 5 (unit 3) are bad."""
    lines = [json.dumps(c.model_dump(), ensure_ascii=False) for c in convs(5)]
    lines[1] = "{broken"
    lines[4] = '{"messages": []}'
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_convert_manifest_lists_rejected_files_among_outputs(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    src = _bad_rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    manifest = convert(ConvertConfig(inputs=[str(src)], out=str(out), rows_per_unit=2))
    units = [Unit(str(src), 0, 2), Unit(str(src), 2, 4), Unit(str(src), 4, 5)]
    data = [unit_paths(out, u, "jsonl")[0] for u in units]
    rejected = [unit_paths(out, u, "jsonl")[1] for u in (units[0], units[2])]
    assert sorted((out / "rejected").iterdir()) == sorted(rejected)  # the unit without bad rows has none
    assert sorted(o.path for o in manifest.outputs) == sorted(str(p) for p in data + rejected)
    for entry in manifest.outputs:
        assert entry.sha256 == sha256_file(entry.path)
        assert entry.bytes == Path(entry.path).stat().st_size
    assert Manifest.read(out) == manifest
    assert manifest.counts["rejected"] == 2


def test_a_lost_rejected_file_makes_a_finished_convert_not_current(tmp_path):
    from hala.data.convert import ConvertConfig, convert

    src = _bad_rows_file(tmp_path / "in.jsonl")
    out = tmp_path / "out"
    cfg = ConvertConfig(inputs=[str(src)], out=str(out), rows_per_unit=2)
    convert(cfg)
    _, rejected = unit_paths(out, Unit(str(src), 0, 2), "jsonl")
    inputs = [FileEntry.of(src)]
    assert is_current(out, cfg.model_dump(), inputs)
    rejected.unlink()
    assert not is_current(out, cfg.model_dump(), inputs)


def test_generate_manifest_lists_rejected_files_among_outputs(tmp_path):
    from hala.engines import EngineConfig
    from hala.engines.generate import GenerateConfig, generate

    src = tmp_path / "in.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "one"}]},
        {"messages": [{"role": "system", "content": "no user turn"}]},
        {"messages": [{"role": "user", "content": "three"}]},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = GenerateConfig(input=str(src), out=str(out), engine=EngineConfig(kind="fake", model="m"), rows_per_unit=2)
    manifest = generate(cfg)
    units = [Unit(str(src), 0, 2), Unit(str(src), 2, 3)]
    data = [unit_paths(out, u, "jsonl")[0] for u in units]
    rejected = unit_paths(out, units[0], "jsonl")[1]
    assert sorted(out.rglob("*.jsonl")) == sorted(data + [rejected])
    assert sorted(o.path for o in manifest.outputs) == sorted(str(p) for p in data + [rejected])
    (entry,) = [o for o in manifest.outputs if o.path == str(rejected)]
    assert (entry.sha256, entry.bytes) == (sha256_file(rejected), rejected.stat().st_size)
    assert manifest.counts["rejected_no_user_turn"] == 1


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    import os
    import stat

    from hala.data.writers import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "out.json", "{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
