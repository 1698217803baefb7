"""Apache ZooKeeper's known data-loss bugs, replayed against zkpy's ZAB (docs/zookeeper-bugs.md).

One test per ZooKeeper issue.  Each runs the issue's fault schedule
(tests/sim_zk_regressions.py) on the deterministic simulator, which drives the shipped
cores and executors, over SEEDS seeds (the schedule is fixed; the seed moves message and
disk delays), and must end with every member holding exactly the committed history, on
disk too.  Where the ZooKeeper bug can be put back into zkpy's code as a mutant, a second
run shows the schedule catches it: a schedule that passes with the bug in would prove
nothing.  ZOOKEEPER-4712 also has a test of the real group commit and txn log, and
ZOOKEEPER-2832's schedule also runs with real processes (zkpy, and Apache ZooKeeper where
installed; about 20 s each).  A failure names the issue and seed, with the last events.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conformance import rawconn
from tests.ensemble import Ensemble, Member, assert_contents, wait_converged, wait_until
from tests.sim_zab_world import Disk, InvariantViolation, StartupRefused
from tests.sim_zk_regressions import run
from tests.slowsync import SlowSync
from zkpy.jute.txns import SetDataTxn, TxnHeader, encode_txn
from zkpy.persistence.logscan import iter_log
from zkpy.persistence.txnlog import TxnLog
from zkpy.server.groupcommit import GroupCommit
from zkpy.zab import actions as A
from zkpy.zab.epochs import EpochError, load_epochs, write_epoch
from zkpy.zab.executors import LearnerExecutor
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketType, QuorumPacket

SEEDS = range(12)


def survives(issue: int) -> None:
    for seed in SEEDS:
        try:
            run(issue, seed)
        except InvariantViolation as e:  # pragma: no cover - the message is the reproduction
            pytest.fail(f"ZOOKEEPER-{issue}, seed {seed}: {e}")


def caught(issue: int) -> int:
    """How many seeds of the issue's schedule fail (with a mutant in place)."""
    failed = 0
    for seed in SEEDS:
        try:
            run(issue, seed)
        except InvariantViolation:
            failed += 1
    return failed


# ---- mutants: the ZooKeeper bug, put back into zkpy's cores -------------------------------


def diff_over_a_stray_tail(mp: pytest.MonkeyPatch) -> None:
    """ZooKeeper before 1154: a learner whose last zxid lies inside the leader's history
    gets a DIFF of what follows it, even when that zxid is one the leader never had."""
    sync = Leader._sync

    def _sync(self: Leader, ls: Any) -> list[A.Action]:
        out = sync(self, ls)
        head, peer = out[0], ls.last_zxid
        if not (isinstance(head, A.Send) and head.packet.type == PacketType.TRUNC
                and peer < self.last_committed):
            return out
        rest = [a for a in out[1:] if not (isinstance(a, A.Send) and a.packet.zxid <= peer
                                           and a.packet.type in (PacketType.PROPOSAL, PacketType.COMMIT))]
        return [A.Send(head.to, QuorumPacket(PacketType.DIFF, self.last_committed)), *rest]

    mp.setattr(Leader, "_sync", _sync)


def empty_diff_below_the_last_zxid(mp: pytest.MonkeyPatch) -> None:
    """A leader that compares the learner's zxid with its own last zxid rather than with its
    log: a learner below it, with nothing in the history after it, gets an empty DIFF and
    keeps whatever it logged that the leader never had."""
    sync = Leader._sync

    def _sync(self: Leader, ls: Any) -> list[A.Action]:
        out = sync(self, ls)
        peer = ls.last_zxid
        if isinstance(out[0], A.SendSnapshot) and peer < self.last_committed \
                and not any(z > peer for z, _ in self.history):
            return [A.Send(out[0].to, QuorumPacket(PacketType.DIFF, self.last_committed)), *out[1:]]
        return out

    mp.setattr(Leader, "_sync", _sync)


