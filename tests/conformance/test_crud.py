"""create / create2 / sequential / ephemeral, and every error path of the basic ops.

Each test runs against zkpy and against Apache ZooKeeper 3.8 with the same assertions.
kazoo normalises paths on the client side (`//`, trailing `/`, `.`), so anything about
server-side path validation goes through the raw Jute client in tests/rawclient.py.
"""

from __future__ import annotations

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)
from kazoo.security import READ_ACL_UNSAFE, make_acl

from tests.rawclient import ACL, Err, Op, Perm, RawClient


@pytest.fixture
def raw(server, zk):
    """A raw-protocol session on the same server (zk makes sure `base` exists)."""
    with RawClient(server.port) as c:
        yield c


# ---- create / create2 ---------------------------------------------------------------


def test_create_returns_path_and_stores_data(zk, base):
    assert zk.create(f"{base}/a", b"payload") == f"{base}/a"
    data, stat = zk.get(f"{base}/a")
    assert data == b"payload"
    assert stat.dataLength == 7
    assert zk.get_children(base) == ["a"]


def test_create2_returns_path_and_stat(zk, base):
    path, stat = zk.create(f"{base}/a", b"xyz", include_data=True)
    assert path == f"{base}/a"
    assert stat == zk.exists(path)
    assert stat.dataLength == 3 and stat.version == 0 and stat.numChildren == 0
    assert stat.czxid == stat.mzxid == stat.pzxid


def test_create_existing_node_fails(zk, base):
    zk.create(f"{base}/a", b"first")
    with pytest.raises(NodeExistsError):
        zk.create(f"{base}/a", b"second")
    with pytest.raises(NodeExistsError):
        zk.create(f"{base}/a", include_data=True)
    assert zk.get(f"{base}/a")[0] == b"first"


def test_create_without_parent_fails(zk, base):
    with pytest.raises(NoNodeError):
        zk.create(f"{base}/missing/child")
    with pytest.raises(NoNodeError):
        zk.create(f"{base}/missing/child", sequence=True)
    assert zk.exists(f"{base}/missing") is None


def test_create_root_and_system_nodes_exist(raw, base):
    assert raw.create("/").err == Err.NODEEXISTS
    assert raw.create("/zookeeper").err == Err.NODEEXISTS
    assert raw.create("/zookeeper/config").err == Err.NODEEXISTS
    assert raw.create("/zookeeper/quota").err == Err.NODEEXISTS


def test_null_and_empty_data_are_distinct(zk, base):
    zk.create(f"{base}/null", None)
    zk.create(f"{base}/empty", b"")
    data_null, stat_null = zk.get(f"{base}/null")
    data_empty, stat_empty = zk.get(f"{base}/empty")
    assert data_null is None
    assert data_empty == b""
    assert stat_null.dataLength == 0 and stat_empty.dataLength == 0
    # setData keeps the distinction as well
    zk.set(f"{base}/empty", None)
    zk.set(f"{base}/null", b"")
    assert zk.get(f"{base}/empty")[0] is None
    assert zk.get(f"{base}/null")[0] == b""


def test_null_and_empty_data_on_the_wire(raw, base):
    assert raw.create(f"{base}/n", None).err == 0
    assert raw.create(f"{base}/e", b"").err == 0
    r = raw.get_data(f"{base}/n")
    assert r.body[:4] == b"\xff\xff\xff\xff"  # buffer length -1 = null
    r = raw.get_data(f"{base}/e")
    assert r.body[:4] == b"\x00\x00\x00\x00"


def test_binary_data_roundtrip(zk, base):
    blob = bytes(range(256)) * 40
    zk.create(f"{base}/bin", blob)
    assert zk.get(f"{base}/bin")[0] == blob
    assert zk.exists(f"{base}/bin").dataLength == len(blob)


def test_unicode_node_names(zk, base):
    name = "z\u00e9\u4e2d\u0416"
    zk.create(f"{base}/{name}", b"u")
    assert zk.get_children(base) == [name]
    assert zk.get(f"{base}/{name}")[0] == b"u"


