"""The ZAB leader as a pure state machine: discovery, synchronisation, broadcast.

Inputs: learner connections and packets, the leader's own log being durable up to a
zxid, proposals from the request pipeline, and time.  Outputs: lists of actions (see
actions.py).  Each connected learner is identified by a handle chosen by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from zkpy.jute.codec import Reader, Writer
from zkpy.jute.constants import OpCode
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab.actions import (
    Abandon,
    Action,
    Activate,
    Commit,
    Established,
    ForwardedRequest,
    PersistAcceptedEpoch,
    PersistCurrentEpoch,
    Revalidate,
    Send,
    SendSnapshot,
    TouchSessions,
)
from zkpy.zab.packets import (
    PROTOCOL_VERSION,
    PacketType,
    QuorumPacket,
    parse_learner_info,
    parse_request_data,
)
from zkpy.zab.reconfig import check_reconfig, designated_leader, reconfig_config


def epoch_of(zxid: int) -> int:
    return zxid >> 32


class Phase(Enum):
    INFO = "info"  # connected, FOLLOWERINFO not yet received
    EPOCH = "epoch"  # waiting for LEADERINFO/ACKEPOCH
    SYNCING = "syncing"  # sync packets sent up to NEWLEADER, waiting for its ACK
    WAIT_UPTODATE = "wait-uptodate"  # acked NEWLEADER, leader not established yet
    BROADCAST = "broadcast"


_BROADCAST = Phase.BROADCAST
_SENDING = frozenset((Phase.SYNCING, Phase.WAIT_UPTODATE, Phase.BROADCAST))  # get proposals
_ACK = int(PacketType.ACK)
_REQUEST = int(PacketType.REQUEST)


@dataclass(slots=True)
class LearnerState:
    handle: int
    sid: int = -1
    observer: bool = False
    phase: Phase = Phase.INFO
    accepted_epoch: int = -1
    last_zxid: int = -1
    epoch_acked: bool = False
    last_heard: int = 0


@dataclass(slots=True)
class Proposal:
    zxid: int
    payload: bytes
    acks: set[int] = field(default_factory=set)
    # with a reconfig pending: the voters of the next config, which must ack it too
    next_voters: frozenset[int] | None = None
    config: QuorumConfig | None = None  # set on the reconfig txn itself


class Leader:
    """Leads one epoch; abandon it (and make a new Leader) after any Abandon action."""

    def __init__(self, my_id: int, voters: frozenset[int], accepted_epoch: int, current_epoch: int,
                 last_zxid: int, history: list[tuple[int, bytes]], now_ms: int, tick_ms: int,
                 init_limit: int, sync_limit: int, config: bytes = b"", history_limit: int = 500,
                 quorum: QuorumConfig | None = None, next_quorum: QuorumConfig | None = None,
                 reconfig: bool = False) -> None:
        self.my_id = my_id
        self.voters = quorum.voters if quorum is not None else voters
        # Reconfiguration (quorum given and reconfigEnabled): the committed config, and
        # the one a reconfig proposed and nobody committed yet (Java's lastSeen); while
        # that is pending every proposal needs a quorum of both.
        self.quorum = quorum
        self.next_quorum = next_quorum if reconfig and next_quorum is not None and quorum is not None \
            and next_quorum.version > quorum.version else None
        self.reconfig = reconfig and quorum is not None
        self.allowed_to_commit = True
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self.last_zxid = last_zxid
        self.history: deque[tuple[int, bytes]] = deque(history[-history_limit:], maxlen=history_limit)
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.config = config
        self.learners: dict[int, LearnerState] = {}
        self.new_epoch: int | None = None
        self.epoch_candidates: dict[int, int] = {my_id: accepted_epoch}
        self.epoch_acks: set[int] = {my_id}
        self.newleader_acks: set[int] = {my_id}
        self.epoch_acked_quorum = False
        self.established = False
        self.started = now_ms
        self.outstanding: dict[int, Proposal] = {}
        self.last_committed = last_zxid
        self.last_proposed = last_zxid
        self.pending_syncs: deque[tuple[int, int]] = deque()  # (zxid to wait for, learner)
        self.abandoned = False
        self.next_ping = now_ms

    # ---- helpers ----------------------------------------------------------------
    def _quorum(self, ids: set[int]) -> bool:
        return len(ids & self.voters) * 2 > len(self.voters)

    def _quorums(self, ids: set[int]) -> bool:
        """A quorum of the committed config and of a pending one (SyncedLearnerTracker)."""
        nq = self.next_quorum
        return self._quorum(ids) and (nq is None or nq.is_quorum(ids))

    def _newleader_config(self) -> bytes:
        if self.quorum is None:
            return self.config
        q = self.next_quorum if self.next_quorum is not None and not self.established else self.quorum
        return q.text().encode()

    def _send(self, handle: int, type_: PacketType, zxid: int, data: bytes | None = None) -> Send:
        return Send(handle, QuorumPacket(type_, zxid, data))

    def _abandon(self, reason: str) -> list[Action]:
        self.abandoned = True
        return [Abandon(reason)]

    # ---- learner connections ----------------------------------------------------
    def learner_connected(self, handle: int, now_ms: int) -> None:
        self.learners[handle] = LearnerState(handle, last_heard=now_ms)

    def learner_lost(self, handle: int) -> list[Action]:
        self.learners.pop(handle, None)
        return []

    def receive(self, handle: int, pkt: QuorumPacket, now_ms: int) -> list[Action]:
        return self.receive_batch(handle, (pkt,), now_ms)

    def receive_batch(self, handle: int, pkts: Sequence[QuorumPacket], now_ms: int) -> list[Action]:
        """Packets that arrived together from one learner, in order.  The ACKs among them
        are counted first and committed once, after the batch (or before the next packet
        that is not an ACK): the same commits as one by one, without a pass per ACK."""
        ls = self.learners.get(handle)
        if ls is None or self.abandoned:
            return []
        ls.last_heard = now_ms
        out: list[Action] = []
        acked = False
        for pkt in pkts:
            if pkt.type == _ACK and ls.phase is _BROADCAST and not ls.observer:
                p = self.outstanding.get(pkt.zxid)
                if p is not None:
                    p.acks.add(ls.sid)
                    acked = True
                continue
            if acked:
                out += self._try_commit()
                acked = False
            out += self._receive_one(ls, pkt)
            if self.abandoned:
                return out
        if acked:
            out += self._try_commit()
        return out

    def _receive_one(self, ls: LearnerState, pkt: QuorumPacket) -> list[Action]:
        t = pkt.type
        if t == _REQUEST:
            return self._on_request(ls, pkt)
        if t in (PacketType.FOLLOWERINFO, PacketType.OBSERVERINFO):
            return self._on_info(ls, pkt)
        if t == PacketType.ACKEPOCH:
            return self._on_ackepoch(ls, pkt)
        if t == PacketType.ACK:
            return self._on_ack(ls, pkt.zxid)
        if t == PacketType.PING:
            return self._on_ping(ls, pkt)
        if t == PacketType.REVALIDATE:
            r = Reader(pkt.data or b"")
            return [Revalidate(ls.handle, r.long(), r.int())]
        return []

    # ---- discovery --------------------------------------------------------------
    def _on_info(self, ls: LearnerState, pkt: QuorumPacket) -> list[Action]:
        sid, _version, _cfg = parse_learner_info(pkt.data or b"")
        ls.sid = sid
        # A FOLLOWERINFO from a server outside the config is a non-voting follower (it gets
        # proposals and its acks count for a next config that names it), as in the reference.
        ls.observer = pkt.type == PacketType.OBSERVERINFO or (not self.reconfig and sid not in self.voters)
        ls.accepted_epoch = epoch_of(pkt.zxid)
        ls.phase = Phase.EPOCH
        out: list[Action] = []
        if self.new_epoch is None:
            # Every learner's acceptedEpoch raises the new epoch, observers' too (as the
            # reference's getEpochToPropose); only voters count towards the quorum (_quorum).
            self.epoch_candidates[sid] = ls.accepted_epoch
            if self._quorums(set(self.epoch_candidates)):
                out += self._choose_epoch()
        elif ls.accepted_epoch > self.new_epoch:
            # It promised a would-be leader of a newer epoch (one that never got going) to
            # refuse older epochs, so it would refuse ours after every election and stay
            # out of the ensemble for as long as we lead.  Step down: the next election
            # proposes an epoch above its promise.
            return self._abandon(f"learner {sid} accepted epoch {ls.accepted_epoch}, newer than ours "
                                 f"({self.new_epoch})")
        else:
            out.append(self._leaderinfo(ls))
        return out

    def _choose_epoch(self) -> list[Action]:
        self.new_epoch = max(self.epoch_candidates.values()) + 1
        self.accepted_epoch = self.new_epoch
        if self.reconfig and self.next_quorum is None and self.quorum is not None \
                and self.quorum.version == 0:
            # ZOOKEEPER-1783: the initial config gets a version once established, the
            # zxid of NEWLEADER; learners agree on it with NEWLEADER
            self.next_quorum = self.quorum.with_version(self.new_epoch << 32)
        out: list[Action] = [PersistAcceptedEpoch(self.new_epoch)]
        for other in self.learners.values():
            if other.phase == Phase.EPOCH:
                out.append(self._leaderinfo(other))
        return out

    def _leaderinfo(self, ls: LearnerState) -> Send:
        assert self.new_epoch is not None
        return self._send(ls.handle, PacketType.LEADERINFO, self.new_epoch << 32,
                          PROTOCOL_VERSION.to_bytes(4, "big"))

    def _on_ackepoch(self, ls: LearnerState, pkt: QuorumPacket) -> list[Action]:
        if self.new_epoch is None:
            return []
        data = pkt.data or b""
        epoch = int.from_bytes(data[:4], "big", signed=True) if len(data) >= 4 else -1
        ls.last_zxid = pkt.zxid
        ls.epoch_acked = True
        out: list[Action] = []
        if not self.epoch_acked_quorum:
            if epoch != -1 and (epoch, pkt.zxid) > (self.current_epoch, self.last_zxid):
                return self._abandon(f"learner {ls.sid} is ahead: epoch {epoch} zxid 0x{pkt.zxid:x}")
            if epoch != -1 and not ls.observer:
                self.epoch_acks.add(ls.sid)
            if not self._quorums(self.epoch_acks):
                return out
            self.epoch_acked_quorum = True
            self.current_epoch = self.new_epoch
            out.append(PersistCurrentEpoch(self.new_epoch))
            for other in self.learners.values():
                if other.epoch_acked and other.phase == Phase.EPOCH:
                    out += self._sync(other)
            return out
        return self._sync(ls)

    # ---- synchronisation --------------------------------------------------------
    def _sync(self, ls: LearnerState) -> list[Action]:
        """DIFF, TRUNC or SNAP by where the learner's last zxid sits in our history."""
        assert self.new_epoch is not None
        out: list[Action] = []
        peer = ls.last_zxid
        committed = self.last_committed
        zxids = [z for z, _ in self.history]
        if peer == committed:
            out.append(self._send(ls.handle, PacketType.DIFF, committed))
        elif peer > committed:
            if peer & 0xFFFFFFFF == 0:
                out.append(SendSnapshot(ls.handle))
            else:
                out.append(self._send(ls.handle, PacketType.TRUNC, committed))
        elif zxids and zxids[0] <= peer and (peer in zxids or peer & 0xFFFFFFFF == 0):
            out.append(self._send(ls.handle, PacketType.DIFF, committed))
            out += self._diff_packets(ls, peer)
        elif zxids and zxids[0] <= peer:
            common = max(z for z in zxids if z < peer)
            if epoch_of(common) == epoch_of(peer):
                out.append(self._send(ls.handle, PacketType.TRUNC, common))
                out += self._diff_packets(ls, common)
            else:
                out.append(SendSnapshot(ls.handle))
        else:
            out.append(SendSnapshot(ls.handle))
        for z in sorted(self.outstanding):
            if not ls.observer:
                out.append(self._send(ls.handle, PacketType.PROPOSAL, z, self.outstanding[z].payload))
        out.append(self._send(ls.handle, PacketType.NEWLEADER, self.new_epoch << 32,
                              self._newleader_config()))
        ls.phase = Phase.SYNCING
        return out

    def _diff_packets(self, ls: LearnerState, after: int) -> list[Action]:
        out: list[Action] = []
        for z, payload in self.history:
            if z > after:
                out.append(self._send(ls.handle, PacketType.PROPOSAL, z, payload))
                out.append(self._send(ls.handle, PacketType.COMMIT, z))
        return out

    def _on_ack(self, ls: LearnerState, zxid: int) -> list[Action]:
        if ls.phase == Phase.SYNCING and self.new_epoch is not None and zxid == self.new_epoch << 32:
            return self._on_newleader_ack(ls)
        if ls.observer or ls.phase not in (Phase.BROADCAST, Phase.WAIT_UPTODATE):
            if ls.phase == Phase.SYNCING and zxid in self.outstanding and not ls.observer:
                self.outstanding[zxid].acks.add(ls.sid)
            return []
        p = self.outstanding.get(zxid)
        if p is None:
            return []
        p.acks.add(ls.sid)
        return self._try_commit()

    def _on_newleader_ack(self, ls: LearnerState) -> list[Action]:
        assert self.new_epoch is not None
        out: list[Action] = []
        if self.established:
            ls.phase = Phase.BROADCAST
            out.append(self._send(ls.handle, PacketType.UPTODATE, -1))
            return out
        ls.phase = Phase.WAIT_UPTODATE
        if not ls.observer:
            self.newleader_acks.add(ls.sid)
        if self._quorums(self.newleader_acks):
            out += self._establish()
        return out

    def _establish(self) -> list[Action]:
        assert self.new_epoch is not None
        out: list[Action] = []
        self.established = True
        self.last_committed = self.last_proposed = max(self.last_committed, self.new_epoch << 32)
        nq = self.next_quorum
        if nq is not None:
            # the config NEWLEADER carried is agreed: activate it (Leader.startZkServer)
            self.quorum, self.voters, self.next_quorum = nq, nq.voters, None
            out.append(Activate(nq))
            if self.my_id not in nq.voters:
                out.append(Established(self.new_epoch))
                return out + self._abandon(f"server {self.my_id} is not a voter in config "
                                           f"version {nq.version:x}")
        out.append(Established(self.new_epoch))
        for other in self.learners.values():
            if other.phase == Phase.WAIT_UPTODATE:
                other.phase = Phase.BROADCAST
                out.append(self._send(other.handle, PacketType.UPTODATE, -1))
        return out

    def _alone(self) -> list[Action]:
        """A quorum of one (standaloneEnabled=false with a single voter): the leader's
        own epoch, ack and NEWLEADER ack are enough, as in the reference."""
        out: list[Action] = []
        if self.new_epoch is None:
            if not self._quorums(set(self.epoch_candidates)):
                return out
            out += self._choose_epoch()
        assert self.new_epoch is not None
        if not self.epoch_acked_quorum and self._quorums(self.epoch_acks):
            self.epoch_acked_quorum = True
            self.current_epoch = self.new_epoch
            out.append(PersistCurrentEpoch(self.new_epoch))
        if self.epoch_acked_quorum and self._quorums(self.newleader_acks):
            out += self._establish()
        return out

    # ---- broadcast --------------------------------------------------------------
    def next_zxid(self) -> int:
        """The zxid for the next proposal (epoch << 32 | counter)."""
        assert self.new_epoch is not None
        z = self.last_proposed + 1
        if epoch_of(z) != self.new_epoch:
            z = (self.new_epoch << 32) | 1
        return z

    def propose(self, zxid: int, payload: bytes) -> list[Action]:
        """A txn from the request pipeline; the leader's own log write is acked via persisted()."""
        if zxid & 0xFFFFFFFF == 0xFFFFFFFF:
            return self._abandon("zxid counter exhausted; forcing a new epoch")
        self.last_proposed = zxid
        p = self.outstanding[zxid] = Proposal(zxid, payload)
        if self.reconfig:
            new = reconfig_config(payload)
            if new is not None:
                p.config = self.next_quorum = new
            if self.next_quorum is not None:
                p.next_voters = self.next_quorum.voters
        out: list[Action] = []
        pkt = QuorumPacket(PacketType.PROPOSAL, zxid, payload)  # one object: encoded once by the caller
        for ls in self.learners.values():
            # BROADCAST first: an Enum member hashes in Python code
            if (ls.phase is Phase.BROADCAST or ls.phase in _SENDING) and not ls.observer:
                out.append(Send(ls.handle, pkt))
        return out

    def persisted(self, zxid: int) -> list[Action]:
        """The leader's log is durable up to zxid: that is the leader's own ACK."""
        for z, p in self.outstanding.items():
            if z <= zxid:
                p.acks.add(self.my_id)
        return self._try_commit()

    def _try_commit(self) -> list[Action]:
        out: list[Action] = []
        while self.outstanding:
            z = next(iter(self.outstanding))  # proposals are inserted in zxid order
            p = self.outstanding[z]
            if not self._quorum(p.acks) or not self.allowed_to_commit:
                break
            nv = p.next_voters
            if nv is not None and len(p.acks & nv) * 2 <= len(nv):
                break
            if p.config is not None:
                out += self._commit_reconfig(p)
                continue
            del self.outstanding[z]
            self.last_committed = z
            self.history.append((z, p.payload))
            commit = QuorumPacket(PacketType.COMMIT, z)
            inform: QuorumPacket | None = None
            for ls in self.learners.values():
                if ls.phase is Phase.BROADCAST or ls.phase in _SENDING:
                    if ls.observer:
                        inform = inform or QuorumPacket(PacketType.INFORM, z, p.payload)
                        out.append(Send(ls.handle, inform))
                    else:
                        out.append(Send(ls.handle, commit))
            out.append(Commit(z))
        while self.pending_syncs and self.pending_syncs[0][0] <= self.last_committed:
            _, handle = self.pending_syncs.popleft()
            if handle in self.learners:
                out.append(self._send(handle, PacketType.SYNC, 0))
        return out

    def _commit_reconfig(self, p: Proposal) -> list[Action]:
        """Commit a reconfig: activate its config here, COMMITANDACTIVATE to followers and
        INFORMANDACTIVATE to observers, both naming the designated leader; a leader that
        is not the designated one commits nothing more and steps down."""
        assert p.config is not None
        z = p.zxid
        del self.outstanding[z]
        self.last_committed = z
        self.history.append((z, p.payload))
        new = p.config
        designated = designated_leader(self.my_id, p, self.outstanding)
        self.quorum, self.voters = new, new.voters
        if self.next_quorum is new:
            self.next_quorum = None
        leader_bytes = designated.to_bytes(8, "big", signed=True)
        commit = QuorumPacket(PacketType.COMMITANDACTIVATE, z, leader_bytes)
        inform = QuorumPacket(PacketType.INFORMANDACTIVATE, z, leader_bytes + p.payload)
        out: list[Action] = []
        for ls in self.learners.values():
            if ls.phase in _SENDING:
                out.append(Send(ls.handle, inform if ls.observer else commit))
        out += [Commit(z), Activate(new)]
        if designated != self.my_id:
            self.allowed_to_commit = False
            out += self._abandon(f"reconfig 0x{z:x}: server {designated} is the designated leader")
        return out

    # ---- reconfiguration requests ---------------------------------------------------------
    def prepare_reconfig(self, joining: str | None, leaving: str | None, members: str | None,
                         from_version: int, zxid: int, now_ms: int,
                         standalone_enabled: bool = True) -> QuorumConfig:
        """PrepRequestProcessor's reconfig checks (reconfig.check_reconfig); raises
        ReconfigRefused."""
        return check_reconfig(self.quorum if self.reconfig else None, self.next_quorum, joining, leaving,
                              members, from_version, zxid, standalone_enabled,
                              lambda voters: self.quorum_synced(voters, now_ms))

    def quorum_synced(self, voters: frozenset[int], now_ms: int) -> bool:
        """Leader.isQuorumSynced: we and the followers in broadcast that were heard from
        within syncLimit hold a majority of voters."""
        limit = self.sync_limit * self.tick_ms
        ids = {self.my_id} | {ls.sid for ls in self.learners.values()
                              if ls.phase is _BROADCAST and not ls.observer
                              and now_ms - ls.last_heard <= limit}
        return len(ids & voters) * 2 > len(voters)

    def _on_request(self, ls: LearnerState, pkt: QuorumPacket) -> list[Action]:
        sid, cxid, op, body = parse_request_data(pkt.data or b"")
        if op == OpCode.SYNC:
            if not self.outstanding:
                return [self._send(ls.handle, PacketType.SYNC, 0)]
            self.pending_syncs.append((self.last_proposed, ls.handle))
            return []
        return [ForwardedRequest(ls.handle, sid, cxid, op, body, pkt.auth or ())]

    def revalidated(self, handle: int, session_id: int, valid: bool) -> list[Action]:
        data = Writer().long(session_id).bool(valid).getvalue()
        return [self._send(handle, PacketType.REVALIDATE, -1, data)]

    def _on_ping(self, ls: LearnerState, pkt: QuorumPacket) -> list[Action]:
        r = Reader(pkt.data or b"")
        touches = []
        while r.remaining() >= 12:
            touches.append((r.long(), r.int()))
        return [TouchSessions(ls.handle, tuple(touches))] if touches else []

    # ---- time -------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Action]:
        if self.abandoned:
            return []
        if not self.established and len(self.voters) == 1:
            alone = self._alone()
            if alone:
                return alone
        limit = (self.init_limit if not self.established else self.sync_limit) * self.tick_ms
        if not self.established and now_ms - self.started > self.init_limit * self.tick_ms:
            return self._abandon("no quorum of followers synced within initLimit")
        out: list[Action] = []
        if self.established:
            synced = {self.my_id} | {
                ls.sid for ls in self.learners.values()
                if ls.phase == Phase.BROADCAST and not ls.observer and now_ms - ls.last_heard <= limit
            }
            if not self._quorums(synced):
                return self._abandon("lost the quorum of synced followers")
        if now_ms >= self.next_ping:
            self.next_ping = now_ms + self.tick_ms // 2
            for ls in self.learners.values():
                if ls.phase in _SENDING:
                    out.append(self._send(ls.handle, PacketType.PING, self.last_proposed))
        return out

    def next_deadline(self) -> int:
        return self.next_ping
