"""Engine calls made by worker threads, run by the one thread that owns the engine.

`hala translate` overlaps its own work with generation: while the engine generates for one unit,
other threads read and segment the next units and check, rebuild and write the ones before
(`hala.data.in_order`). The engine stays in the thread that built it, the caller's (the main
thread): in-process vLLM and its signal handling are used exactly as in a run without overlap,
and SIGTERM or Ctrl-C interrupt an engine call as they always did. A worker hands its engine call
to `EngineOwner.call`, which queues it and waits; the owner runs the queued calls one at a time,
in the order they came, in `serve`. Only the calls themselves run there (the cache lookups and
writes stay in the worker, `hala.engines.cached`), so the owner does little but generate: a
thread waiting on the engine would otherwise queue behind the workers for the interpreter lock.
A call made from the owner thread itself runs at once, so a run without overlap is the same code
without threads.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable


class Stopped(RuntimeError):
    """The run stopped (an error in another unit, SIGTERM, Ctrl-C) before this engine call was made."""


class EngineOwner:
    """Made in the thread that owns the engine; see the module docstring."""

    def __init__(self):
        self.owner = threading.get_ident()
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.unanswered: set[Future] = set()
        self.released = False

    def submit(self, fn: Callable[..., Any], *args) -> Future:
        """Queue `fn(*args)` for the owner thread; its future holds the result or the exception."""
        future: Future = Future()
        with self.lock:
            if self.released:
                raise Stopped("the run stopped; this engine call was not made")
            self.unanswered.add(future)
            self.calls.put((future, fn, args))
        return future

    def call(self, fn: Callable[..., Any], *args) -> Any:
        """`fn(*args)`, run by the owner thread (at once if this is it)."""
        if threading.get_ident() == self.owner:
            return fn(*args)
        return self.submit(fn, *args).result()

    def serve(self, on_call: Callable[[], None] = lambda: None) -> None:
        """Run the queued calls, in order, until `release`, calling `on_call()` before each. An
        exception of a call goes to the worker that made it; an interrupt (SIGTERM, Ctrl-C) ends
        `serve` here, in the owner thread."""
        while (item := self.calls.get()) is not None:
            future, fn, args = item
            on_call()
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - the worker that asked raises it
                self._answer(future, exc)
            else:
                self._answer(future, result=result)

    def _answer(self, future: Future, exc: BaseException | None = None, result: Any = None) -> None:
        with self.lock:
            if future not in self.unanswered:  # already refused by release
                return
            self.unanswered.discard(future)
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def release(self) -> None:
        """End `serve`; every call still queued, running or to come raises `Stopped` in its worker."""
        with self.lock:
            self.released = True
            refused, self.unanswered = self.unanswered, set()
            self.calls.put(None)
        for future in refused:
            future.set_exception(Stopped("the run stopped; this engine call was not made"))
