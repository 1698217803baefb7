"""multi (kazoo transactions) and, through the raw client, multiRead and the wire details.

Semantics pinned here (Apache ZooKeeper 3.8):
* all ops of a multi are validated in order against the tree plus the earlier ops of
  the same multi, share one zxid, and are applied all-or-nothing;
* a failed multi still has reply err 0: the failing op carries its error, the ops
  before it ErrorResult(0) (kazoo: RolledBackError), the ops after it
  RUNTIMEINCONSISTENCY; a failed multi consumes a zxid;
* inside a multi the create variant is chosen from the flags (3.8's Op.create): flags
  0-3 give a plain create (result type 1, path only, even for create2/createContainer
  records), flag 4 a container (result type 15), flags 5/6 a TTL node (type 15).
"""

from __future__ import annotations

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import ZnodeStat
from kazoo.security import READ_ACL_UNSAFE, make_acl

from tests.rawclient import (
    ACL,
    OPEN_ACL_UNSAFE,
    Err,
    Op,
    Perm,
    RawClient,
    Reader,
    create_body,
    enc_string,
    path_version_body,
    path_watch_body,
    set_data_body,
)


@pytest.fixture
def raw(server, zk):
    with RawClient(server.port) as c:
        yield c


def C(path, flags=0, data=b"", op=Op.CREATE, ttl=None):
    return (op, create_body(path, data, OPEN_ACL_UNSAFE, flags, ttl))


def D(path, version=-1):
    return (Op.DELETE, path_version_body(path, version))


def S(path, data=b"x", version=-1):
    return (Op.SET_DATA, set_data_body(path, data, version))


def K(path, version=-1):
    return (Op.CHECK, path_version_body(path, version))


def kinds(results):
    return [type(r) for r in results]


# ---- kazoo transactions -------------------------------------------------------------


def test_multi_success_results(zk, base):
    zk.create(f"{base}/old", b"o")
    t = zk.transaction()
    t.create(f"{base}/a", b"1")
    t.set_data(f"{base}/a", b"2")
    t.check(f"{base}/a", 1)
    t.delete(f"{base}/old")
    t.create(f"{base}/s-", sequence=True)
    results = t.commit()
    assert results[0] == f"{base}/a"
    assert isinstance(results[1], ZnodeStat) and results[1].version == 1
    assert results[2] is True
    assert results[3] is True
    assert results[4] == f"{base}/s-0000000002"
    assert zk.get(f"{base}/a")[0] == b"2"
    assert zk.exists(f"{base}/old") is None


def test_multi_all_ops_share_one_zxid(zk, base):
    zk.create(f"{base}/x")
    t = zk.transaction()
    t.create(f"{base}/a")
    t.create(f"{base}/b")
    t.set_data(f"{base}/x", b"new")
    t.delete(f"{base}/b")
    results = t.commit()
    a = zk.exists(f"{base}/a")
    x = zk.exists(f"{base}/x")
    parent = zk.exists(base)
    assert results[2].mzxid == a.czxid == x.mzxid == parent.pzxid
    assert a.ctime == x.mtime


def test_multi_failure_reports_each_op(zk, base):
    zk.create(f"{base}/a")
    t = zk.transaction()
    t.create(f"{base}/b")
    t.set_data(f"{base}/a", b"x")
    t.check(f"{base}/a", 5)          # fails: version is 0
    t.create(f"{base}/c")
    t.delete(f"{base}/a")
    results = t.commit()
    assert kinds(results) == [RolledBackError, RolledBackError, BadVersionError,
                              RuntimeInconsistency, RuntimeInconsistency]
    # nothing was applied
    assert zk.exists(f"{base}/b") is None and zk.exists(f"{base}/c") is None
    assert zk.get(f"{base}/a")[1].version == 0


def test_multi_first_op_fails(zk, base):
    t = zk.transaction()
    t.delete(f"{base}/missing")
    t.create(f"{base}/a")
    t.create(f"{base}/b")
    assert kinds(t.commit()) == [NoNodeError, RuntimeInconsistency, RuntimeInconsistency]
    assert zk.get_children(base) == []


