"""zookeeper.enforceQuota=true: hard quotas refuse creates and setData with QUOTAEXCEEDED
(-125), soft ones only log; run against zkpy and the reference started with the flag."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, QuotaExceededError

from tests.conftest import KINDS, ServerProcess, start_server


@pytest.fixture(scope="module", params=KINDS)
def qzk(request: pytest.FixtureRequest) -> Iterator[tuple[KazooClient, ServerProcess]]:
    srv = start_server(request.param, {}, ["-Dzookeeper.enforceQuota=true"])
    c = KazooClient(hosts=srv.hosts, timeout=10)
    c.start(timeout=15)
    yield c, srv
    c.stop()
    c.close()
    srv.stop()
    shutil.rmtree(srv.workdir, ignore_errors=True)


_n = iter(range(1_000_000))


def _quota(zk: KazooClient, path: str, limits: str, data: bytes = b"") -> None:
    """What zkCli's setquota leaves behind: the node, its limits and its stats."""
    zk.create(path, data, makepath=True)
    zk.create(f"/zookeeper/quota{path}/zookeeper_limits", limits.encode(), makepath=True)
    zk.create(f"/zookeeper/quota{path}/zookeeper_stats", b"count=0,bytes=0")


def _base(name: str) -> str:
    return f"/q-{name}-{os.getpid()}-{next(_n)}"


def test_hard_count_limit(qzk: tuple[KazooClient, ServerProcess]) -> None:
    zk, _ = qzk
    base = _base("count")
    _quota(zk, base, "count=-1,bytes=-1,countHardLimit=3,byteHardLimit=-1")
    zk.create(f"{base}/a")
    zk.create(f"{base}/b")  # the quota'd node counts: 3 of 3
    with pytest.raises(QuotaExceededError):
        zk.create(f"{base}/c")
    with pytest.raises(QuotaExceededError):
        zk.create(f"{base}/a/deeper")
    zk.set(f"{base}/a", b"data is not counted")  # no byte limit
    zk.delete(f"{base}/b")
    zk.create(f"{base}/c")
    tx = zk.transaction()  # a multi fails as a whole
    tx.set_data(f"{base}/a", b"")
    tx.create(f"{base}/y")
    results = tx.commit()
    assert isinstance(results[1], QuotaExceededError), results
    assert zk.get(f"{base}/a")[0] == b"data is not counted"


def test_hard_byte_limit_and_check_order(qzk: tuple[KazooClient, ServerProcess]) -> None:
    zk, _ = qzk
    base = _base("bytes")
    _quota(zk, base, "count=-1,bytes=-1,countHardLimit=-1,byteHardLimit=5", b"ab")
    zk.create(f"{base}/a", b"abc")  # 5 of 5
    with pytest.raises(QuotaExceededError):
        zk.create(f"{base}/b", b"x")
    zk.create(f"{base}/b")  # empty data: no byte change, no count limit
    with pytest.raises(QuotaExceededError):
        zk.set(f"{base}/a", b"abcd")
    with pytest.raises(QuotaExceededError):  # checked before the version
        zk.set(f"{base}/a", b"abcd", version=42)
    with pytest.raises(BadVersionError):
        zk.set(f"{base}/a", b"a", version=42)
    zk.set(f"{base}/a", b"a")  # shrinking is fine
    zk.set(base, b"abcd")  # 4 + 1 = 5
    assert zk.get(f"/zookeeper/quota{base}/zookeeper_stats")[0] == b"count=3,bytes=5"


def test_soft_limits_only_warn(qzk: tuple[KazooClient, ServerProcess]) -> None:
    zk, _ = qzk
    base = _base("soft")
    _quota(zk, base, "count=1,bytes=1")
    zk.create(f"{base}/a", b"too much")
    zk.set(f"{base}/a", b"still too much")
    assert zk.get(f"/zookeeper/quota{base}/zookeeper_stats")[0] == b"count=2,bytes=14"


def test_longest_prefix_decides(qzk: tuple[KazooClient, ServerProcess]) -> None:
    zk, _ = qzk
    base = _base("nested")
    _quota(zk, base, "count=-1,bytes=-1,countHardLimit=2,byteHardLimit=-1")
    _quota(zk, f"{base}/inner", "count=-1,bytes=-1,countHardLimit=10,byteHardLimit=-1")
    zk.create(f"{base}/inner/x")  # only the inner quota applies below /inner
    zk.create(f"{base}/inner/y")
    with pytest.raises(QuotaExceededError):
        zk.create(f"{base}/other")


def test_not_enforced_without_the_flag(zk, base) -> None:  # type: ignore[no-untyped-def]
    zk.create(f"/zookeeper/quota{base}/zookeeper_limits",
              b"count=-1,bytes=-1,countHardLimit=1,byteHardLimit=1", makepath=True)
    zk.create(f"/zookeeper/quota{base}/zookeeper_stats", b"count=0,bytes=0")
    try:
        zk.create(f"{base}/a", b"abc")
        zk.set(f"{base}/a", b"abcdef")
    finally:
        zk.delete(f"/zookeeper/quota{base}", recursive=True)
