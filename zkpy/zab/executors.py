"""Carry out the ZAB cores' actions: written once, for zkpy.zab.peer and the simulator.

`LeaderExecutor` and `LearnerExecutor` run the action lists of `zkpy.zab.leader.Leader`
and `zkpy.zab.learner.Learner` front to back (the ordering duty of zkpy.zab.actions),
and are the `Replication` object the server core calls (next_zxid, propose,
persisted, forward, revalidate).  They touch nothing themselves; they go through four
small interfaces:

* `Disk`: epoch files, the role's txn log (sync, truncate, roll), snapshots, recovery
  and log replay, and the SNAP stream codec;
* `Link`: one quorum connection (the leader holds one per learner handle, a learner
  one to its leader);
* `Pipeline`: the server core (zkpy.server.core.ZooKeeperServer): commit, log a
  proposal, forwarded requests, revalidation, syncs, sessions, replacing the tree;
* the role callbacks: `established(epoch)`, `finish_role(reason)` and `activate(config)`
  (a reconfig committed: the member's new view of the ensemble).

zkpy.zab.peer plugs in files and asyncio streams; tests/sim_zab.py plugs in its fakes,
so every simulated seed runs this code.  Each `run` is called per packet batch: keep it
free of allocation beyond what the actions need.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from zkpy.jute.codec import Writer
from zkpy.jute.constants import KeeperError
from zkpy.jute.txns import TxnHeader
from zkpy.server.metrics import METRICS
from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab import actions as A
from zkpy.zab.leader import Leader
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketType, QuorumPacket, request_data
from zkpy.zab.reconfig import ReconfigRefused

log = logging.getLogger("zkpy.quorum")

_SYNC_TYPES = (int(PacketType.DIFF), int(PacketType.TRUNC))


class Disk(Protocol):
    """A member's data dir and the current role's txn log.  Every write is durable
    (fsynced) when the call returns."""

    def write_epoch(self, name: str, epoch: int) -> None:
        """name: "acceptedEpoch" or "currentEpoch"."""

    def sync_log(self) -> None:
        """Make everything appended to the txn log so far durable."""

    def truncate_log(self, zxid: int) -> None:
        """Cut the txn log after zxid (pending appends are synced first)."""

    def roll_log(self) -> None:
        """The next append starts a new log file."""

    def take_snapshot(self, tree: Any) -> None:
        """Write a durable snapshot of tree as of its last_processed_zxid."""

    def ensure_snapshot(self, tree: Any) -> None:
        """At start-up: snapshot tree if the data dir holds no valid snapshot."""

    def recover(self) -> Any:
        """The tree on disk: the newest snapshot plus the logged txns after it."""

    def replay_log(self, tree: Any) -> int:
        """Apply to tree the logged txns after its last_processed_zxid; returns how many."""

    def encode_snapshot(self, tree: Any) -> bytes:
        """The SNAP stream of tree as it is now."""

    def decode_snapshot(self, stream: bytes, zxid: int) -> Any:
        """The tree a SNAP stream holds; its last_processed_zxid is zxid."""


class Link(Protocol):
    """One quorum connection.  send queues pkt (and raw bytes after it, for SNAP);
    encoded, when given, is pkt.encode() made once for every learner."""

    def send(self, pkt: QuorumPacket, raw: bytes = b"", encoded: bytes | None = None) -> None: ...


class Session(Protocol):
    """A client session as the leader tracks it (zkpy.server.sessions.Session)."""

    timeout: int
    closing: bool
    owner: int | None


class Sessions(Protocol):
    @property
    def sessions(self) -> Mapping[int, Session]: ...

    def touch(self, sid: int, now_ms: int) -> bool: ...


class Pipeline(Protocol):
    """What the executors ask of the server core (zkpy.server.core.ZooKeeperServer)."""

    @property
    def tree(self) -> Any: ...  # has last_processed_zxid

    @property
    def touched(self) -> dict[int, int]: ...  # learner: sessions seen since the last ping

    @property
    def sessions(self) -> Sessions: ...

    @property
    def write_error(self) -> str | None: ...

    def now_ms(self) -> int: ...

    def commit(self, upto: int) -> None: ...

    def log_proposal(self, payload: bytes) -> int: ...

    def forwarded(self, sid: int, cxid: int, op: int, body: bytes, auth: list[tuple[str, str]],
                  owner: int) -> None: ...

    def revalidated(self, sid: int, valid: bool) -> None: ...

    def sync_released(self) -> None: ...

    def flush_dirty(self) -> None: ...

    def replace_tree(self, tree: Any) -> None: ...


def load_tree(disk: Disk, kept: Any | None) -> Any:
    """The tree to elect with: recovered from disk (at start-up, or when the last role
    left nothing usable; snapshotted if the data dir has no snapshot, as Java does at
    start-up), else the tree the last role left in memory plus the txns it logged but
    did not apply -- what a recovery from disk would give, without reading a whole
    snapshot again (Java keeps its database across elections the same way)."""
    if kept is None:
        tree = disk.recover()
        disk.ensure_snapshot(tree)
        return tree
    start = kept.last_processed_zxid
    count = disk.replay_log(kept)
    log.info("kept the tree at 0x%x, applied %d more logged txns", start, count)
    return kept


class LeaderExecutor:
    """Replication for the leader's server core, and the leader core's action runner.

    Set `pipeline` (the core built with this object as its `zab`) and `links` (learner
    handle -> Link) before the first action runs."""

    role = "leader"

    def __init__(self, leader: Leader, disk: Disk, established: Callable[[int], None],
                 finish_role: Callable[[str], None], my_id: int = 0,
                 activate: Callable[[QuorumConfig], None] | None = None) -> None:
        self.leader = leader
        self.disk = disk
        self.established = established
        self.finish_role = finish_role
        self.activate = activate
        self.my_id = my_id
        self.pipeline: Pipeline | None = None
        self.links: Mapping[int, Link] = {}
        self.voters: frozenset[int] = leader.voters  # for mntr

    # ---- Replication: what the server core calls ----------------------------------------
    def next_zxid(self) -> int:
        return self.leader.next_zxid()

    def propose(self, hdr: TxnHeader, payload: bytes) -> None:
        self.run(self.leader.propose(hdr.zxid, payload))

    def persisted(self, zxid: int) -> None:
        self.run(self.leader.persisted(zxid))

    def prepare_reconfig(self, joining: str | None, leaving: str | None, members: str | None,
                         from_version: int, zxid: int, now_ms: int, standalone_enabled: bool) -> bytes:
        """The new config's text for a reconfig request (the leader core's checks);
        KeeperError with the client's error when refused."""
        try:
            config = self.leader.prepare_reconfig(joining, leaving, members, from_version, zxid,
                                                  now_ms, standalone_enabled)
        except ReconfigRefused as e:
            log.warning("server %d: reconfig refused: %s", self.my_id, e)
            raise KeeperError(e.code) from None
        log.info("server %d: reconfig to version 0x%x: %s", self.my_id, zxid,
                 ", ".join(config.lines()))
        return config.text().encode()

    def forward(self, *args: Any) -> None:
        raise RuntimeError("the leader does not forward requests")

    def revalidate(self, *args: Any) -> None:
        raise RuntimeError("the leader does not revalidate through itself")

    def kept_tree(self) -> Any | None:
        """The tree to keep for the next election (see load_tree), or None: reload."""
        core = self.pipeline
        return core.tree if core is not None and core.write_error is None else None

    # ---- actions ---------------------------------------------------------------------------
    def _log_sync(self, handle: int, how: str, zxid: int) -> None:
        ls = self.leader.learners.get(handle)
        if how in ("SNAP", "DIFF"):
            METRICS.inc("snap_count" if how == "SNAP" else "diff_count")
        log.info("server %d: syncing learner %s by %s to 0x%x", self.my_id,
                 ls.sid if ls is not None else "?", how, zxid)

    def run(self, actions: list[A.Action]) -> None:
        core = self.pipeline
        assert core is not None
        links = self.links
        encoded: dict[int, bytes] = {}
        commit = -1  # consecutive commits are applied together, before any other action
        for a in actions:
            if type(a) is A.Send:
                s = links.get(a.to)
                if s is not None:
                    pkt = a.packet
                    if pkt.type in _SYNC_TYPES:
                        self._log_sync(a.to, PacketType(pkt.type).name, pkt.zxid)
                    key = id(pkt)  # a proposal or commit is one object for every learner
                    enc = encoded.get(key)
                    if enc is None:
                        enc = encoded[key] = pkt.encode()
                    s.send(pkt, encoded=enc)
                continue
            if type(a) is A.Commit:
                commit = a.zxid
                continue
            if commit >= 0:
                core.commit(commit)
                commit = -1
            self._other(core, a)
        if commit >= 0:
            core.commit(commit)
        core.flush_dirty()

    def _other(self, core: Pipeline, a: A.Action) -> None:
        if isinstance(a, A.SendSnapshot):
            s = self.links.get(a.to)
            if s is not None:
                zxid = core.tree.last_processed_zxid
                self._log_sync(a.to, "SNAP", zxid)
                s.send(QuorumPacket(PacketType.SNAP, zxid), self.disk.encode_snapshot(core.tree))
        elif isinstance(a, A.PersistAcceptedEpoch):
            self.disk.write_epoch("acceptedEpoch", a.epoch)
        elif isinstance(a, A.PersistCurrentEpoch):
            self.disk.write_epoch("currentEpoch", a.epoch)
        elif isinstance(a, A.Established):
            self.established(a.epoch)
        elif isinstance(a, A.Activate):
            self.voters = a.config.voters
            if self.activate is not None:
                self.activate(a.config)
        elif isinstance(a, A.ForwardedRequest):
            ls = self.leader.learners.get(a.learner)
            if ls is not None:
                core.forwarded(a.session_id, a.cxid, a.op, a.body, list(a.auth), ls.sid)
        elif isinstance(a, A.Revalidate):
            session = core.sessions.sessions.get(a.session_id)
            ls = self.leader.learners.get(a.learner)
            valid = False
            if session is not None and not session.closing and ls is not None:
                valid = True
                session.timeout = a.timeout
                session.owner = ls.sid  # its writes through another server: SESSIONMOVED
                core.sessions.touch(a.session_id, core.now_ms())
            self.run(self.leader.revalidated(a.learner, a.session_id, valid))
        elif isinstance(a, A.TouchSessions):
            now = core.now_ms()
            for sid, _timeout in a.sessions:
                core.sessions.touch(sid, now)
        elif isinstance(a, A.Abandon):
            self.finish_role(a.reason)