def keep_an_unsaved_snap_tree(mp: pytest.MonkeyPatch) -> None:
    """ZooKeeper before 3642: the tree a SNAP loaded is kept when the sync ends before
    NEWLEADER's snapshot, so the next sync DIFFs from a state the disk does not hold."""
    mp.setattr(LearnerExecutor, "kept_tree", lambda self: self.pipeline.tree)


def newleader(mp: pytest.MonkeyPatch, edit: Callable[[list[A.Action]], list[A.Action]]) -> None:
    on_newleader = Learner._on_newleader
    mp.setattr(Learner, "_on_newleader", lambda self, pkt: edit(on_newleader(self, pkt)))


def unsynced(out: list[A.Action]) -> list[A.Action]:
    return [A.LogTxns(a.payloads) if isinstance(a, A.LogTxns) else a for a in out]


def ack_before_durable(mp: pytest.MonkeyPatch) -> None:
    """ZooKeeper before 3911 / 4646: the synced txns are handed to the log asynchronously
    and NEWLEADER is acked before they are on disk."""
    newleader(mp, unsynced)


def epoch_before_txns(mp: pytest.MonkeyPatch) -> None:
    """ZooKeeper before 4643: currentEpoch is written first, the synced txns later."""
    def edit(out: list[A.Action]) -> list[A.Action]:
        epoch = [a for a in out if isinstance(a, A.PersistCurrentEpoch)]
        return epoch + unsynced([a for a in out if not isinstance(a, A.PersistCurrentEpoch)])
    newleader(mp, edit)


def history_without_synced_txns(mp: pytest.MonkeyPatch) -> None:
    """ZooKeeper 3.9.3 (4925): txns a learner received in a sync are applied but not put
    in the committed log it later DIFFs others from, leaving a hole in its history."""
    synced: set[int] = set()
    on_newleader, init = Learner._on_newleader, Leader.__init__

    def remember(self: Learner, pkt: QuorumPacket) -> list[A.Action]:
        synced.update(z for z, _ in self.held)
        return on_newleader(self, pkt)

    def leader_init(self: Leader, *args: Any, **kw: Any) -> None:
        args = (*args[:5], [e for e in args[5] if e[0] not in synced], *args[6:])
        init(self, *args, **kw)

    mp.setattr(Learner, "_on_newleader", remember)
    mp.setattr(Leader, "__init__", leader_init)


# ---- one test per issue ----------------------------------------------------------------------


