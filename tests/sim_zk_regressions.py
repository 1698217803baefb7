"""Apache ZooKeeper's data-loss bugs as scripted schedules for the ZAB simulator.

Each `scenario_NNNN(sim)` replays, on tests/sim_zab.py's `Simulator` (the real FLE,
Leader/Learner cores and zkpy.zab.executors over the fake disk and network), the fault
sequence that lost or corrupted data in the ZooKeeper issue of that number: which member
crashes or loses its role at which protocol step, which link is cut, who writes what.
Only the timing inside a step comes from the seed.  Every scenario ends with `finish`:

* the simulator's own checks hold all along (one committed history G, every serving
  member's applied txns a prefix of it, a leader of the newest epoch holds all of it);
* after healing and restarting everyone, every member applies exactly G;
* then every member crashes: each one's durable log and snapshots recover to a prefix of
  G (nothing divergent on any disk), a quorum of voters holds all of G durably, and after
  restarting from those disks alone the ensemble again converges on G.

tests/test_zk_regressions.py runs them (one test per issue) and checks, with the
ZooKeeper bug put back into the shipped cores as a mutant, that the schedule does catch
the loss.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from tests.sim_zab import LIVENESS_MS, stabilise
from tests.sim_zab_peer import SYNC_LIMIT, TICK, Simulator
from tests.sim_zab_world import LEADING, Conn, Node, fmt, hexz
from zkpy.zab.packets import PacketType, QuorumPacket

__all__ = ["SCENARIOS", "finish"]


# ---- steps ---------------------------------------------------------------------------------


def wait(sim: Simulator, cond: Callable[[], bool], what: str, ms: int = LIVENESS_MS) -> None:
    if not sim.run_until(sim.now + ms, stop=cond):
        sim.fail(f"scripted step never happened: {what}: {sim.describe()}")


def settled(sim: Simulator) -> Node:
    """Wait until one leader serves with every live member; return it."""
    wait(sim, lambda: sim.leader() is not None, "an established ensemble")
    L = sim.leader()
    assert L is not None
    return L


def boot(sim: Simulator) -> Node:
    """Start everyone on a quiet network, commit a few writes everywhere; the leader."""
    for sid in sorted(sim.nodes):
        sim.call(sim.start, sid)
    L = settled(sim)
    write(sim, L, 3)
    return L


def write(sim: Simulator, L: Node, count: int, committed: bool = True) -> list[int]:
    """count client writes on leader L; with committed, wait until L committed them."""
    zxids = []
    for _ in range(count):
        sim.leader_write(L, 0)
        zxids.append(L.role.last_proposed)
    if committed:
        wait(sim, lambda: in_g(sim, zxids[-1]), f"commit of {zxids[-1]:x}")
    return zxids


def in_g(sim: Simulator, zxid: int) -> bool:
    return any(z == zxid for z, _ in reversed(sim.G))


def others(sim: Simulator, *sids: int) -> list[int]:
    return [s for s in sorted(sim.nodes) if s not in sids]


def durable(n: Node) -> set[int]:
    return {r[0] for f in n.disk.files for r in f.records if r[2]}


def crash_at(sim: Simulator, sid: int, where: str) -> Callable[[], bool]:
    """Crash sid right after its durable write `where` (once); returns 'has it happened'."""
    fired: list[bool] = []

    def point(n: Node, at: str) -> bool:
        if fired or n.sid != sid or at != where:
            return False
        fired.append(True)
        sim.log(f"scripted crash of {sid} {where}")
        return True

    sim.crash_point = point
    return lambda: bool(fired)


def on_packet(sim: Simulator, src: int, dst: int, match: Callable[[QuorumPacket], bool],
              act: Callable[[], None]) -> Callable[[], bool]:
    """Run act once, as a packet from src matching `match` reaches dst (before dst handles
    it; if act ends dst's role or crashes it, the packet is never handled)."""
    fired: list[bool] = []

    def hook(conn: Conn, dest: int, pkts: list[QuorumPacket]) -> None:
        if fired or conn.ends[dest] != dst or conn.ends[1 - dest] != src:
            return
        if any(match(p) for p in pkts):
            fired.append(True)
            sim.log(f"scripted: {dst} gets {[PacketType(p.type).name for p in pkts]} from {src}")
            act()

    sim.on_deliver = hook
    return lambda: bool(fired)


def is_newleader_ack(p: QuorumPacket) -> bool:
    return p.type == PacketType.ACK and p.zxid & 0xFFFFFFFF == 0


def quiet(sim: Simulator) -> None:
    """No random faults: the schedule is the script's (the seed only moves delays)."""
    sim.fle_loss = sim.crash_mid = 0.0
    sim.auto_restart = None
    sim.writes = False


# ---- the final check ---------------------------------------------------------------------


def check_disks(sim: Simulator) -> None:
    """Each member's durable data recovers to a prefix of G; a quorum of voters holds all of G."""
    whole = 0
    for n in sim.nodes.values():
        disk = copy.deepcopy(n.disk)
        disk.lose_unsynced()
        applied = disk.recover().applied
        for i, e in enumerate(applied):
            if i >= len(sim.G) or e != sim.G[i]:
                have = fmt(sim.G[i]) if i < len(sim.G) else "nothing"
                sim.fail(f"server {n.sid}'s disk holds {fmt(e)} at position {i}, the committed "
                         f"history has {have} there")
        if n.voter and len(applied) == len(sim.G):
            whole += 1
    if whole * 2 <= len(sim.voters):
        sim.fail(f"only {whole} voters hold the whole committed history ({len(sim.G)} txns) on disk")


def finish(sim: Simulator) -> None:
    """Heal and restart; every member converges on G; then crash all, check every disk,
    restart from the disks alone and converge again."""
    sim.crash_point = None
    sim.on_deliver = None
    stabilise(sim, set())
    for sid in sorted(sim.nodes):
        sim.call(sim.crash, sid)
    check_disks(sim)
    stabilise(sim, set())


# ---- the scenarios ---------------------------------------------------------------------------


def scenario_1154(sim: Simulator) -> None:
    """The member with the highest zxid is absent from the election: the old leader logs a
    txn no follower has, crashes; the others elect and commit a new epoch; the old leader
    must be truncated (TRUNC) when it rejoins, not DIFFed on top of its extra txn."""
    quiet(sim)
    L = boot(sim)
    followers = others(sim, L.sid)
    for sid in followers:
        sim.call(sim.crash, sid)
    (extra,) = write(sim, L, 1, committed=False)
    wait(sim, lambda: extra in durable(L), "the old leader's lone txn on its disk")
    sim.call(sim.crash, L.sid)
    for sid in followers:
        sim.call(sim.start, sid)
    write(sim, settled(sim), 3)
    truncs = sim.stats.truncs
    sim.call(sim.start, L.sid)
    wait(sim, lambda: sim.nodes[L.sid].serving, "the old leader rejoins")
    if sim.stats.truncs == truncs and sim.stats.snaps == 0:
        sim.fail("the old leader rejoined without a TRUNC or SNAP")
    finish(sim)


def scenario_1653(sim: Simulator) -> None:
    """A follower SNAP-synced into a new epoch crashes after NEWLEADER's snapshot, before
    currentEpoch is written: its data's epoch is newer than currentEpoch.  It must start
    again (acceptedEpoch shows the epoch was accepted) and keep everything."""
    quiet(sim)
    L = boot(sim)
    F = others(sim, L.sid)[0]
    sim.call(sim.crash, F)
    write(sim, L, 6)
    sim.history_limit = 2  # the next leader's history no longer reaches F's last txn: SNAP
    sim.call(sim.request_end, L, "leader steps down")
    L = settled(sim)
    write(sim, L, 2)
    assert L.core is not None
    crashed = crash_at(sim, F, "after a snapshot at " + hexz(L.core.tree.last))
    sim.call(sim.start, F)
    wait(sim, crashed, "the follower's crash between NEWLEADER's snapshot and currentEpoch")
    disk = sim.nodes[F].disk
    if not disk.newest_snapshot() >> 32 > (disk.current or 0):
        sim.fail(f"the crash did not leave a snapshot newer than currentEpoch {disk.current}")
    sim.crash_point = None
    sim.history_limit = 500
    sim.call(sim.start, F)
    wait(sim, lambda: sim.nodes[F].serving, "the follower starts and rejoins")
    finish(sim)


def scenario_2832(sim: Simulator) -> None:
    """Whole-ensemble restarts in pairs (ZooKeeper's testDivergenceResync): X leads Y, Y
    stops, X logs a txn alone and stops; Y and C run an epoch without it (Y leads: its
    currentEpoch is newer) and stop; X comes back with Y, whose last zxid (its epoch's
    snapshot) is above X's stray txn, though Y's log has nothing after it.  The stray
    txn must go (SNAP or TRUNC), never stay under an empty DIFF; C rejoins last."""
    quiet(sim)
    boot(sim)
    a, b, c = sorted(sim.nodes)
    for sid in (a, b, c):
        sim.call(sim.crash, sid)
    for sid in (a, b):
        sim.call(sim.start, sid)
    L = settled(sim)
    x = L.sid
    y = a if x == b else b
    sim.call(sim.crash, y)
    (stray,) = write(sim, L, 1, committed=False)
    wait(sim, lambda: stray in durable(L), "the stray txn on its leader's disk")
    sim.call(sim.crash, x)
    for sid in (y, c):
        sim.call(sim.start, sid)
    settled(sim)
    sim.run_until(sim.now + 200)  # the new leader's snapshot of its epoch's start is written
    for sid in (y, c):
        sim.call(sim.crash, sid)
    for sid in (x, y):
        sim.call(sim.start, sid)
    write(sim, settled(sim), 2)
    sim.call(sim.start, c)
    settled(sim)
    finish(sim)


def scenario_3642(sim: Simulator) -> None:
    """A follower loads a SNAP into memory, then loses its leader before NEWLEADER: the tree
    in memory is not on disk.  The next sync must not DIFF it from that tree's zxid: a
    later restart from disk would lose the snapshot's contents."""
    quiet(sim)
    L = boot(sim)
    F = others(sim, L.sid)[0]
    sim.call(sim.crash, F)
    write(sim, L, 6)
    sim.history_limit = 2
    sim.call(sim.request_end, L, "leader steps down")
    L = settled(sim)
    write(sim, L, 2)
    n = sim.nodes[F]

    def lose_the_leader() -> None:  # F's connection drops: the role ends before NEWLEADER
        if n.role.sync_mode != "snap" or n.executor.tree_on_disk:
            sim.fail("the follower is not in the middle of a SNAP sync")
        sim.request_end(n, "connection to the leader lost")
        sim.end_role(F, n.role_id)

    cut = on_packet(sim, L.sid, F, lambda p: p.type == PacketType.NEWLEADER, lose_the_leader)
    sim.call(sim.start, F)
    wait(sim, cut, "F's role end between the SNAP and NEWLEADER")
    sim.on_deliver = None
    sim.history_limit = 500
    write(sim, settled(sim), 2)
    finish(sim)


def _newleader_with_outstanding(sim: Simulator) -> tuple[Node, int, int, int]:
    """Leader L, follower F1 cut off from L's packets, F2 down; L proposes P (outstanding:
    only L acks); F2 starts and syncs (DIFF, P, NEWLEADER).  Returns (L, F1, F2, P)."""
    quiet(sim)
    L = boot(sim)
    f1, f2 = others(sim, L.sid)
    sim.call(sim.crash, f2)
    sim.call(sim.partition, {}, {(L.sid, f1)})  # F1 never sees P
    sim.fsync_delay = (300, 300)  # a slow disk: nothing is durable by accident
    (p,) = write(sim, L, 1, committed=False)
    sim.call(sim.start, f2)
    return L, f1, f2, p


def scenario_3911(sim: Simulator) -> None:
    """DIFF sync with an uncommitted proposal: F2 syncs while P is outstanding, acks
    NEWLEADER, P commits with F2's ack; then everyone crashes and F1 (which never got P)
    and F2 restart.  F2 must have made P durable before acking, or they elect without
    the committed P."""
    L, f1, f2, p = _newleader_with_outstanding(sim)
    wait(sim, lambda: in_g(sim, p), "P committed with F2's ack")
    for sid in (L.sid, f2, f1):  # F1 too, so that P, still queued towards it, never arrives
        sim.call(sim.crash, sid)
    sim.call(sim.heal)
    for sid in (f1, f2):
        sim.call(sim.start, sid)
    settled(sim)
    finish(sim)


def _one_behind_new_epoch(sim: Simulator) -> tuple[Node, int, int, int]:
    """ZooKeeper's DIFFSyncTest set-up: F2 down, T committed by L and F1, F1 down; L steps
    down for want of a quorum; F2 starts, and L leads a new epoch with F2 (DIFF with T).
    Returns (L, F1, F2, T) with F2 about to sync."""
    quiet(sim)
    L = boot(sim)
    f1, f2 = others(sim, L.sid)
    sim.call(sim.crash, f2)
    (t,) = write(sim, L, 1)
    sim.call(sim.crash, f1)
    wait(sim, lambda: L.kind != LEADING, "the leader steps down without a quorum",
         ms=4 * SYNC_LIMIT * TICK)
    sim.fsync_delay = (300, 300)  # a slow disk: nothing is durable by accident
    sim.call(sim.start, f2)
    return L, f1, f2, t


def _restart_and_elect(sim: Simulator, first: list[int], last: int) -> None:
    for sid in first:
        sim.call(sim.start, sid)
    write(sim, settled(sim), 2)
    sim.call(sim.start, last)
    settled(sim)


def scenario_4643(sim: Simulator) -> None:
    """F2, DIFF-synced into the new epoch, crashes right after writing currentEpoch.  Had its
    DIFF txns not been on disk by then, F2 (newest currentEpoch) would lead F1 without T."""
    L, f1, f2, t = _one_behind_new_epoch(sim)
    crashed = crash_at(sim, f2, "after persisting currentEpoch")
    wait(sim, crashed, "F2's crash after currentEpoch")
    sim.call(sim.crash, L.sid)
    _restart_and_elect(sim, [f1, f2], L.sid)
    finish(sim)


def scenario_4646(sim: Simulator) -> None:
    """F2 crashes right after sending its NEWLEADER ACK (the leader gets it).  Had the DIFF
    txns been written after the ACK, F2 would come back with the newer epoch and without T."""
    L, f1, f2, t = _one_behind_new_epoch(sim)
    acked = on_packet(sim, f2, L.sid, is_newleader_ack, lambda: sim.crash(f2))
    wait(sim, acked, "F2's NEWLEADER ACK")
    sim.call(sim.crash, L.sid)
    _restart_and_elect(sim, [f1, f2], L.sid)
    finish(sim)


def scenario_4785(sim: Simulator) -> None:
    """The leader dies as F2's NEWLEADER ACK reaches it: F2 ends its role without a crash
    and elects from the tree it kept plus its logged txns.  With the newest currentEpoch it
    leads F1; T must be in what it kept."""
    L, f1, f2, t = _one_behind_new_epoch(sim)
    acked = on_packet(sim, f2, L.sid, is_newleader_ack, lambda: sim.crash(L.sid))
    wait(sim, acked, "F2's NEWLEADER ACK")
    wait(sim, lambda: sim.nodes[f2].kind is None, "F2 leaves its role")
    sim.call(sim.start, f1)
    write(sim, settled(sim), 2)
    sim.call(sim.start, L.sid)
    settled(sim)
    finish(sim)


def scenario_4712(sim: Simulator) -> None:
    """A follower's role ends while the proposals it logged are still being synced to its
    slow disk (its leader crashed, and it is cut off); the others elect an epoch without
    them.  When it rejoins, the new leader truncates them: what the old role's sync
    finishes later must not reach the new role (no ACK, nothing back in the log)."""
    quiet(sim)
    L = boot(sim)
    f1, f2 = others(sim, L.sid)
    sim.call(sim.crash, f2)
    sim.fsync_delay = (3000, 3000)
    stray = write(sim, L, 3, committed=False)
    wait(sim, lambda: (c := sim.nodes[f1].core) is not None and c.last_appended == stray[-1],
         "F1 logged the proposals")
    if durable(sim.nodes[f1]) & set(stray):
        sim.fail("F1's disk already holds the proposals")
    sim.call(sim.partition, {f1: 1})  # F1 cut off: its role ends with the fsync in flight
    sim.call(sim.crash, L.sid)  # the proposals were only in L's page cache
    wait(sim, lambda: sim.nodes[f1].kind is None, "F1 leaves its role", ms=3000)
    sim.fsync_delay = (1, 10)
    sim.call(sim.start, L.sid)
    sim.call(sim.start, f2)
    wait(sim, lambda: sim.nodes[L.sid].serving and sim.nodes[f2].serving, "L and F2 elect")
    new = next(n for n in sim.nodes.values() if n.kind == LEADING)
    write(sim, new, 2)
    sim.run_until(sim.now + 3000)  # the old role's sync has finished
    truncs = sim.stats.truncs + sim.stats.snaps
    sim.call(sim.heal)
    wait(sim, lambda: sim.nodes[f1].serving, "F1 rejoins")
    if sim.stats.truncs + sim.stats.snaps == truncs:
        sim.fail("F1 rejoined without a TRUNC or SNAP of its stray proposals")
    finish(sim)


def scenario_4925(sim: Simulator) -> None:
    """Five voters (ZooKeeper's QuorumSyncTest): F2 down, ten writes; F1 down, ten more; F1
    rejoins by DIFF; the leader stops and F2 starts, so F1 (highest id) leads and DIFFs
    F2 from its own history.  That history must hold the txns F1 got by DIFF: a hole
    there would skip them on F2."""
    quiet(sim)
    L = boot(sim)
    f1, f2 = sorted(others(sim, L.sid), reverse=True)[:2]
    sim.call(sim.crash, f2)
    write(sim, L, 10)
    sim.call(sim.crash, f1)
    write(sim, L, 10)
    diffs = sim.stats.diffs
    sim.call(sim.start, f1)
    wait(sim, lambda: sim.nodes[f1].serving, "F1 rejoins")
    if sim.stats.diffs == diffs:
        sim.fail("F1 was not synced by DIFF")
    sim.call(sim.crash, L.sid)
    diffs = sim.stats.diffs
    sim.call(sim.start, f2)
    new = settled(sim)
    if new.sid != f1 or sim.stats.diffs == diffs:
        sim.fail(f"server {new.sid} leads, not F1 ({f1}), or F2 was not synced by DIFF")
    finish(sim)


# issue number -> (scenario, voters)
SCENARIOS: dict[int, tuple[Callable[[Simulator], None], int]] = {
    1154: (scenario_1154, 3),
    1653: (scenario_1653, 3),
    2832: (scenario_2832, 3),
    3642: (scenario_3642, 3),
    3911: (scenario_3911, 3),
    4643: (scenario_4643, 3),
    4646: (scenario_4646, 3),
    4712: (scenario_4712, 3),
    4785: (scenario_4785, 3),
    4925: (scenario_4925, 5),
}


def run(issue: int, seed: int) -> Simulator:
    scenario, voters = SCENARIOS[issue]
    sim = Simulator(seed, voters, 0)
    scenario(sim)
    return sim
