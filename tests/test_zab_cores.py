"""The pure ZAB cores driven step by step: scripted regressions for what the simulator found.

Each test feeds a Leader or Learner the packets a scenario produces and checks the actions
that come back; no I/O.  The full scenarios live in tests/sim_zab.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zkpy.zab import actions as A
from zkpy.zab.epochs import EpochError, load_epochs, write_epoch
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketType, QuorumPacket, learner_info

TICK = 200
V3 = frozenset({1, 2, 3})


def new_leader(voters: frozenset[int] = V3, accepted: int = 0, current: int = 0, last: int = 0) -> Leader:
    return Leader(1, voters, accepted, current, last, [], 0, TICK, 10, 5)


def info(sid: int, accepted_epoch: int, observer: bool = False) -> QuorumPacket:
    kind = PacketType.OBSERVERINFO if observer else PacketType.FOLLOWERINFO
    return QuorumPacket(kind, accepted_epoch << 32, learner_info(sid))


def sends(actions: list[A.Action]) -> list[tuple[int, str, int]]:
    return [(a.to, PacketType(a.packet.type).name, a.packet.zxid) for a in actions if isinstance(a, A.Send)]


def test_an_observers_accepted_epoch_raises_the_new_epoch() -> None:
    """Only voters make the quorum, but everyone's acceptedEpoch bounds the new epoch from
    below (the reference's getEpochToPropose); otherwise the observer refuses LEADERINFO."""
    leader = new_leader()
    leader.learner_connected(10, 0)
    assert leader.receive(10, info(4, 7, observer=True), 0) == []
    leader.learner_connected(11, 0)
    out = leader.receive(11, info(2, 1), 0)
    assert A.PersistAcceptedEpoch(8) in out
    assert sorted(sends(out)) == [(10, "LEADERINFO", 8 << 32), (11, "LEADERINFO", 8 << 32)]


def test_a_learner_that_accepted_a_newer_epoch_makes_the_leader_step_down() -> None:
    """Found by `sim_zab.py --scenario chaos --seed 29 --voters 3 --observers 1`: server 2
    led three times without getting LEADERINFO through, so its acceptedEpoch (4) ran ahead
    of everyone's; 3 and 1 then formed epoch 2 and 2 refused LEADERINFO(2) after every
    election, forever.  The leader now steps down so that the next epoch is above 4."""
    leader = new_leader()
    leader.learner_connected(11, 0)
    out = leader.receive(11, info(2, 0), 0)
    assert A.PersistAcceptedEpoch(1) in out
    leader.learner_connected(12, 0)
    out = leader.receive(12, info(3, 4), 0)
    assert [type(a) for a in out] == [A.Abandon]
    assert leader.abandoned
    # and the learner's side: it would have refused the older epoch
    learner = Learner(3, False, 4, 0, 0, 0, TICK, 10, 5)
    assert isinstance(learner.receive(QuorumPacket(PacketType.LEADERINFO, 1 << 32, b"\0\1\0\0"), 0)[0],
                      A.Abandon)


def test_a_learner_at_the_chosen_epoch_still_joins() -> None:
    leader = new_leader()
    leader.learner_connected(11, 0)
    leader.receive(11, info(2, 0), 0)
    leader.learner_connected(12, 0)
    assert sends(leader.receive(12, info(3, 1), 0)) == [(12, "LEADERINFO", 1 << 32)]


def test_newleader_makes_the_data_durable_before_current_epoch_and_the_ack() -> None:
    """The ordering duty the epoch-file fix below relies on: snapshot and synced txns,
    then currentEpoch, then the ACK."""
    learner = Learner(2, False, 0, 0, 0, 0, TICK, 10, 5)
    learner.connected(0)
    learner.receive(QuorumPacket(PacketType.LEADERINFO, 1 << 32, b"\0\1\0\0"), 0)
    learner.receive(QuorumPacket(PacketType.SNAP, 1 << 32), 0)
    learner.snapshot_arrived(b"stream", 1 << 32)
    out = learner.receive(QuorumPacket(PacketType.NEWLEADER, 1 << 32, b""), 0)
    assert [type(a) for a in out] == [A.TakeSnapshot, A.PersistCurrentEpoch, A.Send]


def test_a_crash_between_newleaders_snapshot_and_current_epoch_still_starts(tmp_path: Path) -> None:
    """Found by `sim_zab.py --scenario leader_crash --seed 22 --voters 5 --observers 0`: a
    learner SNAP-synced by an established leader of epoch 1 (snapshot zxid 1<<32) crashed
    after TakeSnapshot, before PersistCurrentEpoch; on restart the data's epoch (1) was
    newer than currentEpoch (0) and the server refused to start.  Data of an epoch the
    server had accepted is what NEWLEADER made durable, so that epoch is adopted."""
    write_epoch(tmp_path, "currentEpoch", 0)
    write_epoch(tmp_path, "acceptedEpoch", 1)
    assert load_epochs(tmp_path, 1 << 32) == (1, 1)
    assert (tmp_path / "currentEpoch").read_text() == "1"


def test_data_of_an_epoch_never_accepted_still_refuses_to_start(tmp_path: Path) -> None:
    write_epoch(tmp_path, "currentEpoch", 0)
    write_epoch(tmp_path, "acceptedEpoch", 0)
    with pytest.raises(EpochError):
        load_epochs(tmp_path, 1 << 32)


def _established_leader() -> Leader:
    """A leader of epoch 1 with one follower (handle 11, sid 2) in broadcast: a quorum of 3."""
    leader = new_leader()
    leader.learner_connected(11, 0)
    leader.receive(11, info(2, 0), 0)
    leader.receive(11, QuorumPacket(PacketType.ACKEPOCH, 0, (0).to_bytes(4, "big")), 0)
    leader.receive(11, QuorumPacket(PacketType.ACK, 1 << 32), 0)
    assert leader.established
    return leader


def test_a_batch_of_acks_commits_as_the_acks_one_by_one() -> None:
    """The shell hands the cores every packet of a socket read at once; the leader counts
    the ACKs and commits after them: the same actions, in the same order, as one by one."""
    zxids = [(1 << 32) | i for i in (1, 2, 3)]
    outs = []
    for batched in (False, True):
        leader = _established_leader()
        for z in zxids:
            leader.propose(z, b"txn %d" % z)
        assert leader.persisted(zxids[-1]) == []  # the leader's own log: 1 of 2 needed
        acks = [QuorumPacket(PacketType.ACK, z) for z in zxids]
        if batched:
            outs.append(leader.receive_batch(11, acks, 0))
        else:
            outs.append([a for pkt in acks for a in leader.receive(11, pkt, 0)])
    assert outs[0] == outs[1]
    assert [a.zxid for a in outs[1] if isinstance(a, A.Commit)] == zxids
    assert sends(outs[1]) == [(11, "COMMIT", z) for z in zxids]


def test_a_learner_logs_and_applies_a_batch_together_before_the_next_other_packet() -> None:
    learner = Learner(2, False, 1, 1, 0, 0, TICK, 10, 5)
    learner.connected(0)
    learner.receive(QuorumPacket(PacketType.LEADERINFO, 1 << 32, b"\0\1\0\0"), 0)
    learner.receive(QuorumPacket(PacketType.DIFF, 0), 0)
    learner.receive(QuorumPacket(PacketType.NEWLEADER, 1 << 32, b""), 0)
    learner.receive(QuorumPacket(PacketType.UPTODATE, -1), 0)
    z1, z2, z3 = ((1 << 32) | i for i in (1, 2, 3))
    out = learner.receive_batch([
        QuorumPacket(PacketType.PROPOSAL, z1, b"p1"), QuorumPacket(PacketType.PROPOSAL, z2, b"p2"),
        QuorumPacket(PacketType.COMMIT, z1), QuorumPacket(PacketType.PROPOSAL, z3, b"p3"),
        QuorumPacket(PacketType.COMMIT, z2), QuorumPacket(PacketType.PING, z3),
        QuorumPacket(PacketType.COMMIT, z3),
    ], 0)
    assert out == [A.LogTxns((b"p1", b"p2", b"p3")), A.Commit(z2), A.PingReply(z3), A.Commit(z3)]
    # every logged proposal is acked, in order, once the log is durable
    assert sends(learner.persisted(z3)) == [(0, "ACK", z1), (0, "ACK", z2), (0, "ACK", z3)]
