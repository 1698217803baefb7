"""Operations kazoo does not expose, through the raw Jute client: createTTL,
createContainer, create opcode/flag combinations, getEphemerals, getAllChildrenNumber.

The fixture servers run with extendedTypesEnabled=true and a 500 ms container sweep.

Never send createTTL with a non-TTL flag and a *negative* ttl to the reference: Apache
ZooKeeper 3.8.0 accepts it in the prep step and then dies applying it (the process
exits), which would take the shared reference server down for every later test.
"""

from __future__ import annotations

import time

import pytest

from tests.rawclient import ACL, OPEN_ACL_UNSAFE, Err, Op, Perm, RawClient, enc_string

MAX_TTL = 0xFFFFFFFFFF


@pytest.fixture
def raw(server, zk):
    with RawClient(server.port) as c:
        yield c


def wait_until(cond, timeout: float = 10.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


# ---- createTTL ----------------------------------------------------------------------


def test_create_ttl(raw, base):
    r = raw.create(f"{base}/t", b"data", flags=5, op=Op.CREATE_TTL, ttl=60000)
    assert r.err == 0
    path, stat = raw.parse_path_stat(r)
    assert path == f"{base}/t"
    assert stat.ephemeralOwner == 0  # stored as a TTL marker, reported as 0
    assert stat.czxid == stat.mzxid == stat.pzxid == r.zxid
    assert stat.dataLength == 4 and stat.version == 0
    assert raw.parse_stat(raw.exists(path)) == stat
    assert raw.parse_data(raw.get_data(path))[0] == b"data"


def test_create_ttl_sequential(raw, base):
    assert raw.create(f"{base}/x").err == 0
    r = raw.create(f"{base}/t-", flags=6, op=Op.CREATE_TTL, ttl=60000)
    assert r.err == 0
    assert raw.parse_path_stat(r)[0] == f"{base}/t-0000000001"


@pytest.mark.parametrize("ttl, ok", [(1, True), (MAX_TTL, True), (0, False), (MAX_TTL + 1, False),
                                     (-5, False), (-(1 << 63), False)])
def test_create_ttl_range(raw, base, ttl, ok):
    r = raw.create(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=ttl)
    assert r.err == (0 if ok else Err.BADARGUMENTS)


@pytest.mark.parametrize("flags", [0, 1, 2, 3, 4, 7, -1])
def test_create_ttl_needs_a_ttl_mode(raw, base, flags):
    # (positive ttl only: see the module docstring)
    assert raw.create(f"{base}/t", flags=flags, op=Op.CREATE_TTL, ttl=1000).err == Err.BADARGUMENTS
    assert raw.exists(f"{base}/t").err == Err.NONODE


@pytest.mark.parametrize("op", [Op.CREATE, Op.CREATE2, Op.CREATE_CONTAINER])
@pytest.mark.parametrize("flags", [5, 6])
def test_ttl_mode_needs_create_ttl(raw, base, op, flags):
    assert raw.create(f"{base}/t", flags=flags, op=op).err == Err.BADARGUMENTS


def test_ttl_node_may_have_children(raw, base):
    assert raw.create(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=60000).err == 0
    assert raw.create(f"{base}/t/child").err == 0
    assert raw.create(f"{base}/t/eph", flags=1).err == 0
    assert raw.create(f"{base}/t/ttl", flags=5, op=Op.CREATE_TTL, ttl=60000).err == 0


def test_create_ttl_errors(raw, base):
    assert raw.create(f"{base}/missing/t", flags=5, op=Op.CREATE_TTL, ttl=1000).err == Err.NONODE
    assert raw.create(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=60000).err == 0
    assert raw.create(f"{base}/t", flags=5, op=Op.CREATE_TTL, ttl=60000).err == Err.NODEEXISTS
    assert raw.create(f"{base}/e", flags=1).err == 0
    r = raw.create(f"{base}/e/t", flags=5, op=Op.CREATE_TTL, ttl=1000)
    assert r.err == Err.NOCHILDRENFOREPHEMERALS
    assert raw.create(f"{base}/u", flags=5, op=Op.CREATE_TTL, ttl=1000, acl=[]).err == Err.INVALIDACL


def test_ttl_node_expires(raw, base):
    """A childless TTL node whose mtime is older than its ttl is removed by the sweeper."""
    assert raw.create(f"{base}/short", flags=5, op=Op.CREATE_TTL, ttl=1).err == 0
    assert raw.create(f"{base}/long", flags=5, op=Op.CREATE_TTL, ttl=600000).err == 0
    assert raw.create(f"{base}/parent", flags=5, op=Op.CREATE_TTL, ttl=1).err == 0
    assert raw.create(f"{base}/parent/child").err == 0
    assert wait_until(lambda: raw.exists(f"{base}/short").err == Err.NONODE)
    # the sweep that removed /short also looked at the others
    assert raw.exists(f"{base}/long").err == 0
    assert raw.exists(f"{base}/parent").err == 0


# ---- containers -----------------------------------------------------------------------


def test_create_container(raw, base):
    r = raw.create(f"{base}/c", b"d", flags=4, op=Op.CREATE_CONTAINER)
    assert r.err == 0
    path, stat = raw.parse_path_stat(r)
    assert path == f"{base}/c"
    assert stat.ephemeralOwner == 0
    assert stat.czxid == r.zxid
    assert raw.create(f"{base}/c/child").err == 0
    assert raw.create(f"{base}/c/eph", flags=1).err == 0
    assert raw.parse_stat(raw.exists(path)).numChildren == 2


def test_create_container_errors(raw, base):
    assert raw.create(f"{base}/missing/c", flags=4, op=Op.CREATE_CONTAINER).err == Err.NONODE
    assert raw.create(f"{base}/c", flags=4, op=Op.CREATE_CONTAINER).err == 0
    assert raw.create(f"{base}/c", flags=4, op=Op.CREATE_CONTAINER).err == Err.NODEEXISTS
    assert raw.create(f"{base}/e", flags=1).err == 0
    assert raw.create(f"{base}/e/c", flags=4, op=Op.CREATE_CONTAINER).err == Err.NOCHILDRENFOREPHEMERALS
    assert raw.create(f"{base}/c2", flags=7, op=Op.CREATE_CONTAINER).err == Err.BADARGUMENTS


def test_create_opcode_decides_container(raw, base):
    """createContainer with flags 0-3 still makes a container (the sequential flag is honoured,
    the ephemeral one ignored); create/create2 with the container flag make a plain node."""
    r = raw.create(f"{base}/c0", flags=0, op=Op.CREATE_CONTAINER)
    assert r.err == 0 and raw.parse_path_stat(r)[0] == f"{base}/c0"
    r = raw.create(f"{base}/c1", flags=1, op=Op.CREATE_CONTAINER)
    assert r.err == 0 and raw.parse_path_stat(r)[1].ephemeralOwner == 0
    r = raw.create(f"{base}/c2-", flags=2, op=Op.CREATE_CONTAINER)
    assert r.err == 0 and raw.parse_path_stat(r)[0] == f"{base}/c2-0000000002"
    r = raw.create(f"{base}/p1", flags=4, op=Op.CREATE)
    assert r.err == 0 and raw.parse_path(r) == f"{base}/p1"
    r = raw.create(f"{base}/p2", flags=4, op=Op.CREATE2)
    assert r.err == 0 and raw.parse_path_stat(r)[1].ephemeralOwner == 0
    # a child under the ephemeral-flagged container is fine: it is a container
    assert raw.create(f"{base}/c1/child").err == 0


def test_container_swept_after_last_child_deleted(raw, base):
    for name, op, flags in [("real", Op.CREATE_CONTAINER, 4), ("flag0", Op.CREATE_CONTAINER, 0),
                            ("plain", Op.CREATE, 4), ("plain2", Op.CREATE2, 4),
                            ("never", Op.CREATE_CONTAINER, 4)]:
        assert raw.create(f"{base}/{name}", flags=flags, op=op).err == 0
    for name in ("real", "flag0", "plain", "plain2"):
        assert raw.create(f"{base}/{name}/child").err == 0
        assert raw.delete(f"{base}/{name}/child").err == 0
    assert wait_until(lambda: raw.exists(f"{base}/real").err == Err.NONODE)
    assert wait_until(lambda: raw.exists(f"{base}/flag0").err == Err.NONODE)
    # create/create2 with flag 4 made ordinary nodes; a never-used container stays too
    assert raw.exists(f"{base}/plain").err == 0
    assert raw.exists(f"{base}/plain2").err == 0
    assert raw.exists(f"{base}/never").err == 0


def test_container_with_children_is_kept(raw, base):
    assert raw.create(f"{base}/c", flags=4, op=Op.CREATE_CONTAINER).err == 0
    assert raw.create(f"{base}/c/a").err == 0
    assert raw.create(f"{base}/c/b").err == 0
    assert raw.delete(f"{base}/c/a").err == 0
    assert raw.create(f"{base}/gone", flags=4, op=Op.CREATE_CONTAINER).err == 0
    assert raw.create(f"{base}/gone/x").err == 0
    assert raw.delete(f"{base}/gone/x").err == 0
    assert wait_until(lambda: raw.exists(f"{base}/gone").err == Err.NONODE)
    assert raw.exists(f"{base}/c").err == 0


@pytest.mark.parametrize("encoding", ["ustring", "bare"])
def test_delete_container_from_a_client_is_refused(raw, base, encoding):
    """deleteContainer (20) is the container sweeper's internal op.  Apache ZooKeeper 3.8
    reads its path from the whole request buffer (header included), so a client's request
    never names a valid path: BADARGUMENTS, nothing deleted, the session stays usable.
    zkpy refuses it the same way; before, it deleted any empty container or TTL node
    whatever the ACLs (the parent's DELETE permission)."""
    locked = f"{base}/locked"
    keep = [ACL(Perm.READ | Perm.CREATE | Perm.ADMIN, "world", "anyone")]
    assert raw.create(locked, acl=keep).err == 0
    targets = [f"{locked}/c", f"{locked}/t", f"{base}/open"]
    assert raw.create(targets[0], flags=4, op=Op.CREATE_CONTAINER).err == 0
    assert raw.create(targets[1], flags=5, op=Op.CREATE_TTL, ttl=600000).err == 0
    assert raw.create(targets[2], flags=4, op=Op.CREATE_CONTAINER).err == 0
    assert raw.delete(targets[0]).err == Err.NOAUTH
    for p in targets:
        body = enc_string(p) if encoding == "ustring" else p.encode()
        r = raw.call(Op.DELETE_CONTAINER, body)
        assert r.err == Err.BADARGUMENTS, p
        assert raw.exists(p).err == 0, p  # still there, and the connection still answers
    assert raw.set_acl(locked, OPEN_ACL_UNSAFE).err == 0


# ---- getEphemerals ------------------------------------------------------------------------


def test_get_ephemerals(server, raw, base):
    with RawClient(server.port) as other:
        assert other.create(f"{base}/theirs", flags=1).err == 0
        assert raw.create(f"{base}/e1", flags=1).err == 0
        assert raw.create(f"{base}/e2", b"", flags=1).err == 0
        assert raw.create(f"{base}/es-", flags=3).err == 0
        assert raw.create(f"{base}/p").err == 0
        assert raw.create(f"{base}/p/deep", flags=1).err == 0
        assert raw.create(f"{base}x", flags=1).err == 0  # sibling of base sharing its prefix
        mine = sorted([f"{base}/e1", f"{base}/e2", f"{base}/es-0000000003", f"{base}/p/deep",
                       f"{base}x"])

        def eph(prefix):
            r = raw.get_ephemerals(prefix)
            assert r.err == 0
            return sorted(raw.parse_strings(r))

        # null, empty, blank and "/" all mean "every ephemeral of this session"
        for prefix in (None, "", " ", "/"):
            assert eph(prefix) == mine, prefix
        # otherwise a plain string prefix, not path-component aware
        assert eph(base) == mine
        assert eph(f"{base}/") == mine[:-1]
        assert eph(f"{base}/e") == [f"{base}/e1", f"{base}/e2", f"{base}/es-0000000003"]
        assert eph(f"{base}/e1") == [f"{base}/e1"]
        assert eph(f"{base}/p/") == [f"{base}/p/deep"]
        assert eph("/nope") == []
        assert eph(base[1:]) == []  # no leading slash: matches nothing
        # only the calling session's
        r = other.get_ephemerals("/")
        assert other.parse_strings(r) == [f"{base}/theirs"]
        assert raw.delete(f"{base}x").err == 0


def test_get_ephemerals_is_not_acl_checked(raw, base):
    assert raw.create(f"{base}/locked", acl=[ACL(Perm.CREATE | Perm.DELETE, "world", "anyone")]).err == 0
    assert raw.create(f"{base}/locked/e", flags=1).err == 0
    r = raw.get_ephemerals(f"{base}/locked")
    assert r.err == 0 and raw.parse_strings(r) == [f"{base}/locked/e"]
    assert raw.delete(f"{base}/locked/e").err == 0
    assert raw.delete(f"{base}/locked").err == 0  # unreadable: teardown could not list it


def test_get_ephemerals_empty(raw):
    r = raw.get_ephemerals("/")
    assert r.err == 0 and raw.parse_strings(r) == []


# ---- getAllChildrenNumber --------------------------------------------------------------------


def test_get_all_children_number(raw, base):
    for p in ("a", "a/b", "a/b/c", "a/b2", "ab", "z"):
        assert raw.create(f"{base}/{p}").err == 0

    def count(path):
        r = raw.get_all_children_number(path)
        assert r.err == 0, (path, r.err)
        return raw.parse_int(r)

    assert count(base) == 6
    assert count(f"{base}/a") == 3  # not /ab: the count is of descendants
    assert count(f"{base}/a/b") == 1
    assert count(f"{base}/a/b/c") == 0
    assert count("/zookeeper") >= 2
    assert raw.get_all_children_number(f"{base}/missing").err == Err.NONODE
    assert raw.get_all_children_number(f"{base}/a/").err == Err.NONODE


def test_get_all_children_number_counts_ephemerals_and_is_live(raw, base):
    assert raw.create(f"{base}/e", flags=1).err == 0
    assert raw.create(f"{base}/s", flags=2).err == 0
    assert raw.parse_int(raw.get_all_children_number(base)) == 2
    assert raw.delete(f"{base}/e").err == 0
    assert raw.parse_int(raw.get_all_children_number(base)) == 1


def test_get_all_children_number_needs_read(raw, base):
    assert raw.create(f"{base}/w", acl=[ACL(Perm.ALL & ~Perm.READ, "world", "anyone")]).err == 0
    assert raw.create(f"{base}/w/x").err == 0
    assert raw.get_all_children_number(f"{base}/w").err == Err.NOAUTH
    # only the node's own ACL matters, not its children's
    assert raw.create(f"{base}/r").err == 0
    assert raw.create(f"{base}/r/x", acl=[ACL(Perm.CREATE, "world", "anyone")]).err == 0
    assert raw.parse_int(raw.get_all_children_number(f"{base}/r")) == 1
    # unreadable nodes: remove them here, teardown could not list them
    for p in ("w/x", "w", "r/x"):
        assert raw.delete(f"{base}/{p}").err == 0


def test_get_all_children_number_root(raw):
    r_root = raw.get_all_children_number("/")
    assert r_root.err == 0
    # at least the system nodes /zookeeper, /zookeeper/quota, /zookeeper/config
    assert raw.parse_int(r_root) >= 3

