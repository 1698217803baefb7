"""Watch semantics: which events fire, how often, in which order, and re-registration.

Watchers are raw connections (tests/conformance/rawconn.py) so that every notification frame
the server sends is seen, duplicates included; kazoo would hide them.  "Nothing fired" is
checked with a ping round trip: a notification caused by a write that has already been
answered is queued on the watcher's connection before any later ping reply.
"""

from __future__ import annotations

import struct
import time

from kazoo.protocol.states import EventType, KazooState

from tests.conformance import rawconn
from tests.conformance.rawconn import (
    NODE_CHILDREN_CHANGED,
    NODE_CREATED,
    NODE_DATA_CHANGED,
    NODE_DELETED,
    W_ANY,
    W_CHILDREN,
    W_DATA,
    RawConnection,
)

NONODE, NOWATCHER, MARSHALLINGERROR, BADVERSION = -101, -121, -5, -103
SYNC_CONNECTED = 3


def ev(etype: int, path: str) -> tuple[int, int, str]:
    return (etype, SYNC_CONNECTED, path)


def kinds(events) -> list[tuple[int, int, str]]:
    return [(e.type, e.state, e.path) for e in events]


# --------------------------------------------------------------------------- standard watches


def test_data_watch_is_one_shot(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n", b"0")
    assert a.get_data(p, watch=True).err == 0
    stat = zk.set(p, b"1")
    zk.set(p, b"2")
    events = a.take_events()
    assert kinds(events) == [ev(NODE_DATA_CHANGED, p)]
    # 3.8 sends -1 in the notification header, 3.9 the zxid of the write.
    assert events[0].zxid in (-1, stat.mzxid)
    zk.set(p, b"3")
    assert a.take_events() == []


def test_exists_on_missing_node_sets_a_watch(zk, base, raw):
    a = raw()
    p = f"{base}/later"
    assert a.exists(p, watch=True).err == NONODE
    zk.create(p)
    assert kinds(a.take_events()) == [ev(NODE_CREATED, p)]


def test_get_data_and_children_on_missing_node_set_no_watch(zk, base, raw):
    a = raw()
    p = f"{base}/later"
    assert a.get_data(p, watch=True).err == NONODE
    assert a.get_children(p, watch=True).err == NONODE
    zk.create(p)
    zk.create(f"{p}/child")
    zk.set(p, b"x")
    assert a.take_events() == []


def test_create_fires_node_created_then_parent_children_changed(zk, base, raw):
    a, b = raw(), raw()
    p = f"{base}/c"
    a.exists(p, watch=True)
    a.get_children(base, watch=True)
    b.get_children(base, watch=True)
    zk.create(p)
    assert kinds(a.take_events()) == [ev(NODE_CREATED, p), ev(NODE_CHILDREN_CHANGED, base)]
    assert kinds(b.take_events()) == [ev(NODE_CHILDREN_CHANGED, base)]


def test_set_data_fires_only_data_watches(zk, base, raw):
    a, b = raw(), raw()
    p = zk.create(f"{base}/n")
    a.get_data(p, watch=True)
    b.get_children(p, watch=True)
    b.get_children(base, watch=True)
    zk.set(p, b"x")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]
    assert b.take_events() == []
    # b's watches are still armed
    zk.create(f"{p}/k")
    assert kinds(b.take_events()) == [ev(NODE_CHILDREN_CHANGED, p)]


def test_delete_fires_node_deleted_for_every_watch_kind(zk, base, raw):
    data_w, exists_w, child_w, parent_w = raw(), raw(), raw(), raw()
    p = zk.create(f"{base}/n")
    data_w.get_data(p, watch=True)
    exists_w.exists(p, watch=True)
    child_w.get_children(p, watch=True)
    parent_w.get_children(base, watch=True)
    zk.delete(p)
    assert kinds(data_w.take_events()) == [ev(NODE_DELETED, p)]
    assert kinds(exists_w.take_events()) == [ev(NODE_DELETED, p)]
    assert kinds(child_w.take_events()) == [ev(NODE_DELETED, p)]
    assert kinds(parent_w.take_events()) == [ev(NODE_CHILDREN_CHANGED, base)]


