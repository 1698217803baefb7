"""Mixed ensembles of zkpy and the reference Apache ZooKeeper 3.8 (Debian's package).

Two three-voter ensembles, each shared by the tests of one class, which run in order:

* TestTwoReferenceOneZkpy: servers 1, 2 reference, server 3 zkpy.  zkpy, with the highest
  sid and started first, wins the first election; the reference followers sync from it by
  DIFF and SNAP; then the zkpy leader is killed under load and reference server 2 takes
  over; the restarted zkpy syncs from the reference leader by DIFF, and by SNAP once wiped.
* TestOneReferenceTwoZkpy: servers 1, 2 zkpy, server 3 reference, started first, so the
  reference leads; the zkpy followers sync from it by DIFF and SNAP; the reference leader is
  killed under load and zkpy server 2 takes over; the restarted reference server syncs from
  the zkpy leader by DIFF, and by SNAP once wiped.

How each learner was synchronised is read from both sides' logs: zkpy's "syncing learner N
by X" / "leader N syncs us by X", the reference's "Getting a diff from the leader" /
"Getting a snapshot from leader" / "Sending snapshot ... peer sid: N".

Without the reference these tests skip, or fail when ZKPY_REQUIRE_REFERENCE=1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import four_letter
from tests.ensemble import (
    Ensemble,
    Member,
    assert_contents,
    kill_leader_under_load,
    read_tree,
    require_reference,
    wait_converged,
    wait_until,
    write_many,
    writes_through_every_server,
)

pytestmark = pytest.mark.reference

JAVA_DIFF = "Getting a diff from the leader"
JAVA_SNAP = "Getting a snapshot from leader"


def log_says(m: Member, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: text in m.log_since_start(), timeout, f"'{text}' in the log of {m}",
               on_timeout=lambda: m.log_since_start()[-4000:])


def answers(m: Member) -> bool:
    try:
        return four_letter(m.client_port, "ruok", 1.0) == "imok"
    except OSError:
        return False


def start_with_leader(ens: Ensemble, first: int) -> None:
    """Start `first` (the highest sid) alone until it answers, then the others: FLE
    prefers the highest (epoch, zxid, sid), so with equal empty histories `first` wins."""
    ens[first].start()
    wait_until(lambda: answers(ens[first]), 30, f"{ens[first]} to come up",
               on_timeout=ens[first].log_text)
    ens.start([s for s in ens.members if s != first], timeout=60)


def rejoin(ens: Ensemble, m: Member, leader: Member) -> None:
    m.start()
    modes = ens.wait_ready(timeout=60)
    assert modes[leader.sid] == "leader" and modes[m.sid] == "follower", modes


def leader_line(leader: Member, learner: Member, how: str) -> str:
    """A regex for the leader's log line saying it syncs `learner` by `how`."""
    if leader.kind == "zkpy":
        return f"syncing learner {learner.sid} by {how} "
    if how == "DIFF":
        return rf"Sending DIFF zxid=0x[0-9a-f]+\s+for peer sid: {learner.sid}$"
    return "Sending snapshot last zxid of peer is 0x0,"  # the wiped learner


def count(m: Member, pattern: str) -> int:
    return len(re.findall(pattern, m.log_since_start(), re.M))


def sync_learner(ens: Ensemble, leader: Member, learner: Member, how: str) -> None:
    """Start `learner` and check both sides say it was synchronised by `how`."""
    pattern = leader_line(leader, learner, how)
    seen = count(leader, pattern)
    rejoin(ens, learner, leader)
    wait_until(lambda: count(leader, pattern) > seen, 10, f"/{pattern}/ in the log of {leader}",
               on_timeout=lambda: leader.log_since_start()[-4000:])
    if learner.kind == "zkpy":
        log_says(learner, f"leader {leader.sid} syncs us by {how}")
    else:
        log_says(learner, JAVA_DIFF if how == "DIFF" else JAVA_SNAP)


def synced_by(m: Member) -> str:
    """How the learner `m` was last synchronised, from its own log."""
    text = m.log_since_start()
    if m.kind == "zkpy":
        found = re.findall(r"syncs us by (\w+)", text)
        return found[-1] if found else "?"
    marks = [(text.rfind(s), k) for s, k in ((JAVA_DIFF, "DIFF"), (JAVA_SNAP, "SNAP"),
                                             ("Truncating log to get in sync", "TRUNC+DIFF"))]
    pos, kind = max(marks)
    return kind if pos >= 0 else "?"


