"""Local sessions (`localSessionsEnabled=true`), through a follower.

The same cases run against a 3-server zkpy ensemble and a 3-server Apache ZooKeeper 3.8
ensemble with the same zoo.cfg: sessions that only read leave the zxid alone; the first
ephemeral create upgrades the session to a global one (`localSessionsUpgradingEnabled`)
or fails with EPHEMERALONLOCALSESSION; a local session expires on the member that holds
it; another member does not know it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.conformance import rawconn
from tests.ensemble import Ensemble, Member, module_ensemble, wait_until

EPHEMERAL = 1
EPHEMERALONLOCALSESSION = -120


@pytest.fixture(scope="module", params=[("zkpy", True), ("reference", True), ("zkpy", False),
                                        ("reference", False)],
                ids=["zkpy-upgrading", "reference-upgrading", "zkpy-no-upgrade", "reference-no-upgrade"])
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    kind, upgrading = request.param
    for e in module_ensemble([kind] * 3, tick_time=500, extra={
            "localSessionsEnabled": "true",
            "localSessionsUpgradingEnabled": "true" if upgrading else "false"}):
        e.upgrading = upgrading  # type: ignore[attr-defined]
        yield e


@pytest.fixture(autouse=True)
def serving(ens: Ensemble) -> Iterator[None]:
    yield from ens.each_test()


def roles(ens: Ensemble) -> tuple[Member, list[Member]]:
    modes = ens.wait_ready()
    leader = next(ens[s] for s, m in modes.items() if m == "leader")
    return leader, [ens[s] for s, m in modes.items() if m == "follower"]


def session_on(ens: Ensemble, m: Member, timeout_ms: int = 10000) -> rawconn.RawConnection:
    c = rawconn.session(m.client_port, timeout_ms)
    ens.raw.append(c)
    return c


def test_sessions_that_only_read_log_nothing(ens: Ensemble, base: str) -> None:
    leader, followers = roles(ens)
    setup = session_on(ens, leader)
    assert setup.create(base, b"x").err == 0
    before = leader.zxid()
    readers = [session_on(ens, followers[0]) for _ in range(5)]
    for r in readers:
        assert r.get_data(base).err == 0 and r.exists(f"{base}/none").err == -101
        assert r.close_session().err == 0
    assert leader.zxid() == before
    assert followers[0].mntr().get("zk_local_sessions") is not None


def test_first_ephemeral_upgrades_the_session_or_is_refused(ens: Ensemble, base: str) -> None:
    leader, followers = roles(ens)
    c = session_on(ens, followers[0])
    assert c.create(base).err == 0  # a local session may make plain writes
    r = c.create(f"{base}/eph", b"", EPHEMERAL)
    if not ens.upgrading:  # type: ignore[attr-defined]
        assert r.err == EPHEMERALONLOCALSESSION
        assert c.create(f"{base}/plain").err == 0  # the session goes on
        for m in ens.members.values():
            k = ens.client(m.sid)
            k.sync(base)
            assert k.exists(f"{base}/eph") is None, m
        return
    assert r.err == 0
    for m in ens.members.values():
        k = ens.client(m.sid)
        k.sync(base)
        stat = k.exists(f"{base}/eph")
        assert stat is not None and stat.ephemeralOwner == c.session_id, m
    # now a global session: it can move to another server with its ephemeral
    sid, passwd, seen = c.session_id, c.passwd, c.last_zxid
    c.close()
    moved = rawconn.RawConnection(followers[1].client_port)
    ens.raw.append(moved)
    negotiated, got, _ = moved.handshake(10000, session_id=sid, passwd=passwd, last_zxid=seen)
    assert got == sid and negotiated > 0
    assert moved.close_session().err == 0
    for m in ens.members.values():
        k = ens.client(m.sid)
        k.sync(base)
        assert k.exists(f"{base}/eph") is None, m


def test_a_local_session_is_unknown_elsewhere_and_expires_where_it_lives(ens: Ensemble, base: str) -> None:
    leader, followers = roles(ens)
    before = leader.zxid()
    quiet = session_on(ens, followers[0], 4000)  # never pings again
    other = rawconn.RawConnection(followers[1].client_port)
    ens.raw.append(other)
    hello = struct.pack(">iqiq", 0, 0, 4000, quiet.session_id) + rawconn.buffer(quiet.passwd)
    other.send_frame(hello + b"\0")
    resp = other.read_frame()
    _proto, negotiated, _sid = struct.unpack_from(">iiq", resp)
    assert negotiated == 0  # expired: the other follower and the leader do not know it
    def closed() -> bool:
        try:
            quiet.wait_closed(0.5)
            return True
        except TimeoutError:
            return False

    wait_until(closed, 20, "the quiet local session to be expired")
    assert leader.zxid() == before