def test_multi_last_op_fails(zk, base):
    zk.create(f"{base}/dup")
    t = zk.transaction()
    t.create(f"{base}/a")
    t.create(f"{base}/b")
    t.create(f"{base}/dup")
    assert kinds(t.commit()) == [RolledBackError, RolledBackError, NodeExistsError]
    assert zk.get_children(base) == ["dup"]


def test_failed_multi_changes_nothing(zk, base):
    zk.create(f"{base}/p", b"d")
    before = zk.exists(f"{base}/p")
    t = zk.transaction()
    t.create(f"{base}/p/c")
    t.set_data(f"{base}/p", b"changed")
    t.create(f"{base}/p/s", sequence=True)
    t.check(f"{base}/missing", -1)
    assert kinds(t.commit()) == [RolledBackError, RolledBackError, RolledBackError, NoNodeError]
    assert zk.exists(f"{base}/p") == before
    assert zk.get(f"{base}/p")[0] == b"d"
    # the sequence counter was not advanced either
    assert zk.create(f"{base}/p/s", sequence=True) == f"{base}/p/s0000000000"


def test_multi_create_then_child(zk, base):
    t = zk.transaction()
    t.create(f"{base}/a", b"p")
    t.create(f"{base}/a/b", b"c")
    t.create(f"{base}/a/b/c")
    assert t.commit() == [f"{base}/a", f"{base}/a/b", f"{base}/a/b/c"]
    assert zk.get(f"{base}/a/b")[0] == b"c"
    assert zk.exists(f"{base}/a").numChildren == 1


def test_multi_sequential_counters(zk, base):
    zk.create(f"{base}/first")
    t = zk.transaction()
    t.create(f"{base}/s-", sequence=True)
    t.create(f"{base}/plain")
    t.create(f"{base}/s-", sequence=True)
    t.create(f"{base}/sub")
    t.create(f"{base}/sub/s-", sequence=True)
    assert t.commit() == [f"{base}/s-0000000001", f"{base}/plain", f"{base}/s-0000000003",
                          f"{base}/sub", f"{base}/sub/s-0000000000"]


def test_multi_delete_then_recreate(zk, base):
    zk.create(f"{base}/a", b"old")
    t = zk.transaction()
    t.delete(f"{base}/a")
    t.create(f"{base}/a", b"new")
    t.create(f"{base}/a/child")
    results = t.commit()
    assert results == [True, f"{base}/a", f"{base}/a/child"]
    data, stat = zk.get(f"{base}/a")
    assert data == b"new" and stat.version == 0 and stat.numChildren == 1


def test_multi_create_then_delete(zk, base):
    before = zk.exists(base)
    t = zk.transaction()
    t.create(f"{base}/tmp")
    t.delete(f"{base}/tmp")
    assert t.commit() == [f"{base}/tmp", True]
    after = zk.exists(base)
    assert zk.exists(f"{base}/tmp") is None
    assert after.numChildren == before.numChildren
    assert after.cversion == before.cversion + 2
    assert after.pzxid > before.pzxid


def test_multi_set_data_version_chain(zk, base):
    zk.create(f"{base}/a")
    t = zk.transaction()
    t.set_data(f"{base}/a", b"1", version=0)
    t.set_data(f"{base}/a", b"2", version=1)
    t.check(f"{base}/a", 2)
    t.set_data(f"{base}/a", b"3", version=2)
    results = t.commit()
    assert [r.version for r in (results[0], results[1], results[3])] == [1, 2, 3]
    assert results[2] is True
    assert zk.get(f"{base}/a")[0] == b"3"


def test_multi_check(zk, base):
    zk.create(f"{base}/a")
    zk.set(f"{base}/a", b"x")
    t = zk.transaction()
    t.check(f"{base}/a", 1)
    t.check(f"{base}/a", -1)
    assert t.commit() == [True, True]
    t = zk.transaction()
    t.check(f"{base}/a", 0)
    assert kinds(t.commit()) == [BadVersionError]
    t = zk.transaction()
    t.check(f"{base}/missing", -1)
    assert kinds(t.commit()) == [NoNodeError]


