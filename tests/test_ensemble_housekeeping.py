"""Housekeeping in an ensemble, through a follower: the leader sweeps emptied containers
and expired TTL nodes and expires sessions, exactly as a standalone server does.

The same cases run against a 3-server zkpy ensemble and a 3-server Apache ZooKeeper 3.8
ensemble, both started with the switches an operator gives Java
(`-Dznode.container.checkIntervalMs=1000 -Dzookeeper.extendedTypesEnabled=true`, which
zkpy reads from SERVER_JVMFLAGS).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest

from tests.conformance import rawconn
from tests.ensemble import Ensemble, Member, module_ensemble, wait_until

NONODE = -101
CONTAINER, TTL = 4, 5  # CreateMode flags
JVM_FLAGS = ["-Dznode.container.checkIntervalMs=1000", "-Dzookeeper.extendedTypesEnabled=true"]


@pytest.fixture(scope="module", params=["zkpy", "reference"])
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from module_ensemble([request.param] * 3, tick_time=500, jvm_flags=JVM_FLAGS)


@pytest.fixture(autouse=True)
def serving(ens: Ensemble) -> Iterator[None]:
    yield from ens.each_test()


def a_follower(ens: Ensemble) -> Member:
    modes = ens.wait_ready()
    return next(ens[s] for s, m in modes.items() if m == "follower")


def session_on(ens: Ensemble, m: Member, timeout_ms: int = 10000) -> rawconn.RawConnection:
    c = rawconn.session(m.client_port, timeout_ms)
    ens.raw.append(c)
    return c


def create_container(c: rawconn.RawConnection, path: str) -> int:
    return c.call(rawconn.CREATE_CONTAINER, rawconn.create_body(path, b"", CONTAINER)).err


def create_ttl(c: rawconn.RawConnection, path: str, ttl_ms: int) -> int:
    return c.call(rawconn.CREATE_TTL, rawconn.create_body(path, b"", TTL) + struct.pack(">q", ttl_ms)).err


def test_emptied_containers_and_expired_ttl_nodes_are_removed(ens: Ensemble, base: str) -> None:
    follower = a_follower(ens)
    c = session_on(ens, follower)
    assert c.create(base).err == 0
    emptied, unused = f"{base}/emptied", f"{base}/never-used"
    expired, parent = f"{base}/ttl-expired", f"{base}/ttl-parent"
    assert create_container(c, emptied) == 0 and create_container(c, unused) == 0
    assert c.create(f"{emptied}/child").err == 0 and c.delete(f"{emptied}/child").err == 0
    assert create_ttl(c, expired, 1000) == 0 and create_ttl(c, parent, 1000) == 0
    assert c.create(f"{parent}/child").err == 0

    def gone(path: str) -> bool:
        return c.exists(path).err == NONODE

    wait_until(lambda: gone(emptied) and gone(expired), 20, "the emptied container and the expired "
               f"TTL node to go (seen from follower {follower.sid})")
    # several sweeps later the others are still there: a container that never had a
    # child, and a TTL node with a child
    time.sleep(2.5)
    assert c.exists(unused).err == 0 and c.exists(parent).err == 0
    for m in ens.members.values():
        k = ens.client(m.sid)
        k.sync(base)
        assert sorted(k.get_children(base)) == ["never-used", "ttl-parent"], m


def test_a_session_on_a_follower_expires_and_its_ephemeral_goes(ens: Ensemble, base: str) -> None:
    follower = a_follower(ens)
    setup = ens.client(follower.sid)
    setup.create(base)
    quiet = session_on(ens, follower, 4000)  # never pings again: expires after ~4 s
    assert quiet.create(f"{base}/eph", b"", 1).err == 0
    wait_until(lambda: setup.exists(f"{base}/eph") is None, 20, "the ephemeral of the expired session to go")
    with pytest.raises(rawconn.Closed):
        quiet.get_data(base)


def test_a_new_leader_snapshots_the_tree_it_starts_from(ens: Ensemble, base: str) -> None:
    leader = next(ens[s] for s, m in ens.wait_ready().items() if m == "leader")
    k = ens.client(*(m.sid for m in ens.members.values() if m is not leader))
    k.create(base)
    for i in range(20):
        k.create(f"{base}/n{i}")
    before = leader.zxid()
    assert before is not None
    leader.kill()
    new = wait_until(lambda: next((m for m in ens.members.values() if m is not leader
                                   and m.running and m.mode() == "leader"), None), 60, "a new leader")

    def snapshot_zxids() -> list[int]:
        return [int(p.name.split(".")[1], 16) for p in (new.data_dir / "version-2").glob("snapshot.*")]

    wait_until(lambda: any(z >= before for z in snapshot_zxids()), 20,
               f"a snapshot at or after 0x{before:x} on the new leader {new.sid}",
               on_timeout=lambda: f"snapshots: {[hex(z) for z in snapshot_zxids()]}")
