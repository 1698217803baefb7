"""The disk-full nemesis' tmpfs helpers (tests/jepsen/nemesis.py): fill leaves no room,
free gives it back.  Needs root to mount a tmpfs; skipped elsewhere.  Fast: no ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jepsen.nemesis import fill_tmpfs, free_tmpfs, mount_tmpfs, umount


def test_fill_then_free(tmp_path: Path) -> None:
    d = tmp_path / "data"
    why = mount_tmpfs(d, "8m")
    if why is not None:
        pytest.skip(why)
    try:
        (d / "log").write_bytes(bytes(300_000))
        fill_tmpfs(d)
        with pytest.raises(OSError):
            with open(d / "log", "ab") as f:
                f.write(bytes(1 << 20))
                f.flush()
        free_tmpfs(d, "8m")
        (d / "more").write_bytes(bytes(4 << 20))
        assert (d / "log").stat().st_size >= 300_000
    finally:
        umount(d)