def test_zookeeper_1154_highest_zxid_absent_from_the_election(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-1154 (with 1156): the old leader logged a txn nobody else has and crashed;
    the others ran a new epoch; on its return it must be truncated, not DIFFed on top."""
    survives(1154)
    diff_over_a_stray_tail(monkeypatch)
    assert caught(1154) == len(SEEDS)


def test_zookeeper_1653_crash_between_newleader_snapshot_and_current_epoch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ZOOKEEPER-1653: a follower crashes after NEWLEADER's snapshot, before currentEpoch;
    it must start again with its data.  Every start-up epoch check the simulator's disk
    makes is also run through zkpy.zab.epochs.load_epochs on real files: same answer."""
    fake = Disk.load_epochs
    checked: list[tuple[int | None, int | None, int]] = []

    def both(self: Disk, last_zxid: int) -> tuple[int, int]:
        d = tmp_path / f"v{len(checked)}"
        d.mkdir()
        for name, value in (("currentEpoch", self.current), ("acceptedEpoch", self.accepted)):
            if value is not None:
                write_epoch(d, name, value)
        checked.append((self.current, self.accepted, last_zxid))
        try:
            real: tuple[int, int] | None = load_epochs(d, last_zxid)
        except EpochError:
            real = None
        try:
            sim: tuple[int, int] | None = fake(self, last_zxid)
        except StartupRefused:
            sim = None
        assert sim == real, (checked[-1], sim, real)
        if sim is None:
            raise StartupRefused("refused")
        return sim

    monkeypatch.setattr(Disk, "load_epochs", both)
    survives(1653)
    assert any(cur is not None and z >> 32 > cur for cur, _acc, z in checked), \
        "no start-up with data newer than currentEpoch"


def test_zookeeper_2832_restarts_in_pairs_leave_no_divergence(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-2832: all servers stop and restart two at a time; a stray txn logged by a
    leader alone must not survive into a tree the others do not have."""
    survives(2832)
    empty_diff_below_the_last_zxid(monkeypatch)
    assert caught(2832) == len(SEEDS)


def proc_state(m: Member) -> str:
    assert m.proc is not None
    return open(f"/proc/{m.proc.pid}/stat").read().rsplit(")", 1)[1].split()[0]


def logged_zxids(m: Member) -> list[int]:
    return [h.zxid for h, _ in iter_log(m.data_dir / "version-2", 0)]


@pytest.mark.parametrize("kind", ["zkpy", "reference"])
def test_zookeeper_2832_with_real_servers(kind: str) -> None:
    """ZOOKEEPER-2832's schedule with real processes, disks and snapshots: X leads Y; Y is
    frozen and X logs a create no one acks, then both die; Y and C run an epoch (Y leads)
    and die; X and Y come back, then C.  The unacknowledged create must be gone from every
    member and every member must hold the same tree, also after all restart from disk."""
    with Ensemble([kind] * 3, tick_time=500, init_limit=10, sync_limit=5) as ens:
        a, b, c = ens[1], ens[2], ens[3]
        ens.start(timeout=90)
        setup = ens.client()
        setup.create("/d")
        expected = {"k0": b"0", "k1": b"1"}
        for name, data in expected.items():
            setup.create(f"/d/{name}", data)
        ens.close_clients()
        for m in (a, b, c):
            m.kill()
        ens.start([a.sid, b.sid], wait=False)
        modes = ens.wait_ready([a.sid, b.sid], timeout=90)
        x = ens[next(s for s, mode in modes.items() if mode == "leader")]
        y = b if x is a else a
        writer = rawconn.session(x.client_port, 10000)  # a session made while there is a quorum
        ens.raw.append(writer)
        before = max(logged_zxids(x))
        y.pause()  # the proposal sits unread in Y's socket buffer and dies with it
        wait_until(lambda: proc_state(y) == "T", 5, "Y to stop")
        writer.send(rawconn.CREATE, rawconn.create_body("/d/stray", b"never acknowledged"))
        wait_until(lambda: max(logged_zxids(x)) > before, 5, "X to log the stray create")
        x.kill()
        y.kill()
        snapshots = set((y.data_dir / "version-2").glob("snapshot.*"))
        ens.start([y.sid, c.sid], wait=False)
        modes = ens.wait_ready([y.sid, c.sid], timeout=90)
        assert modes[y.sid] == "leader", modes  # its currentEpoch is the newer one
        wait_until(lambda: set((y.data_dir / "version-2").glob("snapshot.*")) - snapshots,
                   10, "Y's snapshot of its epoch's start")
        y.kill()
        c.kill()
        ens.start([x.sid, y.sid], wait=False)
        ens.wait_ready([x.sid, y.sid], timeout=90)
        c2 = ens.client(x.sid, y.sid)
        c2.create("/d/after", b"new epoch")
        expected["after"] = b"new epoch"
        ens.close_clients()
        c.start()
        ens.wait_ready(timeout=90)
        wait_converged(ens, timeout=30)
        assert_contents(ens, ens.running(), "/d", expected)
        for m in (a, b, c):
            m.kill()
        ens.start(timeout=90)
        wait_converged(ens, timeout=30)
        assert_contents(ens, ens.running(), "/d", expected)


def test_zookeeper_3642_diff_after_a_partial_snap_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-3642: the leader goes away after a SNAP was loaded, before NEWLEADER's
    snapshot; the next sync must start from the disk's state, not the unsaved tree."""
    survives(3642)
    keep_an_unsaved_snap_tree(monkeypatch)
    assert caught(3642) == len(SEEDS)


def test_zookeeper_3911_diff_sync_with_an_uncommitted_proposal(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-3911: a proposal outstanding during a DIFF sync commits with the new
    follower's ack; the follower must have logged it before acking NEWLEADER."""
    survives(3911)
    ack_before_durable(monkeypatch)
    assert caught(3911) == len(SEEDS)


def test_zookeeper_4643_crash_after_current_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-4643: a follower crashes right after writing the new currentEpoch; its
    DIFF txns must already be on disk, or it leads later without them."""
    survives(4643)
    epoch_before_txns(monkeypatch)
    assert caught(4643) == len(SEEDS)


def test_zookeeper_4646_crash_after_the_newleader_ack(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-4646: a follower crashes right after its NEWLEADER ACK; the DIFF txns must
    have been durable before the ACK."""
    survives(4646)
    ack_before_durable(monkeypatch)
    assert caught(4646) == len(SEEDS)


def test_zookeeper_4785_role_end_right_after_the_newleader_ack() -> None:
    """ZOOKEEPER-4785: the leader dies as it gets a follower's NEWLEADER ACK; the follower
    ends its role without a crash and, with the newest currentEpoch, leads: the DIFF txns
    must be in the tree it kept and in its log.  (No mutant: zkpy's role end closes the
    log, so an unsynced append still reaches the disk; ZooKeeper's race needed its
    asynchronous sync processor.)"""
    survives(4785)


def test_zookeeper_4712_a_role_end_with_a_sync_in_flight() -> None:
    """ZOOKEEPER-4712: a follower's role ends while its logged proposals are still being
    synced; the next epoch truncates them.  The old role's late sync must change nothing."""
    survives(4712)


async def test_zookeeper_4712_a_retired_group_commit_reports_nothing(tmp_path: Path) -> None:
    """The real pieces behind a role end (peer._retire_core): GroupCommit.close() while a
    sync runs in the fsync thread lets it finish but never reports it to the retired
    role (no ACK of the old role's proposals), TxnLog.close() leaves every appended txn
    on disk, and a TRUNC by the next role's log is not undone by anything the old one did."""
    def txn(zxid: int) -> tuple[TxnHeader, bytes]:
        hdr = TxnHeader(1, zxid & 0xFFFFFFFF, zxid, 0, 5)
        return hdr, encode_txn(SetDataTxn("/n", b"%d" % zxid, -1))

    log_dir = tmp_path / "version-2"
    log_dir.mkdir()
    old = TxnLog(log_dir, 64 * 1024, True)
    started, release = threading.Event(), threading.Event()
    stalled = SlowSync(old, lambda: (started.set(), release.wait(5)))
    reported: list[int] = []
    group = GroupCommit(stalled, 0, 1000, reported.append, lambda e: reported.append(-1), 0)
    group.loop = asyncio.get_running_loop()
    zxids = [(1 << 32) | i for i in (1, 2, 3)]
    for z in zxids:
        old.append(*txn(z))
    group.appended = zxids[-1]
    group.request()
    assert await asyncio.to_thread(started.wait, 5)
    threading.Timer(0.05, release.set).start()
    group.close()  # the role ends: the sync in flight finishes in the thread
    old.close()
    for _ in range(3):
        await asyncio.sleep(0)  # the thread's report reaches the loop
    assert reported == []
    assert [h.zxid for h, _ in iter_log(log_dir, 0)] == zxids
    new = TxnLog(log_dir, 64 * 1024, True)  # the next role truncates the stray proposals
    new.truncate(zxids[0])
    new.append(*txn(2 << 32 | 1))
    new.sync()
    new.close()
    assert [h.zxid for h, _ in iter_log(log_dir, 0)] == [zxids[0], 2 << 32 | 1]


def test_zookeeper_4925_a_history_with_a_hole_is_not_propagated(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-4925: a member that caught up by DIFF leads and DIFFs another stale member
    from its own history; that history must hold the txns it got by DIFF."""
    survives(4925)
    history_without_synced_txns(monkeypatch)
    assert caught(4925) == len(SEEDS)
