"""Damaged or shared data directories, run against zkpy and Apache ZooKeeper 3.8 alike.

A server must never start from a txn log whose damage is followed by valid data (that
would silently roll back acknowledged writes), never replay logs without a snapshot
unless told to (zookeeper.snapshot.trust.empty), and never run twice on one data dir.
A torn tail (the last, partly written entries after a crash) is normal and is dropped.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KINDS, ServerProcess, four_letter, start_server
from zkpy.persistence.files import log_files, snapshot_files
from zkpy.persistence.logscan import HEADER_SIZE, TXN_HEADER, Tail, read_file, walk

N_CREATES = 200


def _kazoo(srv: ServerProcess):  # type: ignore[no-untyped-def]
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=srv.hosts, timeout=30)
    zk.start(timeout=30)
    return zk


def _write_then_kill(kind: str, extra: dict[str, str] | None = None) -> ServerProcess:
    """A server that acknowledged N_CREATES creates under /d, then died of SIGKILL."""
    srv = start_server(kind, extra)
    zk = _kazoo(srv)
    try:
        zk.create("/d", b"")
        for i in range(N_CREATES):
            zk.create(f"/d/n{i:03d}", b"x" * 100)
    finally:
        srv.stop(kill=True)
        zk.stop()
        zk.close()
    return srv


def _entries(path: Path) -> list[tuple[int, int, int]]:
    """(offset, length, zxid) of every good entry of a log file."""
    buf = read_file(path)
    try:
        return [(off, len(body), TXN_HEADER.unpack_from(body, 0)[2]) for off, body in walk(buf, Tail())]
    finally:
        if not isinstance(buf, bytes):
            buf.close()


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def _start_expecting_refusal(srv: ServerProcess, timeout: float = 60.0) -> tuple[int, str]:
    """Start srv on its data dir; it must exit (not serve).  Returns (exit code, log)."""
    srv.workdir.mkdir(parents=True, exist_ok=True)
    cfg = srv.write_config()
    log = srv.workdir / "refused.log"
    props = srv.workdir / "log4j.properties"  # Java's refusal on stdout, in the log
    props.write_text("log4j.rootLogger=INFO, CONSOLE\n"
                     "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
                     "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
                     "log4j.appender.CONSOLE.layout.ConversionPattern=%p %c{1}: %m%n\n")
    cmd, env = srv.command(cfg, [f"-Dlog4j.configuration=file:{props}"])
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=srv.workdir)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                answer = four_letter(srv.port, "srvr", 1.0)
            except OSError:
                answer = ""
            assert "Mode:" not in answer, f"{srv.kind} serves a damaged data dir:\n{answer}"
            time.sleep(0.2)
        assert proc.poll() is not None, f"{srv.kind} neither served nor exited in {timeout}s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, log.read_text(errors="replace")


def _children(srv: ServerProcess) -> list[str]:
    zk = _kazoo(srv)
    try:
        return sorted(zk.get_children("/d"))
    finally:
        zk.stop()
        zk.close()


def _log1(srv: ServerProcess) -> Path:
    files = log_files(srv.data_dir / "version-2")
    assert files and files[0][0] == 1, files
    return files[0][1]


# ---- 1. a damaged txn log -----------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_entry_mid_log_refuses_to_start(kind: str) -> None:
    srv = _write_then_kill(kind)
    log1 = _log1(srv)
    entries = _entries(log1)
    assert len(entries) > N_CREATES
    off, n, zxid = entries[50]  # the 51st txn
    _flip(log1, off + 12 + n // 2)
    before = log1.read_bytes()
    snaps = snapshot_files(srv.data_dir / "version-2")
    code, text = _start_expecting_refusal(srv)
    assert code != 0
    assert log1.read_bytes() == before, "the damaged log was changed"
    assert snapshot_files(srv.data_dir / "version-2") == snaps, "a snapshot was written over the damage"
    if kind == "zkpy":
        assert str(log1) in text and f"offset {off}" in text and f"0x{zxid - 1:x}" in text, text
        assert "valid txns follow" in text and "backup" in text and "resync" in text, text


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_last_entry_refuses_to_start(kind: str) -> None:
    """A complete last entry that fails its checksum: Java refuses (CRC check failed);
    so does zkpy, although nothing valid follows it."""
    srv = _write_then_kill(kind)
    log1 = _log1(srv)
    off, n, zxid = _entries(log1)[-1]
    _flip(log1, off + 12 + n // 2)
    before = log1.read_bytes()
    code, text = _start_expecting_refusal(srv)
    assert code != 0
    assert log1.read_bytes() == before
    if kind == "zkpy":
        assert str(log1) in text and f"offset {off}" in text and "checksum" in text, text


@pytest.mark.parametrize("kind", KINDS)
def test_tail_torn_at_an_entry_boundary_is_dropped(kind: str) -> None:
    """The last entry never reached the disk (its header reads as zero length): a normal
    crash; both servers start without it."""
    srv = _write_then_kill(kind)
    log1 = _log1(srv)
    off, n, _zxid = _entries(log1)[-1]
    with open(log1, "r+b") as f:
        f.seek(off)
        f.write(bytes(13 + n))
    try:
        srv.start()
        assert _children(srv) == [f"n{i:03d}" for i in range(N_CREATES - 1)]
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_tail_torn_inside_the_last_entry(kind: str) -> None:
    """The last entry only partly written: header and first half on disk, the rest still
    the zero-filled preallocated space, no end marker.  Both drop it (it cannot have
    been acknowledged: its write never finished); zkpy keeps its bytes aside.  (With the
    end marker on disk but the checksum wrong, both refuse: see the test above.)"""
    srv = _write_then_kill(kind)
    log1 = _log1(srv)
    off, n, zxid = _entries(log1)[-1]
    with open(log1, "r+b") as f:
        f.seek(off + 12 + n // 2)
        f.write(bytes(n - n // 2 + 1))  # second half of the body and the 'B' never reached the disk
    torn = log1.read_bytes()[off : off + 12 + n // 2]
    try:
        srv.start()
        assert _children(srv) == [f"n{i:03d}" for i in range(N_CREATES - 1)]
        if kind == "reference":
            return
        kept = [p for p in log1.parent.iterdir() if p.name.startswith("discarded-log.1")]
        assert len(kept) == 1 and kept[0].read_bytes() == torn, kept
        assert f"zxid 0x{zxid - 1:x}" in srv.log_text()
    finally:
        srv.stop()


# ---- 2. logs without a snapshot ---------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_logs_without_snapshot_refuse_unless_trusted(kind: str) -> None:
    srv = _write_then_kill(kind)
    v2 = srv.data_dir / "version-2"
    for _z, p in snapshot_files(v2):
        p.unlink()
    code, text = _start_expecting_refusal(srv)
    assert code != 0
    assert "No snapshot found, but there are log entries" in text, text
    if kind == "zkpy":
        assert "zookeeper.snapshot.trust.empty" in text, text
    srv.jvm_flags = ["-Dzookeeper.snapshot.trust.empty=true"]
    try:
        srv.start()
        assert _children(srv) == [f"n{i:03d}" for i in range(N_CREATES)]
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_only_later_logs_left_refuse(kind: str) -> None:
    """Snapshots and the first log purged by hand: what is left starts in the middle."""
    srv = _write_then_kill(kind)
    log1 = _log1(srv)
    entries = _entries(log1)
    # split log.1 into log.1 (txns 1..100) and a second file from 101 on, then lose the first
    raw = log1.read_bytes()
    cut = entries[100][0]
    first_zxid = entries[100][2]
    second = log1.with_name(f"log.{first_zxid:x}")
    second.write_bytes(raw[:HEADER_SIZE] + raw[cut:])
    log1.unlink()
    for _z, p in snapshot_files(srv.data_dir / "version-2"):
        p.unlink()
    code, text = _start_expecting_refusal(srv)
    assert code != 0
    assert "No snapshot found, but there are log entries" in text, text
