"""Reconfiguration in the pure ZAB cores, step by step: the leader's checks (in
PrepRequestProcessor's order), the reconfig proposal committed only on a quorum of the
old AND the new config, COMMITANDACTIVATE / INFORMANDACTIVATE naming the designated
leader, the initial config's version agreed through NEWLEADER, and the learner's
activation and role changes; FastLeaderElection adopting a newer config.  No I/O."""

from __future__ import annotations

import pytest

from zkpy.election.fle import Decided, FastLeaderElection, NewConfig, Vote
from zkpy.election.messages import Notification, ServerState
from zkpy.jute.constants import Err, OpCode
from zkpy.jute.txns import TXN_HEADER, SetDataTxn, encode_txn
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab import actions as A
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketType, QuorumPacket, learner_info
from zkpy.zab.reconfig import ReconfigRefused

TICK = 200
E1 = 1 << 32


def config(*sids: int, observers: tuple[int, ...] = (), version: int = 0) -> QuorumConfig:
    lines = [f"server.{s}=127.0.0.1:{1000 + s}:{2000 + s}" + (":observer" if s in observers else "")
             for s in (*sids, *observers)]
    return QuorumConfig.parse("\n".join(lines), version)


def reconfig_txn(zxid: int, new: QuorumConfig) -> bytes:
    hdr = TXN_HEADER.pack(0x1234, 7, zxid, 0, OpCode.RECONFIG)
    return hdr + encode_txn(SetDataTxn("/zookeeper/config", new.with_version(zxid).text().encode(), -1))


def sends(actions: list[A.Action]) -> list[tuple[int, str, int]]:
    return [(a.to, PacketType(a.packet.type).name, a.packet.zxid) for a in actions if isinstance(a, A.Send)]


def established(my_id: int = 1, members: QuorumConfig | None = None,
                followers: dict[int, int] | None = None) -> tuple[Leader, list[A.Action]]:
    """A leader of epoch 1 over `members` (default 1,2,3 at version 0) with followers
    {handle: sid} synced; returns it and the actions of the NEWLEADER ack that
    established it."""
    members = members or config(1, 2, 3)
    followers = followers if followers is not None else {11: 2, 12: 3}
    leader = Leader(my_id, members.voters, 0, 0, 0, [], 0, TICK, 10, 5, quorum=members, reconfig=True)
    out: list[A.Action] = []
    for h, sid in followers.items():
        leader.learner_connected(h, 0)
        leader.receive(h, QuorumPacket(PacketType.FOLLOWERINFO, 0, learner_info(sid)), 0)
    for h in followers:
        leader.receive(h, QuorumPacket(PacketType.ACKEPOCH, 0, (0).to_bytes(4, "big")), 0)
    for h in followers:
        out += leader.receive(h, QuorumPacket(PacketType.ACK, E1), 0)
    assert leader.established
    return leader, out


def test_the_initial_config_gets_the_newleader_zxid_as_its_version() -> None:
    """ZOOKEEPER-1783: NEWLEADER carries the config with version = its zxid; once a
    quorum acked it, the leader activates it (and writes zoo.cfg.dynamic.100000000)."""
    leader = Leader(1, frozenset({1, 2, 3}), 0, 0, 0, [], 0, TICK, 10, 5, quorum=config(1, 2, 3),
                    reconfig=True)
    leader.learner_connected(11, 0)
    leader.receive(11, QuorumPacket(PacketType.FOLLOWERINFO, 0, learner_info(2)), 0)
    out = leader.receive(11, QuorumPacket(PacketType.ACKEPOCH, 0, (0).to_bytes(4, "big")), 0)
    newleader = [a.packet for a in out if isinstance(a, A.Send) and a.packet.type == PacketType.NEWLEADER]
    assert newleader[0].data == config(1, 2, 3, version=E1).text().encode()
    out = leader.receive(11, QuorumPacket(PacketType.ACK, E1), 0)
    assert A.Activate(config(1, 2, 3, version=E1)) in out
    assert leader.quorum == config(1, 2, 3, version=E1)


