"""One metrics registry, with Apache ZooKeeper 3.8's names, for mntr, the AdminServer's
`monitor` command and the Prometheus endpoint.

ZooKeeper has three kinds (`ServerMetrics.java`): counters, gauges (read when rendered)
and summaries, BASIC (avg/min/max/cnt/sum) or ADVANCED (the same plus p50/p95/p99/p999).
Every name ZooKeeper registers is registered here, so dashboards built on ZooKeeper find
each one; the ones zkpy's design has no counterpart for (the commit processor's
queues, the response cache, Netty, ...) stay at 0 and `docs/architecture.md` lists them.
zkpy's own measurements are named `zkpy_*`.

Cheap on the hot path: one process-wide registry (`METRICS`, as ZooKeeper's
`ServerMetrics.getMetrics()`), plain attributes, no locks (everything runs on the event
loop; the fsync thread reports through it).  A counter is an int add; a summary keeps
count/sum/min/max and the most recent `Summary.RING` observations in a preallocated
ring, from which the quantiles are computed when rendered.
"""

from __future__ import annotations

import sys

# (name, ADVANCED?) of every summary ServerMetrics registers, in its order
SUMMARIES: tuple[tuple[str, bool], ...] = (
    ("fsynctime", False), ("snapshottime", False), ("dbinittime", False),
    ("readlatency", True), ("updatelatency", True), ("propagation_latency", True),
    ("follower_sync_time", False), ("observer_sync_time", False), ("election_time", False),
    ("connection_token_deficit", False), ("inflight_snap_count", False),
    ("inflight_diff_count", False), ("node_created_watch_count", False),
    ("node_deleted_watch_count", False), ("node_changed_watch_count", False),
    ("node_children_watch_count", False), ("dead_watchers_cleaner_latency", True),
    ("prep_processor_queue_time_ms", True), ("prep_processor_queue_size", False),
    ("prep_process_time", False), ("proposal_process_time", False),
    ("close_session_prep_time", True), ("unavailable_time", False),
    ("leader_unavailable_time", False), ("requests_in_session_queue", False),
    ("pending_session_queue_size", False), ("reads_after_write_in_session_queue", False),
    ("reads_issued_from_session_queue", False), ("session_queues_drained", False),
    ("time_waiting_empty_pool_in_commit_processor_read_ms", False),
    ("write_batch_time_in_commit_processor", False),
    ("concurrent_request_processing_in_commit_processor", False),
    ("read_commit_proc_req_queued", False), ("write_commit_proc_req_queued", False),
    ("commit_commit_proc_req_queued", False), ("read_commit_proc_issued", False),
    ("write_commit_proc_issued", False), ("read_commitproc_time_ms", True),
    ("write_commitproc_time_ms", True), ("local_write_committed_time_ms", True),
    ("server_write_committed_time_ms", True), ("commit_process_time", False),
    ("om_proposal_process_time_ms", True), ("om_commit_process_time_ms", True),
    ("read_final_proc_time_ms", True), ("write_final_proc_time_ms", True),
    ("proposal_latency", True), ("proposal_ack_creation_latency", True),
    ("commit_propagation_latency", True), ("startup_txns_loaded", False),
    ("startup_txns_load_time", False), ("startup_snap_load_time", False),
    ("sync_processor_queue_and_flush_time_ms", True), ("sync_processor_queue_size", False),
    ("sync_processor_queue_time_ms", True), ("sync_processor_queue_flush_time_ms", True),
    ("sync_process_time", False), ("sync_processor_batch_size", False),
    ("quorum_ack_latency", True), ("request_throttle_queue_time_ms", True),
    ("netty_queued_buffer_capacity", False), ("learner_request_processor_queue_size", False),
    ("socket_closing_time", False), ("jvm_pause_time_ms", True),
    # zkpy's own
    ("zkpy_event_loop_lag_ms", True),
)

