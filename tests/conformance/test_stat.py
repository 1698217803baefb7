"""Exact Stat fields after each kind of operation, and how zxids are consumed.

Zxid arithmetic: the servers are shared by the whole test session, so a background
txn (a session of another test expiring, a container sweep) can in principle slip in
between two of our writes.  Assertions that depend on "nothing else happened" are
therefore phrased as lower bounds where that keeps them meaningful, and exact
equalities are only used between values that come from the same reply or txn.
"""

from __future__ import annotations

import time

import pytest
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.security import READ_ACL_UNSAFE, make_acl

from tests.rawclient import OPEN_ACL_UNSAFE, Err, RawClient


@pytest.fixture
def raw(server, zk):
    with RawClient(server.port) as c:
        yield c


def now_ms() -> int:
    return int(time.time() * 1000)


def test_stat_after_create(zk, base):
    t0 = now_ms()
    path, stat = zk.create(f"{base}/a", b"hello", include_data=True)
    t1 = now_ms()
    assert stat.czxid == stat.mzxid == stat.pzxid
    assert stat.czxid > 0
    assert stat.ctime == stat.mtime
    # txn time is the server's wall clock; the server runs on this machine
    assert t0 - 5000 <= stat.ctime <= t1 + 5000
    assert stat.version == 0
    assert stat.cversion == 0
    assert stat.aversion == 0
    assert stat.ephemeralOwner == 0
    assert stat.dataLength == 5
    assert stat.numChildren == 0
    assert zk.exists(path) == stat


def test_create_reply_zxid_is_the_create_zxid(raw, base):
    r = raw.create(f"{base}/a", b"x")
    assert r.err == 0
    stat = raw.parse_stat(raw.exists(f"{base}/a"))
    assert stat.czxid == stat.mzxid == stat.pzxid == r.zxid
    r2 = raw.create(f"{base}/b", op=15)
    path, stat2 = raw.parse_path_stat(r2)
    assert path == f"{base}/b"
    assert stat2.czxid == r2.zxid
    assert r2.zxid > r.zxid


def test_parent_stat_after_child_create(zk, base):
    zk.create(f"{base}/p", b"parent")
    before = zk.exists(f"{base}/p")
    _, child = zk.create(f"{base}/p/c", include_data=True)
    after = zk.exists(f"{base}/p")
    assert after.pzxid == child.czxid
    assert after.cversion == before.cversion + 1
    assert after.numChildren == 1
    # the parent's data, version and mzxid are untouched by child operations
    assert (after.czxid, after.mzxid, after.mtime, after.version, after.aversion, after.dataLength) == (
        before.czxid, before.mzxid, before.mtime, before.version, before.aversion, before.dataLength)


def test_parent_stat_after_child_delete(raw, base):
    p = f"{base}/p"
    assert raw.create(p).err == 0
    assert raw.create(f"{p}/a").err == 0
    assert raw.create(f"{p}/b").err == 0
    before = raw.parse_stat(raw.exists(p))
    rd = raw.delete(f"{p}/a")
    assert rd.err == 0
    after = raw.parse_stat(raw.exists(p))
    assert after.pzxid == rd.zxid > before.pzxid
    assert after.numChildren == 1
    # reported cversion = creates + deletes
    assert before.cversion == 2
    assert after.cversion == 3
    assert after.mzxid == before.mzxid and after.version == before.version


def test_cversion_counts_creates_plus_deletes(zk, base):
    zk.create(f"{base}/p")
    p = f"{base}/p"
    zk.create(f"{p}/a")
    zk.create(f"{p}/b")
    zk.delete(f"{p}/a")
    stat = zk.exists(p)
    assert (stat.cversion, stat.numChildren) == (3, 1)
    zk.delete(f"{p}/b")
    stat = zk.exists(p)
    assert (stat.cversion, stat.numChildren) == (4, 0)
    zk.create(f"{p}/c")
    stat = zk.exists(p)
    assert (stat.cversion, stat.numChildren) == (5, 1)
    # ... while the sequential counter only counts creates
    assert zk.create(f"{p}/s", sequence=True) == f"{p}/s0000000003"


