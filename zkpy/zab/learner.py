"""A ZAB learner (follower or observer) as a pure state machine.

Discovery (FOLLOWERINFO -> LEADERINFO -> ACKEPOCH), synchronisation (DIFF / TRUNC /
SNAP, held proposals, NEWLEADER, UPTODATE) and broadcast (PROPOSAL -> log -> ACK,
COMMIT -> apply; INFORM for observers).  See actions.py for the ordering duty of the
action lists returned here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from enum import Enum

from zkpy.jute.codec import Reader
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab.actions import (
    Abandon,
    Action,
    Activate,
    Commit,
    Established,
    LoadSnapshot,
    LogTxns,
    PersistAcceptedEpoch,
    PersistCurrentEpoch,
    PingReply,
    RevalidateAnswer,
    Send,
    SyncReleased,
    TakeSnapshot,
    Truncate,
)
from zkpy.zab.packets import PacketType, QuorumPacket, learner_info
from zkpy.zab.reconfig import reconfig_config

LEADER = 0  # the handle of the leader connection in Send actions
_PROPOSAL = int(PacketType.PROPOSAL)
_COMMIT = int(PacketType.COMMIT)


class Stage(Enum):
    DISCOVERY = "discovery"
    SYNC = "sync"
    BROADCAST = "broadcast"


_BROADCAST = Stage.BROADCAST


class Learner:
    """Follows (or observes) one leader; make a new Learner after any Abandon."""

    def __init__(self, my_id: int, observer: bool, accepted_epoch: int, current_epoch: int,
                 last_logged_zxid: int, now_ms: int, tick_ms: int, init_limit: int,
                 sync_limit: int, leader_id: int = -1, quorum: QuorumConfig | None = None,
                 reconfig: bool = False) -> None:
        self.my_id = my_id
        # Reconfiguration (reconfigEnabled with the committed config given): the config
        # NEWLEADER carried, activated at UPTODATE, and the configs of the reconfig txns
        # proposed, activated by their COMMITANDACTIVATE / INFORMANDACTIVATE.
        self.leader_id = leader_id
        self.quorum = quorum if reconfig else None
        self.newleader_quorum: QuorumConfig | None = None
        self.reconfigs: dict[int, QuorumConfig] = {}
        # (zxid, data) of the COMMITANDACTIVATE / INFORMANDACTIVATE packets that came
        # during the sync (a Java leader forwards before NEWLEADER): activated at UPTODATE
        self.held_activations: list[tuple[int, bytes]] = []
        self.observer = observer
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self.last_logged = last_logged_zxid
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.stage = Stage.DISCOVERY
        self.new_epoch = -1
        self.sync_mode: str | None = None
        self.held: list[tuple[int, bytes]] = []  # proposals received during sync
        self.held_committed: set[int] = set()
        self.snap_pending = False
        self.last_heard = now_ms
        self.abandoned = False
        self.unacked: deque[int] = deque()  # logged proposals not yet acked, in order
        self.newleader_acked = False
        self.uptodate_acks: list[int] = []

    def _send(self, type_: PacketType, zxid: int, data: bytes | None = None) -> Send:
        return Send(LEADER, QuorumPacket(type_, zxid, data))

    def _abandon(self, reason: str) -> list[Action]:
        self.abandoned = True
        return [Abandon(reason)]

    def connected(self, now_ms: int) -> list[Action]:
        """The TCP connection to the leader is up: introduce ourselves."""
        self.last_heard = now_ms
        kind = PacketType.OBSERVERINFO if self.observer else PacketType.FOLLOWERINFO
        return [self._send(kind, self.accepted_epoch << 32, learner_info(self.my_id))]

    def receive(self, pkt: QuorumPacket, now_ms: int) -> list[Action]:
        return self.receive_batch((pkt,), now_ms)

    def receive_batch(self, pkts: Sequence[QuorumPacket], now_ms: int) -> list[Action]:
        """Packets that arrived together, in order.  In broadcast, the PROPOSALs among them
        are logged by one LogTxns and the COMMITs applied by one Commit, flushed before
        any other packet: logging a later proposal before applying an earlier commit
        changes nothing (a commit applies only what is logged at or below its zxid)."""
        if self.abandoned:
            return []
        self.last_heard = now_ms
        out: list[Action] = []
        logged: list[bytes] = []
        commit = -1
        for pkt in pkts:
            t = pkt.type
            if self.stage is _BROADCAST:
                if t == _PROPOSAL:
                    self.last_logged = pkt.zxid
                    self.unacked.append(pkt.zxid)
                    data = pkt.data or b""
                    logged.append(data)
                    if self.quorum is not None:
                        self._note_reconfig(pkt.zxid, data)
                    continue
                if t == _COMMIT:
                    commit = pkt.zxid
                    continue
            if logged:
                out.append(LogTxns(tuple(logged)))
                logged = []
            if commit >= 0:
                out.append(Commit(commit))
                commit = -1
            out += self._receive_one(pkt)
            if self.abandoned:
                return out
        if logged:
            out.append(LogTxns(tuple(logged)))
        if commit >= 0:
            out.append(Commit(commit))
        return out

    def _receive_one(self, pkt: QuorumPacket) -> list[Action]:
        t = pkt.type
        if self.stage == Stage.DISCOVERY:
            if t == PacketType.LEADERINFO:
                return self._on_leaderinfo(pkt)
            return self._abandon(f"unexpected packet {t} during discovery")
        if self.stage == Stage.SYNC and not self.newleader_acked:
            return self._sync_packet(pkt)
        if t == PacketType.UPTODATE:
            return self._on_uptodate()
        return self._broadcast_packet(pkt)

    # ---- discovery ----------------------------------------------------------------
    def _on_leaderinfo(self, pkt: QuorumPacket) -> list[Action]:
        new_epoch = pkt.zxid >> 32
        out: list[Action] = []
        if new_epoch > self.accepted_epoch:
            self.accepted_epoch = new_epoch
            out.append(PersistAcceptedEpoch(new_epoch))
            epoch_field = self.current_epoch
        elif new_epoch == self.accepted_epoch:
            epoch_field = -1
        else:
            return self._abandon(f"leader's epoch {new_epoch} is older than our accepted "
                                 f"epoch {self.accepted_epoch}")
        self.new_epoch = new_epoch
        self.stage = Stage.SYNC
        out.append(self._send(PacketType.ACKEPOCH, self.last_logged,
                              epoch_field.to_bytes(4, "big", signed=True)))
        return out

    # ---- synchronisation ------------------------------------------------------------
    def snapshot_arrived(self, stream: bytes, zxid: int) -> list[Action]:
        """The caller read the whole SNAP stream that followed a SNAP packet."""
        self.snap_pending = False
        self.last_logged = zxid
        return [LoadSnapshot(stream, zxid)]

    def _sync_packet(self, pkt: QuorumPacket) -> list[Action]:
        t = pkt.type
        if t == PacketType.DIFF:
            self.sync_mode = "diff"
            return []
        if t == PacketType.TRUNC:
            self.sync_mode = "trunc"
            self.last_logged = pkt.zxid
            return [Truncate(pkt.zxid)]
        if t == PacketType.SNAP:
            self.sync_mode = "snap"
            self.snap_pending = True
            return []
        if t == PacketType.PROPOSAL:
            self.held.append((pkt.zxid, pkt.data or b""))
            if self.quorum is not None:
                self._note_reconfig(pkt.zxid, pkt.data or b"")
            return []
        if t in (PacketType.COMMIT, PacketType.COMMITANDACTIVATE):
            self.held_committed.add(pkt.zxid)
            if t == PacketType.COMMITANDACTIVATE:
                self.held_activations.append((pkt.zxid, pkt.data or b""))
            return []
        if t == PacketType.INFORM:
            self.held.append((pkt.zxid, pkt.data or b""))
            self.held_committed.add(pkt.zxid)
            return []
        if t == PacketType.INFORMANDACTIVATE:
            data = pkt.data or b""
            self.held.append((pkt.zxid, data[8:]))
            self.held_committed.add(pkt.zxid)
            if self.quorum is not None:
                self._note_reconfig(pkt.zxid, data[8:])
                self.held_activations.append((pkt.zxid, data))
            return []
        if t == PacketType.NEWLEADER:
            return self._on_newleader(pkt)
        if t == PacketType.PING:
            return [PingReply(pkt.zxid)]
        return []

    def _on_newleader(self, pkt: QuorumPacket) -> list[Action]:
        """Persist the synced txns, then currentEpoch, and only then ack NEWLEADER."""
        out: list[Action] = []
        if self.quorum is not None and pkt.data:
            self.newleader_quorum = QuorumConfig.from_bytes(pkt.data)
        if self.sync_mode in ("snap", "trunc"):
            out.append(TakeSnapshot())
        if self.held:
            out.append(LogTxns(tuple(p for _, p in self.held), sync=True))
            self.last_logged = max(self.last_logged, self.held[-1][0])
            committed = [z for z, _ in self.held if z in self.held_committed]
            if committed:
                out.append(Commit(max(committed)))
            self.uptodate_acks = [z for z, _ in self.held if z not in self.held_committed]
        self.held = []
        self.held_committed.clear()
        self.current_epoch = self.new_epoch
        out.append(PersistCurrentEpoch(self.new_epoch))
        out.append(self._send(PacketType.ACK, pkt.zxid))
        self.newleader_acked = True
        return out

    def _on_uptodate(self) -> list[Action]:
        self.stage = Stage.BROADCAST
        out: list[Action] = [Established(self.new_epoch)]
        if not self.observer:
            # proposals synced with NEWLEADER were made durable then; ack them now
            out += [self._send(PacketType.ACK, z) for z in self.uptodate_acks]
        self.uptodate_acks = []
        for zxid, data in sorted(self.held_activations):  # committed at NEWLEADER
            out += self._activate_committed(zxid, data)
            if self.abandoned:
                return out
        self.held_activations = []
        nq = self.newleader_quorum
        if nq is not None and self.quorum is not None and nq.version > self.quorum.version:
            out += self._activate(nq, None)  # Learner.syncWithLeader at UPTODATE
        return out

    # ---- reconfiguration ----------------------------------------------------------------
    def _note_reconfig(self, zxid: int, payload: bytes) -> None:
        config = reconfig_config(payload)
        if config is not None:
            self.reconfigs[zxid] = config

    def _activate(self, config: QuorumConfig, designated: int | None) -> list[Action]:
        """QuorumPeer.processReconfig: use config; a role that changes with it (participant
        <-> observer, an observer left out) or another designated leader ends this role."""
        assert self.quorum is not None
        if config.version <= self.quorum.version:
            return []
        self.quorum = config
        out: list[Action] = [Activate(config)]
        me = self.my_id
        if me in config.members:
            change = (me in config.observers) != self.observer
        else:
            change = self.observer  # an observer left out becomes a non-voting participant
        if change:
            return out + self._abandon(f"reconfig 0x{config.version:x} changes our role")
        if designated is not None and designated != self.leader_id:
            return out + self._abandon(f"reconfig 0x{config.version:x} designates leader {designated}")
        return out

    def _commit_and_activate(self, zxid: int, data: bytes) -> list[Action]:
        return [Commit(zxid), *self._activate_committed(zxid, data)]

    def _activate_committed(self, zxid: int, data: bytes) -> list[Action]:
        """The config of committed reconfig `zxid`, with the designated leader (data's
        first long), becomes the active one."""
        config = self.reconfigs.pop(zxid, None)
        for z in [z for z in self.reconfigs if z < zxid]:
            del self.reconfigs[z]
        if config is None or self.quorum is None:
            return []
        designated = int.from_bytes(data[:8], "big", signed=True) if len(data) >= 8 else None
        return self._activate(config, designated)

    # ---- broadcast ------------------------------------------------------------------
    def _broadcast_packet(self, pkt: QuorumPacket) -> list[Action]:
        t = pkt.type
        if t == PacketType.PROPOSAL:
            self.last_logged = pkt.zxid
            self.unacked.append(pkt.zxid)
            if self.quorum is not None:
                self._note_reconfig(pkt.zxid, pkt.data or b"")
            return [LogTxns((pkt.data or b"",))]
        if t == PacketType.COMMIT:
            return [Commit(pkt.zxid)]
        if t == PacketType.INFORM:
            self.last_logged = pkt.zxid
            return [LogTxns((pkt.data or b"",)), Commit(pkt.zxid)]
        if t == PacketType.COMMITANDACTIVATE:
            return self._commit_and_activate(pkt.zxid, pkt.data or b"")
        if t == PacketType.INFORMANDACTIVATE:
            self.last_logged = pkt.zxid
            data = pkt.data or b""
            if self.quorum is not None:
                self._note_reconfig(pkt.zxid, data[8:])
            return [LogTxns((data[8:],))] + self._commit_and_activate(pkt.zxid, data)
        if t == PacketType.PING:
            return [PingReply(pkt.zxid)]
        if t == PacketType.SYNC:
            return [SyncReleased()]
        if t == PacketType.REVALIDATE:
            r = Reader(pkt.data or b"")
            return [RevalidateAnswer(r.long(), r.bool())]
        return []

    def persisted(self, zxid: int) -> list[Action]:
        """The local log is durable up to zxid: ACK those proposals in order."""
        out: list[Action] = []
        while self.unacked and self.unacked[0] <= zxid:
            z = self.unacked.popleft()
            if not self.observer:
                out.append(self._send(PacketType.ACK, z))
        return out

    # ---- time -------------------------------------------------------------------------
    def tick(self, now_ms: int) -> list[Action]:
        if self.abandoned:
            return []
        limit = self.sync_limit if self.stage == Stage.BROADCAST else self.init_limit
        if now_ms - self.last_heard > limit * self.tick_ms:
            return self._abandon(f"no word from the leader for {now_ms - self.last_heard} ms")
        return []
