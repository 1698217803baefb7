"""Snapshots taken while serving: written by a forked child as of one zxid, loadable,
and without holding the clients' sockets open."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from zkpy.client.client import ZooKeeperClient
from zkpy.datatree.tree import DataTree
from zkpy.persistence.files import VERSION_DIR, snapshot_files
from zkpy.persistence.snapshot import load_snapshot
from zkpy.server import database
from zkpy.server.config import build_config
from zkpy.server.standalone import StandaloneServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@pytest.mark.asyncio
async def test_snapshots_while_serving_are_exact_and_loadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = database.write_snapshot

    def slow_write(tree: DataTree, path: Path, fsync: bool) -> int:  # runs in the child
        time.sleep(0.5)
        return real_write(tree, path, fsync)

    monkeypatch.setattr(database, "write_snapshot", slow_write)
    cfg = build_config({"dataDir": str(tmp_path / "data"), "clientPort": "0",
                        "clientPortAddress": "127.0.0.1", "admin.enableServer": "false",
                        "tickTime": "2000", "snapCount": "40"})
    server = StandaloneServer(cfg)
    await server.start()
    czxid: dict[str, int] = {}
    try:
        c = ZooKeeperClient(f"127.0.0.1:{server.port}")
        await c.start()
        for i in range(300):
            path = f"/k{i:03d}"
            await c.create(path, str(i).encode())
            czxid[path] = (await c.exists(path)).czxid  # type: ignore[union-attr]
        # a snapshot child must not keep the sockets it inherited open: a connection the
        # server closes while the child runs gets its FIN at once
        db = server.database
        assert db is not None
        while db._snapshotting:
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.1)  # accepted by the server before the fork
        db.snapshot_in_background()
        assert db._snapshotting
        writer.write(b"\x00\x00\x00\x04junk")  # not a ConnectRequest: the server closes
        assert await asyncio.wait_for(reader.read(100), 0.3) == b""  # child sleeps 0.5 s
        writer.close()
        await c.close()
        for _ in range(100):  # let the last writer finish
            assert server.database is not None
            if not server.database._snapshotting:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop()
    snaps = snapshot_files(tmp_path / "data" / VERSION_DIR)
    assert len([z for z, _ in snaps if z > 0]) >= 1  # besides the empty one at start-up
    for zxid, path in snaps:
        tree = load_snapshot(path, zxid)
        ours = {p for p in tree.nodes if p.startswith("/k")}
        # exactly the nodes created up to the snapshot's zxid: not fuzzy
        assert ours == {p for p, z in czxid.items() if z <= zxid}, path.name
        for p in ours:
            assert tree.nodes[p].data == str(int(p[2:])).encode()