def test_multi_check_sees_earlier_ops(zk, base):
    t = zk.transaction()
    t.create(f"{base}/a")
    t.check(f"{base}/a", 0)
    t.set_data(f"{base}/a", b"x")
    t.check(f"{base}/a", 1)
    results = t.commit()
    assert results[0] == f"{base}/a"
    assert results[1] is True and results[3] is True
    assert results[2].version == 1


def test_multi_errors(zk, base):
    zk.create(f"{base}/eph", ephemeral=True)
    zk.create(f"{base}/full")
    zk.create(f"{base}/full/c")
    zk.create(f"{base}/ro", acl=READ_ACL_UNSAFE)
    zk.create(f"{base}/wo", acl=[make_acl("world", "anyone", write=True)])
    cases = [
        (lambda t: t.check(f"{base}/wo", -1), NoAuthError),  # check needs READ
        (lambda t: t.create(f"{base}/eph/c"), NoChildrenForEphemeralsError),
        (lambda t: t.delete(f"{base}/full"), NotEmptyError),
        (lambda t: t.create(f"{base}/ro/c"), NoAuthError),
        (lambda t: t.set_data(f"{base}/ro", b"x"), NoAuthError),
        (lambda t: t.create(f"{base}/missing/c"), NoNodeError),
        (lambda t: t.delete(f"{base}/full", version=3), BadVersionError),
        (lambda t: t.delete("/zookeeper"), BadArgumentsError),
    ]
    for add, exc in cases:
        t = zk.transaction()
        t.create(f"{base}/ok")
        add(t)
        assert kinds(t.commit()) == [RolledBackError, exc]
    assert zk.exists(f"{base}/ok") is None
    zk.delete(f"{base}/wo")  # unreadable: teardown could not list it


def test_multi_ephemeral_create_then_child(zk, base):
    t = zk.transaction()
    t.create(f"{base}/e", ephemeral=True)
    t.create(f"{base}/e/c")
    assert kinds(t.commit()) == [RolledBackError, NoChildrenForEphemeralsError]


def test_failed_multi_consumes_a_zxid(zk, base):
    _, s1 = zk.create(f"{base}/a", include_data=True)
    for _ in range(3):
        t = zk.transaction()
        t.create(f"{base}/a")
        assert kinds(t.commit()) == [NodeExistsError]
    _, s2 = zk.create(f"{base}/b", include_data=True)
    assert s2.czxid - s1.czxid >= 4


# ---- raw multi --------------------------------------------------------------------


def test_multi_wire_results(raw, base):
    assert raw.create(f"{base}/old").err == 0
    r = raw.multi([C(f"{base}/a", data=b"d"), S(f"{base}/a", b"e", 0), K(f"{base}/a", 1), D(f"{base}/old")])
    assert r.err == 0
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.CREATE, 0), (Op.SET_DATA, 0), (Op.CHECK, 0), (Op.DELETE, 0)]
    assert Reader(res[0].body).string() == f"{base}/a"
    stat = Reader(res[1].body).stat()
    assert stat.version == 1 and stat.mzxid == stat.czxid == r.zxid
    assert res[2].body == b"" and res[3].body == b""


def test_failed_multi_wire_results(raw, base):
    r0 = raw.create(f"{base}/a")
    r = raw.multi([C(f"{base}/b"), K(f"{base}/a", 3), C(f"{base}/c"), D(f"{base}/a")])
    assert r.err == 0  # the header reports success; the failure is in the results
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.ERROR, 0), (Op.ERROR, Err.BADVERSION),
                                              (Op.ERROR, Err.RUNTIMEINCONSISTENCY),
                                              (Op.ERROR, Err.RUNTIMEINCONSISTENCY)]
    # an ErrorResult record repeats the code
    assert [Reader(m.body).int() for m in res] == [0, Err.BADVERSION, Err.RUNTIMEINCONSISTENCY,
                                                   Err.RUNTIMEINCONSISTENCY]
    assert r.zxid > r0.zxid  # the failed multi had its own txn
    r1 = raw.create(f"{base}/z")
    assert r1.zxid > r.zxid


