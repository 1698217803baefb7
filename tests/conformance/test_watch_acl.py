"""Watch events and READ permission: an event about a node is delivered only to watchers
whose connection may READ it (CVE-2024-23944).

Apache ZooKeeper checks, when it delivers an event, the ACL that the node had when the
event fired against the watcher connection's auth ids: the node's own ACL for
NodeCreated, NodeDataChanged and NodeDeleted (the deleted node's last ACL), the parent's
for NodeChildrenChanged.  A one-shot watch is used up even when its event is suppressed.
The catch-up events of SetWatches are not filtered.  The fix is in 3.8.4 and in Debian's
3.8.0-11+deb12u2, the reference these tests run against.

Watchers are raw connections (tests/conformance/rawconn.py) so that every notification
frame is seen; "nothing fired" is checked with a ping round trip.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import OPEN_ACL_UNSAFE, make_acl, make_digest_acl

from tests.conformance import rawconn
from tests.conformance.rawconn import (
    NODE_CHILDREN_CHANGED,
    NODE_CREATED,
    NODE_DATA_CHANGED,
    NODE_DELETED,
    RawConnection,
)

SUPER = ("digest", "super:secret")  # the fixture's superDigest is super:<sha1 of super:secret>
U1_ALL = [make_digest_acl("u1", "p1", all=True)]
SYNC_CONNECTED = 3


@pytest.fixture
def writer(server, zk, base) -> Iterator[KazooClient]:
    """A client authenticated as u1 that makes the changes; at teardown it removes base
    as super (u1's nodes are not deletable by zk's own teardown)."""
    c = KazooClient(hosts=server.hosts, timeout=10)
    c.start(timeout=15)
    c.add_auth("digest", "u1:p1")
    yield c
    c.add_auth(*SUPER)
    try:
        c.delete(base, recursive=True)
    except NoNodeError:
        pass
    c.stop()
    c.close()


def auth(c: RawConnection, scheme: str, credential: bytes) -> None:
    c.send(rawconn.AUTH, struct.pack(">i", 0) + rawconn.ustring(scheme) + rawconn.buffer(credential),
           xid=rawconn.AUTH_XID)
    assert c.read_reply(rawconn.AUTH_XID).err == 0


def under(base: str, events) -> list[tuple[int, str]]:
    """(type, path) of the events about base's subtree (a watch on / sees other tests too)."""
    out = []
    for e in events:
        assert e.state == SYNC_CONNECTED
        if e.path == base or e.path.startswith(base + "/"):
            out.append((e.type, e.path))
    return out


def test_recursive_watch_on_root_hides_unreadable_nodes(writer, base, raw):
    anon, u1, sup = raw(), raw(), raw()
    auth(u1, "digest", b"u1:p1")
    auth(sup, "digest", b"super:secret")
    for c in (anon, u1, sup):
        assert c.add_watch("/", recursive=True).err == 0
    prot, kid, pub = f"{base}/prot", f"{base}/prot/kid", f"{base}/pub"
    writer.create(prot, b"secret", acl=U1_ALL)
    writer.create(kid, acl=OPEN_ACL_UNSAFE)  # readable child of an unreadable parent
    writer.set(prot, b"more")
    writer.create(pub)
    writer.set(pub, b"x")
    writer.delete(kid)
    writer.delete(prot)
    everything = [(NODE_CREATED, prot), (NODE_CREATED, kid), (NODE_DATA_CHANGED, prot),
                  (NODE_CREATED, pub), (NODE_DATA_CHANGED, pub), (NODE_DELETED, kid),
                  (NODE_DELETED, prot)]
    assert under(base, u1.take_events()) == everything
    assert under(base, sup.take_events()) == everything
    assert under(base, anon.take_events()) == [
        (NODE_CREATED, kid), (NODE_CREATED, pub), (NODE_DATA_CHANGED, pub), (NODE_DELETED, kid)]


def test_exists_watch_is_used_up_by_a_suppressed_event(writer, base, raw):
    anon = raw()
    p = f"{base}/later"
    assert anon.exists(p, watch=True).err == -101
    writer.create(p, acl=U1_ALL)
    assert anon.take_events() == []
    writer.set_acls(p, OPEN_ACL_UNSAFE)
    writer.set(p, b"now readable")
    assert anon.take_events() == []  # the one-shot watch went with the hidden NodeCreated
    assert anon.exists(p, watch=True).err == 0
    writer.set(p, b"again")
    assert [(e.type, e.path) for e in anon.take_events()] == [(NODE_DATA_CHANGED, p)]


def test_persistent_watch_children_changed_checks_the_parent(writer, base, raw):
    anon = raw()
    prot, pub = f"{base}/prot", f"{base}/pub"
    writer.create(prot, acl=U1_ALL)
    writer.create(pub)
    assert anon.add_watch(prot).err == 0  # no ACL check when a watch is added
    assert anon.add_watch(pub).err == 0
    writer.create(f"{prot}/kid", acl=OPEN_ACL_UNSAFE)
    writer.create(f"{pub}/kid", acl=U1_ALL)
    writer.set(prot, b"1")
    writer.delete(f"{pub}/kid")
    writer.delete(f"{prot}/kid")
    writer.delete(prot)
    writer.delete(pub)
    assert [(e.type, e.path) for e in anon.take_events()] == [
        (NODE_CHILDREN_CHANGED, pub), (NODE_CHILDREN_CHANGED, pub), (NODE_DELETED, pub)]


def test_read_permission_by_ip(writer, base, raw):
    anon = raw()
    assert anon.add_watch(base, recursive=True).err == 0
    local, other = f"{base}/local", f"{base}/other"
    writer.create(local, acl=[make_acl("ip", "127.0.0.0/8", read=True), U1_ALL[0]])
    writer.create(other, acl=[make_acl("ip", "10.0.0.1", read=True), U1_ALL[0]])
    writer.set(other, b"1")
    writer.set(local, b"1")
    assert [(e.type, e.path) for e in anon.take_events()] == [
        (NODE_CREATED, local), (NODE_DATA_CHANGED, local)]


def test_watches_set_by_set_watches_are_filtered(writer, base, raw):
    prot, later = f"{base}/prot", f"{base}/later"
    writer.create(prot, acl=U1_ALL)
    rel = writer.exists(prot).mzxid
    anon = raw()  # a reconnected client re-registering its watches
    assert anon.set_watches(rel, data=[prot], exist=[later], persistent=[],
                            recursive=[base]).err == 0
    assert anon.take_events() == []
    writer.set(prot, b"1")
    writer.create(later, acl=U1_ALL)
    writer.set(later, b"1")
    assert anon.take_events() == []


def test_set_watches_catch_up_events_are_not_filtered(writer, base, raw):
    """The reference sends SetWatches' catch-up events without an ACL check."""
    prot, later = f"{base}/prot", f"{base}/later"
    writer.create(prot, acl=U1_ALL)
    rel = writer.exists(prot).mzxid
    writer.set(prot, b"1")
    writer.create(later, acl=U1_ALL)
    anon = raw()
    assert anon.set_watches(rel, data=[prot], exist=[later]).err == 0
    got = sorted((e.type, e.path) for e in anon.take_events())
    assert got == sorted([(NODE_DATA_CHANGED, prot), (NODE_CREATED, later)])