COUNTERS: tuple[str, ...] = (
    "looking_count", "diff_count", "snap_count", "commit_count", "connection_request_count",
    "connection_rejected", "bytes_received_count", "unrecoverable_error_count",
    "add_dead_watcher_stall_time", "dead_watchers_queued", "dead_watchers_cleared",
    "response_packet_cache_hits", "response_packet_cache_misses",
    "response_packet_get_children_cache_hits", "response_packet_get_children_cache_misses",
    "ensemble_auth_success", "ensemble_auth_fail", "ensemble_auth_skip",
    "prep_processor_request_queued", "outstanding_changes_queued", "outstanding_changes_removed",
    "revalidate_count", "connection_drop_count", "connection_revalidate_count",
    "sessionless_connections_expired", "stale_sessions_expired", "request_commit_queued",
    "throttled_ops", "learner_proposal_received_count", "learner_commit_received_count",
    "sync_processor_request_queued", "proposal_count", "quit_leading_due_to_disloyal_voter",
    "stale_requests", "stale_requests_dropped", "stale_replies", "request_throttle_wait_count",
    "large_requests_rejected", "digest_mismatches_count", "unsuccessful_handshake",
    "insecure_admin_count", "tls_handshake_exceeded", "cnxn_closed_without_zk_server_running",
    "skip_learner_request_to_next_processor_count", "requests_not_forwarded_to_commit_processor",
    "response_bytes", "watch_bytes",
    # zkpy's own
    "zkpy_inline_syncs", "zkpy_thread_syncs", "zkpy_fsync_thread_handoffs",
)

# What zkpy measures (the rest of ZooKeeper's names stay 0); tests and docs use this.
MEASURED: frozenset[str] = frozenset({
    "fsynctime", "snapshottime", "dbinittime", "readlatency", "updatelatency",
    "propagation_latency", "proposal_latency", "follower_sync_time", "observer_sync_time",
    "election_time", "node_created_watch_count", "node_deleted_watch_count",
    "node_changed_watch_count", "node_children_watch_count", "startup_txns_loaded",
    "startup_txns_load_time", "startup_snap_load_time", "sync_processor_batch_size",
    "zkpy_event_loop_lag_ms",
    "looking_count", "diff_count", "snap_count", "commit_count", "connection_request_count",
    "connection_rejected", "bytes_received_count", "unrecoverable_error_count",
    "revalidate_count", "connection_drop_count", "sessionless_connections_expired",
    "stale_sessions_expired", "learner_proposal_received_count",
    "learner_commit_received_count", "proposal_count",
    "zkpy_inline_syncs", "zkpy_thread_syncs", "zkpy_fsync_thread_handoffs",
    "tls_handshake_exceeded", "unsuccessful_handshake",
})


class Counter:
    """A count that only grows (until `reset`); hot paths do `c.value += n`."""

    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def reset(self) -> None:
        self.value = 0


class Summary:
    """count, sum, min and max of every observation, and the last RING of them for the
    quantiles (ZooKeeper's default provider samples a reservoir too).

    Reads answered as they arrive take 0 ms and are the bulk of all requests: they are
    only counted (`zeros`, bumped by ServerStats.record), which keeps a read's cost to
    two integer adds; the quantiles treat them as their share of the observations."""

    RING = 1024  # a power of two: the index is masked, not divided
    __slots__ = ("name", "advanced", "n", "zeros", "total", "_min", "max", "ring", "i")

    def __init__(self, name: str, advanced: bool) -> None:
        self.name = name
        self.advanced = advanced
        self.ring = [0] * self.RING
        self.reset()

    def reset(self) -> None:
        self.n = 0  # observations through add()
        self.zeros = 0  # 0 ms observations only counted
        self.total = 0
        self._min = sys.maxsize
        self.max = 0
        self.i = 0

    @property
    def count(self) -> int:
        return self.n + self.zeros

    @property
    def min(self) -> int:
        return 0 if self.zeros else self._min

    def add(self, v: int) -> None:
        self.n += 1
        self.total += v
        if v > self.max:
            self.max = v
        if v < self._min:
            self._min = v
        i = self.i
        self.ring[i & 1023] = v
        self.i = i + 1

    def quantiles(self, qs: tuple[float, ...]) -> list[int]:
        n = min(self.i, self.RING)
        count = self.count
        if count == 0:
            return [0 for _ in qs]
        zero_share = self.zeros / count
        values = sorted(self.ring[:n])
        out = []
        for q in qs:
            if q < zero_share or n == 0:
                out.append(0)
            else:
                rest = (q - zero_share) / (1.0 - zero_share)
                out.append(values[min(n - 1, int(rest * n))])
        return out

    def avg(self) -> float:
        count = self.count
        return self.total / count if count else 0.0


