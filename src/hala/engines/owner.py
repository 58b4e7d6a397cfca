"""Engine calls made by worker threads, run by the one thread that owns the engine.

`hala translate` overlaps its own work with generation: while the engine generates for one unit,
other threads read and segment the next units and check, rebuild and write the ones before
(`hala.data.in_order`). The engine stays in the thread that built it, the caller's (the main
thread): in-process vLLM and its signal handling are used exactly as in a run without overlap,
and SIGTERM or Ctrl-C interrupt an engine call as they always did. A worker hands its engine call
to `EngineOwner.call`, which queues it and waits; the owner runs the queued calls one at a time,
in `serve`, the lowest `rank` first (translate ranks a call by its unit's place in the plan: the
earliest unit's retries are what keep it from landing and its thread from starting the next
unit). Only the calls themselves run there (the cache lookups and writes stay in the worker,
`hala.engines.cached`), so the owner does little but generate: a thread waiting on the engine
would otherwise queue behind the workers for the interpreter lock. A call made from the owner
thread itself runs at once, so a run without overlap is the same code without threads.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from concurrent.futures import Future
from typing import Any, Callable


class Stopped(RuntimeError):
    """The run stopped (an error in another unit, SIGTERM, Ctrl-C) before this engine call was made."""


class EngineOwner:
    """Made in the thread that owns the engine; see the module docstring."""

    def __init__(self):
        self.owner = threading.get_ident()
        self.cond = threading.Condition()
        self.queued: list[tuple] = []  # a heap of (rank, arrival, future, fn, args)
        self.arrivals = itertools.count()
        self.unanswered: set[Future] = set()
        self.released = False

    def submit(self, fn: Callable[..., Any], *args, rank: tuple = ()) -> Future:
        """Queue `fn(*args)` for the owner thread; its future holds the result or the exception.
        The lowest `rank` queued is served first, equal ranks in the order they came."""
        future: Future = Future()
        with self.cond:
            if self.released:
                raise Stopped("the run stopped; this engine call was not made")
            self.unanswered.add(future)
            heapq.heappush(self.queued, (rank, next(self.arrivals), future, fn, args))
            self.cond.notify()
        return future

    def call(self, fn: Callable[..., Any], *args, rank: tuple = ()) -> Any:
        """`fn(*args)`, run by the owner thread (at once if this is it)."""
        if threading.get_ident() == self.owner:
            return fn(*args)
        return self.submit(fn, *args, rank=rank).result()

    def serve(self, on_call: Callable[[], None] = lambda: None) -> None:
        """Run the queued calls until `release`, calling `on_call()` before each. An exception of a
        call goes to the worker that made it; an interrupt (SIGTERM, Ctrl-C) ends `serve` here, in
        the owner thread."""
        while True:
            with self.cond:
                while not self.queued and not self.released:
                    self.cond.wait()
                if self.released:
                    return
                _, _, future, fn, args = heapq.heappop(self.queued)
            on_call()
            try:
                result = fn(*args)
            except Exception as exc:  # noqa: BLE001 - the worker that asked raises it
                self._answer(future, exc)
            else:
                self._answer(future, result=result)

    def _answer(self, future: Future, exc: BaseException | None = None, result: Any = None) -> None:
        with self.cond:
            if future not in self.unanswered:  # already refused by release
                return
            self.unanswered.discard(future)
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    def release(self) -> None:
        """End `serve`; every call still queued, running or to come raises `Stopped` in its worker."""
        with self.cond:
            self.released = True
            refused, self.unanswered = self.unanswered, set()
            self.queued.clear()
            self.cond.notify_all()
        for future in refused:
            future.set_exception(Stopped("the run stopped; this engine call was not made"))