def test_children_listing(zk, base):
    for n in ["b", "a", "c"]:
        zk.create(f"{base}/{n}")
    zk.create(f"{base}/a/deep")
    assert sorted(zk.get_children(base)) == ["a", "b", "c"]
    children, stat = zk.get_children(base, include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert stat == zk.exists(base)
    assert stat.numChildren == 3
    assert zk.get_children(f"{base}/b") == []


# ---- sequential ---------------------------------------------------------------------


def test_sequential_suffix_starts_at_zero(zk, base):
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000000"
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000001"
    assert zk.create(f"{base}/other-", sequence=True) == f"{base}/other-0000000002"


def test_sequential_suffix_counts_all_child_creates(zk, base):
    for n in ("a", "b", "c"):
        zk.create(f"{base}/{n}")
    assert zk.create(f"{base}/s", sequence=True) == f"{base}/s0000000003"


def test_sequential_counter_not_decremented_by_deletes(zk, base):
    zk.create(f"{base}/a")
    zk.create(f"{base}/b")
    zk.delete(f"{base}/a")
    zk.delete(f"{base}/b")
    assert zk.create(f"{base}/s", sequence=True) == f"{base}/s0000000002"


def test_sequential_counter_not_advanced_by_failed_creates(zk, base):
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000000"
    for _ in range(3):
        with pytest.raises(NodeExistsError):
            zk.create(f"{base}/s-0000000000")
    with pytest.raises(NoNodeError):
        zk.create(f"{base}/nope/x")  # parent is not `base`: no effect on base either
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000001"


def test_sequential_collision_fails_forever(zk, base):
    """The suffix comes from the parent's counter; a failed create does not bump it."""
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000000"
    zk.create(f"{base}/s-0000000002")  # counter is now 2, the next name is taken
    for _ in range(3):
        with pytest.raises(NodeExistsError):
            zk.create(f"{base}/s-", sequence=True)
    zk.create(f"{base}/x")  # a successful create moves the counter past the clash
    assert zk.create(f"{base}/s-", sequence=True) == f"{base}/s-0000000003"


def test_sequential_with_trailing_slash(zk, base):
    zk.create(f"{base}/q")
    zk.create(f"{base}/q/first")
    assert zk.create(f"{base}/q/", sequence=True) == f"{base}/q/0000000001"
    assert sorted(zk.get_children(f"{base}/q")) == ["0000000001", "first"]


def test_sequential_trailing_slash_raw(raw, base):
    r = raw.create(f"{base}/", flags=2)
    assert r.err == 0
    assert raw.parse_path(r) == f"{base}/0000000000"
    # without the sequential flag the same path is invalid
    assert raw.create(f"{base}/").err == Err.BADARGUMENTS


def test_sequential_create2_returns_stat(zk, base):
    path, stat = zk.create(f"{base}/s", b"d", sequence=True, include_data=True)
    assert path == f"{base}/s0000000000"
    assert stat == zk.exists(path)


def test_sequential_suffix_uses_ten_digits(zk, base):
    zk.create(f"{base}/p")
    for i in range(12):
        zk.create(f"{base}/p/c{i}")
    assert zk.create(f"{base}/p/s", sequence=True) == f"{base}/p/s0000000012"


# ---- ephemeral ----------------------------------------------------------------------


def test_ephemeral_owner_is_session(zk, base):
    zk.create(f"{base}/e", ephemeral=True)
    assert zk.exists(f"{base}/e").ephemeralOwner == zk.client_id[0]
    zk.create(f"{base}/p")
    assert zk.exists(f"{base}/p").ephemeralOwner == 0


def test_ephemeral_sequential(zk, base):
    path = zk.create(f"{base}/e-", ephemeral=True, sequence=True)
    assert path == f"{base}/e-0000000000"
    assert zk.exists(path).ephemeralOwner == zk.client_id[0]


def test_no_children_for_ephemerals(zk, base):
    zk.create(f"{base}/e", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(f"{base}/e/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(f"{base}/e/child", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(f"{base}/e/child", sequence=True)
    assert zk.get_children(f"{base}/e") == []
    # the failed creates did not advance the ephemeral's child counter either
    assert zk.exists(f"{base}/e").cversion == 0


def test_ephemeral_removed_when_session_closes(zk, base, make_client):
    other = make_client()
    other.create(f"{base}/e1", ephemeral=True)
    other.create(f"{base}/e2", ephemeral=True, sequence=True)
    zk.create(f"{base}/mine", ephemeral=True)
    before = zk.exists(base)
    other.stop()
    assert sorted(zk.get_children(base)) == ["mine"]
    after = zk.exists(base)
    # the two deletes happen in one closeSession txn: one zxid, two child deletions
    assert after.numChildren == 1
    assert after.cversion == before.cversion + 2
    assert after.pzxid > before.pzxid


def test_ephemeral_of_other_session_visible(zk, base, make_client):
    other = make_client()
    other.create(f"{base}/e", b"x", ephemeral=True)
    stat = zk.exists(f"{base}/e")
    assert stat.ephemeralOwner == other.client_id[0] != zk.client_id[0]
    # anyone may delete it (ACL permitting)
    zk.delete(f"{base}/e")
    assert other.exists(f"{base}/e") is None


# ---- delete -------------------------------------------------------------------------


def test_delete_errors(zk, base):
    with pytest.raises(NoNodeError):
        zk.delete(f"{base}/missing")
    with pytest.raises(NoNodeError):
        zk.delete(f"{base}/missing/deeper")
    zk.create(f"{base}/a", b"1")
    zk.set(f"{base}/a", b"2")
    with pytest.raises(BadVersionError):
        zk.delete(f"{base}/a", version=0)
    with pytest.raises(BadVersionError):
        zk.delete(f"{base}/a", version=2)
    zk.create(f"{base}/a/child")
    with pytest.raises(NotEmptyError):
        zk.delete(f"{base}/a")
    # the version is checked before the children
    with pytest.raises(BadVersionError):
        zk.delete(f"{base}/a", version=7)
    zk.delete(f"{base}/a/child")
    zk.delete(f"{base}/a", version=1)
    assert zk.exists(f"{base}/a") is None


def test_delete_any_version(zk, base):
    zk.create(f"{base}/a")
    for i in range(3):
        zk.set(f"{base}/a", str(i).encode())
    zk.delete(f"{base}/a", version=-1)
    assert zk.exists(f"{base}/a") is None


@pytest.mark.parametrize("path", ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"])
def test_delete_system_nodes_is_bad_arguments(zk, path):
    with pytest.raises(BadArgumentsError):
        zk.delete(path)
    assert zk.exists(path) is not None


def test_delete_bad_paths_raw(raw, base):
    assert raw.create(f"{base}/a").err == 0
    assert raw.delete("").err == Err.BADARGUMENTS
    assert raw.delete("a").err == Err.BADARGUMENTS
    assert raw.delete(f"{base}/a\0").err == Err.BADARGUMENTS
    # delete validates only '/', NUL and the system paths; other odd paths are simply missing
    assert raw.delete(f"{base}/a/").err == Err.NONODE
    assert raw.delete(f"{base}//a").err == Err.NONODE
    assert raw.delete(f"{base}/a/.").err == Err.NONODE
    assert raw.delete(f"{base}/a/\x01").err == Err.NONODE
    assert raw.exists(f"{base}/a").err == 0


# ---- setData ------------------------------------------------------------------------


def test_set_data_errors(zk, base):
    with pytest.raises(NoNodeError):
        zk.set(f"{base}/missing", b"x")
    zk.create(f"{base}/a", b"0")
    with pytest.raises(BadVersionError):
        zk.set(f"{base}/a", b"x", version=1)
    stat = zk.set(f"{base}/a", b"1", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        zk.set(f"{base}/a", b"x", version=0)
    assert zk.get(f"{base}/a")[0] == b"1"
    assert zk.set(f"{base}/a", b"2", version=-1).version == 2


def test_set_data_checks_acl_before_version(zk, base):
    zk.create(f"{base}/ro", b"d", acl=READ_ACL_UNSAFE)
    with pytest.raises(NoAuthError):
        zk.set(f"{base}/ro", b"x", version=7)
    with pytest.raises(NoAuthError):
        zk.set(f"{base}/ro", b"x")
    assert zk.get(f"{base}/ro") == (b"d", zk.exists(f"{base}/ro"))


def test_set_data_bad_paths_raw(raw, base):
    assert raw.create(f"{base}/a").err == 0
    for bad in ["", "a", f"{base}/a/", f"{base}//a", f"{base}/a/.", f"{base}/a/..", f"{base}/a\0",
                f"{base}/\x01", f"{base}/\ue000", f"{base}/\U0001f600"]:
        assert raw.set_data(bad, b"x").err == Err.BADARGUMENTS, repr(bad)
    # BADARGUMENTS is decided before the node lookup
    assert raw.set_data(f"{base}/missing/", b"x").err == Err.BADARGUMENTS
    assert raw.set_data(f"{base}/missing", b"x").err == Err.NONODE


# ---- exists / getData / getChildren / getACL -------------------------------------------


def test_reads_of_missing_node(zk, base):
    assert zk.exists(f"{base}/missing") is None
    with pytest.raises(NoNodeError):
        zk.get(f"{base}/missing")
    with pytest.raises(NoNodeError):
        zk.get_children(f"{base}/missing")
    with pytest.raises(NoNodeError):
        zk.get_children(f"{base}/missing", include_data=True)
    with pytest.raises(NoNodeError):
        zk.get_acls(f"{base}/missing")


def test_reads_do_not_validate_paths(raw, base):
    """Reads look the path up as given: odd paths are just NONODE, never BADARGUMENTS."""
    assert raw.create(f"{base}/a").err == 0
    for odd in ["a", f"{base}/a/", f"{base}//a", f"{base}/a/.", f"{base}/a/..", f"{base}/\x01"]:
        assert raw.get_data(odd).err == Err.NONODE, repr(odd)
        assert raw.get_children(odd).err == Err.NONODE, repr(odd)
        assert raw.get_children(odd, stat=True).err == Err.NONODE, repr(odd)
        assert raw.get_acl(odd).err == Err.NONODE, repr(odd)
        assert raw.exists(odd).err == Err.NONODE, repr(odd)
        assert raw.get_all_children_number(odd).err == Err.NONODE, repr(odd)
    # NUL: exists rejects it, the other reads just do not find the node
    assert raw.exists(f"{base}/a\0").err == Err.BADARGUMENTS
    assert raw.get_data(f"{base}/a\0").err == Err.NONODE
    assert raw.get_children(f"{base}/a\0").err == Err.NONODE
    assert raw.get_acl(f"{base}/a\0").err == Err.NONODE


def test_empty_path_reads_are_the_root(raw):
    """The reference's tree also keys the root under "" (DataTree.nodes has both "" and "/")."""
    r_root, r_empty = raw.get_data("/"), raw.get_data("")
    assert r_empty.err == 0
    assert raw.parse_data(r_empty) == raw.parse_data(r_root)
    r_root, r_empty = raw.exists("/"), raw.exists("")
    assert r_empty.err == 0 and raw.parse_stat(r_empty) == raw.parse_stat(r_root)
    r_root, r_empty = raw.get_children("/", stat=True), raw.get_children("", stat=True)
    assert r_empty.err == 0
    assert sorted(raw.parse_children(r_empty)) == sorted(raw.parse_children(r_root))
    r_root, r_empty = raw.get_acl("/"), raw.get_acl("")
    assert r_empty.err == 0 and raw.parse_acl(r_empty) == raw.parse_acl(r_root)
    # getAllChildrenNumber counts the keys that start with path + "/": for "" that is "/" too
    raw.send(Op.GET_ALL_CHILDREN_NUMBER, b"\x00\x00\x00\x01/")  # pipelined: no write in between
    raw.send(Op.GET_ALL_CHILDREN_NUMBER, b"\x00\x00\x00\x00")
    r_root, r_empty = raw.read_reply(), raw.read_reply()
    assert r_root.err == 0 and r_empty.err == 0
    assert raw.parse_int(r_empty) == raw.parse_int(r_root) + 1
    # but every write on "" is BADARGUMENTS (no '/' in it)
    assert raw.create("").err == Err.BADARGUMENTS
    assert raw.delete("").err == Err.BADARGUMENTS
    assert raw.set_data("", b"").err == Err.BADARGUMENTS
    assert raw.set_acl("", [ACL(Perm.ALL, "world", "anyone")]).err == Err.BADARGUMENTS


def test_exists_returns_stat(zk, base):
    zk.create(f"{base}/a", b"abc")
    stat = zk.exists(f"{base}/a")
    assert stat.dataLength == 3
    assert stat == zk.get(f"{base}/a")[1]


def test_get_acl_returns_acl_and_stat(zk, base):
    acl = [make_acl("world", "anyone", read=True, write=True)]
    zk.create(f"{base}/a", acl=acl)
    acls, stat = zk.get_acls(f"{base}/a")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [(3, "world", "anyone")]
    assert stat == zk.exists(f"{base}/a")


# ---- path validation on create (raw) -------------------------------------------------


@pytest.mark.parametrize("suffix", [
    "/a/",          # trailing slash (not sequential)
    "/.",           # relative component
    "/..",
    "/\x01",        # control characters
    "/\x1f",
    "/\x7f",
    "/\u0085",
    "/\ue000",      # private use
    "/\uf8ff",
    "/\ufff0",      # specials
    "/\U0001f600",  # above U+FFFF (surrogates in Java)
])
def test_create_invalid_path_is_bad_arguments(raw, base, suffix):
    assert raw.create(f"{base}/a").err == 0
    path = f"{base}{suffix}"
    assert raw.create(path).err == Err.BADARGUMENTS
    assert raw.create(path, op=Op.CREATE2).err == Err.BADARGUMENTS


def test_create_path_checks_order(raw, base):
    # no '/' at all, or a NUL anywhere: BADARGUMENTS before anything else
    assert raw.create("").err == Err.BADARGUMENTS
    assert raw.create("abc").err == Err.BADARGUMENTS
    assert raw.create(f"{base}/a\0b").err == Err.BADARGUMENTS
    assert raw.create(f"{base}/missing\0/b").err == Err.BADARGUMENTS
    # otherwise the parent (text before the last '/') is looked up first
    assert raw.create("a/b").err == Err.NONODE
    assert raw.create(f"{base}//b").err == Err.NONODE
    assert raw.create(f"{base}/./b").err == Err.NONODE
    assert raw.create(f"{base}/missing/").err == Err.NONODE
    # names that merely contain dots are fine
    assert raw.create(f"{base}/.a").err == 0
    assert raw.create(f"{base}/..b").err == 0
    assert raw.create(f"{base}/a.b").err == 0


def test_sequential_flag_makes_dot_names_valid(raw, base):
    """The suffix is appended before the full path check: `/p/.` + digits is a valid name."""
    r = raw.create(f"{base}/.", flags=2)
    assert r.err == 0 and raw.parse_path(r) == f"{base}/.0000000000"
    r = raw.create(f"{base}/..", flags=2)
    assert r.err == 0 and raw.parse_path(r) == f"{base}/..0000000001"


def test_invalid_acl_on_create(zk, raw, base):
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/a", acl=[make_acl("world", "somebody", all=True)])
    assert raw.create(f"{base}/a", acl=[]).err == Err.INVALIDACL
    assert raw.create(f"{base}/a", acl=None).err == Err.INVALIDACL
    # ACL fixup comes before the parent lookup
    assert raw.create(f"{base}/missing/a", acl=[]).err == Err.INVALIDACL
    assert zk.exists(f"{base}/a") is None


def test_create_noauth_on_parent(zk, base):
    zk.create(f"{base}/ro", acl=READ_ACL_UNSAFE)
    with pytest.raises(NoAuthError):
        zk.create(f"{base}/ro/child")
    with pytest.raises(NoAuthError):
        zk.create(f"{base}/ro/child", sequence=True)
    assert zk.get_children(f"{base}/ro") == []


def test_create_checks_acl_before_existence(zk, base):
    zk.create(f"{base}/p")
    zk.create(f"{base}/p/c")
    zk.set_acls(f"{base}/p", [make_acl("world", "anyone", read=True, admin=True)])
    with pytest.raises(NoAuthError):
        zk.create(f"{base}/p/c")  # exists, but the CREATE check on the parent comes first
    zk.set_acls(f"{base}/p", [make_acl("world", "anyone", all=True)])  # so teardown can delete


def test_delete_noauth_on_parent(zk, base):
    zk.create(f"{base}/p")
    zk.create(f"{base}/p/c")
    zk.set_acls(f"{base}/p", [make_acl("world", "anyone", read=True, create=True, admin=True)])
    with pytest.raises(NoAuthError):
        zk.delete(f"{base}/p/c")
    # the parent's ACL is checked before the node is looked up
    with pytest.raises(NoAuthError):
        zk.delete(f"{base}/p/missing")
    assert zk.exists(f"{base}/p/c") is not None
    zk.set_acls(f"{base}/p", [make_acl("world", "anyone", all=True)])
    zk.delete(f"{base}/p/c")

