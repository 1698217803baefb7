"""Group commit: one txn-log sync covers every txn appended before it.

On a disk whose syncs are cheap (recent average at most zkpy.inlineSyncMicros) a sync of
a few txns runs on the event loop, once per loop iteration after the requests that
arrived in it were logged: no thread hand-off on the reply path of a lone writer.  A
slow disk, or a sync of many txns (a busy server), gets the fsync thread
(`syncthread.py`) instead, so that the loop answers reads and logs the next writes while
the disk syncs; both paths keep the average up to date.  At most one sync is in flight;
when it ends, `on_durable(upto)` reports what is on disk (or `on_failed(error)`: nothing
after the last good sync is), and another sync starts if more was appended meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from zkpy.server.metrics import METRICS
from zkpy.server.syncthread import SyncThread

log = logging.getLogger("zkpy.server")

# A sync of more txns than this goes to the thread even on a fast disk: so many writes
# in one loop iteration mean more are arriving, and the loop handles them while the
# disk syncs instead of waiting for it.  A few (one client waiting for its write) are
# synced right here, saving the hand-off's latency.
INLINE_BATCH = 4


class GroupCommit:
    """The durability of one server core's txn log (None: nothing to sync, as in tests
    and a read-only core: every append is durable at the next loop iteration)."""

    def __init__(self, txn_log: Any, inline_sync_us: int, warning_ms: int,
                 on_durable: Callable[[int], None], on_failed: Callable[[BaseException], None],
                 appended: int) -> None:
        self.txn_log = txn_log
        self.appended = appended  # zxid of the last txn appended to the log
        self.durable = -1  # zxid up to which the log is synced
        self.cost = 0.0  # moving average of recent sync times, seconds
        # 0 (zkpy.inlineSyncMicros=0) means always the thread, even after free syncs
        self._inline_limit = inline_sync_us / 1e6 if inline_sync_us > 0 else -1.0
        self._warning_ms = warning_ms
        self._on_durable = on_durable
        self._on_failed = on_failed
        self._flushing = False
        self._retired = False
        self._threaded = False  # the last sync ran in the thread (metrics: hand-offs)
        self._syncer = SyncThread(self._timed_sync, self._synced)
        self.loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> None:
        """Make everything appended so far durable (now or after the sync in flight)."""
        if self._flushing or self.appended <= self.durable:
            return
        loop = self.loop or asyncio.get_event_loop()
        self._flushing = True
        if self.txn_log is None:
            loop.call_soon(self._synced, self.appended, None, 0.0)
        elif self.cost <= self._inline_limit:
            loop.call_soon(self._sync_here)  # after this iteration's requests were logged
        else:
            self._to_thread(loop)

    def _to_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        METRICS.thread_syncs.value += 1
        if not self._threaded:
            METRICS.handoffs.value += 1
            self._threaded = True
        self._syncer.request(loop, self.appended)

    def close(self) -> None:
        """A sync still scheduled finds nothing to do; a thread sync in flight finishes."""
        self._retired = True
        self._syncer.close()

    def _timed_sync(self) -> float:
        t = time.perf_counter()
        self.txn_log.sync()
        return time.perf_counter() - t

    def _sync_here(self) -> None:
        if self._retired:
            return
        upto = self.appended
        if upto - self.durable > INLINE_BATCH:  # a busy loop: let it go on while the disk syncs
            self._to_thread(self.loop or asyncio.get_event_loop())
            return
        METRICS.inline_syncs.value += 1
        self._threaded = False
        try:
            took = self._timed_sync()
        except Exception as e:  # noqa: BLE001 - any failure to sync means nothing is durable
            self._synced(upto, e, 0.0)
            return
        self._synced(upto, None, took)

    def _synced(self, upto: int, exc: BaseException | None, took: float) -> None:
        self._flushing = False
        if self._retired:
            return
        if exc is not None:
            self._on_failed(exc)
            return
        self.cost += (took - self.cost) * 0.25
        m = METRICS
        m.fsynctime.add(int(took * 1000))
        durable = self.durable
        if durable > 0 and upto >> 32 == durable >> 32:  # txns in this sync (one epoch)
            m.batch_size.add(upto - durable)
        if took * 1000 > self._warning_ms:
            log.warning("txn log sync took %.0f ms (fsync.warningthresholdms=%d): the disk "
                        "is slow or shared; writes wait for it", took * 1000, self._warning_ms)
        self.durable = upto
        self._on_durable(upto)
        self.request()