def test_checks_in_the_reference_order() -> None:
    leader, _ = established()
    v = leader.quorum.version
    with pytest.raises(ReconfigRefused) as e:
        leader.prepare_reconfig("server.4=h:1:2;3", None, None, v + 1, E1 | 1, 0)
    assert e.value.code == Err.BADVERSION
    with pytest.raises(ReconfigRefused) as e:
        leader.prepare_reconfig("some thing", None, None, -1, E1 | 1, 0)
    assert e.value.code == Err.BADARGUMENTS
    with pytest.raises(ReconfigRefused) as e:  # fewer than 2 voters (standaloneEnabled)
        leader.prepare_reconfig(None, "2,3", None, -1, E1 | 1, 0)
    assert e.value.code == Err.BADARGUMENTS
    assert leader.prepare_reconfig(None, "2,3", None, -1, E1 | 1, 0, standalone_enabled=False).voters == {1}
    with pytest.raises(ReconfigRefused) as e:  # 4 and 5 are not connected: no quorum of 1,4,5
        members = "server.1=h:1:2;3,server.4=h:4:5;6,server.5=h:7:8;9"
        leader.prepare_reconfig(None, None, members, -1, E1 | 1, 0)
    assert e.value.code == Err.NEWCONFIGNOQUORUM
    # one proposed and not committed: RECONFIGINPROGRESS (before the version check)
    new = leader.prepare_reconfig("server.9=127.0.0.1:7:8:observer;9", None, None, -1, E1 | 1, 0)
    leader.propose(E1 | 1, reconfig_txn(E1 | 1, new))
    with pytest.raises(ReconfigRefused) as e:
        leader.prepare_reconfig(None, "9", None, 12345, E1 | 2, 0)
    assert e.value.code == Err.RECONFIGINPROGRESS


def test_a_reconfig_commits_on_a_quorum_of_old_and_new_config() -> None:
    """Adding 4 and 5 as voters to 1,2,3: acks from 1 and 2 are a quorum of the old config
    but not of 1..5 until 4 (a non-voting follower now) acks too; a later proposal waits
    for both quorums as well."""
    leader, _ = established(followers={11: 2, 12: 3, 13: 4})
    new = QuorumConfig(leader.quorum.incremental(
        "server.4=127.0.0.1:1004:2004;1,server.5=127.0.0.1:1005:2005;2", None), E1 | 1)
    z1, z2 = E1 | 1, E1 | 2
    out = leader.propose(z1, reconfig_txn(z1, new))
    assert sorted(sends(out)) == [(11, "PROPOSAL", z1), (12, "PROPOSAL", z1), (13, "PROPOSAL", z1)]
    leader.propose(z2, TXN_HEADER.pack(1, 1, z2, 0, OpCode.DELETE) + b"\0\0\0\2/x")
    assert leader.persisted(z2) == []
    acks = [QuorumPacket(PacketType.ACK, z1), QuorumPacket(PacketType.ACK, z2)]
    assert leader.receive_batch(11, acks, 0) == []
    out = leader.receive_batch(13, acks, 0)
    assert sends(out) == [(11, "COMMITANDACTIVATE", z1), (12, "COMMITANDACTIVATE", z1),
                          (13, "COMMITANDACTIVATE", z1),
                          (11, "COMMIT", z2), (12, "COMMIT", z2), (13, "COMMIT", z2)]
    activate = [a for a in out if isinstance(a, A.Activate)]
    assert activate == [A.Activate(new.with_version(z1))] and leader.voters == {1, 2, 3, 4, 5}
    commit_and_activate = [a.packet for a in out if isinstance(a, A.Send)][0]
    assert int.from_bytes(commit_and_activate.data or b"", "big") == 1  # we stay leader


def test_a_removed_leader_designates_a_successor_and_steps_down() -> None:
    leader, _ = established(followers={11: 2, 12: 3})
    z = E1 | 1
    new = leader.prepare_reconfig(None, "1", None, -1, z, 0)
    leader.propose(z, reconfig_txn(z, new))
    leader.persisted(z)
    out = leader.receive(11, QuorumPacket(PacketType.ACK, z), 0)
    assert out == []  # 1 and 2: a quorum of {1,2,3}, not of {2,3}
    out = leader.receive(12, QuorumPacket(PacketType.ACK, z), 0)
    assert [type(a) for a in out][-3:] == [A.Commit, A.Activate, A.Abandon]
    designated = [a.packet.data for a in out if isinstance(a, A.Send)]
    assert designated == [(2).to_bytes(8, "big")] * 2  # the lowest voter that acked
    assert not leader.allowed_to_commit


