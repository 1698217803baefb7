"""zkpy.zab.executors over recording fakes: the order a batch is carried out in.

The simulator (tests/sim_zab.py) runs these executors for every seed; these tests pin
the contract down one rule at a time."""

from __future__ import annotations

from typing import Any

from zkpy.jute.codec import Reader
from zkpy.zab import actions as A
from zkpy.zab.executors import LeaderExecutor, LearnerExecutor, load_tree
from zkpy.zab.learner import Learner
from zkpy.zab.packets import PacketType, QuorumPacket


class Journal:
    """Every fake writes what it was asked to do into one list, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


class FakeDisk:
    def __init__(self, j: Journal) -> None:
        self.j = j

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self.j.calls.append((name, *args))
            return {"recover": FakeTree(7), "replay_log": 2, "encode_snapshot": b"stream",
                    "decode_snapshot": FakeTree(9)}.get(name)
        return call


class FakeTree:
    def __init__(self, last: int) -> None:
        self.last_processed_zxid = last


class FakeLink:
    def __init__(self, j: Journal, name: str) -> None:
        self.j, self.name = j, name

    def send(self, pkt: QuorumPacket, raw: bytes = b"", encoded: bytes | None = None) -> None:
        self.j.calls.append(("send", self.name, pkt.type, pkt.zxid, raw, encoded))


class Session:
    def __init__(self) -> None:
        self.timeout, self.closing, self.owner = 1000, False, None


class FakeSessions:
    def __init__(self, j: Journal) -> None:
        self.j = j
        self.sessions = {5: Session()}

    def touch(self, sid: int, now_ms: int) -> bool:
        self.j.calls.append(("touch", sid))
        return sid in self.sessions


class FakeCore:
    def __init__(self, j: Journal) -> None:
        self.j = j
        self.tree: Any = FakeTree(3)
        self.touched = {11: 4000}
        self.sessions = FakeSessions(j)
        self.write_error: str | None = None

    def now_ms(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> None:
            self.j.calls.append((name, *args))
        return call


class FakeLearnerState:
    sid = 42


class FakeLeader:
    voters = frozenset({1, 2, 3})
    learners = {1: FakeLearnerState()}

    def revalidated(self, handle: int, session_id: int, valid: bool) -> list[A.Action]:
        return [A.Send(handle, QuorumPacket(PacketType.REVALIDATE, -1, bytes([valid])))]


def leader_executor() -> tuple[LeaderExecutor, Journal, FakeCore]:
    j = Journal()
    ex = LeaderExecutor(FakeLeader(), FakeDisk(j),  # type: ignore[arg-type]
                        lambda e: j.calls.append(("established", e)),
                        lambda r: j.calls.append(("finish", r)), 1)
    core = FakeCore(j)
    ex.pipeline = core  # type: ignore[assignment]
    ex.links = {1: FakeLink(j, "a"), 2: FakeLink(j, "b")}
    return ex, j, core


def test_leader_groups_consecutive_commits_and_encodes_a_packet_once() -> None:
    ex, j, _ = leader_executor()
    p = QuorumPacket(PacketType.PROPOSAL, 5, b"txn")
    c4, c5 = QuorumPacket(PacketType.COMMIT, 4), QuorumPacket(PacketType.COMMIT, 5)
    ex.run([A.Send(1, p), A.Send(2, p), A.Send(1, c4), A.Commit(4), A.Send(1, c5), A.Commit(5),
            A.PersistCurrentEpoch(2), A.Commit(6)])
    assert j.calls == [
        ("send", "a", PacketType.PROPOSAL, 5, b"", p.encode()),
        ("send", "b", PacketType.PROPOSAL, 5, b"", p.encode()),
        ("send", "a", PacketType.COMMIT, 4, b"", c4.encode()),
        ("send", "a", PacketType.COMMIT, 5, b"", c5.encode()),
        ("commit", 5),  # 4 and 5 together, before the next other action
        ("write_epoch", "currentEpoch", 2),
        ("commit", 6),
        ("flush_dirty",),
    ]


def test_leader_snapshot_forward_revalidate_touch_abandon() -> None:
    ex, j, core = leader_executor()
    ex.run([A.SendSnapshot(2), A.ForwardedRequest(1, 5, 7, 1, b"body", (("digest", "u"),)),
            A.Revalidate(1, 5, 9000), A.Revalidate(1, 6, 9000), A.TouchSessions(1, ((5, 1),)),
            A.Established(3), A.Abandon("bye")])
    assert j.calls[:2] == [("encode_snapshot", core.tree), ("send", "b", PacketType.SNAP, 3, b"stream", None)]
    assert ("forwarded", 5, 7, 1, b"body", [("digest", "u")], 42) in j.calls  # owner: the learner's sid
    assert core.sessions.sessions[5].owner == 42 and core.sessions.sessions[5].timeout == 9000
    answers = [c[5] for c in j.calls if c[:3] == ("send", "a", PacketType.REVALIDATE)]
    assert answers == [QuorumPacket(PacketType.REVALIDATE, -1, b"\1").encode(),
                       QuorumPacket(PacketType.REVALIDATE, -1, b"\0").encode()]
    assert j.calls[-3:] == [("established", 3), ("finish", "bye"), ("flush_dirty",)]
    assert ex.kept_tree() is core.tree


def learner_executor() -> tuple[LearnerExecutor, Journal, FakeCore]:
    j = Journal()
    learner = Learner(2, False, 1, 1, 0, 0, 200, 10, 5)
    ex = LearnerExecutor(learner, "follower", FakeDisk(j), lambda e: j.calls.append(("established", e)),
                         lambda r: j.calls.append(("finish", r)))
    core = FakeCore(j)
    ex.pipeline = core  # type: ignore[assignment]
    ex.link = FakeLink(j, "leader")
    return ex, j, core


def test_learner_persists_synced_txns_then_epoch_then_acks() -> None:
    ex, j, _ = learner_executor()
    ex.run([A.TakeSnapshot(), A.LogTxns((b"t1", b"t2"), sync=True), A.Commit(8),
            A.PersistCurrentEpoch(2), A.Send(0, QuorumPacket(PacketType.ACK, 2 << 32))])
    names = [c[0] for c in j.calls]
    assert names == ["take_snapshot", "roll_log", "log_proposal", "log_proposal", "sync_log", "commit",
                     "write_epoch", "send", "flush_dirty"]


def test_learner_keeps_no_tree_between_a_snap_and_its_snapshot() -> None:
    ex, j, core = learner_executor()
    assert ex.kept_tree() is core.tree
    ex.run([A.LoadSnapshot(b"stream", 9)])
    assert ("decode_snapshot", b"stream", 9) in j.calls and ex.kept_tree() is None
    ex.run([A.TakeSnapshot()])
    assert ex.kept_tree() is core.tree
    ex.run([A.Truncate(4)])
    assert [c[0] for c in j.calls[-4:]] == ["truncate_log", "recover", "replace_tree", "flush_dirty"]
    assert ex.kept_tree() is core.tree
    core.write_error = "disk gone"
    assert ex.kept_tree() is None


def test_learner_ping_carries_the_touched_sessions() -> None:
    ex, j, core = learner_executor()
    ex.run([A.PingReply(77), A.SyncReleased(), A.RevalidateAnswer(5, True), A.Established(2),
            A.Abandon("x")])
    ping = j.calls[0]
    assert ping[:4] == ("send", "leader", PacketType.PING, 77) and core.touched == {}
    assert j.calls[1:] == [("sync_released",), ("revalidated", 5, True), ("established", 2),
                           ("finish", "x"), ("flush_dirty",)]


def test_learner_forward_and_revalidate_go_to_the_leader() -> None:
    ex, j, _ = learner_executor()
    ex.forward(5, 3, 1, b"body", [("digest", "u")])
    ex.revalidate(5, 4000)
    assert [c[2] for c in j.calls] == [PacketType.REQUEST, PacketType.REVALIDATE]


def test_load_tree_recovers_or_replays_onto_the_kept_tree() -> None:
    j = Journal()
    disk = FakeDisk(j)
    recovered = load_tree(disk, None)
    assert j.calls == [("recover",), ("ensure_snapshot", recovered)]
    kept = FakeTree(5)
    assert load_tree(disk, kept) is kept
    assert j.calls[-1] == ("replay_log", kept)


def test_ping_payload_decodes() -> None:
    ex, j, _ = learner_executor()
    captured: list[QuorumPacket] = []

    class Capture:
        def send(self, pkt: QuorumPacket, raw: bytes = b"", encoded: bytes | None = None) -> None:
            captured.append(pkt)

    ex.link = Capture()
    ex.run([A.PingReply(1)])
    r = Reader(captured[0].data or b"")
    assert (r.long(), r.int()) == (11, 4000)
