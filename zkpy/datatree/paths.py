"""Path rules of ZooKeeper (PathUtils.validatePath) and small path helpers."""

from __future__ import annotations

from zkpy.jute.constants import Err, KeeperError

SYSTEM_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})


def _bad_char(c: str) -> bool:
    o = ord(c)
    return (
        o == 0
        or 0x01 <= o <= 0x1F
        or 0x7F <= o <= 0x9F
        or 0xD800 <= o <= 0xF8FF
        or 0xFFF0 <= o
    )


def path_error(path: str | None) -> str | None:
    """Why path is not a valid znode path, or None if it is."""
    if not path:
        return "Path length must be > 0"
    if path[0] != "/":
        return "Path must start with / character"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return "Path must not end with / character"
    for comp in path[1:].split("/"):
        if comp == "":
            return "empty node name specified"
        if comp in (".", ".."):
            return "relative paths not allowed"
    for c in path:
        if _bad_char(c):
            return f"invalid character \\u{ord(c):04x}"
    return None


def validate_path(path: str | None) -> str:
    """Return path if valid, else raise BADARGUMENTS."""
    if path_error(path) is not None:
        raise KeeperError(Err.BADARGUMENTS, path)
    return path  # type: ignore[return-value]


def split_path(path: str) -> tuple[str, str]:
    """('/a/b', 'c') for '/a/b/c'; ('/', 'a') for '/a'."""
    i = path.rfind("/")
    return (path[:i] or "/", path[i + 1 :])


def ancestors(path: str) -> list[str]:
    """Every proper ancestor of path, nearest first, ending with '/'."""
    out = []
    while path != "/":
        path = path[: path.rfind("/")] or "/"
        out.append(path)
    return out