def diff_then_snap(ens: Ensemble, leader: Member, learner: Member, base: str) -> None:
    """`learner` misses writes while down and gets a DIFF from `leader`; then, its data dir
    wiped, a SNAP; each time it ends with exactly the leader's data."""
    c = ens.client(leader.sid)
    c.create(base)
    before = write_many(c, base, 20, "before")
    learner.kill()
    missed = write_many(c, base, 30, "missed")
    c.set(base, b"changed while down")
    sync_learner(ens, leader, learner, "DIFF")
    assert_contents(ens, [learner], base, before | missed)
    wait_converged(ens)

    learner.kill()
    learner.wipe()
    wiped = write_many(c, base, 10, "wiped")
    sync_learner(ens, leader, learner, "SNAP")
    assert_contents(ens, [learner], base, before | missed | wiped)
    cl = ens.client(learner.sid)
    cl.sync(base)
    assert cl.get(base)[0] == b"changed while down"
    wait_converged(ens)
    # and it follows new writes through its own client after the snapshot
    cl.create(f"{base}/after-snap", b"s")
    assert_contents(ens, ens.running(), base, before | missed | wiped | {"after-snap": b"s"})


def failover(ens: Ensemble, base: str, new_kind: str) -> None:
    old = ens.leader()
    ens.client(old.sid).create(base)
    survivors = [m for m in ens.voters if m is not old]
    fo = kill_leader_under_load(ens, base, pinned=[m.sid for m in survivors])
    print(f"\nFAILOVER {'+'.join(m.kind for m in ens.members.values())}: {fo.summary()}")
    assert fo.new_leader.kind == new_kind, fo.summary()
    assert fo.elected_s < 15 and fo.first_write_s < 15
    assert_contents(ens, survivors, base, fo.acked, exact=False)
    writes_through_every_server(ens, base + "-after")
    # the old leader rejoins as a follower of the other implementation and converges
    # (DIFF, or TRUNC first if it had logged proposals the new leader never saw)
    rejoin(ens, old, fo.new_leader)
    wait_converged(ens)
    print(f"old leader {old.sid} ({old.kind}) rejoined by {synced_by(old)}")
    trees = {m.sid: read_tree(ens.client(m.sid), base) for m in ens.members.values()}
    assert set(fo.acked) <= set(trees[fo.new_leader.sid])
    for sid, tree in trees.items():
        assert tree == trees[fo.new_leader.sid], f"server {sid} differs from the leader"


@pytest.fixture(scope="class", params=[["reference", "reference", "zkpy"], ["zkpy", "zkpy", "reference"]],
                ids=["2ref+1zkpy", "1ref+2zkpy"])
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    """Server 3 (the odd kind out) leads first; the other kind takes over after a failover."""
    require_reference()
    e = Ensemble(request.param)
    try:
        start_with_leader(e, 3)
        yield e
    finally:
        e.close()


class TestMixedEnsemble:
    @pytest.fixture(autouse=True)
    def running(self, ens: Ensemble) -> Iterator[None]:
        ens.start(timeout=60)
        yield
        ens.close_clients()

    def test_server3_leads_and_writes_go_through_every_server(self, ens: Ensemble, base: str) -> None:
        assert ens.leader() is ens[3], ens.modes()
        writes_through_every_server(ens, base)
        wait_converged(ens)

    def test_follower_of_the_other_kind_syncs_by_diff_and_snap(self, ens: Ensemble, base: str) -> None:
        assert ens.leader() is ens[3], ens.modes()
        diff_then_snap(ens, ens[3], ens[1], base)

    def test_failover_to_the_other_kind(self, ens: Ensemble, base: str) -> None:
        assert ens.leader() is ens[3], ens.modes()
        failover(ens, base, ens[1].kind)

    def test_server3_syncs_from_a_leader_of_the_other_kind_by_diff_and_snap(
            self, ens: Ensemble, base: str) -> None:
        leader = ens.leader()
        assert leader.kind == ens[1].kind, ens.modes()
        writes_through_every_server(ens, base + "-mixed")
        diff_then_snap(ens, leader, ens[3], base)
