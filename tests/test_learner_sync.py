"""A learner forwards each client's sync to the leader and releases them one answer at a
time, in order.  A client that goes away while its sync is in flight still has that
answer coming: it must not release the next client's sync early (which would let that
client read state older than the leader's at its sync)."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import pytest

from zkpy.jute.constants import OpCode
from zkpy.jute.records import PathOnly
from zkpy.jute.txns import TxnHeader
from zkpy.server.config import build_config
from zkpy.server.connection import ClientConnection
from zkpy.server.core import ZooKeeperServer


class RecordingTransport(asyncio.Transport):
    """Just enough of a socket transport to hold what the server writes."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def write(self, data: Any) -> None:
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for d in list_of_data:
            self.written += d

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Follower:
    """The Replication of a follower's core: records what it would send the leader."""

    role = "follower"

    def __init__(self) -> None:
        self.forwarded: list[tuple[int, int, int]] = []

    def next_zxid(self) -> int:
        raise AssertionError("learners assign no zxids")

    def propose(self, hdr: TxnHeader, payload: bytes) -> None:
        raise AssertionError("learners propose nothing")

    def persisted(self, zxid: int) -> None:
        pass

    def forward(self, session_id: int, cxid: int, op: int, body: bytes,
                auth: list[tuple[str, str]]) -> None:
        self.forwarded.append((session_id, cxid, op))

    def revalidate(self, session_id: int, timeout: int) -> None:
        pass


def xids_answered(t: RecordingTransport) -> list[int]:
    out, pos, buf = [], 0, bytes(t.written)
    while pos + 4 <= len(buf):
        (n,) = struct.unpack_from(">i", buf, pos)
        out.append(struct.unpack_from(">i", buf, pos + 4)[0])
        pos += 4 + n
    return out


@pytest.mark.asyncio
async def test_a_closed_clients_sync_answer_does_not_release_the_next_one(tmp_path: Path) -> None:
    zab = Follower()
    core = ZooKeeperServer(build_config({"dataDir": str(tmp_path)}), server_id=2, zab=zab)
    core.attach(asyncio.get_running_loop())
    conns = []
    for i, sid in enumerate((0x201, 0x202)):
        conn = ClientConnection(core)
        t = RecordingTransport(40000 + i)
        conn.connection_made(t)
        conn.session_id = sid
        conns.append((conn, t))
    (a, _ta), (b, tb) = conns
    core.request(a, 10, OpCode.SYNC, PathOnly("/"), b"")
    core.request(b, 20, OpCode.SYNC, PathOnly("/"), b"")
    assert [f[2] for f in zab.forwarded] == [OpCode.SYNC, OpCode.SYNC]
    a.close()
    core.sync_released()  # the leader's answer to a's sync
    core.flush_dirty()
    assert 20 not in xids_answered(tb), "b's sync released by the answer meant for a"
    core.sync_released()  # now b's
    core.flush_dirty()
    assert xids_answered(tb) == [20]
