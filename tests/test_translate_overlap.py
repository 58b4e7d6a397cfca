"""Units in flight (`units_in_flight`): hala's own work runs while the engine generates, and the run
is the serial one's, file for file and count for count; errors and interrupts stop every thread."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hala.engines import EngineConfig, Generation, SamplingParams
from hala.engines import fake as fake_module
from hala.engines.cached import CachedChat
from hala.engines.owner import EngineOwner
from hala.translate import pipeline
from hala.translate.config import TranslateConfig
from hala.translate.pipeline import translate

GUARD_S = 60  # only so that a broken overlap fails instead of hanging; no test waits this long when it passes
WHOLE = "Good morning! How are you today?"
# unit 0's segment fails greedy (copied back) and is re-split; its piece "How are you today?" is
# unit 1's own segment, so the serial run sends it for unit 0 and finds it cached for unit 1
UNITS = [
    [{"role": "user", "content": WHOLE}, {"role": "assistant", "content": "I am well, thank you."}],
    [{"role": "user", "content": "How are you today?"}, {"role": "assistant", "content": "Fine, and you?"}],
    [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "I am well, thank you."}],
]


def _input(path: Path, units=UNITS) -> Path:
    path.write_text("".join(json.dumps({"id": f"u{i}", "messages": m}) + "\n" for i, m in enumerate(units)))
    return path


def _cfg(data: Path, out: Path, **kw) -> TranslateConfig:
    base = dict(inputs=[str(data)], out=str(out), engine=EngineConfig(kind="fake", model="m"), rows_per_unit=1,
                progress=False)  # fmt: skip
    return TranslateConfig(**{**base, **kw})


def _texts(chats) -> list[str]:
    return [chat[-1]["content"].split("\n\n", 1)[1] for chat in chats]


def _answer(self, chats, params):
    return [Generation(t if t == WHOLE else fake_module.arabize(t), "stop", 1, 1) for t in _texts(chats)]


def _when_submitted(monkeypatch, text: str) -> threading.Event:
    """An event set once a unit thread has queued an engine call asking `text`."""
    queued = threading.Event()
    original = EngineOwner.submit

    def submit(self, fn, *args, **kw):
        future = original(self, fn, *args, **kw)
        if text in _texts(args[0]):
            queued.set()
        return future

    monkeypatch.setattr(EngineOwner, "submit", submit)
    return queued


def _folder(out: Path) -> dict[str, object]:
    """Every file a run leaves, by name; stats and the manifest's counts without engine_ms (a timing)."""
    files = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_dir() or name.startswith(("cache/", ".hala")) or name.endswith("config.yaml"):
            continue
        if name.startswith("stats/"):
            files[name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "engine_ms"}
        elif name == "manifest.json":
            files[name] = {k: v for k, v in json.loads(path.read_text())["counts"].items() if k != "engine_ms"}
        else:
            files[name] = path.read_bytes()
    return files


def test_units_are_read_checked_and_written_while_the_engine_generates(tmp_path, monkeypatch):
    units = [[{"role": "user", "content": f"Unit {i} asks a question."}] for i in range(2)]
    data = _input(tmp_path / "in.jsonl", units)
    unit_1_queued = _when_submitted(monkeypatch, "Unit 1 asks a question.")
    unit_1_in_engine, unit_0_landed = threading.Event(), threading.Event()
    seen = {}

    def chat(self, chats, params):
        if "Unit 0 asks a question." in _texts(chats):  # unit 1 is read, segmented and looked up meanwhile
            seen["unit 1 prepared during unit 0's call"] = unit_1_queued.wait(GUARD_S)
        else:  # unit 0 is checked, rebuilt and written meanwhile
            unit_1_in_engine.set()
            seen["unit 0 landed during unit 1's call"] = unit_0_landed.wait(GUARD_S)
        return _answer(self, chats, params)

    finish = pipeline.UnitTranslator.finish_unit

    def finish_unit(self, unit):
        if unit.start == 0:
            unit_1_in_engine.wait(GUARD_S)
        numbers = finish(self, unit)
        if unit.start == 0:
            unit_0_landed.set()
        return numbers

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)
    monkeypatch.setattr(pipeline.UnitTranslator, "finish_unit", finish_unit)
    manifest = translate(_cfg(data, tmp_path / "out", units_in_flight=2))
    assert seen == {"unit 1 prepared during unit 0's call": True, "unit 0 landed during unit 1's call": True}
    assert manifest.counts["rows_out"] == 2


