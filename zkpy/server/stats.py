"""Server counters reported by srvr, stat and mntr."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zkpy.server.metrics import Summary


class ServerStats:
    """Request latency (ms) and packet counts since start or the last `srst`."""

    __slots__ = ("count", "total", "min", "max", "received", "sent", "started", "auth_failed")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = 0.0
        self.max = 0.0
        self.received = 0
        self.sent = 0
        self.auth_failed = 0

    def record(self, started: float, latency: Summary) -> None:
        """One reply; started: perf_counter() when the request was queued, 0.0 when it was
        answered as it arrived (no wait: 0 ms, and no clock read); latency: the metrics
        summary it counts in too (readlatency or updatelatency, as Java's updateLatency)."""
        if not started:  # the common case: a read answered on arrival, 0 ms
            latency.zeros += 1
            self.count += 1
            self.min = 0.0
            return
        # Whole milliseconds, as Java records them, so that min <= avg <= max holds.
        ms = int((time.perf_counter() - started) * 1000.0)
        latency.add(ms)
        if self.count == 0 or ms < self.min:
            self.min = float(ms)
        if ms > self.max:
            self.max = float(ms)
        self.count += 1
        self.total += ms

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    def latency_line(self) -> str:
        return f"{int(self.min)}/{self.avg:.4f}/{int(self.max)}"
