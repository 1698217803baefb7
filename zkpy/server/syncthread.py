"""The thread that fsyncs the txn log when syncing on the event loop would stall it.

One request at a time is in flight (the core asks again only after the answer): the
thread runs `work()` and reports `(upto, error, seconds)` to `done` on the event loop.
A plain condition variable and one `call_soon_threadsafe` per sync: a quarter of what
an executor future costs per hand-off (work item, two chained futures, three callbacks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

Done = Callable[[int, BaseException | None, float], None]


class SyncThread:
    def __init__(self, work: Callable[[], float], done: Done, name: str = "zkpy-fsync") -> None:
        self._work = work
        self._done = done
        self._name = name
        self._cond = threading.Condition()
        self._want: int | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self, loop: asyncio.AbstractEventLoop, upto: int) -> None:
        """Sync now; `done(upto, ...)` follows on `loop`."""
        with self._cond:
            self._loop = loop
            self._want = upto
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        """Let a sync in flight finish, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._want is None and not self._stopping:
                    self._cond.wait()
                if self._want is None:
                    return
                upto, self._want = self._want, None
                loop = self._loop
            assert loop is not None
            try:
                took = self._work()
            except BaseException as e:  # noqa: BLE001 - reported to the loop: nothing is durable
                self._report(loop, upto, e, 0.0)
                continue
            self._report(loop, upto, None, took)

    def _report(self, loop: asyncio.AbstractEventLoop, upto: int, exc: BaseException | None,
                took: float) -> None:
        try:
            loop.call_soon_threadsafe(self._done, upto, exc, took)
        except RuntimeError:  # the loop closed while this sync ran: nobody waits for it
            pass
