"""Real multi-process zkpy ensembles: three voters (servers 1-3) and an observer (server 4).

One ensemble is shared by the module; every test starts from all four members serving
(`healthy`) and leaves whatever it killed to be restarted by the next test's `healthy`.
tickTime=500, initLimit=10, syncLimit=5: a follower notices a dead leader at once (the
TCP connection closes), a leader notices dead followers after syncLimit*tickTime = 2.5 s.

The sync mode a learner got is read from the zkpy log lines "leader N syncs us by
DIFF|TRUNC|SNAP" (learner side) and "syncing learner N by ..." (leader side).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kazoo.protocol.states import EventType

from tests.conformance import rawconn
from tests.ensemble import (
    Ensemble,
    Member,
    assert_contents,
    attempt,
    kill_leader_under_load,
    read_tree,
    wait_converged,
    wait_until,
    write_many,
    writes_through_every_server,
)

OBSERVER = 4


@pytest.fixture(scope="module")
def ens() -> Iterator[Ensemble]:
    e = Ensemble(["zkpy", "zkpy", "zkpy", "zkpy"], observers=[OBSERVER], tick_time=500,
                 init_limit=10, sync_limit=5)
    try:
        e.start(timeout=60)
        yield e
    finally:
        e.close()


@pytest.fixture(autouse=True)
def healthy(ens: Ensemble) -> Iterator[None]:
    """Every member running and serving before the test (restarting what a previous test
    left down), and the kazoo clients a test made closed after it."""
    for m in ens.members.values():
        m.resume()
    ens.start(timeout=60)
    yield
    ens.close_clients()


def voters_by_role(ens: Ensemble) -> tuple[Member, list[Member]]:
    modes = ens.wait_ready()
    leader = next(ens[s] for s, m in modes.items() if m == "leader")
    followers = [ens[s] for s, m in modes.items() if m == "follower"]
    assert len(followers) == 2, modes
    return leader, followers


def proc_state(m: Member) -> str:
    assert m.proc is not None
    stat = open(f"/proc/{m.proc.pid}/stat").read()
    return stat.rsplit(")", 1)[1].split()[0]


def log_says(m: Member, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: text in m.log_since_start(), timeout, f"'{text}' in the log of {m}",
               on_timeout=lambda: m.log_since_start()[-3000:])


# --------------------------------------------------------------------------- roles, reads, writes


def test_srvr_and_mntr_report_the_roles(ens: Ensemble) -> None:
    modes = ens.wait_ready()
    assert sorted(modes.values()) == ["follower", "follower", "leader", "observer"], modes
    assert modes[OBSERVER] == "observer"
    states = {"leader": "leading", "follower": "following", "observer": "observing"}
    for sid, mode in modes.items():
        mntr = ens[sid].mntr()
        assert mntr["zk_server_state"] == mode
        assert mntr["zk_peer_state"] == f"{states[mode]} - broadcast"
        assert mntr["zk_quorum_size"] == "3"
    leader = ens.leader()
    mntr = leader.mntr()
    assert (mntr["zk_learners"], mntr["zk_synced_followers"], mntr["zk_synced_observers"]) == ("3", "2", "1")
    c = ens.client()
    c.create("/roles-probe", b"x")
    wait_converged(ens)


def test_writes_through_every_server_are_visible_on_all(ens: Ensemble, base: str) -> None:
    writes_through_every_server(ens, base)
    zxid = wait_converged(ens)
    assert zxid > 0


# --------------------------------------------------------------------------- sessions


def test_ephemerals_go_everywhere_when_the_session_closes(ens: Ensemble, base: str) -> None:
    leader, followers = voters_by_role(ens)
    owner = ens.client(followers[0].sid)
    owner.create(base)
    owner.create(f"{base}/eph", b"e", ephemeral=True)
    seq = owner.create(f"{base}/seq-", b"s", ephemeral=True, sequence=True)
    fired = threading.Event()
    watchers = {m.sid: ens.client(m.sid) for m in ens.members.values()}
    for sid, c in watchers.items():
        c.sync(base)
        stat = c.exists(f"{base}/eph")
        assert stat is not None and stat.ephemeralOwner == owner.client_id[0], sid
    watchers[OBSERVER].exists(f"{base}/eph",
                              watch=lambda ev: fired.set() if ev.type == EventType.DELETED else None)
    owner.stop()  # closeSession, forwarded to the leader
    for sid, c in watchers.items():
        c.sync(base)
        assert c.get_children(base) == [], (sid, seq)
    assert fired.wait(5), "the observer's exists watch did not fire on the ephemeral's removal"


def test_ephemerals_go_everywhere_when_the_session_expires(ens: Ensemble, base: str) -> None:
    leader, followers = voters_by_role(ens)
    setup = ens.client(leader.sid)
    setup.create(base)
    # A quiet session on a follower (never pings) and a pinging one on the observer, both
    # with the minimum timeout (2 * tickTime); the leader expires sessions, the learners
    # report their sessions' activity in their PING replies.
    quiet = rawconn.session(followers[0].client_port, 1000)
    pinger = rawconn.session(ens[OBSERVER].client_port, 1000)
    ens.raw += [quiet, pinger]
    assert quiet.negotiated == pinger.negotiated == 1000
    assert quiet.create(f"{base}/quiet", b"", flags=1).err == 0
    assert pinger.create(f"{base}/pinger", b"", flags=1).err == 0
    quiet.ping()
    last_touch = time.monotonic()
    clients = [ens.client(m.sid) for m in ens.members.values()]

    def gone_everywhere() -> bool:
        pinger.ping()
        for c in clients:
            c.sync(base)
            if c.exists(f"{base}/quiet") is not None:
                return False
        return True

    wait_until(gone_everywhere, 15, "the quiet session to expire everywhere", 0.2)
    elapsed = time.monotonic() - last_touch
    assert 0.9 <= elapsed <= 6, elapsed
    # the quiet connection was closed by its server; the pinging session lived on
    assert quiet.wait_closed(5) == b""
    for c in clients:
        c.sync(base)
        assert c.exists(f"{base}/pinger").ephemeralOwner == pinger.session_id
    pinger.close_session()
    for c in clients:
        c.sync(base)
        assert c.exists(f"{base}/pinger") is None


def test_a_session_moves_between_servers(ens: Ensemble, base: str) -> None:
    leader, followers = voters_by_role(ens)
    setup = ens.client(leader.sid)
    setup.create(base)
    eph = f"{base}/eph"
    a = rawconn.session(followers[0].client_port, 10000)
    ens.raw.append(a)
    assert a.create(eph, b"mine", flags=1).err == 0
    sid, passwd = a.session_id, a.passwd
    assert a.get_data(eph, watch=True).err == 0 and a.get_children(base, watch=True).err == 0
    conn, seen = a, a.last_zxid
    # Hop follower -> follower -> observer -> leader, each time dropping the connection
    # without closing the session (the new server revalidates it with the leader) and
    # re-registering the watches with SetWatches, as the Java client does.
    for i, m in enumerate((followers[1], ens[OBSERVER], leader)):
        conn.close()
        if i == 1:  # a change while the client is between servers: SetWatches fires it at once
            setup.set(eph, b"missed")
        conn = rawconn.RawConnection(m.client_port)
        ens.raw.append(conn)
        negotiated, got_sid, got_pw = conn.handshake(10000, session_id=sid, passwd=passwd, last_zxid=seen)
        assert (got_sid, got_pw) == (sid, passwd) and negotiated == 10000, m
        assert conn.set_watches(seen, data=[eph], child=[base]).err == 0
        if i != 1:
            setup.set(eph, f"hop-{i}".encode())
        events = conn.wait_events(1, 10)
        assert [(e.type, e.path) for e in events] == [(rawconn.NODE_DATA_CHANGED, eph)], (m, events)
        setup.create(f"{base}/child-{i}")
        events = conn.wait_events(1, 10)
        assert [(e.type, e.path) for e in events] == [(rawconn.NODE_CHILDREN_CHANGED, base)], (m, events)
        assert conn.get_data(eph, watch=True).err == 0
        r = conn.exists(eph)
        assert r.err == 0 and rawconn.stat_fields(r.body)[7] == sid, m
        assert conn.get_children(base, watch=True).err == 0
        seen = max(seen, conn.last_zxid, *(e.zxid for e in events))
    # closing the session from the last server removes its ephemeral everywhere
    assert conn.close_session().err == 0
    for m in ens.members.values():
        c = ens.client(m.sid)
        c.sync(base)
        assert c.exists(eph) is None, m
    # kazoo with two hosts: kill the server it is on and it moves to the other one with
    # its session and its ephemeral
    c = ens.client(followers[1].sid, OBSERVER, randomize_hosts=False)
    assert c.create(f"{base}/k-eph", b"", ephemeral=True)
    kazoo_sid = c.client_id[0]
    followers[1].kill()
    wait_until(lambda: attempt(lambda: c.exists(f"{base}/k-eph")), 20, "kazoo to reconnect to the observer")
    assert c.client_id[0] == kazoo_sid
    c.set(f"{base}/k-eph", b"still mine")
    setup.sync(base)
    stat = setup.exists(f"{base}/k-eph")
    assert stat is not None and stat.ephemeralOwner == kazoo_sid


# --------------------------------------------------------------------------- failover


def test_kill_leader_under_write_load_loses_no_acknowledged_write(ens: Ensemble, base: str) -> None:
    leader, followers = voters_by_role(ens)
    ens.client(leader.sid).create(base)
    # writers: one on all the voters, one staying with a follower, one on the observer
    fo = kill_leader_under_load(ens, base, pinned=[followers[0].sid, OBSERVER])
    print(f"\nFAILOVER zkpy ensemble: {fo.summary()}")
    assert fo.elected_s < 10 and fo.first_write_s < 10
    # the survivors went into the election with the trees they had in memory (no reload),
    # and the old leader, restarted from disk below, must converge to exactly those
    for f in followers:
        log_says(f, "kept the tree")
    assert_contents(ens, followers, base, fo.acked, exact=False)
    # the old leader comes back as a follower and converges to exactly the same tree
    leader.start()
    modes = ens.wait_ready(timeout=40)
    assert modes[leader.sid] == "follower" and modes[fo.new_leader.sid] == "leader", modes
    wait_converged(ens, timeout=20)
    trees = {m.sid: read_tree(ens.client(m.sid), base) for m in ens.members.values()}
    first = trees[fo.new_leader.sid]
    assert set(fo.acked) <= set(first)
    for sid, tree in trees.items():
        assert tree == first, f"server {sid} differs from the leader"


def test_restarted_old_leader_with_an_uncommitted_proposal_is_truncated(ens: Ensemble, base: str) -> None:
    from zkpy.persistence.txnlog import iter_log

    leader, (f_down, f_paused) = voters_by_role(ens)
    setup = ens.client(leader.sid)
    setup.create(base)
    write_many(setup, base, 5, "base")
    writer = rawconn.session(leader.client_port, 10000)  # created while there is a quorum
    ens.raw.append(writer)
    committed = leader.zxid()
    assert committed is not None
    # Leave the leader alone with its proposal: one follower dead, the other frozen (the
    # proposal sits unread in its socket buffer and dies with it).
    f_down.kill()
    f_paused.pause()
    wait_until(lambda: proc_state(f_paused) == "T", 5, "the follower to stop")
    writer.send(rawconn.CREATE, rawconn.create_body(f"{base}/uncommitted", b"lost"))
    log_dir = leader.data_dir / "version-2"

    def logged_beyond() -> bool:
        return max((h.zxid for h, _ in iter_log(log_dir, committed)), default=0) > committed

    wait_until(logged_beyond, 2, "the leader to log the proposal")
    leader.kill()
    f_paused.kill()
    uncommitted = max(h.zxid for h, _ in iter_log(log_dir, committed))
    # The two followers form the next epoch without the proposal ...
    f_down.start()
    f_paused.start()
    ens.wait_ready(sids=[f_down.sid, f_paused.sid], timeout=30)
    c = ens.client(f_down.sid, f_paused.sid)
    c.create(f"{base}/after", b"new epoch")
    # ... and the old leader, whose log ends with it, is truncated when it rejoins.
    leader.start()
    modes = ens.wait_ready(timeout=40)
    assert modes[leader.sid] == "follower", modes
    log_says(leader, "syncs us by TRUNC")
    wait_converged(ens)
    for m in ens.members.values():
        cm = ens.client(m.sid)
        cm.sync(base)
        assert cm.exists(f"{base}/uncommitted") is None, (m, hex(uncommitted))
        assert cm.get(f"{base}/after")[0] == b"new epoch", m
    assert uncommitted >> 32 < (leader.zxid() or 0) >> 32


# --------------------------------------------------------------------------- catching up


def test_follower_that_was_down_catches_up_by_diff(ens: Ensemble, base: str) -> None:
    leader, (follower, _) = voters_by_role(ens)
    c = ens.client(leader.sid)
    c.create(base)
    follower.kill()
    wait_until(lambda: leader.mntr()["zk_synced_followers"] == "1", 5, "the leader to count one follower")
    written = write_many(c, base, 50)
    c.set(base, b"changed while down")
    leader_says = f"syncing learner {follower.sid} by DIFF "
    seen = leader.log_text().count(leader_says)
    follower.start()
    ens.wait_ready(timeout=30)
    log_says(follower, f"leader {leader.sid} syncs us by DIFF")
    assert leader.log_text().count(leader_says) == seen + 1
    assert_contents(ens, [follower], base, written)
    wait_converged(ens)


def test_follower_with_a_wiped_data_dir_catches_up_by_snap(ens: Ensemble, base: str) -> None:
    leader, (follower, _) = voters_by_role(ens)
    c = ens.client(leader.sid)
    c.create(base)
    before = write_many(c, base, 20, "before")
    follower.kill()
    follower.wipe()
    after = write_many(c, base, 20, "after")
    follower.start()
    ens.wait_ready(timeout=30)
    log_says(follower, f"leader {leader.sid} syncs us by SNAP")
    assert_contents(ens, [follower], base, before | after)
    wait_converged(ens)
    # and it keeps up with new writes after the snapshot
    c.create(f"{base}/later", b"l")
    assert_contents(ens, [follower], base, before | after | {"later": b"l"})


def test_far_behind_follower_catches_up_by_snap(ens: Ensemble, base: str) -> None:
    leader, (follower, _) = voters_by_role(ens)
    c = ens.client(leader.sid)
    c.create(base)
    follower.kill()
    written = write_many(c, base, 600)  # more than the leader's 500-txn in-memory history
    follower.start()
    ens.wait_ready(timeout=30)
    log_says(follower, f"leader {leader.sid} syncs us by SNAP")
    assert_contents(ens, [follower], base, written)
    wait_converged(ens)


# --------------------------------------------------------------------------- observer


def test_observer_gets_every_commit_forwards_writes_and_does_not_vote(ens: Ensemble, base: str) -> None:
    leader, followers = voters_by_role(ens)
    obs = ens[OBSERVER]
    cl = ens.client(leader.sid)
    co = ens.client(OBSERVER)
    cl.create(base)
    written = write_many(cl, base, 100)
    # every commit reaches the observer (INFORM): without any sync its zxid catches up
    wait_until(lambda: obs.zxid() == leader.zxid(), 10, "the observer to apply every commit")
    assert co.get_children(base) and set(co.get_children(base)) == set(written)
    assert co.get(f"{base}/n000099")[0] == written["n000099"]
    # writes through the observer are forwarded to the leader
    co.create(f"{base}/via-observer", b"o")
    cl.sync(base)
    assert cl.get(f"{base}/via-observer")[0] == b"o"
    # the observer's absence does not matter to the quorum
    obs.kill()
    wait_until(lambda: leader.mntr()["zk_synced_observers"] == "0", 5, "the leader to count no observer")
    cl.create(f"{base}/while-observer-down", b"w")
    obs.start()
    ens.wait_ready(timeout=30)
    log_says(obs, "syncs us by DIFF")
    co = ens.client(OBSERVER)
    co.sync(base)
    assert co.get(f"{base}/while-observer-down")[0] == b"w"
    # with two of the three voters down there is no quorum, although two servers (a voter
    # and the observer) are still up: the observer does not vote
    for f in followers:
        f.kill()
    t_down = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - ConnectionLoss or a timeout, either way no ack
        cl.create_async(f"{base}/no-quorum", b"x").get(timeout=8)
    wait_until(lambda: leader.mode() is None and obs.mode() is None, 10,
               "the leader and the observer to stop serving")
    print(f"\nQUORUM LOSS: leader stopped serving {time.monotonic() - t_down:.2f}s after its "
          "followers died")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert leader.mode() is None and obs.mode() is None
        time.sleep(0.1)
    # one voter back: quorum again, writes resume through the observer too
    followers[0].start()
    ens.wait_ready(sids=[leader.sid, followers[0].sid, OBSERVER], timeout=40)
    co = ens.client(OBSERVER)
    co.create(f"{base}/quorum-back", b"q")
    cl = ens.client(leader.sid, followers[0].sid)
    cl.sync(base)
    assert cl.get(f"{base}/quorum-back")[0] == b"q"