class ServerMetrics:
    """Every counter and summary, by name; the ones zkpy updates are attributes too."""

    def __init__(self) -> None:
        self.counters = {name: Counter(name) for name in COUNTERS}
        self.summaries = {name: Summary(name, adv) for name, adv in SUMMARIES}
        # learner id -> summary of its ack latency (ZooKeeper's ack_latency SummarySet)
        self.ack_latency: dict[str, Summary] = {}
        c, s = self.counters, self.summaries
        self.readlatency = s["readlatency"]
        self.updatelatency = s["updatelatency"]
        self.fsynctime = s["fsynctime"]
        self.sync_process_time = s["sync_process_time"]
        self.batch_size = s["sync_processor_batch_size"]
        self.propagation_latency = s["propagation_latency"]
        self.proposal_latency = s["proposal_latency"]
        self.snapshottime = s["snapshottime"]
        self.loop_lag = s["zkpy_event_loop_lag_ms"]
        self.bytes_received = c["bytes_received_count"]
        self.inline_syncs = c["zkpy_inline_syncs"]
        self.thread_syncs = c["zkpy_thread_syncs"]
        self.handoffs = c["zkpy_fsync_thread_handoffs"]
        self.proposal_count = c["proposal_count"]
        self.commit_count = c["commit_count"]
        self.learner_proposals = c["learner_proposal_received_count"]
        self.learner_commits = c["learner_commit_received_count"]
        self.outstanding_tls_handshake = 0  # a gauge: server/tls_listener.py keeps it
        self.watchers_by_event = {
            1: s["node_created_watch_count"], 2: s["node_deleted_watch_count"],
            3: s["node_changed_watch_count"], 4: s["node_children_watch_count"],
        }

    def inc(self, name: str, n: int = 1) -> None:
        """For rare events (connections, elections): a dict lookup is fine there."""
        self.counters[name].value += n

    def observe(self, name: str, v: int) -> None:
        self.summaries[name].add(v)

    def reset(self) -> None:
        for c in self.counters.values():
            c.reset()
        for s in self.summaries.values():
            s.reset()


METRICS = ServerMetrics()


def summary_rows(s: Summary, prefix: str = "") -> list[tuple[str, int | float]]:
    """The default provider's rendering: avg_/min_/max_/cnt_/sum_ (+ p50/p95/p99/p999)."""
    name = prefix + s.name
    rows: list[tuple[str, int | float]] = [
        (f"avg_{name}", s.avg()),
        (f"min_{name}", s.min if s.count else 0),
        (f"max_{name}", s.max),
        (f"cnt_{name}", s.count),
        (f"sum_{name}", s.total),
    ]
    if s.advanced:
        p = s.quantiles((0.5, 0.95, 0.99, 0.999))
        rows += [(f"p50_{name}", p[0]), (f"p95_{name}", p[1]), (f"p99_{name}", p[2]),
                 (f"p999_{name}", p[3])]
    return rows


def registry_rows(m: ServerMetrics = METRICS) -> list[tuple[str, int | float]]:
    """Counters then summaries, as ZooKeeper's DefaultMetricsProvider dumps them."""
    rows: list[tuple[str, int | float]] = [(c.name, c.value) for c in m.counters.values()]
    for s in m.summaries.values():
        rows += summary_rows(s)
    for key, s in sorted(m.ack_latency.items()):
        rows += summary_rows(s, f"{key}_")
    return rows
