"""Reconfiguration at the ZAB leader, pure: the checks a reconfig request passes
(PrepRequestProcessor's, in its order), the config a reconfig txn carries, and the
designated leader of a committed one (Leader.getDesignatedLeader).  `Leader` calls
these with its state; committing and activating stay in leader.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from zkpy.jute.codec import Reader
from zkpy.jute.constants import Err, OpCode
from zkpy.server.quorum_config import NotANumber, QuorumConfig, QuorumConfigError

if TYPE_CHECKING:
    from zkpy.zab.leader import Proposal

_RECONFIG_TYPE = int(OpCode.RECONFIG).to_bytes(4, "big")


class ReconfigRefused(Exception):
    """A reconfig request the leader refuses; code is the client's error."""

    def __init__(self, code: Err, message: str) -> None:
        super().__init__(message)
        self.code = code


def reconfig_config(payload: bytes) -> QuorumConfig | None:
    """The new config a reconfig txn (TxnHeader + SetDataTxn, type 16) carries, else None."""
    if len(payload) < 32 or payload[28:32] != _RECONFIG_TYPE:
        return None
    r = Reader(payload[32:])
    r.ustring()
    data = r.buffer()
    return QuorumConfig.from_bytes(data or b"")


def check_reconfig(current: QuorumConfig | None, pending: QuorumConfig | None,
                   joining: str | None, leaving: str | None, members: str | None,
                   from_version: int, zxid: int, standalone_enabled: bool,
                   quorum_synced: Callable[[frozenset[int]], bool]) -> QuorumConfig:
    """The new config of a reconfig request, or ReconfigRefused.  `current` is the
    committed config (None: reconfig disabled), `pending` one proposed and not committed
    (Java's lastSeen), `quorum_synced` Leader.isQuorumSynced.  The ACL check on
    /zookeeper/config comes after these (the caller's)."""
    if current is None:
        raise ReconfigRefused(Err.RECONFIGDISABLED, "reconfig is disabled")
    last_seen = pending or current
    if last_seen.version != current.version:
        raise ReconfigRefused(Err.RECONFIGINPROGRESS, "another reconfig is in progress")
    if from_version != -1 and from_version != last_seen.version:
        raise ReconfigRefused(Err.BADVERSION, f"Reconfiguration from version {from_version} failed "
                              f"-- last seen version is {last_seen.version}")
    try:
        if members is not None:
            new = QuorumConfig.parse(members, zxid)
        else:
            new = QuorumConfig(last_seen.incremental(joining, leaving), zxid)
    except NotANumber as e:
        raise ReconfigRefused(Err.MARSHALLINGERROR, str(e)) from None
    except QuorumConfigError as e:
        raise ReconfigRefused(Err.BADARGUMENTS, str(e)) from None
    if standalone_enabled and len(new.voters) < 2:
        raise ReconfigRefused(Err.BADARGUMENTS, "Reconfig failed - new configuration must "
                              "include at least 2 followers")
    if len(new.voters) < 1:
        raise ReconfigRefused(Err.BADARGUMENTS, "Reconfig failed - new configuration must "
                              "include at least 1 follower")
    if not quorum_synced(new.voters):
        raise ReconfigRefused(Err.NEWCONFIGNOQUORUM, "Reconfig failed - there must be a connected "
                              "and synced quorum in new configuration")
    return new


def designated_leader(my_id: int, p: Proposal, outstanding: Mapping[int, Proposal]) -> int:
    """Leader.getDesignatedLeader for the reconfig proposal `p`: ourselves if still a
    voter, else the voter of the new config that acked it and the most proposals after
    it (`outstanding`, by zxid)."""
    assert p.config is not None
    if my_id in p.config.voters:
        return my_id
    candidates = (p.acks & p.config.voters) - {my_id}
    best = min(candidates)
    z = p.zxid + 1
    while z in outstanding and candidates:
        candidates &= outstanding[z].acks
        if not candidates:
            break
        best = min(candidates)
        z += 1
    return best
