"""A failed fsync: the server never acknowledges the unpersisted write, refuses later
writes with a clear error, keeps serving reads, and what is on disk stays recoverable."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from zkpy.client.client import ZooKeeperClient
from zkpy.jute.constants import Err, KeeperError
from zkpy.persistence.recovery import recover
from zkpy.server.config import build_config
from zkpy.server.standalone import StandaloneServer


async def _run(tmp_path: Path, inline_sync_us: str) -> None:
    cfg = build_config({"dataDir": str(tmp_path / "data"), "clientPort": "0",
                        "clientPortAddress": "127.0.0.1", "tickTime": "2000",
                        "zkpy.inlineSyncMicros": inline_sync_us})
    server = StandaloneServer(cfg)
    await server.start()
    try:
        hosts = f"127.0.0.1:{server.port}"
        c = ZooKeeperClient(hosts)
        await c.start()
        await c.create("/kept", b"durable")

        assert server.database is not None
        log = server.database.txn_log
        real_sync = log.sync

        def failing_sync() -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        log.sync = failing_sync  # type: ignore[method-assign]
        with pytest.raises(KeeperError) as lost:
            await asyncio.wait_for(c.create("/never-acked", b"x"), 10)
        assert lost.value.code == Err.CONNECTIONLOSS  # closed, never acknowledged
        assert server.core is not None and "No space left" in (server.core.write_error or "")

        # the client resumes its session (no txn needed) and can still read; new sessions
        # would need a createSession txn and are turned away
        for _ in range(100):
            if c.state == "CONNECTED":
                break
            await asyncio.sleep(0.05)
        assert (await c.get("/kept"))[0] == b"durable"
        with pytest.raises(KeeperError) as refused:
            await c.create("/refused", b"")
        assert refused.value.code == Err.SYSTEMERROR
        log.sync = real_sync  # type: ignore[method-assign]
        c._closing = True
    finally:
        await server.stop()
    tree, _ = recover(tmp_path / "data")
    assert tree.nodes["/kept"].data == b"durable"
    assert "/refused" not in tree.nodes


@pytest.mark.parametrize("inline_sync_us", ["500", "0"], ids=["loop-or-thread", "sync-thread"])
def test_failed_fsync_stops_writes_without_acknowledging(tmp_path: Path, inline_sync_us: str) -> None:
    asyncio.run(_run(tmp_path, inline_sync_us))
