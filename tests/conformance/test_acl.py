"""ACLs and authentication: world, digest, auth-scheme expansion, ip (CIDR), super, getACL
masking, auth failures and whoAmI.

Reference behaviour is Apache ZooKeeper 3.8.0 (Debian).  Two things that changed in later
releases are pinned to 3.8.0 here: exists() does not check READ (3.8.4+ does), and ip ACL
ids are IPv4 only (IPv6 ids are not tested).  The order of a session's auth ids (whoAmI,
`auth` ACL expansion) comes from a hash set in 3.8, so those lists are compared sorted.
"""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    AuthFailedError,
    BadVersionError,
    InvalidACLError,
    NoAuthError,
    NoNodeError,
)
from kazoo.security import (
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

from tests.rawclient import ACL, Err, Perm, RawClient, end_kazoo_session

SUPER = ("digest", "super:secret")  # the fixture's superDigest is super:<sha1 of super:secret>
U1_ID = "u1:fpT/y03U+EjItKZOSLGvjnJlyng="  # digest id of u1:p1
U2_ID = "u2:o9NxcCGDPOlcV7JVhmKHOf5ctVE="  # digest id of u2:p2


@pytest.fixture(autouse=True)
def _cleanup_as_super(server, zk, base):
    """ACL tests leave nodes nobody may delete; remove them as super before `zk` tears down."""
    yield
    c = KazooClient(hosts=server.hosts, timeout=10)
    c.start(timeout=15)
    try:
        c.add_auth(*SUPER)
        c.delete(base, recursive=True)
    except NoNodeError:
        pass
    finally:
        c.stop()
        c.close()


@pytest.fixture
def raw(server, zk):
    with RawClient(server.port) as c:
        yield c


@pytest.fixture
def make_raw(server, zk):
    clients: list[RawClient] = []

    def make() -> RawClient:
        c = RawClient(server.port)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.end_session()


def triples(acls):
    """kazoo or raw ACLs as sorted (perms, scheme, id) triples."""
    out = []
    for a in acls:
        if hasattr(a, "scheme"):
            out.append((a.perms, a.scheme, a.id))
        else:
            out.append((a.perms, a.id.scheme, a.id.id))
    return sorted(out)


def world(**perms):
    return [make_acl("world", "anyone", **perms)]


# ---- world ----------------------------------------------------------------------------


def test_world_read_only_node(zk, base):
    zk.create(f"{base}/ro", b"data", acl=READ_ACL_UNSAFE)
    assert zk.get(f"{base}/ro")[0] == b"data"
    assert zk.get_children(f"{base}/ro") == []
    assert triples(zk.get_acls(f"{base}/ro")[0]) == [(1, "world", "anyone")]
    with pytest.raises(NoAuthError):
        zk.set(f"{base}/ro", b"x")
    with pytest.raises(NoAuthError):
        zk.create(f"{base}/ro/child")
    with pytest.raises(NoAuthError):
        zk.set_acls(f"{base}/ro", OPEN_ACL_UNSAFE)
    # deleting the node itself needs DELETE on the parent, which is open
    zk.delete(f"{base}/ro")


PERMS = {"read": Perm.READ, "write": Perm.WRITE, "create": Perm.CREATE, "delete": Perm.DELETE,
         "admin": Perm.ADMIN}


@pytest.mark.parametrize("perm", list(PERMS))
def test_each_permission_bit(zk, raw, base, perm):
    node = f"{base}/n"
    zk.create(node, b"d")
    zk.create(f"{node}/c")
    acl = world(**{perm: True})
    zk.set_acls(node, acl)
    bit = PERMS[perm]

    def allowed(fn) -> bool:
        try:
            fn()
        except NoAuthError:
            return False
        return True

    assert allowed(lambda: zk.get(node)) == (bit == Perm.READ)
    assert allowed(lambda: zk.get_children(node)) == (bit == Perm.READ)
    assert allowed(lambda: zk.get_children(node, include_data=True)) == (bit == Perm.READ)
    assert allowed(lambda: zk.get_acls(node)) == (bit in (Perm.READ, Perm.ADMIN))
    assert allowed(lambda: zk.set(node, b"new")) == (bit == Perm.WRITE)
    assert allowed(lambda: zk.create(f"{node}/new")) == (bit == Perm.CREATE)
    assert allowed(lambda: zk.set_acls(node, acl)) == (bit == Perm.ADMIN)
    assert allowed(lambda: zk.delete(f"{node}/c")) == (bit == Perm.DELETE)
    r = raw.get_all_children_number(node)
    assert r.err == (0 if bit == Perm.READ else Err.NOAUTH)
    # 3.8.0: exists does not check READ
    assert zk.exists(node) is not None


def test_no_permissions_at_all(zk, raw, base):
    zk.create(f"{base}/none", b"d", acl=[make_acl("world", "anyone")])  # perms 0
    assert triples(raw.parse_acl(raw.get_acl(base))[0]) == [(31, "world", "anyone")]
    with pytest.raises(NoAuthError):
        zk.get(f"{base}/none")
    with pytest.raises(NoAuthError):
        zk.get_acls(f"{base}/none")
    with pytest.raises(NoAuthError):
        zk.get_children(f"{base}/none")
    assert zk.exists(f"{base}/none").dataLength == 1


def test_unknown_permission_bits_grant_nothing(raw, base):
    assert raw.create(f"{base}/odd", b"d", acl=[ACL(1 << 10, "world", "anyone")]).err == 0
    assert raw.get_data(f"{base}/odd").err == Err.NOAUTH
    assert raw.set_data(f"{base}/odd", b"x").err == Err.NOAUTH


# ---- digest -------------------------------------------------------------------------


def test_digest_credential_format():
    assert make_digest_acl_credential("user", "password") == "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="
    assert make_digest_acl_credential("u1", "p1") == U1_ID


def test_digest_acl(zk, base, make_client):
    zk.add_auth("digest", "u1:p1")
    zk.create(f"{base}/d", b"secret", acl=[make_digest_acl("u1", "p1", all=True)])
    assert zk.get(f"{base}/d")[0] == b"secret"

    anon = make_client()
    with pytest.raises(NoAuthError):
        anon.get(f"{base}/d")
    with pytest.raises(NoAuthError):
        anon.set(f"{base}/d", b"x")

    same_user = make_client()
    same_user.add_auth("digest", "u1:p1")
    assert same_user.get(f"{base}/d")[0] == b"secret"
    same_user.set(f"{base}/d", b"changed")

    wrong = make_client()
    wrong.add_auth("digest", "u1:wrong")  # digest auth never fails, it is just another identity
    with pytest.raises(NoAuthError):
        wrong.get(f"{base}/d")


def test_digest_hash_covers_user_and_password(zk, base, make_client):
    """Same password, different user: a different id."""
    zk.create(f"{base}/d", acl=[make_digest_acl("u1", "p1", read=True), make_acl("world", "anyone",
                                                                               admin=True, delete=True)])
    other = make_client()
    other.add_auth("digest", "u2:p1")
    with pytest.raises(NoAuthError):
        other.get(f"{base}/d")
    other.add_auth("digest", "u1:p1")  # identities accumulate on the session
    other.get(f"{base}/d")


def test_multiple_identities(zk, base, make_client):
    zk.create(f"{base}/a", acl=[make_digest_acl("u1", "p1", all=True)])
    zk.create(f"{base}/b", acl=[make_digest_acl("u2", "p2", all=True)])
    c = make_client()
    c.add_auth("digest", "u1:p1")
    c.add_auth("digest", "u2:p2")
    c.get(f"{base}/a")
    c.get(f"{base}/b")


# ---- the auth scheme ------------------------------------------------------------------


def test_auth_scheme_without_identity_is_invalid(zk, base):
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/a", acl=CREATOR_ALL_ACL)
    zk.create(f"{base}/b")
    with pytest.raises(InvalidACLError):
        zk.set_acls(f"{base}/b", CREATOR_ALL_ACL)
    assert zk.exists(f"{base}/a") is None
    assert triples(zk.get_acls(f"{base}/b")[0]) == [(31, "world", "anyone")]


def test_auth_scheme_expands_to_digest_ids(zk, base):
    zk.add_auth("digest", "u1:p1")
    zk.create(f"{base}/a", acl=CREATOR_ALL_ACL)
    assert triples(zk.get_acls(f"{base}/a")[0]) == [(31, "digest", U1_ID)]
    zk.add_auth("digest", "u2:p2")
    zk.create(f"{base}/b", acl=[make_acl("auth", "", read=True, admin=True),
                                make_acl("world", "anyone", read=True)])
    assert triples(zk.get_acls(f"{base}/b")[0]) == [
        (1, "world", "anyone"), (17, "digest", U1_ID), (17, "digest", U2_ID)]


def test_auth_scheme_on_set_acl(zk, base):
    zk.create(f"{base}/a")
    zk.add_auth("digest", "u1:p1")
    stat = zk.set_acls(f"{base}/a", CREATOR_ALL_ACL)
    assert stat.aversion == 1
    assert triples(zk.get_acls(f"{base}/a")[0]) == [(31, "digest", U1_ID)]


def test_auth_scheme_expansion_is_not_deduplicated(raw, base):
    """Duplicates are removed from the list as sent, not after `auth` is expanded."""
    assert raw.auth("digest", "u1:p1").err == 0
    acl = [ACL(Perm.ALL, "auth", ""), ACL(Perm.ALL, "digest", U1_ID)]
    assert raw.create(f"{base}/a", acl=acl).err == 0
    assert triples(raw.parse_acl(raw.get_acl(f"{base}/a"))[0]) == [(31, "digest", U1_ID)] * 2
    # two `auth` entries with different perms both expand
    acl = [ACL(Perm.READ, "auth", ""), ACL(Perm.ALL, "auth", None)]
    assert raw.create(f"{base}/b", acl=acl).err == 0
    assert triples(raw.parse_acl(raw.get_acl(f"{base}/b"))[0]) == [(1, "digest", U1_ID),
                                                                  (31, "digest", U1_ID)]


def test_auth_scheme_ignores_ip_identity(raw, base):
    """ip is not an 'authenticated' provider: with only the ip id, `auth` is INVALIDACL."""
    assert raw.auth("ip", "whatever").err == 0
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "auth", "")]).err == Err.INVALIDACL
    assert raw.auth("digest", "u1:p1").err == 0
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "auth", "")]).err == 0
    assert triples(raw.parse_acl(raw.get_acl(f"{base}/a"))[0]) == [(31, "digest", U1_ID)]


