"""The Prometheus endpoint (`metricsProvider.className=...PrometheusMetricsProvider`):
`GET /metrics` in the Prometheus text format 0.0.4, with the names ZooKeeper's
PrometheusMetricsProvider exports: counters, gauges, and summaries with quantiles
0.5 (BASIC) or 0.5/0.9/0.99 (ADVANCED) plus `_count` and `_sum`.

Written here rather than with the official `prometheus_client`: the registry is
`metrics.py`'s plain attributes (an int add per event); prometheus_client would take a
lock per observation, and rendering this format is a page of code.  With
`metricsProvider.exportJvmInfo` (default true), where Java adds its JVM metrics, the
standard `process_*` metrics and `python_info`/`python_gc_*` are added.
"""

from __future__ import annotations

import gc
import os
import platform
import resource
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from zkpy.server.http import Response
from zkpy.server.metrics import METRICS, ServerMetrics, Summary
from zkpy.server.monitor import gauge_rows

if TYPE_CHECKING:
    from zkpy.server.core import ZooKeeperServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STARTED = time.time()


def _num(v: float) -> str:
    return repr(float(v))


def _summary(out: list[str], s: Summary, label: str = "") -> None:
    qs = (0.5, 0.9, 0.99) if s.advanced else (0.5,)
    sep = "," if label else ""
    for q, v in zip(qs, s.quantiles(qs), strict=True):
        out.append(f'{s.name}{{{label}{sep}quantile="{q}"}} {_num(v)}')
    lab = f"{{{label}}}" if label else ""
    out.append(f"{s.name}_count{lab} {_num(s.count)}")
    out.append(f"{s.name}_sum{lab} {_num(s.total)}")


def render(server: ZooKeeperServer, process_info: bool, m: ServerMetrics = METRICS) -> str:
    out: list[str] = []
    for name, value in gauge_rows(server):
        if isinstance(value, int | float):
            out += [f"# HELP {name} {name}", f"# TYPE {name} gauge", f"{name} {_num(value)}"]
    for c in m.counters.values():
        out += [f"# HELP {c.name} {c.name}", f"# TYPE {c.name} counter", f"{c.name} {_num(c.value)}"]
    for s in m.summaries.values():
        out += [f"# HELP {s.name} {s.name}", f"# TYPE {s.name} summary"]
        _summary(out, s)
    if m.ack_latency:
        out += ["# HELP ack_latency ack_latency", "# TYPE ack_latency summary"]
        for key, s in sorted(m.ack_latency.items()):
            _summary(out, s, f'key="{key}"')
    if process_info:
        out += _process()
    return "\n".join(out) + "\n"


def _process() -> list[str]:
    """The process collector every Prometheus client has, and Python's own info."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        with open("/proc/self/statm") as f:
            vm, rss = (int(x) * page for x in f.read().split()[:2])
    except OSError:
        vm, rss = 0, ru.ru_maxrss * 1024
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    rows = [
        ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         ru.ru_utime + ru.ru_stime),
        ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         _STARTED),
        ("process_open_fds", "gauge", "Number of open file descriptors.", fds),
        ("process_max_fds", "gauge", "Maximum number of open file descriptors.",
         resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vm),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss),
    ]
    out: list[str] = []
    for name, kind, help_, value in rows:
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {_num(value)}"]
    v = platform.python_version_tuple()
    out += ["# HELP python_info Python platform information", "# TYPE python_info gauge",
            f'python_info{{implementation="{platform.python_implementation()}",major="{v[0]}",'
            f'minor="{v[1]}",patchlevel="{v[2]}",version="{platform.python_version()}"}} 1.0',
            "# HELP python_gc_collections_total Number of times this generation was collected",
            "# TYPE python_gc_collections_total counter"]
    for gen, st in enumerate(gc.get_stats()):
        out.append(f'python_gc_collections_total{{generation="{gen}"}} {_num(st["collections"])}')
    return out


class MetricsHandler:
    """GET /metrics (anything else is 404), as the provider's servlet."""

    def __init__(self, core: Callable[[], ZooKeeperServer], process_info: bool) -> None:
        self.core = core  # the current core (a role change replaces it)
        self.process_info = process_info

    def __call__(self, path: str, params: dict[str, str]) -> Response:
        if path != "/metrics":
            return Response(404, "text/plain", b"Not Found\n")
        return Response(200, CONTENT_TYPE, render(self.core(), self.process_info).encode())
