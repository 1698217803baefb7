"""Crash test: SIGKILL the server at random moments under a write load; nothing acknowledged is lost.

Each round a client pipelines creates, setData calls and two-op multis and records every
acknowledged write; the server is killed with SIGKILL at a random moment, restarted on
the same data directory, and every acknowledged write must be there (with at least the
acknowledged version), and no multi may be half-applied.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.conftest import start_server
from zkpy.client import requests as rq
from zkpy.client.client import ZooKeeperClient
from zkpy.jute.constants import KeeperError

ROUNDS = 20


async def _write_until_killed(hosts: str, rnd: int, kill_after: float, kill) -> dict:
    acked: dict = {"created": {}, "versions": {}, "multis": set(), "all_multis": set()}
    c = ZooKeeperClient(hosts, timeout_ms=10000)
    await c.start()
    if rnd == 0:
        await c.create("/crash", b"")
        await c.create("/crash/counter", b"0")
    loop = asyncio.get_running_loop()
    stop = loop.time() + kill_after
    i = 0

    async def worker(w: int) -> None:
        nonlocal i
        while loop.time() < stop:
            i += 1
            n = i
            kind = n % 3
            try:
                if kind == 0:
                    path = f"/crash/r{rnd}-n{n}"
                    data = f"{rnd}:{n}".encode()
                    await c.create(path, data)
                    acked["created"][path] = data
                elif kind == 1:
                    data = f"{rnd}:{n}".encode()
                    stat = await c.set("/crash/counter", data)
                    acked["versions"][stat.version] = data
                else:
                    a, b = f"/crash/r{rnd}-ma{n}", f"/crash/r{rnd}-mb{n}"
                    acked["all_multis"].add((a, b))
                    ops = [rq.create(a, b"a", with_stat=False), rq.create(b, b"b", with_stat=False)]
                    res = await c.multi(ops)
                    assert all(r.err == 0 for r in res), res
                    acked["multis"].add((a, b))
            except (KeeperError, ConnectionError):
                return

    tasks = [loop.create_task(worker(w)) for w in range(8)]
    await asyncio.sleep(kill_after * random.random())
    kill()
    await asyncio.gather(*tasks, return_exceptions=True)
    c._closing = True
    if c._wire is not None and c._wire.transport is not None:
        c._wire.transport.abort()
    for t in (c._ping_task, c._reconnect_task):
        if t is not None:
            t.cancel()
    return acked


async def _verify(hosts: str, acked: dict) -> None:
    c = ZooKeeperClient(hosts, timeout_ms=10000)
    await c.start()
    try:
        for path, data in acked["created"].items():
            got, _ = await c.get(path)
            assert got == data, f"acknowledged create of {path} lost or changed"
        if acked["versions"]:
            data, stat = await c.get("/crash/counter")
            top = max(acked["versions"])
            assert stat.version >= top, f"acknowledged setData version {top} lost (now {stat.version})"
            if stat.version == top:
                assert data == acked["versions"][top]
        for a, b in acked["all_multis"]:
            ea, eb = await c.exists(a), await c.exists(b)
            assert (ea is None) == (eb is None), f"multi half-applied: {a} {b}"
            if (a, b) in acked["multis"]:
                assert ea is not None, f"acknowledged multi {a},{b} lost"
    finally:
        await c.close()


@pytest.mark.slow
def test_sigkill_under_write_load_loses_no_acknowledged_write() -> None:
    random.seed(7)
    srv = start_server("zkpy", {"snapCount": "300"})
    total = 0
    try:
        for rnd in range(ROUNDS):
            acked = asyncio.run(_write_until_killed(srv.hosts, rnd, 0.6, lambda: srv.stop(kill=True)))
            total += len(acked["created"]) + len(acked["versions"]) + len(acked["multis"])
            srv.start()
            asyncio.run(_verify(srv.hosts, acked))
    finally:
        srv.stop()
    assert total > ROUNDS * 10, "the load generator acknowledged too few writes to mean anything"


def test_restart_keeps_sessions_and_ephemerals() -> None:
    srv = start_server("zkpy")
    try:
        async def before() -> tuple[int, bytes]:
            c = ZooKeeperClient(srv.hosts, timeout_ms=30000)
            await c.start()
            await c.create("/eph", b"x", ephemeral=True)
            sid, pw = c.session_id, c.passwd
            c._closing = True
            c._wire.transport.abort()  # type: ignore[union-attr]
            return sid, pw

        sid, pw = asyncio.run(before())
        srv.stop(kill=True)
        srv.start()

        async def after() -> None:
            c = ZooKeeperClient(srv.hosts, timeout_ms=30000, session=(sid, pw))
            await c.start()
            assert c.session_id == sid
            _, stat = await c.get("/eph")
            assert stat.ephemeralOwner == sid
            await c.close()
            c2 = ZooKeeperClient(srv.hosts)
            await c2.start()
            assert await c2.exists("/eph") is None  # closing the resumed session removed it
            await c2.close()

        asyncio.run(after())
    finally:
        srv.stop()

