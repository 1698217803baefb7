"""FastLeaderElection as a pure state machine: no sockets, no clock, no threads.

Mirrors Apache ZooKeeper 3.8's `FastLeaderElection` (the `lookForLeader` loop and the
`WorkerReceiver` replies) and the parts of `QuorumPeer` it reads (peer state, current
vote).  The caller feeds it time and messages and carries out the returned actions in
list order:

* `look(now, zxid, epoch)` starts a round (QuorumPeer entering LOOKING);
* `receive(now, sender, n)` for *every* decoded notification, in any state -- a member
  that is FOLLOWING/LEADING must keep answering LOOKING peers or late joiners never
  learn the leader;
* `tick(now)` once `now >= next_deadline()`.

Actions: `Send(to, message)` -- encode and hand to the connection manager; sends to
ourselves never appear, they are looped back internally (our own vote counts, exactly
as the reference's loopback queue).  `Decided(state, vote)` -- the round is over; the
caller starts the LEADING/FOLLOWING/OBSERVING role and, once that role has synced, calls
`established(state, vote with the new peer_epoch)` (QuorumPeer.updateElectionVote) so that
newcomers are answered with the right epoch.  When the role ends, call `look()` again.

A decision is a proposal, not a guarantee: as in the reference, two members can decide
different leaders in the same round (delays beyond finalizeWait, a reconnect re-sending an
older round's vote, a member joining mid-round).  ZAB makes it safe -- a leader that gets
no quorum of followers within initLimit, or a follower that cannot reach its leader, must
give up and `look()` again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from zkpy.election.messages import Notification, ServerState
from zkpy.server.quorum_config import QuorumConfig

__all__ = ["Action", "Decided", "FastLeaderElection", "NewConfig", "Send", "ServerState", "Vote"]

MIN_LONG = -(1 << 63)  # Long.MIN_VALUE: the non-vote an observer proposes
RECV_CAPACITY = 100  # QuorumCnxManager.RECV_CAPACITY: oldest dropped when full


@dataclass(frozen=True, slots=True)
class Vote:
    """A (leader, zxid, peer_epoch) proposal, stamped with the round it belongs to."""

    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to server `to` (never ourselves)."""

    to: int
    message: Notification


@dataclass(frozen=True, slots=True)
class Decided:
    """The election ended: become `state` (LEADING, FOLLOWING or OBSERVING) under `vote`."""

    state: ServerState
    vote: Vote


@dataclass(frozen=True, slots=True)
class NewConfig:
    """A notification carried a config newer than ours while we were LOOKING (reconfig
    enabled): the caller activates it (QuorumPeer.processReconfig); the election has
    already restarted with its voters."""

    config: QuorumConfig


Action = Send | Decided | NewConfig


@dataclass(frozen=True, slots=True)
class _Ballot:
    """A vote as recorded in recvset/outofelection, with what Vote.equals looks at."""

    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    state: ServerState
    version: int = 0

    def same(self, other: _Ballot) -> bool:
        """Java's Vote.equals: full match if either is LOOKING; else the leader and, unless
        exactly one side is a pre-3.4.6 (version 0) vote, the peer epoch (ZOOKEEPER-1732)."""
        if self.state == ServerState.LOOKING or other.state == ServerState.LOOKING:
            return (self.leader == other.leader and self.zxid == other.zxid
                    and self.election_epoch == other.election_epoch
                    and self.peer_epoch == other.peer_epoch)
        if (self.version > 0) != (other.version > 0):
            return self.leader == other.leader
        return self.leader == other.leader and self.peer_epoch == other.peer_epoch


def _beats(leader: int, zxid: int, epoch: int, cur_leader: int, cur_zxid: int, cur_epoch: int) -> bool:
    """totalOrderPredicate: higher peer epoch, then higher zxid, then higher sid wins."""
    return (epoch, zxid, leader) > (cur_epoch, cur_zxid, cur_leader)


