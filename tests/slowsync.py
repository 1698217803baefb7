"""A txn log whose sync runs a hook first, for tests that need a slow or stalled disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SlowSync:
    """The txn log as a GroupCommit sees it, with `before()` run ahead of every sync (to
    sleep, count or wait).  The log itself may be compiled (zkpy/compiled.py): its
    methods cannot be replaced, so the group commit is handed this instead."""

    def __init__(self, log: Any, before: Callable[[], object]) -> None:
        self.log, self.before = log, before

    def sync(self) -> int:
        self.before()
        return int(self.log.sync())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)
