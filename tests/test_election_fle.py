"""The pure FastLeaderElection core, step by step against the reference's lookForLeader."""

from __future__ import annotations

import pytest

from zkpy.election.fle import MIN_LONG, Decided, FastLeaderElection, Send, Vote
from zkpy.election.messages import Notification, ServerState

LOOKING, FOLLOWING, LEADING, OBSERVING = (ServerState.LOOKING, ServerState.FOLLOWING,
                                          ServerState.LEADING, ServerState.OBSERVING)
V3 = frozenset({1, 2, 3})


def note(state: ServerState, leader: int, zxid: int, ee: int, pe: int, version: int = 2) -> Notification:
    return Notification(state, leader, zxid, ee, pe, version=version)


def sent(actions: list[Send | Decided]) -> list[tuple[int, str, int, int, int, int]]:
    """Sends as (to, state, leader, zxid, electionEpoch, peerEpoch)."""
    return [(a.to, a.message.state.name, a.message.leader, a.message.zxid, a.message.election_epoch,
             a.message.peer_epoch) for a in actions if isinstance(a, Send)]


def decisions(actions: list[Send | Decided]) -> list[Decided]:
    return [a for a in actions if isinstance(a, Decided)]


def test_look_notifies_the_other_voters_and_our_own_vote_counts() -> None:
    fle = FastLeaderElection(1, V3)
    acts = fle.look(0, 5, 1)
    assert sent(acts) == [(2, "LOOKING", 1, 5, 1, 1), (3, "LOOKING", 1, 5, 1, 1)]
    assert fle.logical_clock == 1 and fle.proposal == Vote(1, 5, 1, 1) and fle.next_deadline() == 200
    # 2 still proposes itself: one vote for us (our own) is no quorum.
    assert fle.receive(10, 2, note(LOOKING, 2, 3, 1, 1)) == []
    # 2 comes round to us: {1, 2} is a quorum; finalizeWait starts.
    assert fle.receive(20, 2, note(LOOKING, 1, 5, 1, 1)) == []
    assert fle.next_deadline() == 220
    assert fle.tick(219) == []
    assert fle.tick(220) == [Decided(LEADING, Vote(1, 5, 1, 1))]
    assert fle.state == LEADING and fle.current_vote == Vote(1, 5, 1, 1)
    assert fle.next_deadline() is None and fle.tick(10_000) == []


def test_a_better_vote_is_adopted_broadcast_and_followed() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    acts = fle.receive(10, 3, note(LOOKING, 3, 5, 1, 1))  # same zxid, larger sid
    assert sent(acts) == [(2, "LOOKING", 3, 5, 1, 1), (3, "LOOKING", 3, 5, 1, 1)]
    assert fle.next_deadline() == 210  # {1 (looped back), 3} agree
    assert fle.receive(20, 3, note(LOOKING, 3, 5, 1, 1)) == []  # a duplicate: no new broadcast
    assert fle.tick(220) == [Decided(FOLLOWING, Vote(3, 5, 1, 1))]


@pytest.mark.parametrize(("mine", "theirs", "adopt"), [
    ((1, 5, 1), (2, 9, 0), False),  # higher peer epoch wins over zxid
    ((1, 5, 1), (2, 4, 1), False),
    ((1, 5, 1), (2, 6, 1), True),
    ((2, 5, 1), (1, 5, 1), False),  # equal: the larger sid
    ((1, 5, 1), (2, 0, 2), True),
])
def test_total_order(mine: tuple[int, int, int], theirs: tuple[int, int, int], adopt: bool) -> None:
    fle = FastLeaderElection(mine[0], V3)
    fle.look(0, mine[1], mine[2])
    fle.receive(1, theirs[0], note(LOOKING, theirs[0], theirs[1], 1, theirs[2]))
    assert (fle.proposal.leader == theirs[0]) is adopt


def test_finalize_wait_is_restarted_by_any_message_and_broken_by_a_better_one() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    fle.receive(10, 3, note(LOOKING, 3, 5, 1, 1))
    assert fle.next_deadline() == 210
    # A worse vote is swallowed and the 200 ms wait starts over.
    assert fle.receive(150, 2, note(LOOKING, 2, 1, 1, 1)) == []
    assert fle.next_deadline() == 350
    # A better one ends the wait; we adopt it and agree with 2 at once.
    acts = fle.receive(300, 2, note(LOOKING, 2, 9, 1, 1))
    assert sent(acts) == [(2, "LOOKING", 2, 9, 1, 1), (3, "LOOKING", 2, 9, 1, 1)]
    assert fle.next_deadline() == 500
    assert fle.tick(500) == [Decided(FOLLOWING, Vote(2, 9, 1, 1))]