class FastLeaderElection:
    """One member's leader election.  See the module docstring for the calling contract.

    `voters` is every participant's sid (including ours unless we observe); quorum is a
    strict majority of it.  `config` is put into every notification we send.
    """

    def __init__(self, my_id: int, voters: frozenset[int], observers: frozenset[int] = frozenset(),
                 min_interval_ms: int = 200, max_interval_ms: int = 60000,
                 finalize_wait_ms: int = 200, config: bytes = b"", reconfig: bool = False) -> None:
        if not voters:
            raise ValueError("an ensemble needs at least one voter")
        self.my_id = my_id
        self.voters = frozenset(voters)
        self.observers = frozenset(observers) - self.voters
        self.is_voter = my_id in self.voters
        self.min_interval_ms = min_interval_ms
        self.max_interval_ms = max_interval_ms
        self.finalize_wait_ms = finalize_wait_ms
        self.config = config
        # reconfigEnabled: adopt a newer config a notification carries (see receive)
        self.reconfig = reconfig
        parsed = QuorumConfig.from_bytes(config) if reconfig else None
        self.config_version = parsed.version if parsed is not None else 0
        self._looked = (0, 0)  # look()'s arguments, for a restart with a new config
        self.state = ServerState.LOOKING  # QuorumPeer's state; a peer boots LOOKING
        self.logical_clock = 0
        # QuorumPeer.currentVote: the last decided vote (our own vote until the first
        # decision).  While LOOKING the round's proposal is `proposal`, not this.
        self.current_vote = Vote(my_id, -1, -1, -1)
        self._started = False
        self._running = False  # inside lookForLeader
        self._init = (MIN_LONG, MIN_LONG, MIN_LONG)  # (leader, zxid, peer_epoch)
        self._proposal = self._init
        self._recvset: dict[int, _Ballot] = {}
        self._outofelection: dict[int, _Ballot] = {}
        self._queue: deque[tuple[int, Notification]] = deque(maxlen=RECV_CAPACITY)
        self._not_timeout = min_interval_ms
        self._not_deadline = 0
        self._finalize_deadline: int | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def proposal(self) -> Vote:
        """The vote this round currently proposes (FLE.getVote, stamped with the round)."""
        leader, zxid, epoch = self._proposal
        return Vote(leader, zxid, self.logical_clock, epoch)

    def look(self, now_ms: int, last_logged_zxid: int, current_epoch: int) -> list[Action]:
        """Start a new round: logicalclock += 1, propose ourselves, notify every voter."""
        if not self._started:
            self._started = True
            self.current_vote = Vote(self.my_id, last_logged_zxid, -1, current_epoch)
        self.state = ServerState.LOOKING
        self._running = True
        self._looked = (last_logged_zxid, current_epoch)
        self.logical_clock += 1
        if self.is_voter:
            self._init = (self.my_id, last_logged_zxid, current_epoch)
        else:
            self._init = (MIN_LONG, MIN_LONG, MIN_LONG)
        self._proposal = self._init
        self._recvset.clear()
        self._outofelection.clear()
        self._not_timeout = self.min_interval_ms
        self._not_deadline = now_ms + self._not_timeout
        self._finalize_deadline = None
        out: list[Action] = []
        self._send_notifications(out)
        self._drain(now_ms, out)
        return out

    def receive(self, now_ms: int, sender: int, n: Notification) -> list[Action]:
        """A notification from `sender` (ourselves included, if the caller loops back)."""
        out: list[Action] = []
        if self.reconfig and n.config and self.state == ServerState.LOOKING:
            # WorkerReceiver: a LOOKING peer takes a newer config from any notification
            # and restarts its election with it (a joiner learns the ensemble this way)
            config = QuorumConfig.from_bytes(n.config)
            # (one without voters could elect nobody: ignored, never adopted)
            if config is not None and config.version > self.config_version and config.voters:
                out.append(NewConfig(config))
                self.reconfigure(config.voters, config.observers, config.text().encode(), config.version)
                return out + self.look(now_ms, *self._looked)
        self._receive_thread(sender, n, out)
        self._drain(now_ms, out)
        return out

    def tick(self, now_ms: int) -> list[Action]:
        """Fire whatever deadline has passed: finalizeWait expiry or notification timeout."""
        out: list[Action] = []
        if not self._running:
            return out
        if self._finalize_deadline is not None:
            if now_ms >= self._finalize_deadline:
                leader, zxid, epoch = self._proposal
                self._decide(leader, Vote(leader, zxid, self.logical_clock, epoch), out)
            return out
        if now_ms >= self._not_deadline:
            # No notification for notTimeout: send ours again (the reference does so when a
            # send queue is drained, else reconnects; our transport reconnects on send).
            self._not_timeout = min(self._not_timeout * 2, self.max_interval_ms)
            self._not_deadline = now_ms + self._not_timeout
            self._send_notifications(out)
            self._drain(now_ms, out)
        return out

    def next_deadline(self) -> int | None:
        """When `tick` wants to run next (ms, the caller's clock); None outside an election."""
        if not self._running:
            return None
        if self._finalize_deadline is not None:
            return self._finalize_deadline
        return self._not_deadline

    def established(self, state: ServerState, vote: Vote) -> None:
        """The role chosen by `Decided` is now `state` with `vote` (typically the decided
        vote with peer_epoch = the new epoch, as Leader/Learner.updateElectionVote do).
        From now on LOOKING peers are answered with this vote."""
        if state == ServerState.LOOKING:
            raise ValueError("use look() to go back to LOOKING")
        self.state = state
        self.current_vote = vote
        self._running = False
        self._finalize_deadline = None
        self._queue.clear()

    def reconfigure(self, voters: frozenset[int], observers: frozenset[int], config: bytes,
                    version: int) -> None:
        """A new config is active: count these voters from now on and send its text."""
        self.voters = frozenset(voters)
        self.observers = frozenset(observers) - self.voters
        self.is_voter = self.my_id in self.voters
        self.config = config
        self.config_version = max(self.config_version, version)

    # -- the WorkerReceiver: runs for every message, in every state ----------------------

    def _receive_thread(self, sender: int, n: Notification, out: list[Action]) -> None:
        if sender not in self.voters:
            # A non-voter (an observer) only ever learns from us: answer right away.
            cv = self.current_vote
            self._send(sender, Notification(self.state, cv.leader, cv.zxid, self.logical_clock,
                                            cv.peer_epoch, config=self.config), out)
            return
        if self.state == ServerState.LOOKING:
            self._queue.append((sender, n))
            # Only voters send the catch-up reply: an observer's answer is ignored by voters
            # anyway, and with the voter answering every observer message the two would
            # echo each other (the reference has both rules; zkpy drops this one).
            if (self.is_voter and n.state == ServerState.LOOKING
                    and n.election_epoch < self.logical_clock):
                leader, zxid, epoch = self._proposal
                self._send(sender, Notification(ServerState.LOOKING, leader, zxid, self.logical_clock,
                                                epoch, config=self.config), out)
        elif n.state == ServerState.LOOKING:
            cv = self.current_vote
            self._send(sender, Notification(self.state, cv.leader, cv.zxid, cv.election_epoch,
                                            cv.peer_epoch, config=self.config), out)

    def _send(self, to: int, n: Notification, out: list[Action]) -> None:
        if to == self.my_id:
            self._receive_thread(to, n, out)  # loopback: straight into our receive queue
        else:
            out.append(Send(to, n))

    def _send_notifications(self, out: list[Action]) -> None:
        leader, zxid, epoch = self._proposal
        n = Notification(ServerState.LOOKING, leader, zxid, self.logical_clock, epoch, config=self.config)
        for sid in sorted(self.voters):
            self._send(sid, n, out)

    # -- lookForLeader's loop body -------------------------------------------------------

    def _drain(self, now_ms: int, out: list[Action]) -> None:
        while self._running and self._queue:
            sender, n = self._queue.popleft()
            self._step(now_ms, sender, n, out)

    def _step(self, now_ms: int, sender: int, n: Notification, out: list[Action]) -> None:
        if self._finalize_deadline is not None:
            if not _beats(n.leader, n.zxid, n.peer_epoch, *self._proposal):
                # finalizeWait: anything that does not beat our proposal is consumed and
                # restarts the 200 ms wait.
                self._finalize_deadline = now_ms + self.finalize_wait_ms
                return
            self._finalize_deadline = None  # requeued in the reference; handled below
        self._not_deadline = now_ms + self._not_timeout
        if sender not in self.voters or n.leader not in self.voters:
            return
        if n.state == ServerState.LOOKING:
            self._looking_notification(now_ms, sender, n, out)
        elif n.state in (ServerState.FOLLOWING, ServerState.LEADING):
            self._established_notification(sender, n, out)
        # OBSERVING: ignored

    def _looking_notification(self, now_ms: int, sender: int, n: Notification, out: list[Action]) -> None:
        if self._init[1] == -1 or n.zxid == -1:
            return
        if n.election_epoch > self.logical_clock:
            self.logical_clock = n.election_epoch
            self._recvset.clear()
            if _beats(n.leader, n.zxid, n.peer_epoch, *self._init):
                self._proposal = (n.leader, n.zxid, n.peer_epoch)
            else:
                self._proposal = self._init
            self._send_notifications(out)
        elif n.election_epoch < self.logical_clock:
            return
        elif _beats(n.leader, n.zxid, n.peer_epoch, *self._proposal):
            self._proposal = (n.leader, n.zxid, n.peer_epoch)
            self._send_notifications(out)
        self._recvset[sender] = _Ballot(n.leader, n.zxid, n.election_epoch, n.peer_epoch,
                                        ServerState.LOOKING)
        leader, zxid, epoch = self._proposal
        if self._has_quorum(self._recvset, _Ballot(leader, zxid, self.logical_clock, epoch,
                                                   ServerState.LOOKING)):
            self._finalize_deadline = now_ms + self.finalize_wait_ms

    def _established_notification(self, sender: int, n: Notification, out: list[Action]) -> None:
        """receivedFollowingNotification: join a leader a quorum already follows."""
        target = _Ballot(n.leader, n.zxid, n.election_epoch, n.peer_epoch, n.state, n.version)
        end = Vote(n.leader, n.zxid, n.election_epoch, n.peer_epoch)
        if n.election_epoch == self.logical_clock:
            self._recvset[sender] = _Ballot(n.leader, n.zxid, n.election_epoch, n.peer_epoch, n.state)
            if self._has_quorum(self._recvset, target) and self._check_leader(self._recvset, n):
                self._decide(n.leader, end, out)
                return
        # outofelection also keeps this round's votes (ZOOKEEPER-1732).
        self._outofelection[sender] = target
        if self._has_quorum(self._outofelection, target) and self._check_leader(self._outofelection, n):
            self.logical_clock = n.election_epoch
            self._decide(n.leader, end, out)

    def _check_leader(self, votes: dict[int, _Ballot], n: Notification) -> bool:
        """checkLeader: the leader itself must have told us it is LEADING (or be us)."""
        if n.leader != self.my_id:
            ballot = votes.get(n.leader)
            return ballot is not None and ballot.state == ServerState.LEADING
        return self.logical_clock == n.election_epoch

    def _has_quorum(self, votes: dict[int, _Ballot], target: _Ballot) -> bool:
        acks = sum(1 for sid, ballot in votes.items() if sid in self.voters and ballot.same(target))
        return acks > len(self.voters) // 2

    def _decide(self, leader: int, vote: Vote, out: list[Action]) -> None:
        if leader == self.my_id:
            state = ServerState.LEADING
        else:
            state = ServerState.FOLLOWING if self.is_voter else ServerState.OBSERVING
        self.state = state
        self.current_vote = vote
        self._running = False
        self._finalize_deadline = None
        self._queue.clear()  # leaveInstance
        out.append(Decided(state, vote))