def test_units_in_flight_leave_the_serial_runs_files_and_counts(tmp_path, monkeypatch):
    data = _input(tmp_path / "in.jsonl")
    monkeypatch.setattr(fake_module.FakeEngine, "chat", _answer)
    serial = translate(_cfg(data, tmp_path / "serial", units_in_flight=1))
    # unit 1's request goes to the engine before unit 0's re-split: it sends the shared piece first
    unit_1_queued = _when_submitted(monkeypatch, "How are you today?")
    order = []

    def chat(self, chats, params):
        order.append(_texts(chats))
        if WHOLE in _texts(chats):
            assert unit_1_queued.wait(GUARD_S)
        return _answer(self, chats, params)

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)
    overlapped = translate(_cfg(data, tmp_path / "overlap", units_in_flight=3))
    resplit = next(i for i, texts in enumerate(order) if "Good morning!" in texts)
    assert order.index(["How are you today?", "Fine, and you?"]) < resplit  # unit 1 sent the shared piece
    assert serial.counts["retry_resplit_fixed"] == 1 and serial.counts["cache_hits"] == 2
    assert _folder(tmp_path / "overlap") == _folder(tmp_path / "serial")
    assert overlapped.fingerprint == serial.fingerprint  # units_in_flight can't change outputs


def _no_unit_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("hala-unit-")]


def test_an_error_in_one_unit_lands_the_units_before_it_and_stops_every_thread(tmp_path, monkeypatch):
    units = [[{"role": "user", "content": f"Unit {i} asks a question."}] for i in range(6)]
    data = _input(tmp_path / "in.jsonl", units)
    closed = []

    def chat(self, chats, params):
        if "Unit 2 asks a question." in _texts(chats):
            raise NotImplementedError("this engine can't")  # not retried: the backend can't do it at all
        return _answer(self, chats, params)

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)
    monkeypatch.setattr(fake_module.FakeEngine, "close", lambda self: closed.append(True))
    with pytest.raises(NotImplementedError, match="this engine can't"):
        translate(_cfg(data, tmp_path / "out", units_in_flight=3))
    landed = sorted(p.name.rsplit("-", 2)[1:] for p in (tmp_path / "out" / "data").glob("*"))
    assert landed == [["000000000", "000000001.jsonl"], ["000000001", "000000002.jsonl"]]  # units 0 and 1
    assert _no_unit_threads() and closed == [True]


def test_an_interrupt_stops_every_thread_closes_the_engine_and_the_rerun_resumes(tmp_path, monkeypatch):
    units = [[{"role": "user", "content": f"Unit {i} asks a question."}] for i in range(6)]
    data = _input(tmp_path / "in.jsonl", units)
    reference = translate(_cfg(data, tmp_path / "reference", units_in_flight=1))
    closed, original = [], fake_module.FakeEngine.chat

    def chat(self, chats, params):
        if "Unit 3 asks a question." in _texts(chats):
            raise KeyboardInterrupt  # as SIGTERM's SystemExit or Ctrl-C arrive: in the engine's thread
        return original(self, chats, params)

    monkeypatch.setattr(fake_module.FakeEngine, "chat", chat)
    monkeypatch.setattr(fake_module.FakeEngine, "close", lambda self: closed.append(True))
    with pytest.raises(KeyboardInterrupt):
        translate(_cfg(data, tmp_path / "out", units_in_flight=3))
    assert _no_unit_threads() and closed == [True]
    assert len(list((tmp_path / "out" / "data").glob("*"))) <= 3 and not (tmp_path / "out" / "manifest.json").exists()
    monkeypatch.setattr(fake_module.FakeEngine, "chat", original)
    resumed = translate(_cfg(data, tmp_path / "out", units_in_flight=3))
    assert resumed.counts["rows_out"] == reference.counts["rows_out"] == 6
    assert {k: v for k, v in _folder(tmp_path / "out").items() if k.startswith(("data/", "pairs/"))} == {
        k: v for k, v in _folder(tmp_path / "reference").items() if k.startswith(("data/", "pairs/"))
    }


