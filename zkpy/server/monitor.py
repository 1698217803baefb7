"""What `mntr`, the AdminServer's `monitor` command and the Prometheus endpoint report:
ZooKeeper's dumpMonitorValues, its gauges (read from the current core when rendered)
and the registry's counters and summaries (`metrics.py`)."""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING

from zkpy import ZK_COMPAT_VERSION, __version__
from zkpy.server.metrics import METRICS, ServerMetrics, registry_rows

if TYPE_CHECKING:
    from zkpy.server.core import ZooKeeperServer

Value = int | float | str


def version_line() -> str:
    return f"{ZK_COMPAT_VERSION}-zkpy-{__version__}, built on 2026-11-22 00:00 UTC"


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def header_rows(server: ZooKeeperServer) -> list[tuple[str, Value]]:
    """ZooKeeper's dumpMonitorValues: version, server_state (+ peer_state in an ensemble)."""
    rows: list[tuple[str, Value]] = [("version", version_line()), ("server_state", server.mode)]
    zab = server.zab
    if zab is not None:
        state = {"leader": "leading", "follower": "following",
                 "observer": "observing"}.get(zab.role, zab.role)
        rows.append(("peer_state", f"{state} - broadcast"))
    return rows


def gauge_rows(server: ZooKeeperServer) -> list[tuple[str, Value]]:
    """The gauges ZooKeeperServer (and its quorum subclasses) register, same meanings."""
    st = server.stats
    tree = server.tree
    rows: list[tuple[str, Value]] = [
        ("avg_latency", round(st.avg, 4)),
        ("max_latency", int(st.max)),
        ("min_latency", int(st.min)),
        ("packets_received", st.received),
        ("packets_sent", st.sent),
        ("num_alive_connections", len(server.connections)),
        ("outstanding_requests", len(server.queue) + server.waiting),
        ("uptime", int((time.monotonic() - st.started) * 1000)),
        ("znode_count", tree.node_count()),
        ("watch_count", tree.watches.count()),
        ("ephemerals_count", sum(len(s) for s in tree.ephemerals.values())),
        ("approximate_data_size", tree.approximate_data_size()),
        ("global_sessions", len(server.sessions.sessions)),
        ("local_sessions", len(server.local_tracker.sessions) if server.local_tracker else 0),
        ("open_file_descriptor_count", open_fds()),
        ("max_file_descriptor_count", resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
        ("connection_drop_probability", 0.0),
        # reply sizes are not tracked (a len() per reply); -1 is ZooKeeper's "none yet"
        ("last_client_response_size", -1),
        ("max_client_response_size", -1),
        ("min_client_response_size", -1),
        ("outstanding_tls_handshake", METRICS.outstanding_tls_handshake),
        ("auth_failed_count", st.auth_failed),
        ("non_mtls_remote_conn_count", 0),
        ("non_mtls_local_conn_count", 0),
    ]
    return rows + _quorum_gauges(server)


def _quorum_gauges(server: ZooKeeperServer) -> list[tuple[str, Value]]:
    zab = server.zab
    if zab is None:
        return []
    rows: list[tuple[str, Value]] = []
    voters = getattr(zab, "voters", None)
    if voters:
        rows.append(("quorum_size", len(voters)))
    leader = getattr(zab, "leader", None)
    if zab.role == "leader" and leader is not None:
        learners = list(leader.learners.values())
        synced = [ls for ls in learners if ls.phase.value == "broadcast"]
        rows += [
            ("learners", len(learners)),
            ("synced_followers", sum(1 for ls in synced if not ls.observer)),
            ("synced_non_voting_followers", 0),
            ("synced_observers", sum(1 for ls in synced if ls.observer)),
            ("pending_syncs", len(leader.pending_syncs)),
            ("leader_uptime", int((time.monotonic() - server.stats.started) * 1000)),
            ("last_proposal_size", server.proposal_sizes[0]),
            ("max_proposal_size", server.proposal_sizes[1]),
            ("min_proposal_size", server.proposal_sizes[2]),
        ]
    elif zab.role == "follower":
        rows.append(("synced_observers", 0))
    return rows


def monitor_rows(server: ZooKeeperServer, m: ServerMetrics = METRICS) -> list[tuple[str, Value]]:
    """Everything `monitor`/`mntr` report, in ZooKeeper's order."""
    return header_rows(server) + gauge_rows(server) + list(registry_rows(m))


def format_value(v: Value) -> str:
    """As Java's String.valueOf: 5.25, 10.0, 3."""
    return repr(v) if isinstance(v, float) else str(v)
