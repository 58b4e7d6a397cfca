"""The stage frame: what every stage's run is skipped, refused, named and recorded by."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from hala.config import StrictModel
from hala.data.manifest import RUN_STAMP, Manifest, OutputInUseError
from hala.data.plan import Unit
from hala.frame import StageFrame


class Settings(StrictModel):
    NOT_OUTPUT = frozenset({"batch_size"})
    out: str
    models: list[str] = Field(default_factory=list)
    t: float = 0.5
    batch_size: int = 8


def test_a_record_folder_is_claimed_finished_once_and_refused_to_another_run(tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out"
    source.write_text('{"a": 1}\n')
    frame = StageFrame("demo", Settings(out=str(out)))
    assert frame.open([source]) is None and (out / RUN_STAMP).exists()
    (out / "data").mkdir()
    (out / "data" / "u0.jsonl").write_text("{}\n")
    with frame.timer("work_s"):
        pass
    manifest = frame.finish({"rows": 1}, {"score": 0.5}, [out / "data" / "u0.jsonl"])
    assert manifest.path == out / "manifest.json" and manifest.stage == "demo"
    assert [i.path for i in manifest.inputs] == [str(source)] and manifest.inputs[0].sha256
    assert [o.path for o in manifest.outputs] == [str(out / "data" / "u0.jsonl")]
    assert set(manifest.timings) == {"work_s", "total_s"} and manifest.counts == {"rows": 1}

    again = StageFrame("demo", Settings(out=str(out), batch_size=64))  # a pace setting: still current
    assert again.open([source]) == Manifest.read(out)
    with pytest.raises(OutputInUseError, match="different settings t"):
        StageFrame("demo", Settings(out=str(out), t=0.7)).open([source])


def test_each_shard_has_its_own_manifest_its_units_and_one_claim_for_the_run(tmp_path):
    out = tmp_path / "out"
    units = [Unit("a.jsonl", 0, 10)]
    first = StageFrame("demo", Settings(out=str(out)), shard="1/3")
    assert first.open([]) is None
    manifest = first.finish({"units": 1}, units=units)
    assert manifest.path.name == "manifest.shard-00001-of-00003.json"
    assert manifest.config["shard"] == "1/3" and manifest.units == units
    stamp = json.loads((out / RUN_STAMP).read_text())
    assert "shard" not in stamp["config"]  # every shard of the run claims the folder alike
    (out / "data").mkdir()
    (out / "data" / "u1.jsonl").write_text("{}\n")
    assert StageFrame("demo", Settings(out=str(out)), shard="2/3").open([]) is None  # not refused
    assert StageFrame("demo", Settings(out=str(out)), shard="1/3").open([]) == manifest


def test_a_model_folder_appears_whole_with_its_manifest_last_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    frame = StageFrame("demo", Settings(out=str(out)), output="model")
    assert frame.open([]) is None
    with frame.model_folder() as tmp:
        assert not out.exists()
        (tmp / "model.safetensors").write_bytes(b"weights")
        frame.finish({"tensors": 1})
    assert frame.manifest.path == out / "manifest.json"
    assert [o.path for o in frame.manifest.outputs] == [str(out / "model.safetensors")]
    assert StageFrame("demo", Settings(out=str(out)), output="model").open([]) == frame.manifest

    with pytest.raises(OutputInUseError, match="already holds other files"):
        StageFrame("demo", Settings(out=str(out), t=0.1), output="model").open([])
    broken = StageFrame("demo", Settings(out=str(tmp_path / "broken")), output="model")
    broken.open([])
    with pytest.raises(RuntimeError), broken.model_folder() as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == [out]  # nothing of the broken one, not even its temporary folder


def test_a_unit_keyed_by_its_own_inputs_ignores_the_list_of_units(tmp_path):
    from hala.data.manifest import FileEntry

    model = tmp_path / "m.txt"
    model.write_text("weights")
    entries = [FileEntry.of(model)]
    one = StageFrame("demo", Settings(out=str(tmp_path / "o"), models=["a"])).unit_fingerprint(entries, "models")
    two = StageFrame("demo", Settings(out=str(tmp_path / "o"), models=["a", "b"])).unit_fingerprint(entries, "models")
    other = StageFrame("demo", Settings(out=str(tmp_path / "o"), t=0.9)).unit_fingerprint(entries, "models")
    assert one == two != other


def test_input_hashes_on_a_thread_are_the_frames_and_stop_when_left(tmp_path):
    from hala.data.manifest import FileEntry
    from hala.frame import InputHashes

    files = []
    for i in range(3):
        files.append(tmp_path / f"w{i}.bin")
        files[-1].write_bytes(bytes(range(256)) * (4096 * (i + 1)))
    with InputHashes(lambda: files) as hashing:
        assert hashing.result() == [FileEntry.of(f) for f in files]

    listed = []
    with pytest.raises(RuntimeError, match="stage refused"):
        with InputHashes(lambda: listed.append(1) or files * 200) as hashing:  # 1.2 GB: still hashing
            raise RuntimeError("stage refused")
    assert listed and hashing._error is None and hashing._entries is None  # stopped, not finished

    def missing():
        raise FileNotFoundError("no weights in /nowhere")

    with InputHashes(missing) as hashing:
        with pytest.raises(FileNotFoundError, match="nowhere"):
            hashing.result()
