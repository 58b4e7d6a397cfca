"""The fault matrix: what hala promises under faults, one test per probe."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# --- request cache ---
# Probes: K writers opening one cache path at the same moment; another writer's damaged file; the
# file this run writes damaged or impossible to create; a cache from an older hala; a running and a
# killed writer when the shards' caches are folded.

from hala.engines.cache import Cached, CacheError, SegmentCache, fold, members  # noqa: E402

WRITERS, ROUNDS, PER_WRITER = 4, 30, 12


def _entry(name: str) -> Cached:
    return Cached(f"text of {name}", "stop", 3, 5)


def _writer_rounds(root: str, index: int, barrier, results) -> None:
    """One writer process: each round, open the round's cache together with the others, write, read."""
    errors = []
    for r in range(ROUNDS):
        barrier.wait()
        try:
            cache = SegmentCache(Path(root) / f"round-{r}" / "cache" / "segments.sqlite")
            mine = {f"{index}-{j}": _entry(f"{index}-{j}") for j in range(PER_WRITER)}
            cache.put_many(dict(list(mine.items())[: PER_WRITER // 2]))
            cache.get_many([f"{k}-0" for k in range(WRITERS)])  # others' entries: a hit or a miss, never an error
            cache.put_many(dict(list(mine.items())[PER_WRITER // 2 :]))
            if cache.get_many(list(mine)) != mine:
                errors.append(f"round {r}: writer {index} cannot read back its own entries")
            cache.close()
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            errors.append(f"round {r}: writer {index}: {type(exc).__name__}: {exc}")
    results.put(errors)


def test_k_writers_on_one_cache_at_once_never_fail_or_lose_an_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [ctx.Process(target=_writer_rounds, args=(str(tmp_path), i, barrier, results)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in results.get(timeout=300)]
    for p in procs:
        p.join()
    assert errors == []
    every = {f"{i}-{j}": _entry(f"{i}-{j}") for i in range(WRITERS) for j in range(PER_WRITER)}
    for r in range(ROUNDS):
        path = tmp_path / f"round-{r}" / "cache" / "segments.sqlite"
        fresh = SegmentCache(path)
        assert fresh.get_many(list(every)) == every and len(fresh) == len(every)
        fresh.close()
        assert fold(path) == WRITERS and len(members(path)) == 1
        folded = SegmentCache(path)
        assert folded.get_many(list(every)) == every
        folded.close()


def test_another_writers_damaged_file_is_a_miss_with_a_warning_naming_it(tmp_path, caplog):
    path = tmp_path / "segments.sqlite"
    other = SegmentCache(path)
    other.put_many({"a": _entry("a"), "b": _entry("b")})
    other.close()
    other.own_path.write_bytes(b"not a database, " * 512)
    cache = SegmentCache(path)
    cache.put_many({"c": _entry("c")})
    with caplog.at_level(logging.WARNING, logger="hala.engines"):
        assert cache.get_many(["a", "b", "c"]) == {"c": _entry("c")}
    assert str(other.own_path) in caplog.text and "delete it" in caplog.text
    cache.close()


def test_the_damaged_file_this_run_writes_is_an_error_naming_it(tmp_path):
    cache = SegmentCache(tmp_path / "segments.sqlite")
    cache.put_many({"a": _entry("a")})
    cache.own_path.write_bytes(b"not a database, " * 512)
    with pytest.raises(CacheError, match=rf"{cache.own_path}.*delete it") as caught:
        cache.put_many({"b": _entry("b")})
    assert isinstance(caught.value, ValueError)  # so the CLI reports it as a user error


def _translate_cli(tmp_path: Path, out: Path, *settings: str) -> subprocess.CompletedProcess:
    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "hala.cli", "translate", "-i", str(data), "-o", str(out), "--engine", "fake",
           "-m", "m", "rows_per_unit=3", "progress=false", *settings]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True)


def test_cli_a_garbage_cache_file_is_named_and_the_run_goes_on(tmp_path):
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    garbage = out / "cache" / "segments.sqlite"
    garbage.write_bytes(b"\x00garbage" * 1000)
    result = _translate_cli(tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert str(garbage) in result.stderr and "delete it" in result.stderr
    assert result.stderr.count(str(garbage)) == 1  # once, not once per batch
    assert json.loads((out / "manifest.json").read_text())["counts"]["rows_out"] == 6


def test_cli_a_cache_that_cannot_be_created_is_a_user_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _translate_cli(tmp_path, tmp_path / "out", f"cache_path={blocker}/cache/segments.sqlite")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and str(blocker) in result.stderr


def test_a_single_file_cache_from_an_older_hala_is_read_then_folded(tmp_path):
    path = tmp_path / "segments.sqlite"
    old = sqlite3.connect(path)  # what hala wrote before per-writer files: one WAL-mode file
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE segments (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL, "
                "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)")  # fmt: skip
    old.execute("INSERT INTO segments VALUES ('old', 'text of old', 'stop', 3, 5)")
    old.commit()
    old.close()
    cache = SegmentCache(path)
    assert cache.get_many(["old"]) == {"old": _entry("old")}
    cache.put_many({"new": _entry("new")})
    cache.close()
    assert fold(path) == 2 and not path.exists() and len(members(path)) == 1
    again = SegmentCache(path)
    assert again.get_many(["old", "new"]) == {"old": _entry("old"), "new": _entry("new")}


def _live_writer(path: str, wrote, go_on, finish: str) -> None:
    cache = SegmentCache(path)
    cache.put_many({"early": _entry("early")})
    wrote.set()
    go_on.wait()
    cache.put_many({"late": _entry("late")})
    if finish == "close":
        cache.close()
    else:
        os._exit(0)  # killed: its file is never marked closed


@pytest.mark.parametrize("finish", ["close", "killed"])
def test_fold_never_removes_a_running_writers_file(tmp_path, finish):
    path = tmp_path / "segments.sqlite"
    ctx = multiprocessing.get_context("fork")
    wrote, go_on = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_live_writer, args=(str(path), wrote, go_on, finish))
    writer.start()
    assert wrote.wait(60)
    for name in ("done-1", "done-2"):
        done = SegmentCache(path)
        done.put_many({name: _entry(name)})
        done.close()
    assert fold(path) == 2 and len(members(path)) == 2  # the finished writers' files; the running one is left alone
    go_on.set()
    writer.join()
    assert fold(path) == 2 and len(members(path)) == 1  # closed, or dead on this machine: folded now
    cache = SegmentCache(path)
    assert set(cache.get_many(["early", "late", "done-1", "done-2"])) == {"early", "late", "done-1", "done-2"}


def _killed_mid_commit(path: str) -> None:
    cache = SegmentCache(path)
    cache.put_many({"committed": _entry("committed")})
    cache.db.execute("PRAGMA cache_size = 5")  # spill the open transaction into the file: a hot journal
    cache.db.execute("BEGIN")
    cache.db.executemany("INSERT INTO segments VALUES (?, 'x', 'stop', 1, 1)", [(f"k{i}",) for i in range(20_000)])
    os._exit(0)


def test_a_writer_killed_mid_commit_keeps_its_committed_entries(tmp_path, caplog):
    path = tmp_path / "segments.sqlite"
    writer = multiprocessing.get_context("fork").Process(target=_killed_mid_commit, args=(str(path),))
    writer.start()
    writer.join()
    (member,) = members(path)
    assert member.with_name(member.name + "-journal").exists()
    with caplog.at_level(logging.WARNING, logger="hala.engines"):
        cache = SegmentCache(path)
        assert cache.get_many(["committed", "k1"]) == {"committed": _entry("committed")}
        cache.close()
    assert caplog.text == ""
    assert fold(path) == 0 and members(path) == [member]  # one finished file: nothing to fold


def test_files_of_many_runs_are_folded_when_a_writer_closes(tmp_path):
    from hala.engines.cache import FOLD_AT

    path = tmp_path / "segments.sqlite"
    for run in range(FOLD_AT + 1):  # one file per run (or resume after a kill), until a close folds them
        cache = SegmentCache(path)
        cache.put_many({f"run-{run}": _entry(f"run-{run}")})
        cache.close()
    assert len(members(path)) == 1
    every = {f"run-{r}": _entry(f"run-{r}") for r in range(FOLD_AT + 1)}
    assert SegmentCache(path).get_many(list(every)) == every


def test_local_workers_write_their_own_files_and_the_merge_folds_them(tmp_path):
    from hala.engines import EngineConfig
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    data = tmp_path / "in.jsonl"
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = dict(inputs=[str(data)], engine=EngineConfig(kind="fake", model="m"), rows_per_unit=3, progress=False)
    out = tmp_path / "local"
    manifest = translate(TranslateConfig(**base, out=str(out), executor="local", workers=3))
    cache = out / "cache" / "segments.sqlite"
    assert manifest.counts["num_shards"] == 3 and len(members(cache)) == 1
    again = translate(TranslateConfig(**base, out=str(tmp_path / "again"), cache_path=str(cache)))
    assert again.counts.get("engine_segments", 0) == 0 and again.counts["rows_out"] == 12


def test_a_cache_that_cannot_be_folded_leaves_the_merge_complete(tmp_path, monkeypatch, caplog):
    from hala.engines import EngineConfig
    from hala.translate import shards
    from hala.translate.config import TranslateConfig
    from hala.translate.pipeline import translate

    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": f"Q {i}?"}]}) + "\n"
                            for i in range(6)))  # fmt: skip
    out = tmp_path / "out"
    engine = EngineConfig(kind="fake", model="m")
    translate(TranslateConfig(inputs=[str(data)], out=str(out), engine=engine, progress=False))

    def no_room(path):
        raise CacheError(f"{path}: could not fold the cache's files (disk full); they stay as they are")

    monkeypatch.setattr(shards, "fold", no_room)
    with caplog.at_level(logging.WARNING, logger="hala.translate"):
        manifest = shards.merge_shards(out)
    assert manifest.counts["rows_out"] == 6 and "could not fold" in caplog.text
