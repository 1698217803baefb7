"""Watch tables: standard one-shot, persistent and persistent-recursive watches.

A watcher is any hashable object (the server uses the client connection).  Triggering
returns the set of watchers to notify; delivering the event is the caller's job.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

from zkpy.jute.constants import WatcherType

Watcher = Hashable
_NO_WATCHERS: set[Watcher] = set()  # shared, never mutated: callers only iterate or test it


class WatchTable:
    """path -> watchers for one table (data or child), with persistent modes."""

    __slots__ = ("standard", "persistent", "recursive")

    def __init__(self) -> None:
        self.standard: dict[str, set[Watcher]] = {}
        self.persistent: dict[str, set[Watcher]] = {}
        self.recursive: dict[str, set[Watcher]] = {}

    @staticmethod
    def _add(table: dict[str, set[Watcher]], path: str, w: Watcher) -> None:
        s = table.get(path)
        if s is None:
            table[path] = {w}
        else:
            s.add(w)

    @staticmethod
    def _discard(table: dict[str, set[Watcher]], path: str, w: Watcher) -> bool:
        s = table.get(path)
        if s is None or w not in s:
            return False
        s.discard(w)
        if not s:
            del table[path]
        return True

    def trigger(self, path: str, exclude: set[Watcher] | None = None) -> set[Watcher]:
        if not self.recursive and path not in self.standard and path not in self.persistent:
            return _NO_WATCHERS  # the common case: nobody watches this path
        out: set[Watcher] = set()
        s = self.standard.pop(path, None)
        if s:
            out |= s
        s = self.persistent.get(path)
        if s:
            out |= s
        if self.recursive:
            p = path
            while True:
                s = self.recursive.get(p)
                if s:
                    out |= s
                if p == "/":
                    break
                p = p[: p.rfind("/")] or "/"
        if exclude:
            out -= exclude
        return out

    def count(self) -> int:
        return sum(len(s) for s in self.standard.values()) + sum(
            len(s) for s in self.persistent.values()
        ) + sum(len(s) for s in self.recursive.values())

    def by_path(self) -> Iterator[tuple[str, set[Watcher]]]:
        for t in (self.standard, self.persistent, self.recursive):
            yield from t.items()


class WatchManager:
    """The server's data and child watch tables."""

    def __init__(self) -> None:
        self.data = WatchTable()
        self.child = WatchTable()

    # registration ---------------------------------------------------------------
    def add_data_watch(self, path: str, w: Watcher) -> None:
        WatchTable._add(self.data.standard, path, w)

    def add_child_watch(self, path: str, w: Watcher) -> None:
        WatchTable._add(self.child.standard, path, w)

    def add_persistent(self, path: str, w: Watcher, recursive: bool) -> None:
        if recursive:
            WatchTable._add(self.data.recursive, path, w)
        else:
            WatchTable._add(self.data.persistent, path, w)
            WatchTable._add(self.child.persistent, path, w)

    def _slots(self, wtype: int) -> list[dict[str, set[Watcher]]]:
        if wtype == WatcherType.CHILDREN:
            return [self.child.standard]
        if wtype == WatcherType.DATA:
            return [self.data.standard]
        if wtype == WatcherType.PERSISTENT:
            return [self.data.persistent, self.child.persistent]
        if wtype == WatcherType.PERSISTENT_RECURSIVE:
            return [self.data.recursive]
        return [
            self.data.standard, self.child.standard, self.data.persistent,
            self.child.persistent, self.data.recursive,
        ]

    def contains(self, path: str, w: Watcher, wtype: int) -> bool:
        return any(w in t.get(path, ()) for t in self._slots(wtype))

    def remove(self, path: str, w: Watcher, wtype: int) -> bool:
        removed = False
        for t in self._slots(wtype):
            removed |= WatchTable._discard(t, path, w)
        return removed

    def remove_watcher(self, w: Watcher, paths: set[str]) -> None:
        """Drop every watch of w on the given paths (connection closed)."""
        for p in paths:
            for t in self._slots(WatcherType.ANY):
                WatchTable._discard(t, p, w)

    # triggering -----------------------------------------------------------------
    def count(self) -> int:
        return self.data.count() + self.child.count()