def test_an_observer_gets_informandactivate_and_a_follower_turned_observer_leaves() -> None:
    obs = config(1, 2, 3, observers=(4,), version=E1 | 1)
    learner = Learner(4, True, 1, 1, 0, 0, TICK, 10, 5, leader_id=1, quorum=obs, reconfig=True)
    learner.connected(0)
    learner.receive(QuorumPacket(PacketType.LEADERINFO, E1, b"\0\1\0\0"), 0)
    learner.receive(QuorumPacket(PacketType.DIFF, E1), 0)
    learner.receive(QuorumPacket(PacketType.NEWLEADER, E1, obs.text().encode()), 0)
    learner.receive(QuorumPacket(PacketType.UPTODATE, -1), 0)
    # 4 becomes a participant: INFORMANDACTIVATE logs, applies, activates, then leaves the role
    z = E1 | 2
    new = config(1, 2, 3, 4, version=z)
    out = learner.receive(QuorumPacket(PacketType.INFORMANDACTIVATE, z, (1).to_bytes(8, "big")
                                       + reconfig_txn(z, new)), 0)
    assert [type(a) for a in out] == [A.LogTxns, A.Commit, A.Activate, A.Abandon]
    # a follower the config leaves out stays a (non-voting) follower of the same leader
    f = Learner(3, False, 1, 1, 0, 0, TICK, 10, 5, leader_id=1, quorum=config(1, 2, 3, version=E1),
                reconfig=True)
    f.connected(0)
    f.receive(QuorumPacket(PacketType.LEADERINFO, E1, b"\0\1\0\0"), 0)
    f.receive(QuorumPacket(PacketType.DIFF, E1), 0)
    f.receive(QuorumPacket(PacketType.NEWLEADER, E1, b""), 0)
    f.receive(QuorumPacket(PacketType.UPTODATE, -1), 0)
    z = E1 | 1
    f.receive(QuorumPacket(PacketType.PROPOSAL, z, reconfig_txn(z, config(1, 2))), 0)
    out = f.receive(QuorumPacket(PacketType.COMMITANDACTIVATE, z, (1).to_bytes(8, "big")), 0)
    assert [type(a) for a in out] == [A.Commit, A.Activate] and not f.abandoned
    # and a designated leader other than ours ends the role
    z2 = E1 | 2
    f.receive(QuorumPacket(PacketType.PROPOSAL, z2, reconfig_txn(z2, config(2, 3))), 0)
    out = f.receive(QuorumPacket(PacketType.COMMITANDACTIVATE, z2, (2).to_bytes(8, "big")), 0)
    assert [type(a) for a in out] == [A.Commit, A.Activate, A.Abandon]


def test_a_reconfig_committed_during_the_sync_is_activated() -> None:
    """A Java leader forwards to a syncing learner from before it queues NEWLEADER, so a
    reconfig proposed and committed meanwhile reaches the learner ahead of NEWLEADER,
    whose config may be the older one; the learner activates the reconfig's config all
    the same (Learner.syncWithLeader's COMMITANDACTIVATE / INFORMANDACTIVATE cases)."""
    old = config(1, 2, 3, 4, version=E1)
    z = E1 | 1
    new = config(1, 2, 3, version=z)
    f = Learner(3, False, 1, 1, 0, 0, TICK, 10, 5, leader_id=1, quorum=old, reconfig=True)
    f.connected(0)
    f.receive(QuorumPacket(PacketType.LEADERINFO, E1, b"\0\1\0\0"), 0)
    f.receive(QuorumPacket(PacketType.DIFF, E1), 0)
    f.receive(QuorumPacket(PacketType.PROPOSAL, z, reconfig_txn(z, new)), 0)
    f.receive(QuorumPacket(PacketType.COMMITANDACTIVATE, z, (1).to_bytes(8, "big")), 0)
    f.receive(QuorumPacket(PacketType.NEWLEADER, E1, old.text().encode()), 0)
    out = f.receive(QuorumPacket(PacketType.UPTODATE, -1), 0)
    assert [a.config for a in out if isinstance(a, A.Activate)] == [new.with_version(z)]
    assert not f.abandoned
    # an observer: INFORMANDACTIVATE during the sync, naming another leader, ends the role
    o = Learner(4, True, 1, 1, 0, 0, TICK, 10, 5, leader_id=1,
                quorum=config(1, 2, 3, observers=(4,), version=E1), reconfig=True)
    o.connected(0)
    o.receive(QuorumPacket(PacketType.LEADERINFO, E1, b"\0\1\0\0"), 0)
    o.receive(QuorumPacket(PacketType.DIFF, E1), 0)
    newer = config(2, 3, observers=(4,), version=z)
    o.receive(QuorumPacket(PacketType.INFORMANDACTIVATE, z,
                           (2).to_bytes(8, "big") + reconfig_txn(z, newer)), 0)
    o.receive(QuorumPacket(PacketType.NEWLEADER, E1, b""), 0)
    out = o.receive(QuorumPacket(PacketType.UPTODATE, -1), 0)
    assert [a.config.version for a in out if isinstance(a, A.Activate)] == [z]
    assert o.abandoned