def test_sigterm_with_units_in_flight_exits_143_and_lets_go_of_the_folder(tmp_path):
    from hala.data.output_lock import lock_path

    units = [[{"role": "user", "content": f"Unit {i} asks a question."}] for i in range(6)]
    data = _input(tmp_path / "in.jsonl", units)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hala.cli", "translate", "-i", str(data), "-o", str(out), "--engine", "fake",
           "-m", "m", "rows_per_unit=1", "units_in_flight=3", "engine.fake_delay_s=5", "progress=false"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not list((out / "cache").glob("segments.*.sqlite")) and proc.poll() is None:  # a call is done
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=GUARD_S) == 128 + signal.SIGTERM, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert not lock_path(out).exists() and not (out / "manifest.json").exists()


def _chat(tmp_path, sent: list) -> CachedChat:
    class Counting(fake_module.FakeEngine):
        def chat(self, chats, params):
            sent.append([c[-1]["content"] for c in chats])
            return super().chat(chats, params)

    chat = CachedChat(EngineConfig(kind="fake", model="m"), SamplingParams(), tmp_path / "c.sqlite")
    chat.engine = Counting(chat.engine_cfg)
    return chat


def test_a_request_counts_as_sent_for_the_first_unit_in_plan_order_whoever_sent_it(tmp_path):
    sent: list = []
    chat = _chat(tmp_path, sent)
    ask = lambda *texts: chat.fetch(list(texts), [[{"role": "user", "content": t}] for t in texts])[1]  # noqa: E731
    later = ask("x", "y")  # unit 1 of the plan is served first and sends x ...
    first = ask("x")  # ... which unit 0 then finds in the cache
    stats_0, stats_1 = Counter(), Counter()
    chat.settle(first, stats_0)  # units settle in plan order, as they land
    chat.settle(later, stats_1)
    assert sent == [["x", "y"]]
    assert (stats_0["engine_requests"], stats_0["cache_hits"], stats_0["tokens_out"]) == (1, 0, 1)
    assert (stats_1["engine_requests"], stats_1["cache_hits"], stats_1["tokens_out"]) == (1, 1, 1)
    assert chat.sent == {}  # nothing is kept once every unit has landed
    chat.close()


def test_a_request_in_flight_for_one_unit_is_not_sent_again_for_another(tmp_path):
    sent: list = []
    chat = _chat(tmp_path, sent)
    started, go, looked_up = threading.Event(), threading.Event(), threading.Event()
    chats = [[{"role": "user", "content": "x"}]]
    lookups, get_many = [], chat.cache.get_many

    def get(keys, chunk=500):
        found = get_many(keys, chunk)
        lookups.append(keys)
        if len(lookups) == 2:
            looked_up.set()
        return found

    def held(fn, *args):  # the engine is generating unit 0's batch ...
        started.set()
        go.wait(GUARD_S)
        return fn(*args)

    chat.cache.get_many = get
    first = threading.Thread(target=chat.fetch, args=(["x"], chats), kwargs={"call": held})
    first.start()
    started.wait(GUARD_S)
    answers: list = []
    second = threading.Thread(target=lambda: answers.extend(chat.fetch(["x"], chats)[0]))
    second.start()  # ... when unit 1 asks the same request, and finds it not cached yet
    looked_up.wait(GUARD_S)
    go.set()
    first.join(GUARD_S)
    second.join(GUARD_S)
    assert sent == [["x"]] and answers[0].text == fake_module.arabize("x")
    chat.close()


def test_the_engine_serves_the_earliest_unit_of_the_plan_first():
    owner, served = EngineOwner(), []
    owner.submit(served.append, "unit 5's greedy batch", rank=(0, 5))
    owner.submit(served.append, "unit 1's retry", rank=(0, 1))  # came later, but holds up unit 1's landing
    owner.submit(owner.release, rank=(1, 0))
    owner.serve()
    assert served == ["unit 1's retry", "unit 5's greedy batch"]
