"""Operation histories in the Jepsen style.

Every client operation is recorded twice: an `invoke` when the worker is about to send
it and a completion when it knows the outcome -- `ok` (it happened), `fail` (it certainly
did not happen) or `info` (unknown: a timeout or a ConnectionLoss, so the write may or
may not have been applied, at any point after its invoke).  A history is a list of these
records in the order the recorder saw them; `time` is `time.monotonic()` of the recorder.

The recorder is shared by all worker threads, so appending takes a lock; the index it
assigns gives the real-time order the checker relies on (a completion recorded before an
invoke happened before it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TYPES = ("invoke", "ok", "fail", "info")


@dataclass(frozen=True)
class Op:
    """One history record.  `process` is the worker (a thread with one session) that ran
    it; a process has at most one operation outstanding.  `f` names the function (read,
    write, cas, add, generate, ...), `key` the independent object it is about (a register
    key, a set name) and `value` its argument or, on an `ok` completion, its result."""

    index: int
    process: int
    type: str
    f: str
    key: str | None = None
    value: Any = None
    time: float = 0.0
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @staticmethod
    def from_json(line: str) -> Op:
        d = json.loads(line)
        v = d.get("value")
        if isinstance(v, list):  # JSON has no tuples; cas values are [expected, new]
            d["value"] = tuple(v)
        return Op(**d)


@dataclass
class Recorder:
    """Thread-safe, append-only history.  `invoke` returns the record that `complete`
    pairs with, so a worker cannot complete somebody else's operation."""

    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _append(self, process: int, type_: str, f: str, key: str | None, value: Any,
                error: str | None = None) -> Op:
        with self._lock:
            op = Op(len(self.ops), process, type_, f, key, value, time.monotonic(), error)
            self.ops.append(op)
            return op

    def invoke(self, process: int, f: str, key: str | None = None, value: Any = None) -> Op:
        return self._append(process, "invoke", f, key, value)

    def ok(self, inv: Op, value: Any = None) -> Op:
        return self._append(inv.process, "ok", inv.f, inv.key, inv.value if value is None else value)

    def fail(self, inv: Op, error: str = "", value: Any = None) -> Op:
        return self._append(inv.process, "fail", inv.f, inv.key, inv.value if value is None else value,
                            error)

    def info(self, inv: Op, error: str = "", value: Any = None) -> Op:
        """`value` overrides the invoke's: a dequeue that knows which element it was
        deleting when the answer was lost."""
        return self._append(inv.process, "info", inv.f, inv.key, inv.value if value is None else value,
                            error)

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)


def dump(ops: Iterable[Op], path: Path) -> None:
    """JSON lines, one record per line."""
    with open(path, "w") as f:
        for op in ops:
            f.write(op.to_json() + "\n")


def load(path: Path) -> list[Op]:
    with open(path) as f:
        return [Op.from_json(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Pair:
    """An invoke with its completion (`None` when the history ended first: same as info)."""

    invoke: Op
    complete: Op | None

    @property
    def type(self) -> str:
        return self.complete.type if self.complete is not None else "info"


def pairs(ops: Iterable[Op]) -> Iterator[Pair]:
    """Invocations paired with their completions, in invoke order."""
    open_: dict[int, Op] = {}
    out: dict[int, Pair] = {}
    order: list[int] = []
    for op in ops:
        if op.type == "invoke":
            assert op.process not in open_, f"process {op.process} invoked twice: {op}"
            open_[op.process] = op
            order.append(op.index)
            out[op.index] = Pair(op, None)
        else:
            inv = open_.pop(op.process, None)
            assert inv is not None, f"completion without an invoke: {op}"
            out[inv.index] = Pair(inv, op)
    for i in order:
        yield out[i]


def counts(ops: Iterable[Op]) -> dict[str, dict[str, int]]:
    """f -> completion type -> count (unfinished invocations count as info)."""
    out: dict[str, dict[str, int]] = {}
    for p in pairs(ops):
        d = out.setdefault(p.invoke.f, {})
        d[p.type] = d.get(p.type, 0) + 1
    return out