def test_failed_child_ops_leave_parent_stat(zk, base):
    zk.create(f"{base}/p")
    zk.create(f"{base}/p/a")
    before = zk.exists(f"{base}/p")
    with pytest.raises(NodeExistsError):
        zk.create(f"{base}/p/a")
    with pytest.raises(NoNodeError):
        zk.delete(f"{base}/p/missing")
    assert zk.exists(f"{base}/p") == before


def test_child_set_data_leaves_parent_stat(zk, base):
    zk.create(f"{base}/p")
    zk.create(f"{base}/p/a")
    before = zk.exists(f"{base}/p")
    zk.set(f"{base}/p/a", b"new")
    zk.set_acls(f"{base}/p/a", READ_ACL_UNSAFE)
    assert zk.exists(f"{base}/p") == before


def test_stat_after_set_data(raw, base):
    path = f"{base}/a"
    assert raw.create(path, b"one").err == 0
    created = raw.parse_stat(raw.exists(path))
    r = raw.set_data(path, b"three", 0)
    assert r.err == 0
    stat = raw.parse_stat(r)
    assert stat.mzxid == r.zxid > created.mzxid
    assert stat.mtime >= created.mtime
    assert stat.version == 1
    assert stat.dataLength == 5
    assert (stat.czxid, stat.ctime, stat.pzxid, stat.cversion, stat.aversion) == (
        created.czxid, created.ctime, created.pzxid, created.cversion, created.aversion)
    assert raw.parse_stat(raw.exists(path)) == stat
    # setting identical data still bumps the version and mzxid
    r2 = raw.set_data(path, b"three", -1)
    stat2 = raw.parse_stat(r2)
    assert stat2.version == 2 and stat2.mzxid == r2.zxid > stat.mzxid


def test_set_data_to_null_and_empty(zk, base):
    zk.create(f"{base}/a", b"abc")
    assert zk.set(f"{base}/a", None).dataLength == 0
    assert zk.set(f"{base}/a", b"").dataLength == 0
    assert zk.exists(f"{base}/a").version == 2


def test_set_acl_bumps_only_aversion(raw, base, zk):
    path = f"{base}/a"
    zk.create(path, b"data")
    zk.create(f"{path}/child")
    before = zk.exists(path)
    stat = zk.set_acls(path, [make_acl("world", "anyone", all=True)])
    assert stat.aversion == before.aversion + 1 == 1
    assert stat == zk.exists(path)
    for field in ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "ephemeralOwner",
                  "dataLength", "numChildren", "pzxid"):
        assert getattr(stat, field) == getattr(before, field), field
    # aversion is the version checked by setACL
    with pytest.raises(BadVersionError):
        zk.set_acls(path, READ_ACL_UNSAFE, version=0)
    assert zk.set_acls(path, [make_acl("world", "anyone", all=True)], version=1).aversion == 2
    # setData does not touch aversion, setACL does not touch version
    assert zk.set(path, b"x").aversion == 2
    assert zk.exists(path).version == 1


def test_set_acl_reply_carries_its_own_zxid(raw, base):
    assert raw.create(f"{base}/a").err == 0
    r = raw.set_acl(f"{base}/a", OPEN_ACL_UNSAFE, 0)
    assert r.err == 0
    stat = raw.parse_stat(r)
    # the write consumed a zxid, but it is not recorded in any stat field
    assert r.zxid > stat.mzxid
    assert r.zxid not in (stat.czxid, stat.mzxid, stat.pzxid)
    assert stat.aversion == 1


def test_failed_ops_do_not_change_stat(zk, base):
    zk.create(f"{base}/a", b"data")
    before = zk.exists(f"{base}/a")
    with pytest.raises(BadVersionError):
        zk.set(f"{base}/a", b"x", version=5)
    with pytest.raises(BadVersionError):
        zk.set_acls(f"{base}/a", READ_ACL_UNSAFE, version=5)
    with pytest.raises(BadVersionError):
        zk.delete(f"{base}/a", version=5)
    assert zk.exists(f"{base}/a") == before
    assert zk.get(f"{base}/a")[0] == b"data"