class LearnerExecutor:
    """Replication for a follower's or observer's server core; runs learner actions.

    Set `pipeline` before the first action runs and `link` once connected to the leader."""

    def __init__(self, learner: Learner, role: str, disk: Disk, established: Callable[[int], None],
                 finish_role: Callable[[str], None],
                 activate: Callable[[QuorumConfig], None] | None = None) -> None:
        self.learner = learner
        self.role = role  # "follower" or "observer"
        self.disk = disk
        self.established = established
        self.finish_role = finish_role
        self.activate = activate
        self.pipeline: Pipeline | None = None
        self.link: Link | None = None
        self.voters: frozenset[int] = frozenset()  # the ensemble's voters, for mntr
        # False from a SNAP's LoadSnapshot until its TakeSnapshot: the tree in memory is
        # not what the disk holds, so a role ending in between must not keep it.
        self.tree_on_disk = True

    # ---- Replication: what the server core calls ----------------------------------------
    def next_zxid(self) -> int:
        raise RuntimeError("learners do not assign zxids")

    def propose(self, hdr: TxnHeader, payload: bytes) -> None:
        raise RuntimeError("learners do not propose")

    def persisted(self, zxid: int) -> None:
        self.run(self.learner.persisted(zxid))

    def forward(self, session_id: int, cxid: int, op: int, body: bytes,
                auth: list[tuple[str, str]]) -> None:
        if self.link is not None:
            self.link.send(QuorumPacket(PacketType.REQUEST, -1, request_data(session_id, cxid, op, body),
                                        tuple(auth)))

    def revalidate(self, session_id: int, timeout: int) -> None:
        if self.link is not None:
            data = Writer().long(session_id).int(timeout).getvalue()
            self.link.send(QuorumPacket(PacketType.REVALIDATE, -1, data))

    def kept_tree(self) -> Any | None:
        """The tree to keep for the next election (see load_tree), or None: reload."""
        core = self.pipeline
        if core is None or core.write_error is not None or not self.tree_on_disk:
            return None
        return core.tree

    # ---- actions ---------------------------------------------------------------------------
    def run(self, actions: list[A.Action]) -> None:
        core = self.pipeline
        assert core is not None
        for a in actions:
            if type(a) is A.LogTxns:
                for p in a.payloads:
                    core.log_proposal(p)
                if a.sync:
                    self.disk.sync_log()
            elif type(a) is A.Commit:
                core.commit(a.zxid)
            elif type(a) is A.Send:
                if self.link is not None:
                    self.link.send(a.packet)
            else:
                self._other(core, a)
        core.flush_dirty()

    def _other(self, core: Pipeline, a: A.Action) -> None:
        disk = self.disk
        if isinstance(a, A.PersistAcceptedEpoch):
            disk.write_epoch("acceptedEpoch", a.epoch)
        elif isinstance(a, A.PersistCurrentEpoch):
            disk.write_epoch("currentEpoch", a.epoch)
        elif isinstance(a, A.LoadSnapshot):
            self.tree_on_disk = False
            core.replace_tree(disk.decode_snapshot(a.stream, a.zxid))
        elif isinstance(a, A.Truncate):
            disk.truncate_log(a.zxid)
            core.replace_tree(disk.recover())
            self.tree_on_disk = True
        elif isinstance(a, A.TakeSnapshot):
            disk.take_snapshot(core.tree)
            disk.roll_log()
            self.tree_on_disk = True
        elif isinstance(a, A.Established):
            self.established(a.epoch)
        elif isinstance(a, A.Activate):
            self.voters = a.config.voters
            if self.activate is not None:
                self.activate(a.config)
        elif isinstance(a, A.PingReply):
            w = Writer()
            touched = core.touched
            for sid, timeout in touched.items():
                w.long(sid).int(timeout)
            touched.clear()
            if self.link is not None:
                self.link.send(QuorumPacket(PacketType.PING, a.zxid, w.getvalue()))
        elif isinstance(a, A.SyncReleased):
            core.sync_released()
        elif isinstance(a, A.RevalidateAnswer):
            core.revalidated(a.session_id, a.valid)
        elif isinstance(a, A.Abandon):
            self.finish_role(a.reason)