def test_auth_scheme_id_is_ignored(raw, base):
    assert raw.auth("digest", "u1:p1").err == 0
    for ident in ("", None, "someone-else"):
        r = raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "auth", ident)])
        assert r.err == 0
        assert triples(raw.parse_acl(raw.get_acl(f"{base}/a"))[0]) == [(31, "digest", U1_ID)]
        assert raw.delete(f"{base}/a").err == 0


# ---- ACL validation -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme, ident", [
    ("world", "x"),
    ("world", ""),
    ("digest", "user"),
    ("digest", "user:"),
    ("digest", "user:hash:x"),
    ("digest", "::"),
    ("digest", ""),
    ("auth-but-not", "x"),
    ("super", ""),
    ("foo", "bar"),
    ("foo", None),
    ("sasl", "x"),
    ("x509", "CN=x"),
    (None, "x"),
])
def test_invalid_acl(raw, base, scheme, ident):
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, scheme, ident)]).err == Err.INVALIDACL
    assert raw.create(f"{base}/b").err == 0
    assert raw.set_acl(f"{base}/b", [ACL(Perm.ALL, scheme, ident)]).err == Err.INVALIDACL
    assert raw.exists(f"{base}/a").err == Err.NONODE


@pytest.mark.parametrize("ident", ["user:hash", "user:hash:", ":hash", "a:b:"])
def test_valid_digest_ids(raw, base, ident):
    """Java checks `id.split(":")` has two parts, and split drops trailing empty strings."""
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "digest", ident)]).err == 0


