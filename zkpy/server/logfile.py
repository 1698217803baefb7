"""Where the server log goes: stderr, or a file as zkServer.sh and Debian's log4j set up.

Without ``zookeeper.log.dir`` (a ``-D`` flag in SERVER_JVMFLAGS/JVMFLAGS, or a zoo.cfg
key) or ``$ZOO_LOG_DIR`` the log goes to stderr, as ``zkServer.sh start-foreground``
with the console appender.  With one, it goes to ``<dir>/<zookeeper.log.file>``,
``$ZOO_LOG_FILE`` or ``zookeeper-<user>-server-<host>.log`` as zkServer.sh names it.
``zookeeper.log.maxfilesize`` (log4j sizes: ``10MB``, ``512KB``, bytes) turns on
rotation as log4j's RollingFileAppender: the file is renamed ``.1``, ``.1`` to ``.2``
... up to ``zookeeper.log.maxbackupindex`` (default 20, as ZooKeeper's
log4j.properties) and the oldest dropped.
"""

from __future__ import annotations

import getpass
import logging
import logging.handlers
import os
import re
import socket
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_BACKUPS = 20

_SIZE = re.compile(r"^\s*(\d+)\s*(KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


class LogSettingError(ValueError):
    """A zookeeper.log.* value cannot be used; the message names the key."""


def parse_size(text: str) -> int:
    """A log4j file size: digits with an optional KB/MB/GB suffix."""
    m = _SIZE.match(text)
    if m is None:
        raise LogSettingError(f"zookeeper.log.maxfilesize: '{text}' is not a size (e.g. 10MB)")
    unit = m.group(2).upper() if m.group(2) else None
    return int(m.group(1)) * _UNITS[unit]


def default_file_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"zookeeper-{user}-server-{socket.gethostname()}.log"


def log_file(props: dict[str, str], env: dict[str, str]) -> Path | None:
    """The log file asked for, or None for stderr.  props: the config's canonical keys
    (``log.dir`` for zookeeper.log.dir), where -D flags and zoo.cfg are merged."""
    directory = props.get("log.dir", "").strip() or env.get("ZOO_LOG_DIR", "").strip()
    if not directory:
        return None
    name = props.get("log.file", "").strip() or env.get("ZOO_LOG_FILE", "").strip()
    return Path(directory) / (name or default_file_name())


def configure(level: int, props: dict[str, str], env: dict[str, str] | None = None) -> Path | None:
    """Install the root handler; returns the log file, or None when logging to stderr."""
    env = dict(os.environ) if env is None else env
    path = log_file(props, env)
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        max_size = props.get("log.maxfilesize", "").strip()
        try:
            backups = int(props.get("log.maxbackupindex", str(DEFAULT_BACKUPS)).strip())
        except ValueError:
            raise LogSettingError("zookeeper.log.maxbackupindex: not an integer") from None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # as zkServer.sh's mkdir -p
            if max_size:
                handler = logging.handlers.RotatingFileHandler(
                    path, maxBytes=parse_size(max_size), backupCount=max(backups, 1))
            else:
                handler = logging.FileHandler(path)
        except OSError as e:
            raise LogSettingError(f"zookeeper.log.dir: cannot write {path}: {e.strerror}") from None
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return path