def test_a_higher_round_resets_our_votes_and_proposal() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    fle.receive(10, 2, note(LOOKING, 1, 5, 1, 1))  # 2 votes for us in round 1 ...
    fle.receive(11, 2, note(LOOKING, 2, 3, 4, 1))  # ... but it is in round 4 now, with a worse vote
    assert fle.next_deadline() == 211  # finalizeWait swallowed it, as in the reference
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    acts = fle.receive(20, 2, note(LOOKING, 2, 3, 4, 1))
    assert fle.logical_clock == 4
    assert sent(acts) == [(2, "LOOKING", 1, 5, 4, 1), (3, "LOOKING", 1, 5, 4, 1)]
    assert fle.next_deadline() == 220  # no quorum in round 4 yet: the notification timeout
    acts = fle.receive(30, 3, note(LOOKING, 3, 9, 6, 1))  # round 6 with a better vote
    assert sent(acts) == [(2, "LOOKING", 3, 9, 6, 1), (3, "LOOKING", 3, 9, 6, 1)]
    assert fle.next_deadline() == 230  # {1, 3} agree in round 6


def test_a_lagging_looking_peer_gets_our_proposal_and_is_not_counted() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    fle.receive(1, 2, note(LOOKING, 2, 0, 3, 1))  # jump to round 3
    acts = fle.receive(2, 3, note(LOOKING, 3, 9, 2, 1))
    assert sent(acts) == [(3, "LOOKING", 1, 5, 3, 1)]
    assert fle.proposal == Vote(1, 5, 3, 1)


def test_non_voters_are_answered_with_the_current_vote_in_any_state() -> None:
    fle = FastLeaderElection(1, V3, observers=frozenset({4}))
    fle.look(0, 5, 1)
    acts = fle.receive(1, 4, note(LOOKING, MIN_LONG, MIN_LONG, 1, MIN_LONG))
    assert sent(acts) == [(4, "LOOKING", 1, 5, 1, 1)]  # QuorumPeer's currentVote, our logicalclock
    assert sent(fle.receive(2, 9, note(FOLLOWING, 2, 0, 1, 0)))[0][0] == 9  # unknown sids too
    fle.receive(3, 2, note(LOOKING, 1, 5, 1, 1))
    fle.tick(1000)
    assert sent(fle.receive(1001, 4, note(LOOKING, MIN_LONG, MIN_LONG, 7, MIN_LONG))) == [
        (4, "LEADING", 1, 5, 1, 1)]


def test_an_established_member_answers_looking_peers_with_its_updated_vote() -> None:
    fle = FastLeaderElection(2, V3)
    fle.look(0, 5, 1)
    fle.receive(1, 3, note(LOOKING, 3, 5, 1, 1))
    assert decisions(fle.tick(500)) == [Decided(FOLLOWING, Vote(3, 5, 1, 1))]
    fle.established(FOLLOWING, Vote(3, 5, 1, 2))  # synced: the leader's new epoch
    assert sent(fle.receive(600, 1, note(LOOKING, 1, 0, 1, 0))) == [(1, "FOLLOWING", 3, 5, 1, 2)]
    assert fle.receive(601, 1, note(FOLLOWING, 3, 5, 1, 2)) == []
    assert fle.receive(602, 3, note(LEADING, 3, 5, 1, 2)) == []
    with pytest.raises(ValueError):
        fle.established(LOOKING, Vote(3, 5, 1, 2))


def test_a_late_joiner_follows_the_established_leader_only_once_it_hears_from_it() -> None:
    fle = FastLeaderElection(3, V3)
    fle.look(0, 0, 0)
    assert fle.receive(1, 1, note(FOLLOWING, 2, 1 << 32, 5, 1)) == []  # a quorum, but no word from 2
    assert fle.state == LOOKING
    acts = fle.receive(2, 2, note(LEADING, 2, 1 << 32, 5, 1))
    assert acts == [Decided(FOLLOWING, Vote(2, 1 << 32, 5, 1))]
    assert fle.logical_clock == 5


def test_established_votes_compare_leader_and_peer_epoch_only() -> None:
    """ZOOKEEPER-1732: out-of-election votes differ in zxid and round once members sync."""
    fle = FastLeaderElection(3, frozenset({1, 2, 3, 4, 5}))
    fle.look(0, 0, 0)
    fle.receive(1, 1, note(FOLLOWING, 2, 7, 3, 1))
    fle.receive(2, 4, note(FOLLOWING, 2, 9, 4, 0))  # another peer epoch: not the same vote
    assert fle.receive(3, 2, note(LEADING, 2, 8, 4, 1)) == []
    # A pre-3.4.6 (version 0) vote matches every newer vote on the leader alone: 1, 2, 4, 5.
    assert fle.receive(4, 5, note(FOLLOWING, 2, 1, 1, 0, version=0)) == [Decided(FOLLOWING, Vote(2, 1, 1, 0))]


