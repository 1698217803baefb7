"""The config files a reconfig writes, as Apache ZooKeeper writes them.

With reconfigEnabled, an ensemble member keeps its membership in
`<zoo.cfg>.dynamic.<hex version>` (QuorumPeerConfig.writeDynamicConfig) and rewrites the
static file to point at it (editStaticConfig); the first time, the static file as the
operator wrote it is kept as `<zoo.cfg>.bak` (backupOldConfig).  Every file is replaced
atomically (a temporary file, fsynced, renamed over), as Java's AtomicFileWritingIdiom.
"""

from __future__ import annotations

import os
from pathlib import Path

from zkpy.server.quorum_config import QuorumConfig, edit_static_config


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def backup_static_config(static: Path) -> None:
    """backupOldConfig: at start-up, with the membership still in the static file."""
    atomic_write(static.with_name(static.name + ".bak"), static.read_text())


def write_dynamic_config(static: Path, config: QuorumConfig, erase_client: bool) -> Path:
    """setQuorumVerifier(writeToDisk): the dynamic file for config's version, and the
    static file rewritten to point at it (without clientPort/clientPortAddress when this
    member's server line carries its client address)."""
    dynamic = static.with_name(f"{static.name}.dynamic.{config.version:x}")
    atomic_write(dynamic, config.dynamic_file_text())
    text = edit_static_config(static.read_text(), os.path.realpath(dynamic), erase_client)
    atomic_write(static, text)
    return dynamic
