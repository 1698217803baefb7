"""Buffers a client can fill, in process (zkpy only): what a connection holds while
its session is being created, and reads queued behind writes counted against
globalOutstandingLimit.  The cases the reference can run too are in
tests/conformance/test_client_buffers.py."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.slowsync import SlowSync
from zkpy.server.config import build_config
from zkpy.server.standalone import StandaloneServer

GET_DATA, SET_DATA, EXISTS = 4, 5, 3


def _config(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"dataDir": str(tmp_path / "data"), "clientPort": "0",
            "clientPortAddress": "127.0.0.1", "admin.enableServer": "false", "tickTime": "2000", **extra}


def _ustring(s: str) -> bytes:
    return struct.pack(">i", len(s)) + s.encode()


def _frame(xid: int, op: int, body: bytes) -> bytes:
    return struct.pack(">iii", 8 + len(body), xid, op) + body


def _connect_request() -> bytes:
    body = struct.pack(">iqiqi", 0, 0, 10000, 0, 16) + b"\0" * 16 + b"\0"
    return struct.pack(">i", len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (n,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(n)


def _slow_disk(server: StandaloneServer, seconds: float) -> Callable[[], None]:
    """Every txn-log sync takes `seconds`, in the worker thread (the loop goes on);
    returns the function that puts the real sync back."""
    assert server.core is not None
    group = server.core.group
    real_log = group.txn_log
    group.txn_log = SlowSync(real_log, lambda: time.sleep(seconds))
    group.cost = 1.0  # the worker thread, not the loop

    def restore() -> None:
        group.txn_log = real_log

    return restore


@pytest.mark.asyncio
async def test_requests_pipelined_behind_the_connect_request_stay_in_the_socket(tmp_path: Path) -> None:
    """While its createSession waits for the disk, a connection reads no further: 20 MB
    pipelined behind the ConnectRequest are not taken into the server's memory, and
    are all answered, in order, once the session exists."""
    server = StandaloneServer(build_config(_config(tmp_path)))
    await server.start()
    core = server.core
    assert core is not None
    restore = _slow_disk(server, 1.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        data = b"x" * 1_000_000
        writer.write(_connect_request())
        writer.write(b"".join(_frame(i, SET_DATA, _ustring("/") + struct.pack(">i", len(data)) + data
                                     + struct.pack(">i", -1)) for i in range(1, 21)))
        most = 0
        for _ in range(60):
            await asyncio.sleep(0.01)
            most = max([most, *(len(c.buf) for c in core.connections)])
        assert most < 2_000_000, f"{most} bytes buffered before the session exists"
        restore()
        resp = await asyncio.wait_for(_read_frame(reader), 10)
        assert struct.unpack_from(">q", resp, 8)[0] != 0
        for i in range(1, 21):
            xid, _zxid, err = struct.unpack_from(">iqi", await asyncio.wait_for(_read_frame(reader), 10))
            assert (xid, err) == (i, 0)
    finally:
        restore()
        writer.close()
        await server.stop()


@pytest.mark.asyncio
async def test_reads_queued_behind_a_write_count_against_global_outstanding_limit(tmp_path: Path) -> None:
    """globalOutstandingLimit counts every outstanding request, reads too (Apache
    ZooKeeper's requestsInProcess): 200 reads pipelined behind a write that waits for
    the disk throttle the server at 8, and never more than a few over the limit are
    queued; everything is answered in order afterwards."""
    server = StandaloneServer(build_config(_config(tmp_path, globalOutstandingLimit="8")))
    await server.start()
    core = server.core
    assert core is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_connect_request())
    await _read_frame(reader)
    restore = _slow_disk(server, 0.3)
    try:
        frames = [_frame(1, SET_DATA, _ustring("/") + struct.pack(">i", 1) + b"a" + struct.pack(">i", -1))]
        frames += [_frame(i, EXISTS, _ustring("/") + b"\0") for i in range(2, 202)]
        writer.write(b"".join(frames))
        throttled = False
        most = 0
        for _ in range(25):
            await asyncio.sleep(0.01)
            throttled = throttled or core.throttled
            most = max([most, *(len(c.pending) for c in core.connections)])
        assert throttled, "200 queued reads did not throttle at globalOutstandingLimit=8"
        assert most <= 8 + 1, f"{most} requests queued on one connection"
        restore()
        for i in range(1, 202):
            xid, _zxid, err = struct.unpack_from(">iqi", await asyncio.wait_for(_read_frame(reader), 10))
            assert (xid, err) == (i, 0)
        assert not core.throttled
    finally:
        restore()
        writer.close()
        await server.stop()
