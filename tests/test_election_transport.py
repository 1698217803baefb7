"""ElectionTransport (QuorumCnxManager) and ElectionDriver over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from tests.conftest import free_port
from zkpy.election import Decided, FastLeaderElection, ServerState
from zkpy.election.driver import ElectionDriver
from zkpy.election.messages import FrameDecoder, decode_initial_message, encode_frame, encode_initial_message
from zkpy.election.transport import ElectionTransport

Inbox = list[tuple[int, bytes]]


async def eventually(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Cluster:
    """Transports for sids 1..n on free loopback ports, each with its own inbox."""

    def __init__(self, n: int) -> None:
        self.addrs = {sid: ("127.0.0.1", free_port()) for sid in range(1, n + 1)}
        self.inbox: dict[int, Inbox] = {sid: [] for sid in self.addrs}
        self.nodes: dict[int, ElectionTransport] = {}

    async def start(self, sid: int) -> ElectionTransport:
        inbox = self.inbox[sid]
        t = ElectionTransport(sid, self.addrs[sid], self.addrs,
                              lambda peer, payload: inbox.append((peer, payload)))
        await t.start()
        self.nodes[sid] = t
        return t

    async def close(self) -> None:
        for t in self.nodes.values():
            await t.close()


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    c = Cluster(3)
    yield c
    await c.close()


async def test_one_connection_per_pair_dialed_by_the_larger_sid(cluster: Cluster) -> None:
    t1, t2 = await cluster.start(1), await cluster.start(2)
    t1.send(2, b"from 1")  # 1 dials, introduces itself, hangs up; 2 dials back
    await eventually(lambda: cluster.inbox[2] == [(1, b"from 1")])
    t2.send(1, b"from 2")
    await eventually(lambda: cluster.inbox[1] == [(2, b"from 2")])
    assert t1.connected(2) and t2.connected(1)
    conn = t1._conns[2]
    assert conn.transport is not None
    assert conn.transport.get_extra_info("sockname")[1] == cluster.addrs[1][1]  # accepted by 1


async def test_the_newest_message_wins_while_a_peer_is_down(cluster: Cluster) -> None:
    t1 = await cluster.start(1)
    for i in range(3):
        t1.send(2, f"m{i}".encode())
    await asyncio.sleep(0.1)  # the dials are refused
    await cluster.start(2)
    t1.connect_all()
    await eventually(lambda: cluster.inbox[2] == [(1, b"m2")])
    await asyncio.sleep(0.1)
    assert cluster.inbox[2] == [(1, b"m2")]


async def test_the_last_message_is_sent_again_on_reconnect(cluster: Cluster) -> None:
    t1, t2 = await cluster.start(1), await cluster.start(2)
    t1.send(2, b"vote")
    await eventually(lambda: cluster.inbox[2] == [(1, b"vote")])
    await t2.close()
    await eventually(lambda: not t1.connected(2))
    cluster.inbox[2].clear()
    t2 = await cluster.start(2)
    t2.send(1, b"hello again")
    await eventually(lambda: (1, b"vote") in cluster.inbox[2])
    await eventually(lambda: cluster.inbox[1][-1:] == [(2, b"hello again")])


async def test_loopback_delivers_to_ourselves(cluster: Cluster) -> None:
    t1 = await cluster.start(1)
    t1.send(1, b"me")
    await eventually(lambda: cluster.inbox[1] == [(1, b"me")])


async def raw_dial(port: int, initial: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(initial)
    await writer.drain()
    return reader, writer


async def test_a_larger_sid_is_kept_and_bad_frames_drop_it(cluster: Cluster) -> None:
    t1 = await cluster.start(1)
    reader, writer = await raw_dial(cluster.addrs[1][1], encode_initial_message(7, "127.0.0.1:1"))
    writer.write(encode_frame(b"payload"))
    await eventually(lambda: cluster.inbox[1] == [(7, b"payload")])
    assert t1.connected(7)
    writer.write(struct.pack(">i", 0))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by t1
    await eventually(lambda: not t1.connected(7))
    writer.close()


@pytest.mark.parametrize("initial", [
    struct.pack(">q", -5) + b"\x00" * 20,  # unknown protocol version
    struct.pack(">qqi", -65536, 9, 100000),  # absurd address length
    encode_initial_message(1, "127.0.0.1:1"),  # our own sid
])
async def test_bad_or_self_initial_messages_are_closed(cluster: Cluster, initial: bytes) -> None:
    await cluster.start(1)
    reader, writer = await raw_dial(cluster.addrs[1][1], initial)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert cluster.inbox[1] == []


async def test_pre_35_initial_message_is_accepted(cluster: Cluster) -> None:
    await cluster.start(1)
    _, writer = await raw_dial(cluster.addrs[1][1], struct.pack(">q", 6) + encode_frame(b"old"))
    await eventually(lambda: cluster.inbox[1] == [(6, b"old")])
    writer.close()


async def test_a_smaller_sid_is_dialed_back_at_its_announced_address(cluster: Cluster) -> None:
    await cluster.start(2)
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await raw_dial(cluster.addrs[2][1], encode_initial_message(1, f"127.0.0.1:{port}"))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the smaller sid's socket is closed
        back_reader, back_writer = await asyncio.wait_for(accepted.get(), 5)
        head = await back_reader.readexactly(20)
        head += await back_reader.readexactly(struct.unpack(">i", head[16:])[0])
        intro = decode_initial_message(head)
        assert intro is not None and intro.sid == 2 and intro.addresses == (cluster.addrs[2],)
        back_writer.write(encode_frame(b"on the dialed-back socket"))
        await eventually(lambda: cluster.inbox[2] == [(1, b"on the dialed-back socket")])
        cluster.nodes[2].send(1, b"reply")
        assert FrameDecoder(await back_reader.readexactly(9)).feed() == [b"reply"]
        back_writer.close()
        writer.close()
    finally:
        server.close()


async def test_a_dial_to_a_larger_sid_only_introduces_itself(cluster: Cluster) -> None:
    t1 = await cluster.start(1)
    accepted: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait(await reader.read())
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    t1.peers[5] = ("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        t1.send(5, b"queued until 5 dials back")
        data = await asyncio.wait_for(accepted.get(), 5)
        assert data == encode_initial_message(1, f"127.0.0.1:{cluster.addrs[1][1]}")
        assert not t1.connected(5)
    finally:
        server.close()


# -- the driver: FLE over real sockets ------------------------------------------------------------


async def test_three_drivers_elect_and_a_restarted_member_learns_the_leader() -> None:
    addrs = {sid: ("127.0.0.1", free_port()) for sid in (1, 2, 3)}
    decided: dict[int, list[Decided]] = {1: [], 2: [], 3: []}
    voters = frozenset(addrs)

    async def member(sid: int, zxid: int) -> ElectionDriver:
        d = ElectionDriver(FastLeaderElection(sid, voters), addrs[sid], addrs, decided[sid].append)
        await d.start()
        d.look(zxid, 1)
        return d

    zxids = {1: 1 << 32 | 9, 2: 1 << 32 | 3, 3: 1 << 32}  # 1 has the newest history
    drivers = {sid: await member(sid, zxid) for sid, zxid in zxids.items()}
    try:
        await eventually(lambda: all(decided.values()))
        assert [d[-1].vote.leader for d in decided.values()] == [1, 1, 1]
        assert decided[1][-1].state == ServerState.LEADING
        await drivers[3].close()
        decided[3].clear()
        drivers[3] = await member(3, 1 << 32)
        await eventually(lambda: bool(decided[3]))
        assert decided[3] == [Decided(ServerState.FOLLOWING, decided[1][-1].vote)]
    finally:
        for d in drivers.values():
            await d.close()