@pytest.mark.parametrize("scheme", ["world", "digest", "ip"])
def test_null_acl_id(raw, base, scheme):
    """A null id of a known scheme is a NullPointerException in Java: MARSHALLINGERROR."""
    r0 = raw.create(f"{base}/x")
    r = raw.create(f"{base}/a", acl=[ACL(Perm.ALL, scheme, None)])
    assert r.err == Err.MARSHALLINGERROR
    assert r.zxid > r0.zxid  # still an error txn
    assert raw.exists(f"{base}/a").err == Err.NONODE


def test_empty_acl_list(raw, base):
    assert raw.create(f"{base}/a", acl=[]).err == Err.INVALIDACL
    assert raw.create(f"{base}/a", acl=None).err == Err.INVALIDACL
    assert raw.create(f"{base}/b").err == 0
    assert raw.set_acl(f"{base}/b", []).err == Err.INVALIDACL
    assert raw.set_acl(f"{base}/b", None).err == Err.INVALIDACL


def test_acl_list_is_deduplicated(raw, base):
    acl = [ACL(Perm.ALL, "world", "anyone"), ACL(Perm.ALL, "world", "anyone"),
           ACL(Perm.READ, "world", "anyone")]
    assert raw.create(f"{base}/a", acl=acl).err == 0
    acls, _ = raw.parse_acl(raw.get_acl(f"{base}/a"))
    assert [tuple(a) for a in acls] == [(31, "world", "anyone"), (1, "world", "anyone")]