def test_same_round_established_votes_decide_through_recvset() -> None:
    fle = FastLeaderElection(3, V3)
    fle.look(0, 0, 0)
    fle.receive(1, 1, note(FOLLOWING, 2, 4, 1, 0))
    assert fle.receive(2, 2, note(LEADING, 2, 4, 1, 0)) == [Decided(FOLLOWING, Vote(2, 4, 1, 0))]


def test_followers_naming_us_make_us_lead_in_their_round_only() -> None:
    fle = FastLeaderElection(2, V3)
    fle.look(0, 4, 0)
    assert fle.receive(1, 1, note(FOLLOWING, 2, 4, 3, 0)) == []
    assert fle.receive(2, 3, note(FOLLOWING, 2, 4, 3, 0)) == []  # round 3 is not ours (1)
    fle2 = FastLeaderElection(2, V3)
    fle2.look(0, 4, 0)
    # In our own round, our own LOOKING vote equals theirs: {1, 2} is a quorum.
    assert fle2.receive(1, 1, note(FOLLOWING, 2, 4, 1, 0)) == [Decided(LEADING, Vote(2, 4, 1, 0))]


def test_notification_timeout_backs_off_exponentially() -> None:
    fle = FastLeaderElection(1, V3, max_interval_ms=1000)
    fle.look(0, 0, 0)
    deadlines = []
    for _ in range(6):
        now = fle.next_deadline()
        assert now is not None
        assert sent(fle.tick(now)) == [(2, "LOOKING", 1, 0, 1, 0), (3, "LOOKING", 1, 0, 1, 0)]
        deadlines.append(now)
    assert deadlines == [200, 600, 1400, 2400, 3400, 4400]
    fle.receive(4500, 2, note(LOOKING, 2, 0, 0, 0))  # any notification postpones the timeout
    assert fle.next_deadline() == 5500


def test_minus_one_zxids_are_ignored() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, -1, 0)
    assert fle.receive(1, 3, note(LOOKING, 3, 5, 1, 1)) == []
    assert fle.proposal.leader == 1
    fle = FastLeaderElection(1, V3)
    fle.look(0, 0, 0)
    assert fle.receive(1, 3, note(LOOKING, 3, -1, 1, 1)) == []
    assert fle.proposal.leader == 1


def test_votes_for_non_voters_and_observer_states_are_ignored() -> None:
    fle = FastLeaderElection(1, V3, observers=frozenset({4}))
    fle.look(0, 0, 0)
    assert fle.receive(1, 2, note(LOOKING, 4, 99, 1, 9)) == []
    assert fle.receive(2, 2, note(OBSERVING, 3, 99, 1, 9)) == []
    assert fle.proposal.leader == 1


def test_an_observer_never_proposes_itself_and_learns_the_leader() -> None:
    fle = FastLeaderElection(4, V3, observers=frozenset({4}))
    acts = fle.look(0, 9 << 32, 9)
    assert sent(acts) == [(s, "LOOKING", MIN_LONG, MIN_LONG, 1, MIN_LONG) for s in (1, 2, 3)]
    fle.receive(1, 1, note(FOLLOWING, 3, 5, 1, 2))
    assert fle.receive(2, 3, note(LEADING, 3, 5, 1, 2)) == [Decided(OBSERVING, Vote(3, 5, 1, 2))]


def test_an_observer_can_also_decide_from_looking_voters() -> None:
    fle = FastLeaderElection(4, V3, observers=frozenset({4}))
    fle.look(0, 0, 0)
    fle.receive(1, 1, note(LOOKING, 3, 5, 1, 1))
    fle.receive(2, 3, note(LOOKING, 3, 5, 1, 1))
    assert fle.tick(202) == [Decided(OBSERVING, Vote(3, 5, 1, 1))]


def test_messages_received_before_look_are_processed_by_it() -> None:
    fle = FastLeaderElection(1, V3)
    assert fle.receive(0, 3, note(LOOKING, 3, 5, 1, 1)) == []
    assert fle.next_deadline() is None
    acts = fle.look(10, 5, 1)
    assert sent(acts) == [(2, "LOOKING", 1, 5, 1, 1), (3, "LOOKING", 1, 5, 1, 1),
                          (2, "LOOKING", 3, 5, 1, 1), (3, "LOOKING", 3, 5, 1, 1)]
    assert fle.next_deadline() == 210


def test_a_new_round_after_a_role_ends() -> None:
    fle = FastLeaderElection(1, V3)
    fle.look(0, 5, 1)
    fle.receive(1, 2, note(LOOKING, 1, 5, 1, 1))
    fle.tick(201)
    fle.established(LEADING, Vote(1, 5, 1, 2))
    acts = fle.look(5000, 2 << 32, 2)
    assert fle.state == LOOKING and fle.logical_clock == 2
    assert sent(acts) == [(2, "LOOKING", 1, 2 << 32, 2, 2), (3, "LOOKING", 1, 2 << 32, 2, 2)]
    # While LOOKING again, non-voters still hear the last decided vote.
    assert fle.current_vote == Vote(1, 5, 1, 2)
