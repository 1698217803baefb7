"""Local sessions (`localSessionsEnabled`, ZooKeeper 3.5+): rules shared by every role.

A session opened on an ensemble member with local sessions enabled lives only on that
member: creating, touching, expiring and closing it log no txn.  It may read and make
non-ephemeral writes (the leader accepts writes from a session it does not track when
the session id names another server, as ZooKeeper's LeaderSessionTracker).  Its first
ephemeral create (or a multi with one) first upgrades it to a global session through the
leader (`localSessionsUpgradingEnabled`), or fails with EPHEMERALONLOCALSESSION.
"""

from __future__ import annotations

from typing import Any

from zkpy.jute.constants import OpCode

_EPHEMERAL_MODES = (1, 3)  # EPHEMERAL, EPHEMERAL_SEQUENTIAL (a TTL or container mode is not)
_PLAIN_CREATES = (OpCode.CREATE, OpCode.CREATE2)


def creates_ephemeral(op: int, req: Any) -> bool:
    """Whether a create/create2 or a multi creates an ephemeral node (what makes a local
    session upgrade: createTTL and createContainer never do)."""
    if op in _PLAIN_CREATES:
        return getattr(req, "flags", 0) in _EPHEMERAL_MODES
    if op == OpCode.MULTI:
        return any(sub_op in _PLAIN_CREATES and getattr(sub, "flags", 0) in _EPHEMERAL_MODES
                   for sub_op, sub in getattr(req, "ops", ()))
    return False


def server_of(session_id: int) -> int:
    """The id of the server that created the session (its high byte)."""
    return (session_id >> 56) & 0xFF
