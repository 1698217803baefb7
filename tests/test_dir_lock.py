"""Two servers on one data dir (or one dataLogDir): the second refuses to start.

Apache ZooKeeper takes no such lock (both would run and lose acknowledged writes), so
these run against zkpy only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, four_letter, start_server
from tests.test_disk_safety import _kazoo, _start_expecting_refusal
from zkpy.datatree.tree import DataTree
from zkpy.persistence.dirlock import DataDirLocks, DirLock, DirLockedError
from zkpy.server import database


def test_second_server_on_same_data_dir_refuses() -> None:
    first = start_server("zkpy")
    try:
        zk = _kazoo(first)
        zk.create("/before", b"1")
        second = ServerProcess("zkpy", first.workdir / "second", {"dataDir": str(first.data_dir)})
        code, text = _start_expecting_refusal(second)
        assert code != 0
        assert str(first.data_dir) in text and "another server" in text, text
        assert first.proc is not None and first.proc.poll() is None
        zk.create("/after", b"2")
        assert zk.get("/before")[0] == b"1"
        zk.stop()
        zk.close()
    finally:
        first.stop()


def test_second_server_on_same_log_dir_refuses(tmp_path: Path) -> None:
    logs = tmp_path / "shared-logs"
    first = start_server("zkpy", {"dataLogDir": str(logs)})
    try:
        second = ServerProcess("zkpy", first.workdir / "second",
                               {"dataDir": str(first.workdir / "other-data"), "dataLogDir": str(logs)})
        code, text = _start_expecting_refusal(second)
        assert code != 0
        assert str(logs) in text and "another server" in text, text
        assert first.proc is not None and first.proc.poll() is None
        assert "Mode:" in four_letter(first.port, "srvr")
    finally:
        first.stop()


def test_lock_released_when_server_dies() -> None:
    srv = start_server("zkpy", {"snapCount": "20"})
    try:
        zk = _kazoo(srv)
        for i in range(60):  # a few forked snapshot writers come and go
            zk.create(f"/s{i}", b"")
        zk.stop()
        zk.close()
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv.proc = None
        srv.start()  # the lock died with the process
    finally:
        srv.stop()


def _lock_from_another_process(directory: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from zkpy.persistence.dirlock import DirLock; DirLock(sys.argv[1])"
    return subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True,
                          timeout=60)


def test_dir_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first = DataDirLocks(tmp_path / "data", tmp_path / "logs")
    with pytest.raises(DirLockedError, match=f"dataDir {tmp_path / 'data'} is in use by another server "
                                             f"\\(pid {os.getpid()} on "):
        DataDirLocks(tmp_path / "data")
    with pytest.raises(DirLockedError, match="dataLogDir"):
        DataDirLocks(tmp_path / "other", tmp_path / "logs")
    assert DirLock(tmp_path / "other").held  # the failed attempt let go of the dataDir it had taken
    out = _lock_from_another_process(tmp_path / "logs")
    assert out.returncode != 0 and "is in use by another server" in out.stderr
    first.release()
    assert _lock_from_another_process(tmp_path / "logs").returncode == 0
    same = DataDirLocks(tmp_path / "data", tmp_path / "data")  # dataLogDir = dataDir: one lock
    assert len(same.locks) == 1
    same.release()


def test_forked_snapshot_writer_does_not_hold_the_lock(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer inherits the locked descriptor at the fork and closes it at once, so
    the lock stays the server's alone: held while the server runs, free once it is gone
    even if a writer it forked is still at work."""
    lock = DirLock(tmp_path)
    monkeypatch.setattr(database, "write_snapshot", lambda *a, **k: time.sleep(5))
    pid = database._fork_snapshot_writer(DataTree(), tmp_path / "snapshot.0")
    try:
        time.sleep(0.5)  # the child has closed what it inherited
        assert _lock_from_another_process(tmp_path).returncode != 0
        lock.release()
        assert _lock_from_another_process(tmp_path).returncode == 0  # the writer is still running
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
