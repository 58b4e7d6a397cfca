"""A killed `convert` resumes unit by unit: the resumed run's files and counts equal an uninterrupted run's,
finished units are skipped, a rerun of a finished run with the same config and inputs does nothing, and
a folder holding a run with other settings or inputs is refused rather than mixed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hala.data import units as units_module
from hala.data.convert import ConvertConfig, convert
from hala.data.manifest import MANIFEST, OutputInUseError
from hala.data.readers import read_conversations
from hala.data.rows import expand_inputs
from hala.data.plan import Unit, plan_units
from hala.data.units import run_units

ROWS_PER_UNIT = 3


def _conv(i: int) -> str:
    return json.dumps(
        {"messages": [{"role": "user", "content": f"سؤال {i}"}, {"role": "assistant", "content": f"جواب {i}"}]},
        ensure_ascii=False,
    )


@pytest.fixture
def inputs(tmp_path) -> Path:
    """Two files, five units of 3 rows: a.jsonl (7 rows, line 4 bad) and b.jsonl (5 rows, line 2 bad)."""
    folder = tmp_path / "in"
    folder.mkdir()
    a = [_conv(i) for i in range(7)]
    a[3] = "{not json"
    b = [_conv(100 + i) for i in range(5)]
    b[1] = '{"messages": []}'
    (folder / "a.jsonl").write_text("\n".join(a) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("\n".join(b) + "\n", encoding="utf-8")
    return folder


def _cfg(inputs: Path, out: Path, **kw) -> ConvertConfig:
    return ConvertConfig(inputs=[str(inputs)], out=str(out), rows_per_unit=ROWS_PER_UNIT, **kw)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every data and reject file a run leaves (temp files included, so leftovers show up).

    The manifest and the run's own hidden bookkeeping at the top of `out` name `out` itself, so two
    runs into different folders differ there by design."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.parent != out
    }


def data_counts(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if not k.startswith("units_")}


UNIT_RANGES = [("a.jsonl", 0, 3), ("a.jsonl", 3, 6), ("a.jsonl", 6, 7), ("b.jsonl", 0, 3), ("b.jsonl", 3, 5)]


@pytest.fixture
def unit_names(inputs) -> list[str]:
    """The five units' names, in plan order; they embed a hash of the input's full path."""
    return [Unit(str(inputs / name), start, stop).name for name, start, stop in UNIT_RANGES]


@pytest.fixture
def reference(inputs, tmp_path):
    """An uninterrupted run: its files and counts are what every resumed run must reproduce."""

    def make(**kw):
        out = tmp_path / f"reference-{len(list(tmp_path.glob('reference-*')))}"
        manifest = convert(_cfg(inputs, out, **kw))
        return snapshot(out), manifest.counts

    return make


def test_uninterrupted_run_shape(inputs, reference, unit_names):
    for name, (file, start, stop) in zip(unit_names, UNIT_RANGES):
        assert re.fullmatch(rf"{Path(file).stem}-[0-9a-f]{{8}}-{start:09d}-{stop:09d}", name)
    assert len(set(unit_names)) == len(unit_names)
    files, counts = reference()
    assert sorted(files) == sorted(
        [f"data/{n}.jsonl" for n in unit_names]
        + [f"rejected/{unit_names[1]}.jsonl", f"rejected/{unit_names[3]}.jsonl"]  # a line 4, b line 2
    )
    assert counts == {
        "rows_out": 10,
        "units_done": 5,
        "units_skipped": 0,
        "rejected": 2,
        "rejected_empty_messages": 1,
        "rejected_invalid_json": 1,
    }


@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_resume_after_losing_one_unit_and_the_manifest(inputs, tmp_path, reference, unit_names, output_format):
    ref_files, ref_counts = reference(output_format=output_format)
    out = tmp_path / "out"
    convert(_cfg(inputs, out, output_format=output_format))
    (out / "data" / f"{unit_names[0]}.{output_format}").unlink()  # as if killed before it landed
    (out / MANIFEST).unlink()  # a killed run never writes one

    manifest = convert(_cfg(inputs, out, output_format=output_format))
    assert snapshot(out) == ref_files  # byte-identical
    assert data_counts(manifest.counts) == data_counts(ref_counts)  # rejects of skipped units recounted
    assert (manifest.counts["units_done"], manifest.counts["units_skipped"]) == (1, 4)
    assert (out / MANIFEST).exists()


def test_resume_after_a_crash_in_the_second_unit(inputs, tmp_path, reference, unit_names):
    ref_files, ref_counts = reference()
    out = tmp_path / "out"
    units = plan_units(expand_inputs(inputs), ROWS_PER_UNIT)
    calls = []

    def crashing_work(unit, rejects):
        calls.append(unit)
        for i, conv in enumerate(read_conversations(unit.file, rejects=rejects, start=unit.start, stop=unit.stop)):
            if len(calls) == 2 and i == 1:
                raise KeyboardInterrupt("killed")
            yield conv

    with pytest.raises(KeyboardInterrupt):
        run_units(units, out, crashing_work)
    assert [p.name for p in (out / "data").iterdir()] == [f"{unit_names[0]}.jsonl"]
    assert not (out / "rejected").exists()  # the crashed unit wrote nothing, not even its rejects

    manifest = convert(_cfg(inputs, out))
    assert snapshot(out) == ref_files
    assert data_counts(manifest.counts) == data_counts(ref_counts)
    assert (manifest.counts["units_done"], manifest.counts["units_skipped"]) == (4, 1)


def test_resume_after_convert_dies_while_writing(inputs, tmp_path, reference, unit_names, monkeypatch):
    ref_files, ref_counts = reference()
    out = tmp_path / "out"
    real_write_rows = units_module.write_rows
    written = []

    def dying_write_rows(path, rows, fmt=None):
        if len(written) == 3:
            raise OSError("disk gone")
        written.append(path)
        return real_write_rows(path, rows, fmt)

    monkeypatch.setattr(units_module, "write_rows", dying_write_rows)
    with pytest.raises(OSError):
        convert(_cfg(inputs, out))
    assert not (out / MANIFEST).exists()
    assert sorted(p.stem for p in (out / "data").iterdir()) == sorted(unit_names[:3])
    monkeypatch.undo()

    manifest = convert(_cfg(inputs, out))
    assert snapshot(out) == ref_files
    assert data_counts(manifest.counts) == data_counts(ref_counts)
    assert (manifest.counts["units_done"], manifest.counts["units_skipped"]) == (2, 3)


def test_a_redone_unit_replaces_the_rejects_of_an_earlier_attempt(inputs, tmp_path, unit_names):
    """rejects land before the output: a unit killed in between is redone, and its old rejects go."""
    out = tmp_path / "out"
    units = plan_units(expand_inputs(inputs), ROWS_PER_UNIT)[:1]
    stale = out / "rejected" / f"{unit_names[0]}.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"file": "x", "line": 1, "kind": "invalid_json", "reason": "old", "raw": ""}\n')
    stats = run_units(units, out, lambda unit, rejects: read_conversations(unit.file, rejects=rejects, stop=unit.stop))
    assert not stale.exists()  # this attempt had no bad rows
    assert stats.counts() == {"rows_out": 3, "units_done": 1, "units_skipped": 0, "rejected": 0}


def test_rerun_without_manifest_skips_every_unit(inputs, tmp_path):
    out = tmp_path / "out"
    first = convert(_cfg(inputs, out))
    before = snapshot(out)
    (out / MANIFEST).unlink()
    second = convert(_cfg(inputs, out))
    assert snapshot(out) == before
    assert data_counts(second.counts) == data_counts(first.counts)
    assert (second.counts["units_done"], second.counts["units_skipped"]) == (0, 5)
    assert [o.sha256 for o in second.outputs] == [o.sha256 for o in first.outputs]


@pytest.mark.parametrize("lost", [0, 4])
def test_rerun_after_losing_an_output_of_a_finished_run_redoes_it(inputs, tmp_path, reference, unit_names, lost):
    """The manifest says finished, but an output it lists is gone: the run is not current any more."""
    ref_files, ref_counts = reference()
    out = tmp_path / "out"
    convert(_cfg(inputs, out))
    (out / "data" / f"{unit_names[lost]}.jsonl").unlink()
    assert (out / MANIFEST).exists()
    manifest = convert(_cfg(inputs, out))
    assert snapshot(out) == ref_files
    assert data_counts(manifest.counts) == data_counts(ref_counts)
    assert (manifest.counts["units_done"], manifest.counts["units_skipped"]) == (1, 4)
    assert all(Path(o.path).is_file() for o in manifest.outputs)


def test_rerun_with_identical_config_is_a_no_op(inputs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = convert(_cfg(inputs, out))
    manifest_bytes = (out / MANIFEST).read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def no_work(*args, **kwargs):
        raise AssertionError("a current run must not be redone")

    monkeypatch.setattr("hala.data.convert.run_units", no_work)
    again = convert(_cfg(inputs, out))
    assert again == first
    assert (out / MANIFEST).read_bytes() == manifest_bytes
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == mtimes


def test_temp_file_of_a_killed_write_is_not_an_input(inputs, tmp_path, unit_names):
    """A SIGKILL during a write can leave `.NAME.XXXX.tmp`: a resume ignores it, and so do readers."""
    out = tmp_path / "out"
    convert(_cfg(inputs, out))
    (out / "data" / f"{unit_names[1]}.jsonl").unlink()
    (out / MANIFEST).unlink()
    (out / "data" / f".{unit_names[1]}.jsonl.k1ll3d.tmp").write_text('{"half": ')
    manifest = convert(_cfg(inputs, out))
    assert manifest.counts["rows_out"] == 10
    assert [Path(p).name for p in expand_inputs(out / "data")] == sorted(f"{n}.jsonl" for n in unit_names)


# --- a folder holds one run: other settings or inputs are refused, never mixed in -----------------


def _lines(out: Path) -> list[dict]:
    files = sorted((out / "data").glob("*.jsonl"))
    return [json.loads(line) for p in files for line in p.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("change,named", [({"lang": "ar"}, "lang"), ({"rows_per_unit": 4}, "rows_per_unit")])
def test_other_settings_on_a_finished_folder_are_refused(inputs, tmp_path, change, named):
    out = tmp_path / "out"
    convert(_cfg(inputs, out))
    before, manifest_bytes = snapshot(out), (out / MANIFEST).read_bytes()
    settings = {"rows_per_unit": ROWS_PER_UNIT, **change}
    with pytest.raises(OutputInUseError, match=rf"different settings {named}\b"):
        convert(ConvertConfig(inputs=[str(inputs)], out=str(out), **settings))
    assert snapshot(out) == before  # no stale mix of old and new units
    assert (out / MANIFEST).read_bytes() == manifest_bytes
    assert {row["lang"] for row in _lines(out)} == {"en"}


def test_edited_input_on_a_finished_folder_is_refused(inputs, tmp_path):
    out = tmp_path / "out"
    convert(_cfg(inputs, out))
    before = snapshot(out)
    path = inputs / "a.jsonl"
    path.write_text(path.read_text("utf-8").replace("سؤال 0", "سؤال معدل"), encoding="utf-8")
    with pytest.raises(OutputInUseError, match="different inputs"):
        convert(_cfg(inputs, out))
    assert snapshot(out) == before


def test_a_folder_with_no_finished_unit_can_be_taken_over(inputs, tmp_path, monkeypatch):
    """A run killed before finishing any unit protects nothing: other settings may start over."""
    out = tmp_path / "out"

    def dead(*args, **kwargs):
        raise OSError("killed")

    monkeypatch.setattr(units_module, "write_rows", dead)
    with pytest.raises(OSError):
        convert(_cfg(inputs, out))
    monkeypatch.undo()
    assert not (out / "data").exists() or not any((out / "data").iterdir())
    taken = convert(_cfg(inputs, out, lang="ar"))
    assert taken.counts["rows_out"] == 10 and taken.counts["units_skipped"] == 0
    with pytest.raises(OutputInUseError, match="lang"):  # now it holds finished units of lang=ar
        convert(_cfg(inputs, out))


def test_cli_reports_a_refused_folder(inputs, tmp_path):
    from typer.testing import CliRunner

    from hala.cli import app

    out = tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(app, ["data", "convert", "-i", str(inputs), "-o", str(out)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["data", "convert", "-i", str(inputs), "-o", str(out), "--to", "parquet"])
    assert again.exit_code == 1
    assert "output_format" in again.output and "different settings" in again.output


def test_same_file_name_in_two_subfolders(tmp_path):
    folder = tmp_path / "in"
    for sub, i in (("en", 1), ("ar", 2)):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "train.jsonl").write_text(_conv(i) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = convert(ConvertConfig(inputs=[str(folder)], out=str(out)))
    texts = sorted(
        c.messages[0].content for p in sorted((out / "data").glob("*.jsonl")) for c in read_conversations(p)
    )
    assert texts == ["سؤال 1", "سؤال 2"]
    assert (manifest.counts["units_done"], manifest.counts["units_skipped"]) == (2, 0)
    assert manifest.counts["rows_out"] == 2
    names = sorted(p.name for p in (out / "data").iterdir())
    assert len(names) == 2 and all(n.startswith("train-") for n in names)