def test_set_acl_errors(zk, raw, base):
    with pytest.raises(NoNodeError):
        zk.set_acls(f"{base}/missing", OPEN_ACL_UNSAFE)
    # the ACL is checked before the node is looked up
    with pytest.raises(InvalidACLError):
        zk.set_acls(f"{base}/missing", world_bad())
    zk.create(f"{base}/a")
    with pytest.raises(BadVersionError):
        zk.set_acls(f"{base}/a", OPEN_ACL_UNSAFE, version=3)
    zk.set_acls(f"{base}/a", world(read=True, write=True))
    with pytest.raises(NoAuthError):
        zk.set_acls(f"{base}/a", OPEN_ACL_UNSAFE)
    # ADMIN is checked before the version
    with pytest.raises(NoAuthError):
        zk.set_acls(f"{base}/a", OPEN_ACL_UNSAFE, version=99)
    # path validation comes first of all (raw: kazoo would normalise the path)
    assert raw.set_acl(f"{base}/a/", [ACL(Perm.ALL, "world", "anyone")]).err == Err.BADARGUMENTS
    assert raw.set_acl(f"{base}/missing/", []).err == Err.BADARGUMENTS


def world_bad():
    return [make_acl("world", "nobody", all=True)]


def test_set_acl_on_system_config_node_needs_admin(zk):
    with pytest.raises(NoAuthError):
        zk.set_acls("/zookeeper/config", OPEN_ACL_UNSAFE)
    with pytest.raises(NoAuthError):
        zk.set("/zookeeper/config", b"x")


# ---- ip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ident, allowed", [
    ("127.0.0.0/8", True),
    ("127.0.0.1", True),
    ("127.0.0.1/32", True),
    ("127.0.0.1/8", True),     # host bits are ignored
    ("127.1.2.3/8", True),
    ("0.0.0.0/0", True),
    ("127.0.0.2", False),
    ("127.0.0.0/31", True),    # .0 and .1
    ("127.0.0.2/31", False),
    ("127.0.0.128/25", False),
    ("10.0.0.0/8", False),
    ("192.168.1.1", False),
])
def test_ip_acl(zk, base, ident, allowed):
    zk.create(f"{base}/ip", b"d", acl=[make_acl("ip", ident, all=True)])
    if allowed:
        assert zk.get(f"{base}/ip")[0] == b"d"
        zk.set(f"{base}/ip", b"e")
    else:
        with pytest.raises(NoAuthError):
            zk.get(f"{base}/ip")
        with pytest.raises(NoAuthError):
            zk.set(f"{base}/ip", b"e")


def test_ip_acl_mixed_with_world(zk, base):
    zk.create(f"{base}/a", b"d", acl=[make_acl("ip", "10.0.0.0/8", all=True),
                                      make_acl("world", "anyone", read=True)])
    assert zk.get(f"{base}/a")[0] == b"d"
    with pytest.raises(NoAuthError):
        zk.set(f"{base}/a", b"x")
    zk.create(f"{base}/b", b"d", acl=[make_acl("ip", "127.0.0.0/8", write=True),
                                      make_acl("world", "anyone", read=True)])
    zk.set(f"{base}/b", b"x")


@pytest.mark.parametrize("ident", [
    "1.2.3", "1.2.3.4.5", "256.0.0.1", "127.0.0.1/33", "127.0.0.1/-1", "127.0.0.1/", "127.0.0.1/x",
    "localhost", " 127.0.0.1", "127.0.0.1 ", "", "1..2.3", "a.b.c.d",
])
def test_ip_acl_invalid_ids(raw, base, ident):
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "ip", ident)]).err == Err.INVALIDACL


