"""The file-hash cache: a stored hash is used only while stat says the file is unchanged."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time

import pytest
import torch

from hala.checkpoint.writer import OutTensor, write_shards
from hala.data import hash_cache
from hala.data.manifest import FileEntry, sha256_file


@pytest.fixture()
def store(tmp_path, monkeypatch):
    path = tmp_path / "hashes.sqlite"
    monkeypatch.setenv("HALA_HASH_CACHE", str(path))
    monkeypatch.setattr(hash_cache, "MIN_BYTES", 0)  # the tests' files are small; one test restores it
    return path


def aged(path, seconds=60):
    """Set mtime in the past, so the file is not racy (ctime still moves, as it does for a user)."""
    old = time.time() - seconds
    os.utime(path, (old, old))
    return path


def stored(store):
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT path, sha256 FROM sha256").fetchall())


def test_a_stored_hash_is_used_while_the_file_is_unchanged(store, tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    aged(f)
    real = hashlib.sha256(b"a" * 1000).hexdigest()
    assert sha256_file(f) == real
    assert stored(store) == {str(f.resolve()): real}
    with sqlite3.connect(store) as db:  # were the file read again, this planted value would not come back
        db.execute("UPDATE sha256 SET sha256 = 'planted'")
    assert sha256_file(f) == "planted"


def test_a_rewritten_file_is_hashed_again_even_with_its_size_and_mtime_restored(store, tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    aged(f)
    first = sha256_file(f)
    st = f.stat()
    f.write_bytes(b"b" * 1000)  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back: ctime still moved
    assert sha256_file(f) == hashlib.sha256(b"b" * 1000).hexdigest() != first
    assert list(stored(store).values()) == [hashlib.sha256(b"b" * 1000).hexdigest()]  # one row per path


def test_a_file_written_just_now_is_not_stored(store, tmp_path):
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"x")
    assert sha256_file(f) == hashlib.sha256(b"x").hexdigest()
    assert not store.exists() or stored(store) == {}


def test_a_small_file_is_not_stored(store, tmp_path, monkeypatch):
    monkeypatch.setattr(hash_cache, "MIN_BYTES", 1 << 20)
    f = tmp_path / "small.jsonl"
    f.write_bytes(b"s" * 1000)
    aged(f)
    assert sha256_file(f) == hashlib.sha256(b"s" * 1000).hexdigest()
    assert not store.exists()


def test_off_hashes_every_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HALA_HASH_CACHE", "off")
    f = tmp_path / "w.bin"
    f.write_bytes(b"q")
    aged(f)
    assert sha256_file(f) == hashlib.sha256(b"q").hexdigest()
    assert hash_cache.store_path() is None


def test_a_broken_store_means_hashing(store, tmp_path):
    store.write_bytes(b"this is not a database")
    f = tmp_path / "w.bin"
    f.write_bytes(b"z" * 10)
    aged(f)
    assert sha256_file(f) == hashlib.sha256(b"z" * 10).hexdigest()


def test_a_written_shard_is_hashed_as_it_is_written(store, tmp_path, monkeypatch):
    tensors = [OutTensor("a", "F32", (64, 64)), OutTensor("b", "F32", (64,))]
    values = {"a": torch.randn(64, 64), "b": torch.randn(64)}

    def write_group(group, writer):
        for t in group:
            writer.write(t.name, values[t.name])

    for behind in (False, True):
        out = tmp_path / f"out{behind}"
        out.mkdir()
        written = write_shards([[t] for t in tensors], out, 1 << 30, write_group, write_behind=behind)
        shard = out / written.names[0]
        real = hashlib.sha256(shard.read_bytes()).hexdigest()
        with monkeypatch.context() as m:
            m.setattr("hala.data.manifest.open", None, raising=False)  # no read allowed now
            assert FileEntry.of(shard).sha256 == real


def test_a_structure_that_passed_passes_again_without_transformers(store, tiny_llama, monkeypatch):
    import json

    from hala.checkpoint import StructureError, check_structure, structure, tensor_refs, weight_files

    refs, config = tensor_refs(weight_files(tiny_llama)), json.loads((tiny_llama / "config.json").read_text())
    check_structure(refs, config, tiny_llama / "config.json")

    def no_transformers(*args):
        raise AssertionError("the network was built again")

    with monkeypatch.context() as m:
        m.setattr(structure, "expected_tensors", no_transformers)
        check_structure(refs, config, tiny_llama / "config.json")  # remembered
    lying = {**config, "intermediate_size": config["intermediate_size"] * 2}  # another config: checked again
    with pytest.raises(StructureError, match="config.json implies"):
        check_structure(refs, lying, tiny_llama / "config.json")
    with pytest.raises(StructureError):  # and a failure is never remembered
        check_structure(refs, lying, tiny_llama / "config.json")
