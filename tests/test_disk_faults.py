"""A failed fsync: the server never acknowledges the unpersisted write and stops serving
clients for good (as Java stops on a failed txn-log write): every client connection is
closed, new ones are closed at the handshake, ``ruok`` answers nothing, srvr/stat/mntr
say the disk failed; what is on disk stays recoverable."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KINDS, four_letter, mount_small_disk, start_server
from zkpy.client.client import ZooKeeperClient
from zkpy.jute.constants import Err, KeeperError
from zkpy.persistence.recovery import recover
from zkpy.server.config import build_config
from zkpy.server.standalone import StandaloneServer


async def _four(port: int, word: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(None, four_letter, port, word)


async def _run(tmp_path: Path, inline_sync_us: str, caplog: pytest.LogCaptureFixture,
               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = build_config({"dataDir": str(tmp_path / "data"), "clientPort": "0",
                        "clientPortAddress": "127.0.0.1", "admin.enableServer": "false", "tickTime": "2000",
                        "4lw.commands.whitelist": "*",
                        "zkpy.inlineSyncMicros": inline_sync_us})
    server = StandaloneServer(cfg)
    await server.start()
    try:
        hosts = f"127.0.0.1:{server.port}"
        c = ZooKeeperClient(hosts)
        await c.start()
        await c.create("/kept", b"durable")
        reader = ZooKeeperClient(hosts)  # a second session that only reads
        await reader.start()
        assert await _four(server.port, "ruok") == "imok"

        def disk_full(*args: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "pwrite", disk_full)  # only the txn log writes with pwrite
        with pytest.raises(KeeperError) as lost:
            await asyncio.wait_for(c.create("/never-acked", b"x"), 10)
        assert lost.value.code == Err.CONNECTIONLOSS  # closed, never acknowledged
        core = server.core
        assert core is not None and "No space left" in (core.write_error or "")
        assert not core.serving and not core.connections  # the reader was closed too

        # nobody is served any more: resuming sessions and new sessions alike are closed
        for client in (c, reader):
            with pytest.raises(KeeperError) as refused:
                await asyncio.wait_for(client.get("/kept"), 10)
            assert refused.value.code in (Err.CONNECTIONLOSS, Err.SESSIONEXPIRED)
        fresh = ZooKeeperClient(hosts, timeout_ms=4000)
        with pytest.raises((KeeperError, OSError, asyncio.TimeoutError)):
            await asyncio.wait_for(fresh.start(), 3)
        fresh._closing = True

        # what monitoring sees: no imok, and srvr/stat/mntr name the failure
        assert await _four(server.port, "ruok") == ""
        for word in ("srvr", "stat", "mntr"):
            text = await _four(server.port, word)
            assert text.startswith("This ZooKeeper instance is not currently serving requests\n"), text
            assert "Disk failure: txn log sync failed: [Errno 28] No space left on device" in text, text
            assert "Mode:" not in text
        assert await _four(server.port, "isro") == "null"
        assert "no longer serves clients" in caplog.text and "restart the server" in caplog.text
        for client in (c, reader):
            client._closing = True
    finally:
        await server.stop()
        monkeypatch.undo()
    tree, _ = recover(tmp_path / "data")
    assert tree.nodes["/kept"].data == b"durable"
    assert "/never-acked" not in tree.nodes


@pytest.mark.parametrize("inline_sync_us", ["500", "0"], ids=["loop-or-thread", "sync-thread"])
def test_failed_fsync_stops_serving_without_acknowledging(tmp_path: Path, inline_sync_us: str,
                                                          caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    asyncio.run(_run(tmp_path, inline_sync_us, caplog, monkeypatch))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root); the test is skipped where it cannot be mounted."""
    mnt = tmp_path / "disk"
    mount_small_disk(mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("kind", KINDS)
def test_full_disk_stops_serving(kind: str, small_disk: Path) -> None:
    """A real full disk under dataDir: the create that cannot be logged is never
    acknowledged and the server stops answering ruok with imok (Java exits; zkpy stays
    up, refusing clients, and says why in srvr)."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import KazooException

    srv = start_server(kind, {"dataDir": str(small_disk / "data"), "preAllocSize": "16",
                              "snapCount": "1000000"})
    zk = KazooClient(hosts=srv.hosts, timeout=10, connection_retry={"max_tries": 1},
                     command_retry={"max_tries": 0})
    try:
        zk.start(timeout=30)
        zk.create("/kept", b"durable")
        filler = small_disk / "filler"
        with open(filler, "wb") as f:  # take every free block
            try:
                while True:
                    f.write(bytes(1 << 16))
                    f.flush()
            except OSError:
                pass
        with pytest.raises((KazooException, OSError)):
            for i in range(200):  # the first write past the preallocated 16 KiB fails
                zk.create(f"/lost-{i}", b"x" * 500)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = four_letter(srv.port, "ruok", 2.0)
            except OSError:
                answer = "(closed)"
            if answer != "imok":
                break
            time.sleep(0.2)
        assert answer != "imok"
        if kind == "zkpy":
            assert answer == ""
            assert "Disk failure" in four_letter(srv.port, "srvr") and "No space left" in srv.log_text()
            # stopped now, it says this was no clean stop (systemd's Restart=on-failure)
            assert srv.proc is not None
            srv.proc.terminate()
            assert srv.proc.wait(30) == 1
            assert "stopped after a failure: txn log sync failed" in srv.log_text()
    finally:
        zk.stop()
        zk.close()
        srv.stop(kill=True)
        shutil.rmtree(srv.workdir, ignore_errors=True)
