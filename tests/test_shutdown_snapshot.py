"""A clean stop (SIGTERM) snapshots the tree so the next start replays no log tail
(zkpy.snapshotOnShutdown); switched off, or after kill -9, recovery uses the log."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, start_server
from zkpy.client.client import ZooKeeperClient
from zkpy.datatree.tree import DataTree
from zkpy.persistence.files import VERSION_DIR, snapshot_files
from zkpy.persistence.recovery import recover
from zkpy.persistence.snapshot import load_snapshot
from zkpy.persistence.txnlog import last_logged_zxid
from zkpy.server import database
from zkpy.server.config import ConfigError, build_config
from zkpy.server.standalone import StandaloneServer

Session = tuple[int, bytes]


@pytest.fixture
def zkpy_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = start_server("zkpy", getattr(request, "param", {}))
    yield srv
    srv.stop(kill=True)
    shutil.rmtree(srv.workdir, ignore_errors=True)


async def _write_tree(hosts: str) -> Session:
    """Creates, updates and deletes under /s; leaves an ephemeral whose session stays open."""
    c = ZooKeeperClient(hosts, timeout_ms=30000)
    await c.start()
    await c.create("/s", b"root")
    for i in range(30):
        await c.create(f"/s/n{i:02d}", f"v{i}".encode())
    for i in range(0, 30, 3):
        await c.set(f"/s/n{i:02d}", b"changed")
    for i in range(1, 30, 5):
        await c.delete(f"/s/n{i:02d}")
    await c.create("/s/eph", b"e", ephemeral=True)
    session = (c.session_id, c.passwd)
    c._closing = True
    c._wire.transport.abort()  # type: ignore[union-attr]  # no closeSession: the session lives on
    return session


async def _view(hosts: str, session: Session | None = None) -> dict[str, Any]:
    c = ZooKeeperClient(hosts, timeout_ms=30000, session=session)
    await c.start()
    out: dict[str, Any] = {}
    names, _ = await c.get_children("/s")
    for path in ["/s"] + [f"/s/{n}" for n in sorted(names)]:
        data, stat = await c.get(path)
        out[path] = (data, stat.czxid, stat.mzxid, stat.pzxid, stat.version, stat.cversion,
                     stat.ephemeralOwner, stat.numChildren)
    c._closing = True
    c._wire.transport.abort()  # type: ignore[union-attr]  # keep the session for the next look
    return out


def _version_dir(srv: ServerProcess) -> Path:
    return srv.data_dir / VERSION_DIR


def _replayed(srv: ServerProcess) -> list[int]:
    """Logged txns replayed by each start so far, from the server's log."""
    return [int(n) for n in re.findall(r"\+ (\d+) logged txns", srv.log_text())]


def test_sigterm_snapshots_the_last_txn_and_restart_replays_nothing(zkpy_server: ServerProcess) -> None:
    srv = zkpy_server
    session = asyncio.run(_write_tree(srv.hosts))
    before = asyncio.run(_view(srv.hosts, session))
    srv.stop()  # SIGTERM
    last = last_logged_zxid(_version_dir(srv))
    newest, path = snapshot_files(_version_dir(srv))[-1]
    assert last > 0 and newest == last
    assert "shutdown snapshot" in srv.log_text()
    tree = load_snapshot(path)
    assert tree.nodes["/s/eph"].owner == session[0] and session[0] in tree.sessions

    srv.start()
    assert _replayed(srv)[-1] == 0
    assert asyncio.run(_view(srv.hosts, session)) == before  # ephemeral and session kept
    srv.stop()
    assert snapshot_files(_version_dir(srv))[-1][0] == newest  # nothing new: no second snapshot


@pytest.mark.parametrize("zkpy_server", [{"zkpy.snapshotOnShutdown": "false"}], indirect=True)
def test_switched_off_no_snapshot_and_restart_replays_the_log(zkpy_server: ServerProcess) -> None:
    srv = zkpy_server
    session = asyncio.run(_write_tree(srv.hosts))
    before = asyncio.run(_view(srv.hosts, session))
    srv.stop()
    assert [z for z, _ in snapshot_files(_version_dir(srv))] == [0]
    assert "shutdown snapshot" not in srv.log_text()
    srv.start()
    assert _replayed(srv)[-1] > 30
    assert asyncio.run(_view(srv.hosts, session)) == before


