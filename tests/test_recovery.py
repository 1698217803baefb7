"""Recovery (snapshot + log replay), fallbacks, purge, and interop with Apache ZooKeeper 3.8."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REFERENCE_AVAILABLE, REQUIRE_REFERENCE, ServerProcess
from tests.test_snapshot import assert_same_tree, workload
from zkpy.datatree.tree import DataTree
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ACL
from zkpy.jute.txns import (
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    MultiTxn,
    SetDataTxn,
    Txn,
    TxnHeader,
    encode_txn,
)
from zkpy.persistence.files import PersistenceError, log_files, snapshot_files
from zkpy.persistence.logscan import Tail, read_file, split_entry, walk
from zkpy.persistence.recovery import RecoveryError, purge, recover, take_snapshot
from zkpy.persistence.snapshot import (
    check_seals,
    iter_snapshot_items,
    snapshot_items,
    write_snapshot,
    write_snapshot_items,
)
from zkpy.persistence.txnlog import TxnLog

PREALLOC = 64 * 1024


def log_txns(log_dir: Path, txns: list[tuple[TxnHeader, Txn]], roll_every: int = 0) -> None:
    tl = TxnLog(log_dir, pre_alloc_size=PREALLOC)
    for i, (h, t) in enumerate(txns):
        if roll_every and i and i % roll_every == 0:
            tl.roll()
        tl.append(h, encode_txn(t))
        if i % 17 == 0:
            tl.sync()
    tl.close()


def test_empty_start_creates_dirs(tmp_path: Path) -> None:
    tree, last = recover(tmp_path / "data", tmp_path / "logs")
    assert last == 0 and tree.last_processed_zxid == 0
    assert (tmp_path / "data" / "version-2").is_dir() and (tmp_path / "logs" / "version-2").is_dir()
    assert_same_tree(tree, DataTree())


def test_unusable_data_dir_names_the_path(tmp_path: Path) -> None:
    f = tmp_path / "plainfile"
    f.write_text("x")
    with pytest.raises(PersistenceError, match="plainfile"):
        recover(f, f)


@pytest.mark.parametrize("seed", range(5))
def test_fuzzy_snapshot_plus_log_equals_live_tree(tmp_path: Path, seed: int) -> None:
    """Snapshot named at zxid k but copied after further txns, then replay everything > k."""
    v2 = tmp_path / "version-2"
    v2.mkdir()
    live = DataTree()
    txns = workload(seed, 300, shadow=DataTree())
    k = 100 + seed * 37 % 120
    copy_at = k + 1 + seed * 13 % 50
    for i, (h, t) in enumerate(txns, 1):
        live.apply(h, t)
        if i == copy_at:
            items, sessions = snapshot_items(live), dict(live.sessions)
    write_snapshot_items(items, sessions, v2 / f"snapshot.{k:x}", fsync=False)
    log_txns(v2, txns, roll_every=70)
    tree, last = recover(tmp_path, tmp_path)
    assert last == 300
    assert_same_tree(tree, live)


@pytest.mark.parametrize("seed", range(4))
def test_chunked_fuzzy_copy_interleaved_with_writes(tmp_path: Path, seed: int) -> None:
    """iter_snapshot_items driven between txns, as an event loop would, then recovery."""
    v2 = tmp_path / "version-2"
    v2.mkdir()
    live = DataTree()
    txns = workload(100 + seed, 700, shadow=DataTree())
    for h, t in txns[:400]:
        live.apply(h, t)
    name_zxid, sessions = live.last_processed_zxid, dict(live.sessions)
    items: list = []
    rest = iter(txns[400:])
    for chunk in iter_snapshot_items(live, chunk_size=7):
        items += chunk
        for h, t in [x for _ in range(3) if (x := next(rest, None))]:
            live.apply(h, t)
    for h, t in rest:
        live.apply(h, t)
    write_snapshot_items(items, sessions, v2 / f"snapshot.{name_zxid:x}", fsync=False)
    log_txns(v2, txns, roll_every=100)
    tree, last = recover(tmp_path, tmp_path)
    assert last == 700
    assert_same_tree(tree, live)


def test_replayed_delete_of_a_child_missing_from_a_fuzzy_snapshot_moves_parent_pzxid(tmp_path: Path) -> None:
    """Java's deleteNode bumps the parent's pzxid even when the child is already gone."""
    v2 = tmp_path / "version-2"
    v2.mkdir()
    live = DataTree()
    txns: list[tuple[TxnHeader, Txn]] = [
        (TxnHeader(7, 1, 1, 10, OpCode.CREATE_SESSION), CreateSessionTxn(30000)),
        (TxnHeader(7, 2, 2, 10, OpCode.CREATE), CreateTxn("/p", b"", [], False, 1)),
        (TxnHeader(7, 3, 3, 11, OpCode.CREATE), CreateTxn("/p/c", b"", [], False, 1)),
        (TxnHeader(7, 4, 4, 12, OpCode.CREATE), CreateTxn("/p/d", b"", [], False, 2)),
        (TxnHeader(7, 5, 5, 13, OpCode.CREATE), CreateTxn("/p/e", b"", [], True, 3)),
        (TxnHeader(7, 6, 6, 14, OpCode.DELETE), DeleteTxn("/p/c")),
        (TxnHeader(7, 7, 7, 15, OpCode.MULTI), MultiTxn([(OpCode.DELETE, DeleteTxn("/p/d"))])),
        (TxnHeader(7, 8, 8, 16, OpCode.CLOSE_SESSION), CloseSessionTxn(["/p/e"])),
    ]
    for i, (h, t) in enumerate(txns, 1):
        live.apply(h, t)
        if i == 5:  # the parent is serialised before the deletes ...
            parent = [(p, f) for p, f in snapshot_items(live) if p == "/p"]
            sessions = dict(live.sessions)
    # ... the children after them: the snapshot (named 5) has none of them
    items = [(p, f) for p, f in snapshot_items(live) if p != "/p"] + parent
    write_snapshot_items(items, sessions, v2 / "snapshot.5", fsync=False)
    log_txns(v2, txns)
    tree, _ = recover(tmp_path, tmp_path)
    assert tree.nodes["/p"].pzxid == 8
    assert_same_tree(tree, live)


def test_logs_without_snapshot_refuse_unless_trusted(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """As Java's FileTxnSnapLog.restore: txns in the logs but no snapshot is refused unless
    zookeeper.snapshot.trust.empty (then the logs are replayed from zxid 0)."""
    live = DataTree()
    txns = workload(42, 200, shadow=live)
    log_txns(tmp_path / "version-2", txns, roll_every=50)
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "version-2").iterdir())
    with pytest.raises(RecoveryError, match="No snapshot found, but there are log entries .*0xc8.*"
                                            "zookeeper.snapshot.trust.empty=true"):
        recover(tmp_path, tmp_path)
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "version-2").iterdir()) == before
    with caplog.at_level(logging.WARNING, logger="zkpy.persistence"):
        tree, last = recover(tmp_path, tmp_path, trust_empty=True)
    assert last == 200
    assert_same_tree(tree, live)
    assert "This should only be allowed during upgrading" in caplog.text


def test_no_snapshot_and_logs_without_txns_is_a_fresh_start(tmp_path: Path) -> None:
    v2 = tmp_path / "version-2"
    v2.mkdir()
    (v2 / "log.1").write_bytes(bytes(4096))  # created and preallocated, nothing written
    tree, last = recover(tmp_path, tmp_path)
    assert last == 0 and len(tree.nodes) == len(DataTree().nodes)


def _two_snapshots(tmp_path: Path) -> tuple[DataTree, Path, Path]:
    v2 = tmp_path / "version-2"
    v2.mkdir()
    live = DataTree()
    txns = workload(5, 200, shadow=DataTree())
    snaps = []
    for i, (h, t) in enumerate(txns, 1):
        live.apply(h, t)
        if i in (80, 160):
            p = v2 / f"snapshot.{i:x}"
            write_snapshot(live, p, fsync=False)
            snaps.append(p)
    log_txns(v2, txns, roll_every=60)
    return live, snaps[0], snaps[1]


def test_corrupt_newest_snapshot_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, _old, new = _two_snapshots(tmp_path)
    raw = bytearray(new.read_bytes())
    raw[len(raw) // 2] ^= 0x10  # still "valid" by the cheap test, fails the CRC
    new.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="zkpy.persistence"):
        tree, last = recover(tmp_path, tmp_path)
    assert last == 200
    assert_same_tree(tree, live)
    assert "snapshot.a0" in caplog.text


def test_torn_newest_snapshot_is_ignored(tmp_path: Path) -> None:
    live, _old, new = _two_snapshots(tmp_path)
    new.write_bytes(new.read_bytes()[:1000])
    tree, _ = recover(tmp_path, tmp_path)
    assert_same_tree(tree, live)


def test_all_snapshots_corrupt_is_an_error(tmp_path: Path) -> None:
    _live, old, new = _two_snapshots(tmp_path)
    for p in (old, new):
        raw = bytearray(p.read_bytes())
        raw[100] ^= 1
        p.write_bytes(bytes(raw))
    with pytest.raises(RecoveryError, match="snapshot"):
        recover(tmp_path, tmp_path)


def test_torn_log_tail_then_new_appends(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    v2 = tmp_path / "version-2"
    v2.mkdir()
    take_snapshot(DataTree(), tmp_path)  # snapshot.0, as every server writes at its first start
    txns = workload(9, 150, shadow=DataTree())
    log_txns(v2, txns[:100])
    last_file = log_files(v2)[-1][1]
    raw = last_file.read_bytes()
    data_end = len(raw.rstrip(b"\x00"))
    last_file.write_bytes(raw[: data_end - 7] + bytes(len(raw) - data_end + 7))  # torn last entry
    with caplog.at_level(logging.WARNING, logger="zkpy.persistence"):
        tree, last = recover(tmp_path, tmp_path)
    assert last == 99
    expect = DataTree()
    for h, t in txns[:99]:
        expect.apply(h, t)
    assert_same_tree(tree, expect)
    assert last_file.name in caplog.text and "dropped" in caplog.text
    # the server goes on from zxid 100 (re-issued) and a later restart sees everything
    log_txns(v2, txns[99:])
    tree2, last2 = recover(tmp_path, tmp_path)
    for h, t in txns[99:]:
        expect.apply(h, t)
    assert last2 == 150
    assert_same_tree(tree2, expect)


def _base_tree() -> DataTree:
    """A recovered-looking tree: a few nodes, a quota on /q."""
    tree = DataTree()
    zxid = iter(range(1, 100))

    def create(path: str, data: bytes) -> None:
        parent = tree.nodes[path[: path.rfind("/")] or "/"]
        tree.apply(TxnHeader(0, 1, next(zxid), 5, OpCode.CREATE),
                   CreateTxn(path, data, [ACL(31, "world", "anyone")], False, parent.cversion + 1))

    for path in ("/a", "/a/x", "/q", "/zookeeper/quota/q", "/zookeeper/quota/q/zookeeper_limits",
                 "/zookeeper/quota/q/zookeeper_stats"):
        create(path, b"count=10,bytes=-1" if path.endswith("limits") else b"d")
    return tree


_DIGEST = ACL(31, "digest", "u:Jq7wMyA/w2Vd5WIDAKdu4OIIFEQ=")
_REPLAYED_CREATES = [
    (OpCode.CREATE, CreateTxn("/b", b"data", [ACL(31, "world", "anyone")], False, 7)),
    (OpCode.CREATE, CreateTxn("/a/y", None, [], False, -1)),  # null data, no ACL, pcv from the parent
    (OpCode.CREATE, CreateTxn("/a/z", b"", [_DIGEST, ACL(1, "ip", "10.0.0.0/8")], False, 2)),
    (OpCode.CREATE2, CreateTxn("/a/e", b"e", [_DIGEST], True, 5)),  # ephemeral
    (OpCode.CREATE, CreateTxn("/a/x", b"again", [], False, 9)),  # exists: only the parent moves
    (OpCode.CREATE, CreateTxn("/a/x", b"again", [], False, 0)),  # exists, older cversion
    (OpCode.CREATE, CreateTxn("/nope/c", b"x", [], False, 1)),  # no parent
    (OpCode.CREATE, CreateTxn("/q/in", b"12345", [], False, 1)),  # under a quota
    (OpCode.CREATE, CreateTxn("/zookeeper/quota/a", b"", [], False, 1)),
    (OpCode.CREATE, CreateTxn("/é/ü", b"x", [], False, 1)),
]


@pytest.mark.parametrize("i", range(len(_REPLAYED_CREATES)))
def test_replay_create_is_apply(i: int) -> None:
    from zkpy.jute.txns import decode_txn
    from zkpy.persistence.recovery import replay_create

    t, txn = _REPLAYED_CREATES[i]
    hdr = TxnHeader(0x7F00000000000001, 3, 50, 1_700_000_000_000, t)
    rec = encode_txn(txn)
    fast, slow = _base_tree(), _base_tree()
    assert replay_create(fast, hdr, rec)
    slow.apply(hdr, decode_txn(t, rec))
    slow.last_processed_zxid = fast.last_processed_zxid
    assert_same_tree(fast, slow)
    assert fast.quotas.paths == slow.quotas.paths == {"/q"}
    if txn.path == "/q/in":
        assert fast.nodes["/zookeeper/quota/q/zookeeper_stats"].data == b"count=2,bytes=6"


@pytest.mark.parametrize("damage", ["no pcv", "null path", "null ACL", "bad ACL", "trailing", "short"])
def test_replay_create_leaves_odd_records_to_apply(damage: str) -> None:
    from zkpy.persistence.recovery import replay_create

    rec = encode_txn(CreateTxn("/b", b"data", [ACL(31, "world", "anyone")], False, 7))
    rec = {
        "no pcv": rec[:-4],  # as logs before 3.5 have it
        "null path": b"\xff\xff\xff\xff" + rec[6:],
        "null ACL": rec[:14] + b"\xff\xff\xff\xff" + rec[-5:],
        "bad ACL": rec[:14] + b"\x00\x00\x00\x01" + rec[-5:],
        "trailing": rec + b"\x00",
        "short": rec[:3],
    }[damage]
    tree = _base_tree()
    before = {p: (n.cversion, n.pzxid, sorted(n.children)) for p, n in tree.nodes.items()}
    assert not replay_create(tree, TxnHeader(1, 1, 50, 5, OpCode.CREATE), rec)
    assert {p: (n.cversion, n.pzxid, sorted(n.children)) for p, n in tree.nodes.items()} == before


def test_take_snapshot_then_recover(tmp_path: Path) -> None:
    live = DataTree()
    txns = workload(2, 100, shadow=live)
    log_txns(tmp_path / "logs" / "version-2", txns)
    tree, _ = recover(tmp_path / "data", tmp_path / "logs", trust_empty=True)
    p = take_snapshot(tree, tmp_path / "data")
    assert p.name == "snapshot.64"
    tree2, last = recover(tmp_path / "data", tmp_path / "logs")
    assert last == 100
    assert_same_tree(tree2, live)


def test_purge_rule(tmp_path: Path) -> None:
    v2 = tmp_path / "version-2"
    v2.mkdir()
    empty = DataTree()
    for z in (0x10, 0x20, 0x30, 0x40, 0x50):
        write_snapshot(empty, v2 / f"snapshot.{z:x}", fsync=False)
    (v2 / "snapshot.60").write_bytes(b"torn")  # invalid: not counted, not deleted
    for z in (0x1, 0x15, 0x25, 0x33, 0x45, 0x55):
        (v2 / f"log.{z:x}").write_bytes(b"")
    with pytest.raises(ValueError):
        purge(tmp_path, tmp_path, 2)
    removed = purge(tmp_path, tmp_path, 3)
    assert sorted(p.name for p in removed) == ["log.1", "log.15", "snapshot.10", "snapshot.20"]
    assert [p.name for _, p in snapshot_files(v2)] == ["snapshot.30", "snapshot.40", "snapshot.50",
                                                        "snapshot.60"]
    assert [p.name for _, p in log_files(v2)] == ["log.25", "log.33", "log.45", "log.55"]
    assert purge(tmp_path, tmp_path, 3) == []


def test_purge_keeps_log_starting_exactly_at_oldest_kept_snapshot(tmp_path: Path) -> None:
    v2 = tmp_path / "version-2"
    v2.mkdir()
    for z in (0x10, 0x20, 0x30, 0x40):
        write_snapshot(DataTree(), v2 / f"snapshot.{z:x}", fsync=False)
    for z in (0x1, 0x18, 0x20, 0x35):
        (v2 / f"log.{z:x}").write_bytes(b"")
    removed = purge(tmp_path, tmp_path, 3)
    assert sorted(p.name for p in removed) == ["log.1", "log.18", "snapshot.10"]


# ---- interop with the real Apache ZooKeeper 3.8.0 ----------------------------------------------
SUPER_FLAGS = ["-Dzookeeper.DigestAuthenticationProvider.superDigest=super:lK75jTNcA+U9vtVEw5vB51mj/w4=",
               "-Dzookeeper.extendedTypesEnabled=true"]


def java_server(workdir: Path, extra: dict[str, str]) -> ServerProcess:
    """A reference server in workdir (not started), logging at INFO to workdir/server.log."""
    if not REFERENCE_AVAILABLE:
        if REQUIRE_REFERENCE:
            pytest.fail("java or /usr/share/java/zookeeper.jar is missing")
        pytest.skip("java or /usr/share/java/zookeeper.jar is missing")
    workdir.mkdir(parents=True)
    props = workdir / "log4j.properties"
    props.write_text("log4j.rootLogger=INFO, C\nlog4j.appender.C=org.apache.log4j.ConsoleAppender\n"
                     "log4j.appender.C.layout=org.apache.log4j.PatternLayout\n"
                     "log4j.appender.C.layout.ConversionPattern=%d %-5p [%c{1}] %m%n\n")
    return ServerProcess("reference", workdir, extra, [*SUPER_FLAGS, f"-Dlog4j.configuration=file:{props}"])


def kazoo_view(zk: Any) -> dict[str, tuple[bytes, tuple[int, ...], list[tuple[int, str, str]]]]:
    """path -> (data, stat tuple, ACL list) for every znode, as a client sees them."""
    out = {}
    stack = ["/"]
    while stack:
        p = stack.pop()
        data, stat = zk.get(p)
        acls, _ = zk.get_acls(p)
        out[p] = (data or b"", tuple(stat), sorted((a.perms, a.id.scheme, a.id.id) for a in acls))
        for c in zk.get_children(p):
            stack.append(("" if p == "/" else p) + "/" + c)
    return out


def assert_tree_matches_view(tree: DataTree, view: dict[str, Any]) -> None:
    assert sorted(tree.nodes) == sorted(view)
    for p, (data, stat, acls) in view.items():
        n = tree.nodes[p]
        assert (n.data or b"") == data, p
        assert n.stat_tuple() == stat, p
        assert sorted(tuple(a) for a in n.acl) == acls, p


def java_client(srv: ServerProcess) -> Any:
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=srv.hosts, timeout=30, auth_data=[("digest", "super:secret")])
    zk.start(timeout=30)
    return zk


def test_we_recover_what_java_wrote(tmp_path: Path) -> None:
    from kazoo.security import make_acl, make_digest_acl

    srv = java_server(tmp_path / "java", {"snapCount": "20"})
    srv.start()
    try:
        zk = java_client(srv)
        other = java_client(srv)
        user_acl = make_digest_acl("user", "pass", all=True)
        zk.create("/app", b"root data")
        zk.create("/app/cfg", b"x" * 1000, acl=[user_acl, make_acl("world", "anyone", read=True)])
        for i in range(12):
            zk.create("/app/seq-", b"%d" % i, sequence=True)
        zk.delete("/app/seq-0000000003")
        zk.create("/app/eph", b"ephemeral", ephemeral=True)
        other.create("/app/gone", b"", ephemeral=True)
        other.create("/app/seq-eph-", b"", ephemeral=True, sequence=True)
        for i in range(3):
            zk.set("/app/cfg", b"v%d" % i)
        zk.set_acls("/app", [make_acl("ip", "127.0.0.1", all=True), make_acl("world", "anyone", read=True)])
        zk.create("/a/deep/path/here", b"deep", makepath=True)
        zk.create("/empty")
        t = zk.transaction()
        t.create("/tx1", b"1")
        t.set_data("/app", b"by multi")
        t.commit()
        t = zk.transaction()
        t.create("/tx2", b"never")
        t.delete("/does-not-exist")
        t.commit()  # a failed multi is logged too
        for i in range(40):
            zk.create(f"/bulk-{i:02d}", os.urandom(i * 10))
            if i % 3 == 0:
                zk.delete(f"/bulk-{i:02d}")
        other.stop()  # closeSession removes its ephemerals
        other.close()
        view = kazoo_view(zk)
        sid = zk.client_id[0]
        srv.stop()  # server dies with zk's session still open: /app/eph stays
        zk.stop()
        zk.close()
    finally:
        srv.stop()
    v2 = srv.data_dir / "version-2"
    assert len(log_files(v2)) > 1 and len(snapshot_files(v2)) > 1, os.listdir(v2)
    tree, last = recover(srv.data_dir, srv.data_dir)
    assert_tree_matches_view(tree, view)
    assert tree.ephemerals == {sid: {"/app/eph"}}
    assert sid in tree.sessions
    assert last == max(max(s[0], s[1], s[10]) for _d, s, _a in view.values())
    # Java 3.8 appends a TxnDigest to every entry and a real ZxidDigest to snapshots
    buf = read_file(log_files(v2)[0][1])
    body = next(b for _o, b in walk(buf, Tail()))
    buf.close()
    _hdr, rec = split_entry(body)
    assert len(body) == 32 + len(rec) + 12
    assert check_seals(*_sealed_at(snapshot_files(v2)[-1][1])).get("digest_zxid", 0) > 0
    # older snapshots (longer fuzzy replays) and the logs alone give the same tree
    for z, p in reversed(snapshot_files(v2)):
        if z:
            p.unlink()
            assert_tree_matches_view(recover(srv.data_dir, srv.data_dir)[0], view)


def _sealed_at(p: Path) -> tuple[bytes, int]:
    """The snapshot bytes and the offset of its first seal (just after the nodes)."""
    raw = p.read_bytes()
    return raw, len(raw) - 13 - 33


def test_java_reads_what_we_wrote(tmp_path: Path) -> None:
    srv = java_server(tmp_path / "java", {"extendedTypesEnabled": "true"})
    v2 = srv.data_dir / "version-2"
    v2.mkdir(parents=True)
    now = int(time.time() * 1000)
    live = DataTree()
    shadow = DataTree()
    txns = workload(77, 400, start_zxid=0x100000001, shadow=shadow)
    # sessions must outlive the test and TTLs must not expire: rewrite those fields
    fixed: list[tuple[TxnHeader, Txn]] = []
    for h, t in txns:
        if isinstance(t, CreateSessionTxn):
            t = CreateSessionTxn(600_000)
        if isinstance(t, CreateTxn) and t.kind == OpCode.CREATE_TTL:
            t = t._replace(ttl=10**9)
        fixed.append((h._replace(time=now - 400 + (h.zxid & 0xFFFF)), t))
    k = 0x100000000 + 250
    for h, t in fixed:
        live.apply(h, t)
        if h.zxid == k + 30:  # fuzzy: copied 30 txns after the name zxid
            items, sessions = snapshot_items(live), dict(live.sessions)
    write_snapshot_items(items, sessions, v2 / f"snapshot.{k:x}", fsync=True)
    log_txns(v2, fixed, roll_every=150)
    # one more node with a digest ACL and a null-data node via an extra txn pair
    sid = next(iter(live.sessions))
    extra = [
        (TxnHeader(sid, 1, 0x100000191, now, OpCode.CREATE),
         CreateTxn("/secret", b"s3cr3t", [ACL(31, "digest", "user:+owfoSBn/am19roBPzR1/MfCblE=")], False,
                   live.nodes["/"].cversion + 1)),
        (TxnHeader(sid, 2, 0x100000192, now, OpCode.SET_DATA), SetDataTxn("/secret", None, 1)),
    ]
    tl = TxnLog(v2, pre_alloc_size=PREALLOC)
    for h, t in extra:
        live.apply(h, t)
        tl.append(h, encode_txn(t))
    tl.sync()
    tl.close()
    assert live.ephemerals and live.containers and live.ttls  # the interesting kinds are present
    srv.start()
    try:
        zk = java_client(srv)
        view = kazoo_view(zk)
        zk.stop()
        zk.close()
        log_text = srv.log_text()
    finally:
        srv.stop()
    assert f"snapshot.{k:x}" in log_text and "CRC" not in log_text
    assert_tree_matches_view(live, view)
    assert view["/secret"][2] == [(31, "digest", "user:+owfoSBn/am19roBPzR1/MfCblE=")]
    acl_kinds = {tuple(acls) for _d, _s, acls in view.values()}
    assert ((31, "world", "anyone"),) in acl_kinds and () in acl_kinds  # -1 ref and an empty list
