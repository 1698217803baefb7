"""Quota statistics nodes are kept up to date by the server, as zkCli's setquota expects."""

from __future__ import annotations


def _stats(zk, base: str) -> bytes:
    return zk.get(f"/zookeeper/quota{base}/zookeeper_stats")[0]


def test_stats_follow_creates_deletes_and_data_changes(zk, base):
    zk.create(f"{base}/a", b"12345")
    zk.create(f"/zookeeper/quota{base}/zookeeper_limits", b"count=10,bytes=100", makepath=True)
    zk.create(f"/zookeeper/quota{base}/zookeeper_stats", b"count=0,bytes=0")
    try:
        # the quota'd node itself counts
        assert _stats(zk, base) == b"count=2,bytes=5"
        zk.create(f"{base}/b", b"xy")
        assert _stats(zk, base) == b"count=3,bytes=7"
        zk.set(f"{base}/a", b"1")
        assert _stats(zk, base) == b"count=3,bytes=3"
        zk.delete(f"{base}/b")
        zk.create(f"{base}/c/d", b"zzz", makepath=True)
        data, stat = zk.get(f"/zookeeper/quota{base}/zookeeper_stats")
        assert data == b"count=4,bytes=4"
        # rewritten in memory: no txn, so the stats node's own version never moves
        assert stat.version == 0 and stat.mzxid == stat.czxid
    finally:
        zk.delete(f"/zookeeper/quota{base}", recursive=True)


def test_nodes_outside_the_quota_do_not_count(zk, base):
    zk.create(f"{base}/in", b"")
    zk.create(f"{base}/out", b"")
    zk.create(f"/zookeeper/quota{base}/in/zookeeper_limits", b"count=5,bytes=-1", makepath=True)
    zk.create(f"/zookeeper/quota{base}/in/zookeeper_stats", b"count=0,bytes=0")
    try:
        zk.create(f"{base}/out/x", b"abc")
        zk.create(f"{base}/in/x", b"abcd")
        assert zk.get(f"/zookeeper/quota{base}/in/zookeeper_stats")[0] == b"count=2,bytes=4"
    finally:
        zk.delete(f"/zookeeper/quota{base}", recursive=True)
