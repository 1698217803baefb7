"""Where the txn log is synced: on the event-loop thread while syncs are cheap and few txns
wait, in the worker thread once the disk is slow or many txns wait, so that a slow disk
never stalls reads and a busy server logs new writes while the disk syncs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

from tests.slowsync import SlowSync
from zkpy.client.client import ZooKeeperClient
from zkpy.persistence.recovery import recover
from zkpy.server.config import build_config
from zkpy.server.metrics import METRICS
from zkpy.server.standalone import StandaloneServer


def _config(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"dataDir": str(tmp_path / "data"), "clientPort": "0",
            "clientPortAddress": "127.0.0.1", "admin.enableServer": "false", "tickTime": "2000", **extra}


async def _slow_disk_run(tmp_path: Path, raw: dict[str, str]) -> tuple[int, list[float]]:
    """Make every sync take 0.3 s; return how many syncs ran on the loop thread and how
    long gets from another client took while writes were waiting for the disk."""
    server = StandaloneServer(build_config(raw))
    await server.start()
    writer = ZooKeeperClient(f"127.0.0.1:{server.port}")
    reader = ZooKeeperClient(f"127.0.0.1:{server.port}")
    await writer.start()
    await reader.start()
    try:
        await writer.create("/n", b"0")
        assert server.database is not None and server.core is not None
        group = server.core.group
        real_log = group.txn_log
        loop_thread = threading.current_thread()
        on_loop = 0

        def count_and_wait() -> None:
            nonlocal on_loop
            if threading.current_thread() is loop_thread:
                on_loop += 1
            time.sleep(0.3)

        group.txn_log = SlowSync(real_log, count_and_wait)
        group.cost = 0.0  # the disk has been fast (whatever this machine's is now)
        get_times: list[float] = []
        for i in range(4):
            write = asyncio.ensure_future(writer.set("/n", str(i).encode()))
            await asyncio.sleep(0.05)  # the write is now waiting for its sync
            t = time.perf_counter()
            await reader.get("/n")
            get_times.append(time.perf_counter() - t)
            await write
        group.txn_log = real_log
        assert (await reader.get("/n"))[0] == b"3"
        return on_loop, get_times
    finally:
        await writer.close()
        await reader.close()
        await server.stop()


@pytest.mark.asyncio
async def test_slow_disk_moves_syncs_off_the_event_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = _config(tmp_path, **{"fsync.warningthresholdms": "200"})
    with caplog.at_level(logging.WARNING, logger="zkpy.server"):
        on_loop, get_times = await _slow_disk_run(tmp_path, raw)
    slow = [r for r in caplog.records if "txn log sync took" in r.getMessage()]
    assert len(slow) == 4 and "fsync.warningthresholdms=200" in slow[0].getMessage()
    # the first slow sync ran on the loop (the disk had been fast); after it the average
    # is far over zkpy.inlineSyncMicros and the rest go to the worker thread
    assert on_loop == 1
    assert max(get_times[1:]) < 0.2, get_times  # answered while the disk was busy


@pytest.mark.asyncio
async def test_inline_sync_can_be_switched_off(tmp_path: Path) -> None:
    raw = _config(tmp_path, **{"zkpy.inlineSyncMicros": "0"})
    on_loop, get_times = await _slow_disk_run(tmp_path, raw)
    assert on_loop == 0
    assert max(get_times) < 0.2, get_times


@pytest.mark.asyncio
async def test_a_lone_writer_syncs_on_the_loop_and_a_burst_in_the_thread(tmp_path: Path) -> None:
    """On a fast disk (here: any sync under 1 s) a sync of a few txns runs on the loop; a
    sync of many (a burst of pipelined writes) goes to the thread, so that the loop
    keeps taking requests while the disk syncs."""
    server = StandaloneServer(build_config(_config(tmp_path, **{"zkpy.inlineSyncMicros": "1000000"})))
    await server.start()
    c = ZooKeeperClient(f"127.0.0.1:{server.port}")
    await c.start()
    try:
        inline0, thread0 = METRICS.inline_syncs.value, METRICS.thread_syncs.value
        for i in range(20):
            await c.create(f"/lone{i}", b"")
        assert METRICS.inline_syncs.value - inline0 >= 20
        assert METRICS.thread_syncs.value == thread0
        await asyncio.gather(*(c.create(f"/burst{i}", b"") for i in range(300)))
        assert METRICS.thread_syncs.value > thread0
    finally:
        await c.close()
        await server.stop()


@pytest.mark.asyncio
async def test_group_commit_syncs_many_txns_at_once_and_everything_acknowledged_is_durable(
        tmp_path: Path) -> None:
    server = StandaloneServer(build_config(_config(tmp_path)))
    await server.start()
    try:
        c = ZooKeeperClient(f"127.0.0.1:{server.port}")
        await c.start()
        await asyncio.gather(*(c.create(f"/k{i}", str(i).encode()) for i in range(200)))
        assert server.database is not None
        assert server.database.txn_log.syncs < 200  # group commit: one sync for many txns
        await c.close()
    finally:
        await server.stop()
    tree, _ = recover(tmp_path / "data")
    assert all(tree.nodes[f"/k{i}"].data == str(i).encode() for i in range(200))


@pytest.mark.asyncio
async def test_global_outstanding_limit_pauses_reading_until_the_queue_drains(tmp_path: Path) -> None:
    """globalOutstandingLimit: once that many txns wait for the disk the server stops
    reading from its clients; they resume when half have committed, and every write is
    answered, in order, with its own result."""
    server = StandaloneServer(build_config(_config(tmp_path, globalOutstandingLimit="8")))
    await server.start()
    c = ZooKeeperClient(f"127.0.0.1:{server.port}")
    await c.start()
    try:
        await c.create("/t", b"")
        core = server.core
        assert core is not None
        real_log = core.group.txn_log
        throttled_seen = []

        def wait_and_look() -> None:
            time.sleep(0.02)
            throttled_seen.append(core.throttled)

        core.group.txn_log = SlowSync(real_log, wait_and_look)
        results = await asyncio.wait_for(asyncio.gather(
            *(c.create("/t/n-", str(i).encode(), sequential=True) for i in range(60))), 30)
        core.group.txn_log = real_log
        assert [path for path, _stat in results] == [f"/t/n-{i:010d}" for i in range(60)]
        assert any(throttled_seen), "the queue never reached the limit"
        assert not core.throttled and len(core.queue) == 0
        for i in (0, 59):
            assert (await c.get(f"/t/n-{i:010d}"))[0] == str(i).encode()
    finally:
        await c.close()
        await server.stop()
