"""Actions the pure ZAB cores ask their caller to carry out, in list order.

Ordering duty: the caller executes a batch front to back and does not start the next
action until the previous one is done.  In particular every Persist* action and
`LogTxns(sync=True)` must be durable (fsynced) before a later `Send` goes out: that is
how a learner persists the synced txns, then its new currentEpoch, and only then acks
NEWLEADER (the rule ZooKeeper learned through data-loss bugs).

Actions are values: nothing changes one after it is made.  They are plain slotted
dataclasses, not frozen ones (a frozen dataclass costs ~150 ns more per field to build,
and the broadcast path builds several per write).
"""

from __future__ import annotations

from dataclasses import dataclass

from zkpy.server.quorum_config import QuorumConfig
from zkpy.zab.packets import QuorumPacket


@dataclass(slots=True)
class Send:
    """Send packet to the peer behind handle (a learner id on the leader, 0 = the leader)."""

    to: int
    packet: QuorumPacket


@dataclass(slots=True)
class SendSnapshot:
    """Leader: serialise the tree as it is now and send SNAP(zxid) + the stream to `to`."""

    to: int


@dataclass(slots=True)
class PersistAcceptedEpoch:
    epoch: int


@dataclass(slots=True)
class PersistCurrentEpoch:
    epoch: int


@dataclass(slots=True)
class Commit:
    """Apply every logged txn up to and including zxid (in zxid order)."""

    zxid: int


@dataclass(slots=True)
class LogTxns:
    """Learner: append these txn payloads (TxnHeader + record) to the log; sync=True: fsync now."""

    payloads: tuple[bytes, ...]
    sync: bool = False


@dataclass(slots=True)
class LoadSnapshot:
    """Learner: replace the tree with the SNAP stream's contents, lastProcessedZxid = zxid."""

    stream: bytes
    zxid: int


@dataclass(slots=True)
class Truncate:
    """Learner: cut the txn log after zxid and reload the tree from disk."""

    zxid: int


@dataclass(slots=True)
class TakeSnapshot:
    """Write a durable snapshot of the tree now (a learner after SNAP or TRUNC sync)."""


@dataclass(slots=True)
class Established:
    """Leader: a quorum acked NEWLEADER; learner: UPTODATE arrived. Start serving clients."""

    epoch: int


@dataclass(slots=True)
class Activate:
    """A config became the committed one (a reconfig committed, or the version the
    initial config got when the epoch was established): use its members from now on and
    write it to disk (zoo.cfg.dynamic.<version>)."""

    config: QuorumConfig


@dataclass(slots=True)
class Abandon:
    """Give up this role and go back to leader election."""

    reason: str


@dataclass(slots=True)
class ForwardedRequest:
    """Leader: a learner forwarded a client request (write, createSession, closeSession, sync)."""

    learner: int
    session_id: int
    cxid: int
    op: int
    body: bytes
    auth: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Revalidate:
    """Leader: a client reconnected to a learner; answer with Leader.revalidated()."""

    learner: int
    session_id: int
    timeout: int


@dataclass(slots=True)
class TouchSessions:
    """Leader: sessions a learner saw traffic on since its last ping."""

    learner: int
    sessions: tuple[tuple[int, int], ...]


@dataclass(slots=True)
class SyncReleased:
    """Learner: the leader answered the oldest forwarded sync."""


@dataclass(slots=True)
class RevalidateAnswer:
    """Learner: the leader's answer for a REVALIDATE."""

    session_id: int
    valid: bool


@dataclass(slots=True)
class PingReply:
    """Learner: answer the leader's ping (the caller adds its session touches)."""

    zxid: int


Action = (
    Send | SendSnapshot | PersistAcceptedEpoch | PersistCurrentEpoch | Commit | LogTxns
    | LoadSnapshot | Truncate | TakeSnapshot | Established | Activate | Abandon
    | ForwardedRequest | Revalidate | TouchSessions | SyncReleased | RevalidateAnswer | PingReply
)