def test_kill_9_recovers_from_the_log(zkpy_server: ServerProcess) -> None:
    srv = zkpy_server
    session = asyncio.run(_write_tree(srv.hosts))
    before = asyncio.run(_view(srv.hosts, session))
    srv.stop(kill=True)
    assert [z for z, _ in snapshot_files(_version_dir(srv))] == [0]
    srv.start()
    assert _replayed(srv)[-1] > 30
    assert asyncio.run(_view(srv.hosts, session)) == before


def test_config_key() -> None:
    base = {"dataDir": "/tmp/x"}
    assert build_config(base).snapshot_on_shutdown is True
    cfg = build_config({**base, "zkpy.snapshotOnShutdown": "false"})
    assert cfg.snapshot_on_shutdown is False and not cfg.warnings
    with pytest.raises(ConfigError, match="zkpy.snapshotOnShutdown"):
        build_config({**base, "zkpy.snapshotOnShutdown": "sometimes"})


# ---- in process: a background writer at stop, a failing disk ------------------------------

def _config(tmp_path: Path) -> Any:
    return build_config({"dataDir": str(tmp_path / "data"), "clientPort": "0",
                         "clientPortAddress": "127.0.0.1", "admin.enableServer": "false", "tickTime": "2000"})


async def _started(tmp_path: Path) -> tuple[StandaloneServer, ZooKeeperClient]:
    server = StandaloneServer(_config(tmp_path))
    await server.start()
    c = ZooKeeperClient(f"127.0.0.1:{server.port}")
    await c.start()
    return server, c


def _slow_child_writes(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real_write = database.write_snapshot

    def slow_write(tree: DataTree, path: Path, fsync: bool) -> int:  # runs in the forked child
        time.sleep(seconds)
        return real_write(tree, path, fsync)

    monkeypatch.setattr(database, "write_snapshot", slow_write)


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


@needs_fork
async def test_an_older_background_snapshot_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _slow_child_writes(monkeypatch, 30)
    server, c = await _started(tmp_path)
    await c.create("/a", b"1")
    db = server.database
    assert db is not None and server.core is not None
    db.snapshot_in_background()
    stale = server.core.tree.last_processed_zxid
    await c.create("/b", b"2")  # the tree moves past the writer's zxid
    await c.close()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="zkpy.persistence"):
        await server.stop()
    assert time.monotonic() - started < 10  # the child was killed, not waited for
    assert "abandoned" in caplog.text
    v2 = tmp_path / "data" / VERSION_DIR
    zxids = [z for z, _ in snapshot_files(v2)]
    assert stale not in zxids and zxids[-1] == last_logged_zxid(v2)
    assert not [p for p in os.listdir(v2) if p.startswith("tmp-")]
    tree, _ = recover(tmp_path / "data")
    assert tree.nodes["/b"].data == b"2"


@needs_fork
async def test_a_background_snapshot_as_new_as_the_tree_is_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _slow_child_writes(monkeypatch, 0.3)
    server, c = await _started(tmp_path)
    await c.create("/a", b"1")
    await c.close()
    db = server.database
    assert db is not None and server.core is not None
    db.snapshot_in_background()
    zxid = server.core.tree.last_processed_zxid
    with caplog.at_level(logging.INFO, logger="zkpy.persistence"):
        await server.stop()
    assert "shutdown snapshot" not in caplog.text and "abandoned" not in caplog.text
    assert snapshot_files(tmp_path / "data" / VERSION_DIR)[-1][0] == zxid


async def test_a_failed_shutdown_snapshot_is_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def no_space(tree: DataTree, data_dir: Path, fsync: bool = True) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    server, c = await _started(tmp_path)
    monkeypatch.setattr(database, "take_snapshot", no_space)  # after the start-up snapshot.0
    await c.create("/a", b"1")
    await c.close()
    with caplog.at_level(logging.WARNING, logger="zkpy.persistence"):
        await server.stop()
    assert "no snapshot at shutdown" in caplog.text
    assert [z for z, _ in snapshot_files(tmp_path / "data" / VERSION_DIR)] == [0]
    tree, _ = recover(tmp_path / "data")
    assert tree.nodes["/a"].data == b"1"
