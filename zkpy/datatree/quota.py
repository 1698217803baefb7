"""Quota statistics: /zookeeper/quota/<path>/zookeeper_limits and zookeeper_stats.

As in the reference, a `zookeeper_limits` node under /zookeeper/quota registers <path>
as quota'd, creating `zookeeper_stats` computes the subtree's count and bytes, and every
create, delete or setData below a quota'd path rewrites the stats node's data in memory
(no txn, no Stat change).  With zookeeper.enforceQuota=true, `check` refuses a create or
setData that would take a quota'd subtree past a hard limit (ZooKeeperServer.checkQuota).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from zkpy.jute.constants import Err, KeeperError

if TYPE_CHECKING:
    from zkpy.datatree.tree import DataTree, Znode

log = logging.getLogger("zkpy.quota")

QUOTA_ROOT = "/zookeeper/quota"
LIMITS = "zookeeper_limits"
STATS = "zookeeper_stats"


def parse_stats(data: bytes | None) -> dict[str, int]:
    """'count=1,bytes=-1=;byteHardLimit=5' -> {'count': 1, 'bytes': -1, 'byteHardLimit': 5}."""
    out: dict[str, int] = {}
    for part in re.split(r"[,;]+", (data or b"").decode("utf-8", "replace")):
        kv = [p for p in part.split("=") if p != ""]
        if len(kv) >= 2:
            try:
                out[kv[0]] = int(kv[1])
            except ValueError:
                continue
    return out


class QuotaTracker:
    """The quota'd paths of a tree and the upkeep of their stats nodes."""

    def __init__(self, tree: DataTree) -> None:
        self.tree = tree
        self.paths: set[str] = set()

    def _longest_prefix(self, path: str) -> str | None:
        p = path
        while True:
            if p in self.paths:
                return p
            if p == "/" or not p:
                return None
            p = p[: p.rfind("/")] or "/"

    def check(self, path: str, bytes_diff: int, count_diff: int) -> None:
        """enforceQuota: QUOTAEXCEEDED if the change would take path's quota'd subtree
        (longest quota'd prefix) past a hard limit; past a soft limit only a warning.

        As ZooKeeper, the limits and the current stats are read from the applied tree
        (not from writes still being prepared); a soft `count`/`bytes` limit is used
        only when no hard one is set for that measure.
        """
        target = self._longest_prefix(path) if self.paths else None
        if target is None:
            return
        nodes = self.tree.nodes
        limits_node = nodes.get(f"{QUOTA_ROOT}{target}/{LIMITS}")
        if limits_node is None:
            return
        limits = parse_stats(limits_node.data)
        checks = []
        for diff, soft_key, hard_key, name in ((count_diff, "count", "countHardLimit", "count"),
                                               (bytes_diff, "bytes", "byteHardLimit", "bytes")):
            soft, hard = limits.get(soft_key, -1), limits.get(hard_key, -1)
            if diff != 0 and (soft > -1 or hard > -1):
                checks.append((diff, name, hard if hard > -1 else soft, hard > -1))
        if not checks:
            return
        stats_node = self._stats_node(target)
        if stats_node is None:
            return
        current = parse_stats(stats_node.data)
        for diff, name, limit, is_hard in checks:
            new = current.get(name, -1) + diff
            if new > limit:
                kind = "hard" if is_hard else "soft"
                label = "CountLimit" if name == "count" else "ByteLimit"
                log.warning("Quota exceeded: %s [current %s=%d, %s%s=%d]", target, name, new,
                            kind, label, limit)
                if is_hard:
                    raise KeeperError(Err.QUOTAEXCEEDED)

    def created(self, path: str, data_len: int) -> None:
        if path.startswith(QUOTA_ROOT + "/"):
            parent, name = path.rsplit("/", 1)
            target = parent[len(QUOTA_ROOT):] or "/"
            if name == LIMITS and target != "/":
                self.paths.add(target)
            elif name == STATS:
                self.recount(target)
            return
        if self.paths:
            self._update(path, 1, data_len)

    def deleted(self, path: str, data_len: int) -> None:
        if path.startswith(QUOTA_ROOT + "/"):
            parent, name = path.rsplit("/", 1)
            if name == LIMITS:
                self.paths.discard(parent[len(QUOTA_ROOT):] or "/")
            return
        if self.paths:
            self._update(path, -1, -data_len)

    def data_changed(self, path: str, delta: int) -> None:
        if self.paths and delta and not path.startswith(QUOTA_ROOT + "/"):
            self._update(path, 0, delta)

    def _stats_node(self, target: str) -> Znode | None:
        return self.tree.nodes.get(f"{QUOTA_ROOT}{target}/{STATS}")

    def _update(self, path: str, count: int, size: int) -> None:
        target = self._longest_prefix(path)
        if target is None:
            return
        node = self._stats_node(target)
        if node is None:
            return
        st = parse_stats(node.data)
        node.data = _format(st.get("count", 0) + count, st.get("bytes", 0) + size)

    def recount(self, target: str) -> None:
        node = self._stats_node(target)
        root = self.tree.nodes.get(target)
        if node is None or root is None:
            return
        count, size = 0, 0
        stack = [target]
        nodes = self.tree.nodes
        while stack:
            p = stack.pop()
            n = nodes.get(p)
            if n is None:
                continue
            count += 1
            size += len(n.data) if n.data else 0
            base = "" if p == "/" else p
            stack.extend(f"{base}/{c}" for c in n.children)
        node.data = _format(count, size)

    def rebuild(self) -> None:
        """Find every quota'd path (after loading a snapshot) and recount their stats.

        Walks the /zookeeper/quota subtree only: a scan of every path costs about
        0.1 s per million znodes at startup.
        """
        nodes = self.tree.nodes
        self.paths = set()
        stack = [QUOTA_ROOT]
        while stack:
            p = stack.pop()
            node = nodes.get(p)
            if node is None:
                continue
            for name in node.children:
                if name == LIMITS and p != QUOTA_ROOT:
                    self.paths.add(p[len(QUOTA_ROOT):])
                stack.append(f"{p}/{name}")
        for target in self.paths:
            self.recount(target)


def _format(count: int, size: int) -> bytes:
    return f"count={count},bytes={size}".encode()