def test_empty_multi(raw, base):
    r0 = raw.create(f"{base}/a")
    r = raw.multi([])
    assert r.err == 0
    assert raw.parse_multi(r) == []
    r1 = raw.create(f"{base}/b")
    assert r0.zxid < r.zxid < r1.zxid  # even an empty multi is a txn


def test_multi_create2_is_a_plain_create(raw, base):
    """3.8: a create2 inside a multi answers like create (type 1, path only)."""
    r = raw.multi([C(f"{base}/a", op=Op.CREATE2), C(f"{base}/s", flags=2, op=Op.CREATE2)])
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.CREATE, 0), (Op.CREATE, 0)]
    assert [Reader(m.body).string() for m in res] == [f"{base}/a", f"{base}/s0000000001"]


def test_multi_container_and_ttl_results(raw, base):
    r = raw.multi([C(f"{base}/c", flags=4, op=Op.CREATE_CONTAINER),
                   C(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=60000),
                   C(f"{base}/ts-", flags=6, op=Op.CREATE_TTL, ttl=60000)])
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.CREATE2, 0)] * 3
    readers = [Reader(m.body) for m in res]
    paths_stats = [(rd.string(), rd.stat()) for rd in readers]
    assert [p for p, _ in paths_stats] == [f"{base}/c", f"{base}/t", f"{base}/ts-0000000002"]
    for _, stat in paths_stats:
        assert stat.ephemeralOwner == 0 and stat.czxid == r.zxid


def test_multi_create_kind_comes_from_flags(raw, base):
    """Inside a multi the record's opcode does not matter, the flags do (3.8 Op.create)."""
    r = raw.multi([
        C(f"{base}/c1", flags=4, op=Op.CREATE),                      # container
        C(f"{base}/c2", flags=4, op=Op.CREATE2),                     # container
        C(f"{base}/p1", flags=0, op=Op.CREATE_CONTAINER),            # plain create
        C(f"{base}/p2", flags=0, op=Op.CREATE_TTL, ttl=1000),        # plain create, ttl dropped
        C(f"{base}/e1", flags=1, op=Op.CREATE_TTL, ttl=1000),        # ephemeral
    ])
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.CREATE2, 0), (Op.CREATE2, 0), (Op.CREATE, 0),
                                              (Op.CREATE, 0), (Op.CREATE, 0)]
    e1 = raw.parse_stat(raw.exists(f"{base}/e1"))
    assert e1.ephemeralOwner == raw.session_id
    p2 = raw.parse_stat(raw.exists(f"{base}/p2"))
    assert p2.ephemeralOwner == 0


def test_multi_invalid_create_flags(raw, base):
    r = raw.multi([C(f"{base}/ok"), C(f"{base}/bad", flags=9), C(f"{base}/after")])
    assert r.err == 0
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.ERROR, 0), (Op.ERROR, Err.BADARGUMENTS),
                                              (Op.ERROR, Err.RUNTIMEINCONSISTENCY)]
    assert raw.exists(f"{base}/ok").err == Err.NONODE


def test_multi_ttl_flag_without_ttl_record(raw, base):
    """A TTL mode in a plain CreateRequest cannot be built into an op: the whole multi
    fails MARSHALLINGERROR (header err), as an error txn with its own zxid."""
    r0 = raw.create(f"{base}/a")
    r = raw.multi([C(f"{base}/t", flags=5, op=Op.CREATE)])
    assert r.err == Err.MARSHALLINGERROR
    assert r.body == b""
    r1 = raw.create(f"{base}/b")
    assert r0.zxid < r.zxid < r1.zxid
    assert raw.exists(f"{base}/t").err == Err.NONODE