def test_ephemeral_stat(zk, base):
    _, stat = zk.create(f"{base}/e", b"x", ephemeral=True, include_data=True)
    assert stat.ephemeralOwner == zk.client_id[0]
    assert stat.numChildren == 0 and stat.version == 0


def test_get_children2_stat_is_the_node_stat(zk, base):
    zk.create(f"{base}/a")
    zk.create(f"{base}/b")
    children, stat = zk.get_children(base, include_data=True)
    assert sorted(children) == ["a", "b"]
    assert stat == zk.exists(base)
    assert stat.numChildren == 2


# ---- zxids ------------------------------------------------------------------------------


def test_every_write_gets_a_new_zxid(zk, base):
    _, s1 = zk.create(f"{base}/a", include_data=True)
    s2 = zk.set(f"{base}/a", b"x")
    _, s3 = zk.create(f"{base}/b", include_data=True)
    assert s1.czxid < s2.mzxid < s3.czxid


def test_failed_writes_consume_zxids_raw(raw, base):
    """Every failed create/delete/setData/setACL is an error txn with its own zxid."""
    r0 = raw.create(f"{base}/a")
    assert r0.err == 0
    failures = [
        raw.create(f"{base}/a"),                       # NODEEXISTS
        raw.create(f"{base}/missing/x"),               # NONODE
        raw.delete(f"{base}/missing"),                 # NONODE
        raw.set_data(f"{base}/a", b"x", 9),            # BADVERSION
        raw.set_acl(f"{base}/missing", [], -1),        # INVALIDACL
        raw.create(f"{base}/a/"),                      # BADARGUMENTS
    ]
    assert [r.err for r in failures] == [Err.NODEEXISTS, Err.NONODE, Err.NONODE, Err.BADVERSION,
                                         Err.INVALIDACL, Err.BADARGUMENTS]
    zxids = [r0.zxid] + [r.zxid for r in failures]
    assert zxids == sorted(set(zxids)), zxids  # strictly increasing: each failure had its own txn
    r_last = raw.create(f"{base}/b")
    assert r_last.zxid > zxids[-1]
    assert raw.parse_stat(raw.exists(f"{base}/b")).czxid == r_last.zxid


def test_failed_writes_consume_zxids_kazoo(zk, base):
    _, s1 = zk.create(f"{base}/a", include_data=True)
    for _ in range(5):
        with pytest.raises(NodeExistsError):
            zk.create(f"{base}/a")
    _, s2 = zk.create(f"{base}/b", include_data=True)
    assert s2.czxid - s1.czxid >= 6


def test_reads_do_not_consume_zxids(raw, base):
    r1 = raw.create(f"{base}/a")
    zxids = []
    for _ in range(10):
        for r in (raw.get_data(f"{base}/a"), raw.exists(f"{base}/a"), raw.get_children(base),
                  raw.get_acl(f"{base}/a"), raw.get_data(f"{base}/missing"), raw.sync(base)):
            zxids.append(r.zxid)
    r2 = raw.create(f"{base}/b")
    # every read reports the last processed zxid, and 60 reads did not move it by 60
    assert all(r1.zxid <= z < r2.zxid for z in zxids)
    assert r2.zxid - r1.zxid < 10


def test_read_reply_zxid_is_last_processed(raw, base):
    r1 = raw.create(f"{base}/a")
    r2 = raw.get_data(f"{base}/a")
    assert r2.zxid >= r1.zxid
    ping = raw.ping()
    assert ping.xid == -2 and ping.err == 0 and ping.zxid >= r1.zxid


def test_system_config_node_stat(zk):
    data, stat = zk.get("/zookeeper/config")
    assert data == b""  # standalone
    assert stat.aversion == -1
    assert (stat.czxid, stat.ctime, stat.ephemeralOwner, stat.numChildren) == (0, 0, 0, 0)
    acls, _ = zk.get_acls("/zookeeper/config")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(1, "world", "anyone")]
