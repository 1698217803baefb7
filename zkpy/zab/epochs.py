"""acceptedEpoch / currentEpoch files in dataDir/version-2 and the start-up checks."""

from __future__ import annotations

import os
from pathlib import Path


class EpochError(RuntimeError):
    """The epoch files contradict the data on disk; the server must not start."""


def read_epoch(version_dir: Path, name: str) -> int | None:
    try:
        return int((version_dir / name).read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise EpochError(f"{version_dir / name} does not hold a number: {e}") from None


def write_epoch(version_dir: Path, name: str, epoch: int) -> None:
    """Replace the file atomically: write name.tmp, fsync, rename."""
    version_dir.mkdir(parents=True, exist_ok=True)
    tmp = version_dir / f"{name}.tmp"
    with open(tmp, "w") as f:
        f.write(str(epoch))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, version_dir / name)


def load_epochs(version_dir: Path, last_zxid: int) -> tuple[int, int]:
    """(acceptedEpoch, currentEpoch), creating or checking the files as the reference does."""
    zxid_epoch = last_zxid >> 32
    current = read_epoch(version_dir, "currentEpoch")
    if current is None:
        current = zxid_epoch
        write_epoch(version_dir, "currentEpoch", current)
    elif zxid_epoch > current:
        tmp = read_epoch(version_dir, "currentEpoch.tmp")
        accepted = read_epoch(version_dir, "acceptedEpoch")
        if tmp is not None:
            current = tmp
        elif accepted is not None and accepted >= zxid_epoch:
            # A learner makes NEWLEADER's data durable (snapshot, synced txns) before it
            # writes currentEpoch, as ZAB requires; a crash in between leaves data of an
            # epoch it had accepted.  That data arrived after the whole history the epoch's
            # leader started from, so the epoch is ours: what the reference does with its
            # updatingEpoch marker.
            current = zxid_epoch
        else:
            raise EpochError(f"the data's epoch {zxid_epoch} is newer than currentEpoch {current} "
                             f"in {version_dir}; restore the epoch files or the data")
        write_epoch(version_dir, "currentEpoch", current)
    accepted = read_epoch(version_dir, "acceptedEpoch")
    if accepted is None:
        accepted = zxid_epoch
        write_epoch(version_dir, "acceptedEpoch", accepted)
    if accepted < current:
        raise EpochError(f"acceptedEpoch {accepted} is older than currentEpoch {current} in {version_dir}")
    return accepted, current
