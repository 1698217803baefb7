"""The runtime's housekeeping timers, driven through a real server (standalone here; an
ensemble member runs the same runtime, see tests/test_ensemble_housekeeping.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from zkpy.client.client import ZooKeeperClient
from zkpy.persistence.files import VERSION_DIR, snapshot_files
from zkpy.server.config import build_config
from zkpy.server.standalone import StandaloneServer


@pytest.mark.asyncio
async def test_autopurge_timer_keeps_the_newest_snapshots(tmp_path: Path) -> None:
    cfg = build_config({"dataDir": str(tmp_path / "data"), "clientPort": "0",
                        "clientPortAddress": "127.0.0.1", "admin.enableServer": "false", "snapCount": "40",
                        "autopurge.snapRetainCount": "3", "autopurge.purgeInterval": "1"})
    cfg.purge_interval_hours = 0.5 / 3600  # every half second instead of every hour
    server = StandaloneServer(cfg)
    await server.start()
    snap_dir = tmp_path / "data" / VERSION_DIR
    try:
        c = ZooKeeperClient(f"127.0.0.1:{server.port}")
        await c.start()
        for i in range(400):
            await c.create(f"/n{i}", b"x")
        await c.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if len(snapshot_files(snap_dir)) <= 3:
                break
            await asyncio.sleep(0.1)
    finally:
        await server.stop()
    zxids = [z for z, _ in snapshot_files(snap_dir)]
    assert 0 not in zxids  # the start-up snapshot was purged
    assert len(zxids) <= 4, zxids  # the newest three (plus the one at shutdown)