def test_a_looking_joiner_adopts_the_newer_config_of_a_notification() -> None:
    """FastLeaderElection's WorkerReceiver: a joiner started with a partial view (1 and
    itself, version 0) takes the leader's config from its notification and restarts its
    election with those voters; as a non-voter it then follows the leader of server 1."""
    fle = FastLeaderElection(2, frozenset({1, 2}), config=config(1, 2).text().encode(), reconfig=True)
    fle.look(0, 0, 0)
    theirs = config(1, version=E1)
    leading = Notification(ServerState.LEADING, 1, E1, 1, 1, config=theirs.text().encode())
    out = fle.receive(0, 1, leading)
    assert out[0] == NewConfig(theirs) and fle.voters == {1} and not fle.is_voter
    out = fle.receive(0, 1, leading)  # the same again, now with the adopted config
    assert [a for a in out if isinstance(a, Decided)] == [
        Decided(ServerState.OBSERVING, Vote(1, E1, 1, 1))]
    # an older or equal config changes nothing, nor does a newer one without voters
    fle2 = FastLeaderElection(3, frozenset({1, 3}), config=config(1, 3, version=E1).text().encode(),
                              reconfig=True)
    fle2.look(0, 0, 0)
    assert not any(isinstance(a, NewConfig) for a in fle2.receive(0, 1, leading))
    empty = Notification(ServerState.LOOKING, 1, E1, 1, 1, config=b"version=7fffffffffffffff")
    assert not any(isinstance(a, NewConfig) for a in fle2.receive(0, 1, empty))
    assert fle2.voters == {1, 3}


def test_a_new_leader_completes_a_reconfig_it_found_in_its_log() -> None:
    """The reconfig to 1,2,4 was logged, not committed (the last leader died): the next
    leader sends it with NEWLEADER, needs a quorum of both configs, then activates it."""
    old, pending = config(1, 2, 3, version=E1), config(1, 2, 4, version=E1 | 5)
    leader = Leader(1, old.voters, 1, 1, E1 | 5, [], 0, TICK, 10, 5, quorum=old,
                    next_quorum=pending, reconfig=True)
    for h, sid in ((11, 2), (13, 4)):
        leader.learner_connected(h, 0)
        leader.receive(h, QuorumPacket(PacketType.FOLLOWERINFO, E1, learner_info(sid)), 0)
    out: list[A.Action] = []
    for h in (11, 13):
        out += leader.receive(h, QuorumPacket(PacketType.ACKEPOCH, E1 | 5, (1).to_bytes(4, "big")), 0)
    newleader = {a.packet.data for a in out
                 if isinstance(a, A.Send) and a.packet.type == PacketType.NEWLEADER}
    assert newleader == {pending.text().encode()}
    assert leader.receive(13, QuorumPacket(PacketType.ACK, 2 << 32), 0) == []  # {1,4}: not of {1,2,3}
    out = leader.receive(11, QuorumPacket(PacketType.ACK, 2 << 32), 0)
    assert A.Activate(pending) in out and leader.established and leader.voters == {1, 2, 4}