def test_multi_bad_ttl(raw, base):
    r = raw.multi([C(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=0)])
    assert [(m.type, m.err) for m in raw.parse_multi(r)] == [(Op.ERROR, Err.BADARGUMENTS)]


def test_multi_mixing_reads_and_writes(raw, base):
    r0 = raw.create(f"{base}/a")
    r = raw.multi([C(f"{base}/b"), (Op.GET_DATA, path_watch_body(f"{base}/a"))])
    assert r.err == Err.MARSHALLINGERROR and r.body == b""
    r1 = raw.create(f"{base}/c")
    assert r0.zxid < r.zxid < r1.zxid  # rejected as an error txn: a zxid was consumed
    assert raw.exists(f"{base}/b").err == Err.NONODE


def test_multi_validates_paths_per_op(raw, base):
    r = raw.multi([C(f"{base}/a/"), S(f"{base}//x")])
    # create's parent lookup (base/a) fails before the path check
    assert [(m.type, m.err) for m in raw.parse_multi(r)] == [(Op.ERROR, Err.NONODE),
                                                            (Op.ERROR, Err.RUNTIMEINCONSISTENCY)]
    r = raw.multi([K(f"{base}/")])
    assert [(m.type, m.err) for m in raw.parse_multi(r)] == [(Op.ERROR, Err.BADARGUMENTS)]


# ---- multiRead ----------------------------------------------------------------------


def GD(path):
    return (Op.GET_DATA, path_watch_body(path, True))


def GC(path):
    return (Op.GET_CHILDREN, path_watch_body(path, True))


def test_multi_read(raw, base):
    assert raw.create(f"{base}/a", b"data").err == 0
    assert raw.create(f"{base}/a/x").err == 0
    r0 = raw.create(f"{base}/n", None)
    r = raw.multi([GD(f"{base}/a"), GC(f"{base}/a"), GD(f"{base}/missing"), GC(f"{base}/missing"),
                   GD(f"{base}/n")], read=True)
    assert r.err == 0
    assert r.zxid == r0.zxid  # a read: no zxid consumed
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.GET_DATA, 0), (Op.GET_CHILDREN, 0),
                                              (Op.ERROR, Err.NONODE), (Op.ERROR, Err.NONODE),
                                              (Op.GET_DATA, 0)]
    rd = Reader(res[0].body)
    assert rd.buffer() == b"data"
    assert rd.stat() == raw.parse_stat(raw.exists(f"{base}/a"))
    assert Reader(res[1].body).strings() == ["x"]
    assert Reader(res[2].body).int() == Err.NONODE
    assert Reader(res[4].body).buffer() is None
    # the watch flags inside a multiRead are ignored
    assert raw.set_data(f"{base}/a", b"new").err == 0
    assert raw.create(f"{base}/a/y").err == 0
    raw.sync(base)
    assert raw.events == []


def test_multi_read_acl_per_op(raw, base):
    assert raw.create(f"{base}/secret", b"s", acl=[ACL(Perm.WRITE, "world", "anyone")]).err == 0
    assert raw.create(f"{base}/open", b"o").err == 0
    r = raw.multi([GD(f"{base}/secret"), GD(f"{base}/open")], read=True)
    res = raw.parse_multi(r)
    assert [(m.type, m.err) for m in res] == [(Op.ERROR, Err.NOAUTH), (Op.GET_DATA, 0)]
    assert raw.delete(f"{base}/secret").err == 0  # unreadable: teardown could not list it


def test_multi_read_rejects_other_ops(raw, base):
    for op in [C(f"{base}/a"), K(base), (Op.GET_CHILDREN2, path_watch_body(base)),
               (Op.EXISTS, path_watch_body(base)), (Op.SYNC, enc_string(base))]:
        r = raw.multi([GD(base), op], read=True)
        assert r.err == Err.MARSHALLINGERROR, op
    assert raw.exists(f"{base}/a").err == Err.NONODE


def test_empty_multi_read(raw, base):
    r = raw.multi([], read=True)
    assert r.err == 0 and raw.parse_multi(r) == []
