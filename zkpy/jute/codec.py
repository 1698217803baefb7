"""Jute primitives: a reader over bytes and a writer into a bytearray.

All integers are big-endian.  Strings and buffers carry an int length prefix where
-1 means null.  A malformed input raises :class:`JuteError`; callers treat that as a
protocol error from the remote side, never as a bug of ours.
"""

from __future__ import annotations

import builtins
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmap import mmap

    # What a Reader decodes from: whole frames (bytes), receive buffers (bytearray),
    # views into them, and memory-mapped snapshot files.
    ReadBuffer = bytes | bytearray | memoryview | mmap

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")

# Read-side sanity bound for a single string or buffer (jute.maxbuffer + extrasize).
MAX_FIELD_LEN = 2 * 1048575


class JuteError(ValueError):
    """The bytes do not decode as the expected Jute record."""


class Reader:
    """Sequential decoder over a bytes-like object."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: ReadBuffer, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise JuteError(f"record truncated: need {n} bytes at offset {p}, have {self.end - p}")
        self.pos = p + n
        return p

    # The methods named int/bool shadow the builtins inside the class body, hence builtins.int below.
    def int(self) -> int:
        v: int = _INT.unpack_from(self.buf, self._need(4))[0]
        return v

    def long(self) -> builtins.int:
        v: builtins.int = _LONG.unpack_from(self.buf, self._need(8))[0]
        return v

    def bool(self) -> bool:
        return self.buf[self._need(1)] != 0

    def byte(self) -> builtins.int:
        b = self.buf[self._need(1)]
        return b - 256 if b > 127 else b

    def buffer(self) -> bytes | None:
        n = self.int()
        if n == -1:
            return None
        if n < -1 or n > MAX_FIELD_LEN:
            raise JuteError(f"buffer length {n} out of range")
        p = self._need(n)
        return bytes(self.buf[p : p + n])

    def ustring(self) -> str | None:
        n = self.int()
        if n == -1:
            return None
        if n < -1 or n > MAX_FIELD_LEN:
            raise JuteError(f"string length {n} out of range")
        p = self._need(n)
        # like Java's lenient decoder: malformed bytes become U+FFFD (never an error)
        return str(self.buf[p : p + n], "utf-8", "replace")

    def string_vector(self) -> list[str] | None:
        n = self.int()
        if n == -1:
            return None
        if n < -1 or n > MAX_FIELD_LEN:
            raise JuteError(f"vector length {n} out of range")
        return [self.ustring() or "" for _ in range(n)]


class Writer:
    """Encoder appending to a bytearray."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def int(self, v: int) -> Writer:
        self.buf += _INT.pack(v)
        return self

    def long(self, v: builtins.int) -> Writer:
        self.buf += _LONG.pack(v)
        return self

    def bool(self, v: bool) -> Writer:
        self.buf.append(1 if v else 0)
        return self

    def byte(self, v: builtins.int) -> Writer:
        self.buf.append(v & 0xFF)
        return self

    def buffer(self, v: bytes | None) -> Writer:
        if v is None:
            self.buf += _INT.pack(-1)
        else:
            self.buf += _INT.pack(len(v))
            self.buf += v
        return self

    def ustring(self, v: str | None) -> Writer:
        if v is None:
            self.buf += _INT.pack(-1)
        else:
            b = v.encode("utf-8", "surrogatepass")
            self.buf += _INT.pack(len(b))
            self.buf += b
        return self

    def string_vector(self, v: list[str] | None) -> Writer:
        if v is None:
            self.buf += _INT.pack(-1)
            return self
        self.buf += _INT.pack(len(v))
        for s in v:
            self.ustring(s)
        return self

    def raw(self, b: bytes) -> Writer:
        self.buf += b
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)


INT = _INT
LONG = _LONG
