"""A write on a connection whose session has since been resumed on another server.

A client that loses its server (or just believes it has) reconnects elsewhere with the
same session id and password.  Its old connection may still be open.  Apache ZooKeeper's
leader records which server owns each session (the revalidation moves it) and refuses a
write from anywhere else as SESSIONMOVED: nothing is applied, and the server holding the
stale connection closes it without an answer.  Reads served by a follower are not
checked; reads on the leader are.  Each case runs against a 3-server zkpy ensemble and a
3-server Apache ZooKeeper ensemble with the same assertions.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

import pytest

from tests.conformance import rawconn
from tests.ensemble import Ensemble, Member, module_ensemble, wait_until

SYNC, EPHEMERAL, NONODE = 9, 1, -101


@pytest.fixture(scope="module", params=["zkpy", "reference"])
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from module_ensemble([request.param] * 3, tick_time=500,
                               jvm_flags=["-Dzookeeper.audit.enable=true"])


@pytest.fixture(autouse=True)
def serving(ens: Ensemble) -> Iterator[None]:
    yield from ens.each_test()


def members(ens: Ensemble, old_role: str, new_role: str) -> tuple[Member, Member]:
    modes = ens.wait_ready()
    leader = next(ens[s] for s, m in modes.items() if m == "leader")
    followers = [ens[s] for s, m in modes.items() if m == "follower"]
    pick = {"leader": [leader], "follower": list(followers)}
    old = pick[old_role].pop(0)
    new = pick[new_role].pop(0) if new_role != old_role else pick[new_role][0]
    return old, new


@pytest.mark.parametrize("old_role,new_role", [("follower", "follower"), ("follower", "leader"),
                                               ("leader", "follower")])
def test_write_on_a_connection_whose_session_moved_is_refused(
        ens: Ensemble, base: str, old_role: str, new_role: str) -> None:
    old, new = members(ens, old_role, new_role)
    setup = ens.client(*(m.sid for m in ens.members.values()))
    data, eph = f"{base}/data", f"{base}/eph"
    setup.create(base)
    setup.create(data, b"v0")

    stale = rawconn.session(old.client_port, 10000)
    ens.raw.append(stale)
    assert stale.get_data(data).err == 0
    fresh = rawconn.RawConnection(new.client_port)
    ens.raw.append(fresh)
    _, sid, _ = fresh.handshake(10000, session_id=stale.session_id, passwd=stale.passwd,
                                last_zxid=stale.last_zxid)
    assert sid == stale.session_id
    if old_role == "follower":  # a follower answers reads from its own tree, unchecked
        assert stale.get_data(data).err == 0

    # Both writes in one segment: neither may be applied, and neither is answered.
    frames = b""
    set_body = rawconn.ustring(data) + rawconn.buffer(b"stale") + struct.pack(">i", -1)
    for xid, op, body in ((101, rawconn.SET_DATA, set_body),
                          (102, rawconn.CREATE, rawconn.create_body(eph, b"", EPHEMERAL))):
        payload = struct.pack(">ii", xid, op) + body
        frames += struct.pack(">i", len(payload)) + payload
    stale.send_raw(frames)
    left = stale.wait_closed(10)
    assert left == b"", f"{old}: the stale connection got an answer before it closed: {left!r}"
    # the refusal is audited where the stale connection was, as a failure; so is the second
    # write (once the connection is closed: Java then has no address for it) except on a
    # zkpy leader, which closes at the first refused request and reads no further
    session = f"session=0x{stale.session_id:x}\tuser=127.0.0.1\t"
    refused = [re.compile(re.escape(session) + r"ip=(127\.0\.0\.1)?\t" + re.escape(rest))
               for rest in (f"operation=setData\tznode={data}\tresult=failure",
                            f"operation=create\tznode={eph}\tznode_type=ephemeral\tresult=failure")]
    expected = refused[:1] if ens[old.sid].kind == "zkpy" and old_role == "leader" else refused
    wait_until(lambda: all(p.search(old.log_text()) for p in expected), 10,
               f"{old} to audit the refused writes")
    assert not any(p.search(m.log_text()) for p in refused for m in ens.members.values() if m is not old)

    # The session itself lives on, at its new server, and owns nothing it did not create.
    assert fresh.call(SYNC, rawconn.ustring(base)).err == 0
    r = fresh.get_data(data)
    assert r.err == 0 and r.body.startswith(rawconn.buffer(b"v0")), r
    assert fresh.exists(eph).err == NONODE
    assert fresh.set_data(data, b"v1").err == 0
    for m in ens.members.values():
        c = ens.client(m.sid)
        c.sync(base)
        assert c.get(data)[0] == b"v1", m
        assert c.exists(eph) is None, m
