"""Path rules of ZooKeeper (PathUtils.validatePath) and small path helpers."""

from __future__ import annotations

import re

from zkpy.jute.constants import Err, KeeperError

SYSTEM_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})


# Characters the reference rejects (evaluated per UTF-16 unit there): NUL, C0 and C1
# controls, surrogates and private use (so every code point above U+FFFF), U+FFF0..U+FFFF.
# (re's own escapes: a literal lone surrogate cannot be compiled to C by mypyc)
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\U0010ffff]")


_VALID: dict[str, None] = {}  # recently validated paths (writes repeat them)
_VALID_MAX = 4096


def path_error(path: str | None) -> str | None:
    """Why path is not a valid znode path, or None if it is."""
    if path in _VALID:
        return None
    err = _path_error(path)
    if err is None and path is not None:  # _path_error refuses None: the second test only narrows
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()
        _VALID[path] = None
    return err


def _path_error(path: str | None) -> str | None:
    if not path:
        return "Path length must be > 0"
    if path[0] != "/":
        return "Path must start with / character"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return "Path must not end with / character"
    if "//" in path:
        return "empty node name specified"
    if "/." in path:
        for comp in path[1:].split("/"):
            if comp in (".", ".."):
                return "relative paths not allowed"
    m = _BAD_CHARS.search(path)
    if m is not None:
        return f"invalid character \\u{ord(m.group()):04x}"
    return None


def validate_path(path: str | None) -> str:
    """Return path if valid, else raise BADARGUMENTS."""
    if path is None or path_error(path) is not None:
        raise KeeperError(Err.BADARGUMENTS, path)
    return path


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
