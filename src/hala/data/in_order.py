"""Units worked a few at a time, in threads, and landed one at a time in plan order.

A stage that waits on an engine spends the engine's time idle while it reads, checks and writes.
`work_in_order` works up to `in_flight` units at once, each in a thread of its own, so that one
unit's reading, checks and writing run while another unit's requests are in the engine; the
engine's calls themselves are made by the calling thread, which runs `host.serve()` meanwhile
(`hala.engines.owner.EngineOwner`); without one, threads would only share the interpreter, so
the units run one at a time. Threads start one at a time, as the engine starts a call: the first
unit is read alone (nothing competes with it for the interpreter before the engine has work),
the next while the engine generates for it, and so on up to `in_flight`.

Landing is what keeps a run the same as a serial one: each unit lands (`land`: its stats and
files) only after every unit before it in the plan has landed, one at a time, so the folder at
any moment holds a prefix of the plan's new units, exactly what a serial run killed at that
moment would leave, and the stage's per-unit bookkeeping (stats settled at landing) sees the
units in the serial order.

Stopping, as a serial run would: an error in unit i lets the units before it finish and land,
lands none after it, and is raised once every thread has ended. An interrupt of the calling
thread (SIGTERM, Ctrl-C) stops all units at their next engine call or landing, waits for the
threads to end (none is left writing to a folder whose lock is about to go) and is raised.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol, TypeVar

Item = TypeVar("Item")
Worked = TypeVar("Worked")
Landed = TypeVar("Landed")


class Host(Protocol):
    """What the calling thread runs while the units are worked (their engine calls)."""

    def serve(self, on_call: Callable[[], None]) -> None:
        """Run until `release`, calling `on_call()` as each engine call starts."""

    def release(self) -> None:
        """End `serve`, and refuse every call still to be served."""


class _Turns:
    def __init__(self, items: list, work: Callable, land: Callable, in_flight: int, release: Callable[[], None]):
        self.items, self.work, self.land, self.release = items, work, land, release
        self.threads: list[threading.Thread] = []
        self.most = min(in_flight, len(items))
        self.cond = threading.Condition()
        self.next = 0  # the next item to start
        self.turn = 0  # the next item to land
        self.landed: list = [None] * len(items)
        self.failed: tuple[int, BaseException] | None = None
        self.interrupted = False
        self.running = 0

    def start_another(self) -> None:
        """Start one more worker thread, up to `in_flight`, while units are left to start."""
        with self.cond:
            if len(self.threads) == self.most or self.next == len(self.items) or self._given_up(self.next):
                return
            self.running += 1
            thread = threading.Thread(target=self.run, name=f"hala-unit-{len(self.threads)}", daemon=True)
            self.threads.append(thread)
        thread.start()

    def _given_up(self, i: int) -> bool:
        return self.interrupted or (self.failed is not None and i > self.failed[0])

    def run(self) -> None:
        """One worker thread: take the next item, work it, wait for its turn, land it; again."""
        try:
            while True:
                with self.cond:
                    if self.next == len(self.items) or self._given_up(self.next):
                        return
                    i, self.next = self.next, self.next + 1
                try:
                    worked = self.work(self.items[i])
                    with self.cond:
                        while self.turn != i and not self._given_up(i):
                            self.cond.wait()
                        if self._given_up(i):
                            return
                    self.landed[i] = self.land(self.items[i], worked)
                    del worked  # not held while this thread works its next item
                except BaseException as exc:  # noqa: BLE001 - raised in the calling thread, after all threads end
                    with self.cond:
                        if self.failed is None or i < self.failed[0]:
                            self.failed = (i, exc)
                        self.cond.notify_all()
                    return
                with self.cond:
                    self.turn += 1
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.running -= 1
                last = self.running == 0
            if last:
                self.release()

    def interrupt(self) -> None:
        with self.cond:
            self.interrupted = True
            self.cond.notify_all()


def work_in_order(
    items: list[Item],
    work: Callable[[Item], Worked],
    land: Callable[[Item, Worked], Landed],
    *,
    in_flight: int = 1,
    host: Host | None = None,
) -> list[Landed]:
    """`land(item, work(item))` for every item, landed in order; up to `in_flight` items are worked
    at once, in threads, while this thread runs `host.serve` (1, or no host: all in this thread).
    Returns what each `land` returned, in order."""
    if in_flight == 1 or len(items) <= 1 or host is None:
        return [land(item, work(item)) for item in items]
    turns = _Turns(items, work, land, in_flight, host.release)
    try:
        turns.start_another()
        host.serve(on_call=turns.start_another)
    except BaseException:
        turns.interrupt()
        host.release()  # a worker waiting on an engine call is refused, not left waiting
        for thread in turns.threads:
            thread.join()
        raise
    for thread in turns.threads:
        thread.join()
    if turns.failed is not None:
        raise turns.failed[1]
    return turns.landed