@pytest.mark.parametrize("ident", ["127.000.000.001", "+127.0.0.1", "127.0.0.1/08", "127.0.0.1/+8",
                                   "127.0.0.01"])
def test_ip_acl_numbers_parsed_like_java(raw, base, ident):
    """Each part goes through Integer.parseInt: leading zeros and a '+' sign are accepted."""
    assert raw.create(f"{base}/a", b"d", acl=[ACL(Perm.ALL, "ip", ident)]).err == 0
    assert raw.get_data(f"{base}/a").err == 0


def test_ip_auth_packet(raw, base):
    """An 'ip' AuthPacket succeeds whatever its payload and just re-adds the remote address."""
    assert raw.auth("ip", "10.1.2.3").err == 0
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "ip", "10.1.2.3")]).err == 0
    assert raw.get_data(f"{base}/a").err == Err.NOAUTH
    assert sorted(raw.parse_who_am_i(raw.who_am_i())) == [("ip", "127.0.0.1")]


# ---- super ----------------------------------------------------------------------------


def test_super_bypasses_every_acl(zk, base, make_client):
    zk.create(f"{base}/locked", b"d")
    zk.create(f"{base}/locked/child")
    zk.set_acls(f"{base}/locked", [make_acl("ip", "10.0.0.0/8", all=True)])
    with pytest.raises(NoAuthError):
        zk.get(f"{base}/locked")

    su = make_client()
    su.add_auth(*SUPER)
    assert su.get(f"{base}/locked")[0] == b"d"
    assert su.get_children(f"{base}/locked") == ["child"]
    su.set(f"{base}/locked", b"e")
    su.create(f"{base}/locked/new")
    su.delete(f"{base}/locked/child")
    acls, _ = su.get_acls(f"{base}/locked")
    assert triples(acls) == [(31, "ip", "10.0.0.0/8")]
    su.set_acls(f"{base}/locked", [make_acl("ip", "10.0.0.0/8", read=True)])
    su.delete(f"{base}/locked/new")
    # even a node whose ACL grants nothing to anyone
    su.create(f"{base}/zero", acl=[make_acl("world", "anyone")])
    su.get(f"{base}/zero")


def test_super_with_wrong_password_is_an_ordinary_digest(zk, base, make_client):
    zk.create(f"{base}/locked", acl=[make_acl("ip", "10.0.0.0/8", all=True)])
    c = make_client()
    c.add_auth("digest", "super:wrong")
    with pytest.raises(NoAuthError):
        c.get(f"{base}/locked")


def test_super_sees_unmasked_acls(zk, base, make_client):
    zk.create(f"{base}/d", acl=[make_acl("world", "anyone", read=True), make_acl("digest", U1_ID, all=True)])
    su = make_client()
    su.add_auth(*SUPER)
    assert triples(su.get_acls(f"{base}/d")[0]) == [(1, "world", "anyone"), (31, "digest", U1_ID)]


# ---- getACL masking -----------------------------------------------------------------------


def test_get_acl_masks_digest_ids_without_admin(zk, base, make_client):
    acl = [make_acl("world", "anyone", read=True), make_acl("digest", U1_ID, all=True),
           make_acl("digest", U2_ID, read=True), make_acl("ip", "127.0.0.1", read=True)]
    zk.create(f"{base}/d", acl=acl)
    anon = make_client()
    acls, stat = anon.get_acls(f"{base}/d")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acls] == [
        (1, "world", "anyone"), (31, "digest", "u1:x"), (1, "digest", "u2:x"), (1, "ip", "127.0.0.1")]
    assert stat == anon.exists(f"{base}/d")

    u2 = make_client()
    u2.add_auth("digest", "u2:p2")  # READ only: still masked
    assert [a.id.id for a in u2.get_acls(f"{base}/d")[0]][1:3] == ["u1:x", "u2:x"]

    u1 = make_client()
    u1.add_auth("digest", "u1:p1")  # ADMIN: unmasked, in stored order
    assert [(a.perms, a.id.scheme, a.id.id) for a in u1.get_acls(f"{base}/d")[0]] == [
        (1, "world", "anyone"), (31, "digest", U1_ID), (1, "digest", U2_ID), (1, "ip", "127.0.0.1")]


