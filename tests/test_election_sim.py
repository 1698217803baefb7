"""FastLeaderElection under the deterministic simulator (tests/sim_election.py).

Each seed is a one-line reproduction: `python tests/sim_election.py --scenario chaos
--first SEED --seeds 1`.  More seeds: `python tests/sim_election.py --seeds 5000`.

What is checked on every step (InvariantViolation otherwise):
* nobody decides an observer (or any non-voter) as leader; observers only ever OBSERVE;
* a voter's LOOKING vote is never below its own (epoch, zxid, sid) -- votes only rise
  within a round -- and every decision is backed by a quorum of voters that sent that
  vote in that round (or that follow that leader): so the leader has the highest
  (epoch, zxid, sid) of the quorum that elected it;
and per scenario:
* clean: everyone settles on the best voter within 2 s and no round is split;
* chaos: after loss, long delays, reordering, partitions and crashes heal (a minority
  may stay down), every live member settles on one established leader and stays there;
* late: members that join or restart after the leader is established follow it without
  a new election.

Not checked outside `clean`: that all members deciding in one round agree.  The reference
algorithm does not promise it once delays exceed finalizeWait, a reconnect re-sends an old
round's vote, or a member joins mid-round; the simulator counts such splits (about a
quarter of chaos runs; ~5 % even after healing) and requires the ZAB stand-in to resolve
them, as real ZAB does:
a leader without a quorum of followers gives up, and so does a follower without a leader.
"""

from __future__ import annotations

import pytest

from tests.sim_election import SHAPES, InvariantViolation, Simulator, run

CLEAN, CHAOS, LATE = 500, 800, 500


def shape(seed: int) -> tuple[int, int]:
    return SHAPES[seed % len(SHAPES)]


def run_many(scenario: str, seeds: range) -> list[int]:
    """Run the seeds; returns those in which one round had members decide different leaders."""
    split = []
    for seed in seeds:
        voters, observers = shape(seed)
        try:
            stats = run(scenario, seed, voters, observers)
        except InvariantViolation as e:  # pragma: no cover - the message is the reproduction
            pytest.fail(f"{scenario} seed={seed} voters={voters} observers={observers}: {e}")
        if stats.split_rounds:
            split.append(seed)
    return split


def test_clean_start_elects_the_best_voter_unanimously() -> None:
    assert run_many("clean", range(CLEAN)) == []


def test_chaos_then_stability_converges_on_one_leader() -> None:
    run_many("chaos", range(CHAOS))


def test_late_joiners_and_restarted_members_follow_the_established_leader() -> None:
    split = run_many("late", range(LATE))
    # FLE alone can hand one member a stale winner: a restarted peer's connection re-sends
    # the last message of an earlier round with the same number (QuorumCnxManager's
    # lastMessageSent).  That member's role then fails for want of a quorum and it looks
    # again -- which the scenario proves by still requiring the original leader throughout.
    assert split, "expected the simulator to reach the stale-last-message case"


def test_a_seed_replays_exactly() -> None:
    a, b = run("chaos", 12345, 5, 1), run("chaos", 12345, 5, 1)
    assert a == b and a.messages > 0


def test_observers_with_the_newest_history_never_lead() -> None:
    sim = Simulator(7, 3, 2)
    for sid in sim.members:
        sim.start(sid)
    assert sim.run_until(60_000, stop=lambda: sim.settled() is not None)
    leader = sim.settled()
    assert leader in sim.voter_ids
    assert {sim.members[s].role.name for s in sim.observer_ids} == {"OBSERVING"}
    assert all(sim.members[s].leader == leader for s in sim.members)