def test_one_event_per_connection_per_trigger(zk, base, raw):
    a, b = raw(), raw()
    p = zk.create(f"{base}/n")
    zk.create(f"{p}/k")
    for c in (a, b):
        c.get_data(p, watch=True)
        c.exists(p, watch=True)
        c.get_data(p, watch=True)
    zk.set(p, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]
    assert kinds(b.take_events()) == [ev(NODE_DATA_CHANGED, p)]
    # Data and child watch on the node, plus a child watch on the parent: a delete gives one
    # NodeDeleted, then the parent's NodeChildrenChanged.
    zk.delete(f"{p}/k")
    a.get_data(p, watch=True)
    a.get_children(p, watch=True)
    a.exists(p, watch=True)
    a.get_children(base, watch=True)
    zk.delete(p)
    assert kinds(a.take_events()) == [ev(NODE_DELETED, p), ev(NODE_CHILDREN_CHANGED, base)]


def test_recursive_and_standard_watch_give_one_event(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    assert a.add_watch(base, recursive=True).err == 0
    a.get_data(p, watch=True)
    zk.set(p, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]


def test_event_arrives_before_reply_of_the_write_on_same_connection(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    a.get_data(p, watch=True)
    a.get_children(base, watch=True)
    xid = a.send(rawconn.DELETE, rawconn.ustring(p) + struct.pack(">i", -1))
    first, second, third = a.read_any(), a.read_any(), a.read_any()
    assert (first.xid, second.xid, third.xid) == (-1, -1, xid)
    assert third.err == 0
    assert kinds([a._event(first), a._event(second)]) == [
        ev(NODE_DELETED, p), ev(NODE_CHILDREN_CHANGED, base)]


def test_failed_writes_and_set_acl_fire_nothing(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    a.get_data(p, watch=True)
    a.get_children(base, watch=True)
    assert a.set_data(p, b"x", version=7).err == BADVERSION
    assert a.create(p).err == -110
    zk.set_acls(p, zk.get_acls(p)[0])
    assert a.take_events() == []


def test_children_of_root_event_path_is_slash(zk, base, raw):
    a = raw()
    top = f"{base}-sibling"
    assert a.get_children("/", watch=True).err == 0
    try:
        zk.create(top)
        assert kinds(a.take_events()) == [ev(NODE_CHILDREN_CHANGED, "/")]
    finally:
        zk.delete(top)


def test_multi_fires_events_in_op_order(zk, base, raw):
    a = raw()
    x = zk.create(f"{base}/x")
    y = zk.create(f"{base}/y")
    m = f"{base}/m"
    a.exists(m, watch=True)
    a.get_data(x, watch=True)
    a.get_data(y, watch=True)
    a.get_children(base, watch=True)
    t = zk.transaction()
    t.create(m)
    t.set_data(x, b"1")
    t.delete(y)
    results = t.commit()
    assert results[0] == m and results[2] is True
    # The child watch on base fires once (on the create); it is gone by the delete.
    assert kinds(a.take_events()) == [
        ev(NODE_CREATED, m), ev(NODE_CHILDREN_CHANGED, base), ev(NODE_DATA_CHANGED, x), ev(NODE_DELETED, y)]


def test_watches_belong_to_the_connection(server, zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    a.get_data(p, watch=True)
    a.close()
    # Same session on a new connection: the old connection's watches are gone.
    b = RawConnection(server.port)
    try:
        b.handshake(session_id=a.session_id, passwd=a.passwd)
        assert b.session_id == a.session_id
        zk.set(p, b"1")
        assert b.take_events() == []
    finally:
        b.end()


def test_kazoo_watch_callbacks(zk, base):
    """The same semantics as seen through a real client."""
    seen = []
    p = zk.create(f"{base}/n")
    zk.get(p, watch=seen.append)
    zk.exists(f"{base}/missing", watch=seen.append)
    zk.get_children(base, watch=seen.append)
    zk.set(p, b"1")
    zk.create(f"{base}/missing")
    assert _wait(lambda: len(seen) >= 3), seen
    assert {(e.type, e.path) for e in seen} == {
        (EventType.CHANGED, p), (EventType.CREATED, f"{base}/missing"), (EventType.CHILD, base)}
    assert all(e.state == KazooState.CONNECTED for e in seen)


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# --------------------------------------------------------------------------- persistent watches


def test_add_watch_reply_has_int_body_and_bad_mode_is_rejected(base, zk, raw):
    a = raw()
    r = a.add_watch(f"{base}/nothing-yet")
    assert (r.err, r.body) == (0, b"\x00\x00\x00\x00")
    r = a.call(rawconn.ADD_WATCH, rawconn.ustring(base) + struct.pack(">i", 7))
    assert (r.err, r.body) == (MARSHALLINGERROR, b"")
    a.ping()  # the connection stays usable


def test_persistent_watch(zk, base, raw):
    a = raw()
    p = f"{base}/p"
    assert a.add_watch(p).err == 0
    steps = [
        (lambda: zk.create(p), [ev(NODE_CREATED, p)]),
        (lambda: zk.set(p, b"1"), [ev(NODE_DATA_CHANGED, p)]),
        (lambda: zk.set(p, b"2"), [ev(NODE_DATA_CHANGED, p)]),
        (lambda: zk.create(f"{p}/c"), [ev(NODE_CHILDREN_CHANGED, p)]),
        (lambda: zk.create(f"{p}/c/d"), []),
        (lambda: zk.set(f"{p}/c", b"x"), []),
        (lambda: zk.delete(f"{p}/c/d"), []),
        (lambda: zk.delete(f"{p}/c"), [ev(NODE_CHILDREN_CHANGED, p)]),
        (lambda: zk.delete(p), [ev(NODE_DELETED, p)]),
        (lambda: zk.create(p), [ev(NODE_CREATED, p)]),
    ]
    for i, (action, expected) in enumerate(steps):
        action()
        assert kinds(a.take_events()) == expected, i


def test_persistent_recursive_watch_never_sees_children_changed(zk, base, raw):
    a = raw()
    r = f"{base}/r"
    assert a.add_watch(r, recursive=True).err == 0
    steps = [
        (lambda: zk.create(r), [ev(NODE_CREATED, r)]),
        (lambda: zk.set(r, b"1"), [ev(NODE_DATA_CHANGED, r)]),
        (lambda: zk.create(f"{r}/c"), [ev(NODE_CREATED, f"{r}/c")]),
        (lambda: zk.create(f"{r}/c/d"), [ev(NODE_CREATED, f"{r}/c/d")]),
        (lambda: zk.set(f"{r}/c/d", b"x"), [ev(NODE_DATA_CHANGED, f"{r}/c/d")]),
        (lambda: zk.delete(f"{r}/c/d"), [ev(NODE_DELETED, f"{r}/c/d")]),
        (lambda: zk.delete(f"{r}/c"), [ev(NODE_DELETED, f"{r}/c")]),
        (lambda: zk.create(f"{base}/r2"), []),  # a sibling with the same prefix is not below r
        (lambda: zk.delete(r), [ev(NODE_DELETED, r)]),
        (lambda: zk.create(r), [ev(NODE_CREATED, r)]),
    ]
    for i, (action, expected) in enumerate(steps):
        action()
        assert kinds(a.take_events()) == expected, i


def test_persistent_watch_on_root_of_other_connection_is_independent(zk, base, raw):
    a, b = raw(), raw()
    p = zk.create(f"{base}/n")
    a.add_watch(p)
    b.add_watch(base, recursive=True)
    zk.set(p, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]
    assert kinds(b.take_events()) == [ev(NODE_DATA_CHANGED, p)]


# --------------------------------------------------------------------------- removeWatches / checkWatches


def test_check_and_remove_standard_watches(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    q = f"{base}/missing"
    assert a.check_watches(p, W_DATA).err == NOWATCHER
    assert a.remove_watches(p, W_ANY).err == NOWATCHER

    a.get_data(p, watch=True)
    a.get_children(p, watch=True)
    a.exists(q, watch=True)
    assert a.check_watches(p, W_DATA).err == 0
    assert a.check_watches(p, W_CHILDREN).err == 0
    assert a.check_watches(q, W_DATA).err == 0
    assert a.check_watches(q, W_CHILDREN).err == NOWATCHER

    assert a.remove_watches(p, W_DATA).err == 0
    assert a.remove_watches(p, W_DATA).err == NOWATCHER
    assert a.check_watches(p, W_CHILDREN).err == 0
    zk.set(p, b"1")
    assert a.take_events() == []
    assert a.remove_watches(p, W_CHILDREN).err == 0
    zk.create(f"{p}/k")
    assert a.take_events() == []

    assert a.remove_watches(q, W_ANY).err == 0
    assert a.remove_watches(q, W_ANY).err == NOWATCHER
    zk.create(q)
    assert a.take_events() == []


def test_remove_watches_is_per_connection(zk, base, raw):
    a, b = raw(), raw()
    p = zk.create(f"{base}/n")
    a.get_data(p, watch=True)
    b.get_data(p, watch=True)
    assert b.remove_watches(p, W_DATA).err == 0
    zk.set(p, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]
    assert b.take_events() == []


def test_remove_persistent_watches_with_any(zk, base, raw):
    a = raw()
    p = zk.create(f"{base}/n")
    a.add_watch(p)
    a.add_watch(base, recursive=True)
    assert a.check_watches(p, W_ANY).err == 0
    assert a.remove_watches(p, W_ANY).err == 0
    assert a.remove_watches(base, W_ANY).err == 0
    assert a.check_watches(p, W_ANY).err == NOWATCHER
    zk.set(p, b"1")
    zk.create(f"{p}/k")
    assert a.take_events() == []


def test_remove_watches_bad_type(zk, base, raw):
    a = raw()
    a.get_data(base, watch=True)
    assert a.remove_watches(base, 9).err == MARSHALLINGERROR
    assert a.check_watches(base, 0).err == MARSHALLINGERROR
    # nothing was removed and the connection is fine
    zk.set(base, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, base)]


# --------------------------------------------------------------------------- SetWatches


def test_set_watches_reports_changes_after_relative_zxid(zk, base, raw):
    changed = zk.create(f"{base}/changed", b"0")
    deleted = zk.create(f"{base}/deleted")
    same = zk.create(f"{base}/same")
    parent = zk.create(f"{base}/parent")
    created = f"{base}/created"
    missing = f"{base}/missing"
    rel = zk.exists(parent).mzxid

    zk.set(changed, b"1")
    zk.delete(deleted)
    zk.create(f"{parent}/kid")
    zk.create(created)

    a = raw()
    xid = a.send(rawconn.SET_WATCHES,
                 struct.pack(">q", rel)
                 + rawconn.strings([changed, deleted, same])
                 + rawconn.strings([created, missing])
                 + rawconn.strings([parent, same]),
                 xid=rawconn.SET_WATCHES_XID)
    frames = []
    while True:
        r = a.read_any()
        frames.append(r)
        if r.xid != -1:
            break
    reply = frames.pop()
    assert (reply.xid, reply.err, reply.body) == (xid, 0, b"")
    events = [a._event(f) for f in frames]
    # Catch-up events come before the SetWatches reply, with zxid -1.
    assert sorted(kinds(events)) == sorted([
        ev(NODE_DATA_CHANGED, changed), ev(NODE_DELETED, deleted), ev(NODE_CREATED, created),
        ev(NODE_CHILDREN_CHANGED, parent)])
    assert all(e.zxid == -1 for e in events)
    assert a.take_events() == []

    # Watches that were reported are not registered (they were one-shot); the others are.
    zk.set(changed, b"2")
    zk.create(f"{parent}/kid2")
    assert a.take_events() == []
    zk.set(same, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, same)]
    zk.create(f"{same}/kid")
    assert kinds(a.take_events()) == [ev(NODE_CHILDREN_CHANGED, same)]
    zk.create(missing)
    assert kinds(a.take_events()) == [ev(NODE_CREATED, missing)]


def test_set_watches_with_current_zxid_reports_nothing(zk, base, raw):
    p = zk.create(f"{base}/n")
    a = raw()
    rel = zk.exists(p).mzxid
    a.set_watches(rel, data=[p], exist=[f"{base}/missing"], child=[p])
    assert a.take_events() == []
    zk.set(p, b"1")
    assert kinds(a.take_events()) == [ev(NODE_DATA_CHANGED, p)]


def test_set_watches2_registers_persistent_watches_silently(zk, base, raw):
    p = zk.create(f"{base}/p")
    r = zk.create(f"{base}/r")
    rel = zk.exists(r).mzxid
    zk.set(p, b"changed while away")
    zk.create(f"{r}/kid")
    a = raw()
    reply = a.set_watches(rel, persistent=[p], recursive=[r])
    assert reply.err == 0
    assert a.take_events() == []
    zk.set(p, b"1")
    zk.set(p, b"2")
    zk.set(f"{r}/kid", b"1")
    assert kinds(a.take_events()) == [
        ev(NODE_DATA_CHANGED, p), ev(NODE_DATA_CHANGED, p), ev(NODE_DATA_CHANGED, f"{r}/kid")]