def test_get_acl_with_admin_only(zk, base):
    zk.create(f"{base}/d", acl=[make_acl("world", "anyone", admin=True),
                                make_acl("digest", U1_ID, read=True)])
    assert triples(zk.get_acls(f"{base}/d")[0]) == [(1, "digest", U1_ID), (16, "world", "anyone")]


def test_get_acl_needs_read_or_admin(zk, base):
    zk.create(f"{base}/d", acl=[make_acl("world", "anyone", write=True, create=True, delete=True)])
    with pytest.raises(NoAuthError):
        zk.get_acls(f"{base}/d")


# ---- auth failures ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["foo", "world", "super", "auth", "sasl", ""])
def test_unknown_auth_scheme_fails_and_closes(make_raw, scheme):
    c = make_raw()
    r = c.auth(scheme, "u:p")
    assert (r.xid, r.zxid, r.err, r.body) == (-4, 0, Err.AUTHFAILED, b"")
    assert c.is_closed_by_server(5.0)


def test_unknown_auth_scheme_kazoo(make_client, server):
    c = make_client()
    client_id = c.client_id
    try:
        with pytest.raises(AuthFailedError):
            c.add_auth("foo", "bar")
    finally:
        c.stop()
        end_kazoo_session(server.port, client_id)


def test_session_survives_auth_failure(make_raw, base):
    """The server drops the connection, not the session."""
    c = make_raw()
    assert c.create(f"{base}/e", flags=1).err == 0
    assert c.auth("foo", "x").err == Err.AUTHFAILED
    assert c.is_closed_by_server(5.0)
    c.close_socket()
    timeout, sid, _ = c.connect(c.session_id, c.passwd)
    assert timeout > 0 and sid == c.session_id
    stat = c.parse_stat(c.exists(f"{base}/e"))
    assert stat.ephemeralOwner == c.session_id


def test_digest_auth_reply(raw):
    r = raw.auth("digest", "u1:p1")
    assert (r.xid, r.zxid, r.err, r.body) == (-4, 0, 0, b"")
    assert raw.ping().err == 0


# ---- whoAmI -------------------------------------------------------------------------------


def test_who_am_i_fresh(raw):
    r = raw.who_am_i()
    assert r.err == 0
    assert raw.parse_who_am_i(r) == [("ip", "127.0.0.1")]


def test_who_am_i_digest(raw):
    raw.auth("digest", "u1:p1")
    raw.auth("digest", "u2:p2")
    raw.auth("digest", "u1:p1")  # the same id again is not listed twice
    assert sorted(raw.parse_who_am_i(raw.who_am_i())) == [("digest", "u1"), ("digest", "u2"),
                                                          ("ip", "127.0.0.1")]


@pytest.mark.parametrize("cred, user", [("nocolon", "nocolon"), ("a:b:c", "a"), (":p", "")])
def test_who_am_i_digest_user_part(raw, cred, user):
    raw.auth("digest", cred)
    assert sorted(raw.parse_who_am_i(raw.who_am_i())) == sorted([("digest", user), ("ip", "127.0.0.1")])


def test_who_am_i_super(raw):
    raw.auth(*SUPER)
    assert sorted(raw.parse_who_am_i(raw.who_am_i())) == [("digest", "super"), ("ip", "127.0.0.1"),
                                                          ("super", "")]


def test_who_am_i_is_not_a_txn(raw, base):
    r0 = raw.create(f"{base}/a")
    r = raw.who_am_i()
    r1 = raw.create(f"{base}/b")
    assert r0.zxid <= r.zxid < r1.zxid
    assert r1.zxid - r0.zxid < 5


def test_auth_packet_digest_without_colon_acl(raw, base):
    raw.auth("digest", "nocolon")
    assert raw.create(f"{base}/a", acl=[ACL(Perm.ALL, "auth", "")]).err == 0
    acls, _ = raw.parse_acl(raw.get_acl(f"{base}/a"))
    assert [(a.perms, a.scheme, a.id) for a in acls] == [
        (31, "digest", "nocolon:Ra+cHr2ZoHvBjtNArFGNGlVie4g=")]
