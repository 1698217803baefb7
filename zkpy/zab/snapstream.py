"""The snapshot stream a leader sends right after a SNAP packet.

It is the body of a snapshot file (sessions, ACL cache, nodes, the "/" marker) with no
file header, seals or digest, followed by the ustring "BenWasHere".  The stream has
no length prefix, so `SnapScanner` walks it incrementally to find where it ends.
"""

from __future__ import annotations

import struct
import zlib

from zkpy.datatree.tree import DataTree
from zkpy.jute.codec import JuteError
from zkpy.persistence.snapshot import (
    FILE_HEADER,
    SNAP_DBID,
    SNAP_MAGIC,
    SNAP_VERSION,
    parse_snapshot,
    serialize_tree_body,
)

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
END_MARK = b"BenWasHere"
_NODE_TAIL = 8 + 60  # aclRef + StatPersisted


def encode_snap_stream(tree: DataTree) -> bytes:
    """Serialise the tree as a SNAP stream.

    Read straight from the nodes, so the tree must not change until this returns: the
    leader calls it on the event loop, where nothing is applied meanwhile.
    """
    out = serialize_tree_body(tree)
    out += _INT.pack(len(END_MARK))
    out += END_MARK
    return bytes(out)


class SnapScanner:
    """Finds the end of a SNAP stream in a growing buffer without re-reading it."""

    def __init__(self) -> None:
        self.pos = 0
        self.stage = 0  # 0 sessions, 1 acls, 2 nodes, 3 end mark
        self.count = -1

    def _need(self, buf: memoryview, n: int) -> bool:
        return len(buf) - self.pos >= n

    def scan_nodes(self, buf: memoryview) -> int | None:
        """Offset just past the '/' end-of-nodes marker, or None if more bytes are needed."""
        while True:
            if self.stage == 0:
                if not self._need(buf, 4):
                    return None
                n = _INT.unpack_from(buf, self.pos)[0]
                if n < 0:
                    raise JuteError("negative session count in SNAP stream")
                if not self._need(buf, 4 + 12 * n):
                    return None
                self.pos += 4 + 12 * n
                self.stage = 1
            elif self.stage == 1:
                if self.count < 0:
                    if not self._need(buf, 4):
                        return None
                    self.count = _INT.unpack_from(buf, self.pos)[0]
                    self.pos += 4
                while self.count > 0:
                    p = self.pos
                    if len(buf) - p < 12:
                        return None
                    n = _INT.unpack_from(buf, p + 8)[0]
                    p += 12
                    for _ in range(max(n, 0)):
                        p += 4  # perms
                        for _field in range(2):  # scheme, id
                            if len(buf) - p < 4:
                                return None
                            p += 4 + max(_INT.unpack_from(buf, p)[0], 0)
                        if len(buf) < p:
                            return None
                    self.pos = p
                    self.count -= 1
                self.stage = 2
            elif self.stage == 2:
                if not self._need(buf, 4):
                    return None
                n = _INT.unpack_from(buf, self.pos)[0]
                if not self._need(buf, 4 + max(n, 0)):
                    return None
                path = bytes(buf[self.pos + 4:self.pos + 4 + n])
                if path == b"/":
                    self.pos += 4 + n
                    self.stage = 3
                    return self.pos
                p = self.pos + 4 + n
                if len(buf) - p < 4:
                    return None
                dn = _INT.unpack_from(buf, p)[0]
                p += 4 + max(dn, 0) + _NODE_TAIL
                if len(buf) < p:
                    return None
                self.pos = p
            else:
                return self.pos

    def scan(self, buf: memoryview) -> int | None:
        """Total stream length including the BenWasHere mark, or None if incomplete."""
        if self.stage < 3 and self.scan_nodes(buf) is None:
            return None
        if not self._need(buf, 4 + len(END_MARK)):
            return None
        n: int = _INT.unpack_from(buf, self.pos)[0]
        mark = bytes(buf[self.pos + 4:self.pos + 4 + max(n, 0)])
        if mark != END_MARK:
            raise JuteError("SNAP stream does not end with BenWasHere")
        return self.pos + 4 + n


def decode_snap_stream(stream: bytes, zxid: int) -> DataTree:
    """Build a tree from a complete SNAP stream (as returned by SnapScanner.scan)."""
    body_end = len(stream) - 4 - len(END_MARK)
    raw = bytearray(FILE_HEADER.pack(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID))
    raw += stream[:body_end]
    raw += _LONG.pack(zlib.adler32(raw))
    raw += _INT.pack(1) + b"/"
    return parse_snapshot(bytes(raw), zxid)
