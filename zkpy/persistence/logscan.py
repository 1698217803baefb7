"""Reading txn log files: walk entries, detect torn or corrupt tails, iterate txns.

File layout (Apache ZooKeeper FileTxnLog, version 2)::

    FileHeader { int magic = 0x5A4B4C47, int version = 2, long dbid = 0 }
    repeat { long adler32(entry), int len(entry), entry = TxnHeader + record [+ TxnDigest], byte 'B' }
    zero padding (preallocation)

How a walk over one file ends (``Tail.status``):

* ``eof``/``zero``: clean end (end of file, or a zero checksum and length =
  preallocated space); :func:`scan_file` reports ``garbage`` instead when non-zero
  bytes follow (a torn batch whose first page was lost);
* ``empty``: the file has no header yet (zero-filled or shorter than 16 bytes);
* ``partial``: an entry runs past the end of the file or lacks its 'B' marker;
* ``corrupt``: checksum mismatch, impossible length, or a bad file header.

Recovery (:func:`zkpy.persistence.txnlog.iter_repaired_log`) refuses a ``corrupt`` end,
as Java does, and any damage that valid data follows (:func:`valid_entry_after`); only a
torn tail (``partial``/``garbage`` with nothing valid after it) is cut.
"""

from __future__ import annotations

import logging
import mmap
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from zkpy.jute.constants import OpCode
from zkpy.jute.txns import TXN_HEADER, TxnHeader, decode_txn, encode_txn
from zkpy.persistence.files import log_files

log = logging.getLogger("zkpy.persistence")

LOG_MAGIC = 0x5A4B4C47
LOG_VERSION = 2
FILE_HEADER = struct.Struct(">iiq")  # magic, version, dbid
CRC_LEN = struct.Struct(">qi")  # checksum (long), entry length (int)
EOR = 0x42  # 'B'
HEADER_SIZE = FILE_HEADER.size
MAX_ENTRY = 64 << 20  # sanity bound on one entry (jute.maxbuffer is ~1 MiB)
CLEAN = ("eof", "zero", "empty")
_ZXID = struct.Struct(">q")
_DIGEST_VERSION = b"\x00\x00\x00\x02"
_ZERO_CHUNK = bytes(1 << 20)
_HEADER_START = struct.pack(">ii", LOG_MAGIC, LOG_VERSION)
_tuple = tuple.__new__


class Tail:
    """Where and why the walk over one log file stopped."""

    __slots__ = ("status", "offset", "detail", "skipped", "skipped_last")

    def __init__(self) -> None:
        self.status = "eof"
        self.offset = 0  # end of the last good entry (= where a truncation would cut)
        self.detail = ""
        self.skipped = 0  # entries stepped over (zxid <= skip_upto), and the last one's zxid
        self.skipped_last = -1

    def set(self, status: str, offset: int, detail: str = "") -> None:
        self.status, self.offset, self.detail = status, offset, detail

    @property
    def clean(self) -> bool:
        return self.status in CLEAN


def walk(buf: bytes | mmap.mmap, tail: Tail, skip_upto: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, entry bytes) for every good entry; tail says how it ended.

    Entries whose zxid is <= skip_upto are checksummed but not yielded: a snapshot covers
    them.  (Checksummed all the same: a damaged zxid field can make any entry look
    covered, and it would then be dropped without a word, as Java never does.)
    """
    size = len(buf)
    if size < HEADER_SIZE or buf[:HEADER_SIZE] == bytes(HEADER_SIZE):
        head = buf[:min(size, HEADER_SIZE)]
        if head.count(0) == len(head):
            tail.set("empty", 0, "no file header")
        elif _torn_header(buf):
            tail.set("partial", 0, "torn file header")
        else:
            tail.set("corrupt", 0, "short file header")
        return
    magic = FILE_HEADER.unpack_from(buf, 0)[0]
    if magic != LOG_MAGIC:
        if _torn_header(buf):
            tail.set("partial", 0, "torn file header")
        else:
            tail.set("corrupt", 0, f"bad magic 0x{magic & 0xFFFFFFFF:08x}")
        return
    p = HEADER_SIZE
    unpack = CRC_LEN.unpack_from
    adler32 = zlib.adler32
    while True:
        if p + 12 > size:
            rest = buf[p:size]
            if rest.count(0) == len(rest):
                tail.set("eof", p)
            else:
                tail.set("partial", p, "truncated entry header")
            return
        crc, n = unpack(buf, p)
        if n == 0:
            tail.set("zero", p)
            return
        if n < 0 or n > MAX_ENTRY:
            tail.set("corrupt", p, f"impossible entry length {n}")
            return
        s = p + 12
        e = s + n
        if e >= size:
            tail.set("partial", p, f"entry of {n} bytes runs past the end of the file")
            return
        if buf[e] != EOR:
            tail.set("partial", p, "no end-of-record marker")
            return
        body = buf[s:e]
        if adler32(body) != crc:
            tail.set("corrupt", p, "checksum mismatch")
            return
        if n < TXN_HEADER.size:
            tail.set("corrupt", p, f"entry of {n} bytes is shorter than a txn header")
            return
        if skip_upto is not None:
            zxid = _ZXID.unpack_from(buf, s + 12)[0]
            if zxid <= skip_upto:
                p = e + 1
                tail.offset = p
                tail.skipped += 1
                tail.skipped_last = zxid
                continue
        yield p, body
        p = e + 1
        tail.offset = p


def _torn_header(buf: bytes | mmap.mmap) -> bool:
    """Whether the file holds nothing but the start of a file header (then zeros): a
    crash right after the file was created."""
    end = data_end(buf)
    return end <= 8 and buf[:end] == _HEADER_START[:end]


def read_file(path: Path) -> bytes | mmap.mmap:
    """The whole file, memory-mapped when non-empty (caller closes mmaps)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def strip_digest(type_: int, rec: bytes) -> bytes:
    """Remove a trailing TxnDigest (int version 2, long digest) written by Java 3.6+."""
    n = len(rec)
    if n < 12 or rec[n - 12 : n - 8] != _DIGEST_VERSION:
        return rec
    if n == 12 and type_ == OpCode.CLOSE_SESSION:
        return b""  # closeSession without a record, followed by a digest
    try:
        k = len(encode_txn(decode_txn(type_, rec)))
    except Exception:
        return rec
    return rec[:k] if k == n - 12 else rec


def split_entry(body: bytes) -> tuple[TxnHeader, bytes]:
    hdr = _tuple(TxnHeader, TXN_HEADER.unpack_from(body, 0))
    return hdr, strip_digest(hdr.type, body[TXN_HEADER.size :])


def iter_file(path: Path, tail: Tail | None = None, skip_upto: int | None = None,
              garbage: bool = False) -> Iterator[tuple[TxnHeader, bytes]]:
    """Every good txn of one log file, in file order (those <= skip_upto left out).

    With garbage, a clean end followed by non-zero bytes is reported as ``garbage``, as
    :func:`scan_file` does.
    """
    tail = tail or Tail()
    buf = read_file(path)
    try:
        for _off, body in walk(buf, tail, skip_upto):
            yield split_entry(body)
        if garbage:
            _check_garbage(buf, tail)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def iter_log(log_dir: Path, from_zxid: int = 0) -> Iterator[tuple[TxnHeader, bytes]]:
    """Every logged txn with zxid > from_zxid, in order.

    Starts with the file :func:`first_needed` picks.  Stops, with a warning, at a torn or corrupt entry in any
    file but the last: what follows it is not a consistent continuation.
    """
    files = log_files(Path(log_dir))
    start = first_needed(files, from_zxid)
    last = -1
    for i in range(start, len(files)):
        path = files[i][1]
        tail = Tail()
        last = max(last, from_zxid) if i == start else last
        for hdr, rec in iter_file(path, tail, from_zxid if from_zxid > 0 else None):
            last = hdr.zxid
            yield hdr, rec
        if tail.clean:
            continue
        if i + 1 == len(files):
            log.warning("txn log %s ends in a %s entry at offset %d (%s)",
                        path, tail.status, tail.offset, tail.detail)
        elif not follows(last, files[i + 1][0]):
            log.warning("txn log %s: %s entry at offset %d (%s); ignoring %d later log file(s): "
                        "they do not continue from zxid 0x%x", path, tail.status, tail.offset,
                        tail.detail, len(files) - i - 1, last)
            return


def first_needed(files: list[tuple[int, Path]], from_zxid: int) -> int:
    """Index of the first log file that can hold a txn > from_zxid.

    That is the newest file starting at or before from_zxid + 1: a file's txns all come
    before the next file's first zxid, so a file followed by one starting at
    from_zxid + 1 or earlier holds nothing newer (Java starts one file earlier, and
    after a snapshot at a roll that means walking a whole log of old txns).
    """
    return max((i for i, (z, _p) in enumerate(files) if z <= from_zxid + 1), default=0)


def follows(last: int, first: int) -> bool:
    """Whether a log file starting at zxid first directly continues a log ending at last."""
    if last < 0:
        return False
    return first == last + 1 or ((first >> 32) > (last >> 32) and first & 0xFFFFFFFF == 1)


def nonzero_after(buf: bytes | mmap.mmap, offset: int) -> bool:
    """True if any byte at or after offset is not zero."""
    size = len(buf)
    p = offset
    while p < size:
        q = min(size, p + len(_ZERO_CHUNK))
        if buf[p:q] != _ZERO_CHUNK[: q - p]:
            return True
        p = q
    return False


def data_end(buf: bytes | mmap.mmap) -> int:
    """One past the last non-zero byte of buf (0 if it is all zeros): where the
    preallocated zero padding begins."""
    p = len(buf)
    step = len(_ZERO_CHUNK)
    while p > 0:
        q = max(0, p - step)
        chunk = buf[q:p]
        if chunk != _ZERO_CHUNK[: p - q]:
            return q + len(chunk.rstrip(b"\x00"))
        p = q
    return 0


def _whole_entry_at(buf: bytes | mmap.mmap, q: int, size: int) -> tuple[int, int] | None:
    """(entry length, zxid) if a whole, checksummed txn entry starts at offset q."""
    if q + 12 > size:
        return None
    crc, n = CRC_LEN.unpack_from(buf, q)
    if n < TXN_HEADER.size or n > MAX_ENTRY:
        return None
    e = q + 12 + n
    if e >= size or buf[e] != EOR:
        return None
    if zlib.adler32(buf[q + 12 : e]) != crc:
        return None
    return n, _ZXID.unpack_from(buf, q + 24)[0]


def valid_entry_after(buf: bytes | mmap.mmap, start: int, after_zxid: int) -> tuple[int, int] | None:
    """(offset, zxid) of the first whole entry with a matching checksum and a zxid above
    after_zxid that begins after offset start, or None.

    Entries begin right after the end-of-record byte of the one before, so candidates are
    the offsets just past a 'B' (0x42) byte: a damaged entry loses its own framing, not
    that of the entries behind it.  This is what tells damage in the middle of a log
    (valid txns follow: refuse) from a torn tail (nothing valid follows: cut).
    """
    end = data_end(buf)
    size = len(buf)
    p = start
    while p < end:
        b = buf.find(b"B", p, end)
        if b < 0:
            return None
        p = b + 1
        found = _whole_entry_at(buf, p, size)
        if found is not None and found[1] > after_zxid:
            return p, found[1]
    return None


def complete_entry_at(buf: bytes | mmap.mmap, p: int) -> bool:
    """Whether the entry at p, reported ``partial``, is in fact whole on disk with a
    damaged length or end marker rather than torn: its checksum matches its body and a
    non-zero byte other than 'B' stands where the marker goes (an unwritten marker reads
    as zero or lies past the end of the file: torn), or its checksum matches at a length
    ending on a later 'B' before the zero padding."""
    size = len(buf)
    if p + 12 > size:
        return False
    crc, n = CRC_LEN.unpack_from(buf, p)
    s = p + 12
    if (TXN_HEADER.size <= n <= MAX_ENTRY and s + n < size and buf[s + n] != 0
            and zlib.adler32(buf[s : s + n]) == crc):
        return True
    end = min(data_end(buf), s + MAX_ENTRY + 1)
    b = s + TXN_HEADER.size
    for _ in range(4096):  # a torn tail is small; do not spend long on garbage
        b = buf.find(b"B", b, end)
        if b < 0:
            return False
        if zlib.adler32(buf[s:b]) == crc:
            return True
        b += 1
    return False


def _check_garbage(buf: bytes | mmap.mmap, tail: Tail) -> None:
    if tail.status == "zero" and nonzero_after(buf, tail.offset):
        tail.set("garbage", tail.offset, "non-zero bytes after the end of the data")


def scan_file(path: Path, skip_upto: int | None = None) -> tuple[Tail, int, int, int]:
    """Walk a whole log file: (tail, entry count, last zxid or -1, file size).

    Entries with zxid <= skip_upto (already covered by a snapshot) are counted by their
    framing only, without verifying their checksums.  A clean end followed by non-zero
    bytes (garbage after a zero length) is reported as ``garbage`` so that repair cuts it.
    """
    tail = Tail()
    buf = read_file(path)
    count, last = 0, -1
    try:
        for _off, body in walk(buf, tail, skip_upto):
            count += 1
            last = TXN_HEADER.unpack_from(body, 0)[2]
        if tail.skipped:
            count += tail.skipped
            last = max(last, tail.skipped_last)
        _check_garbage(buf, tail)
        return tail, count, last, len(buf)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def last_logged_zxid(log_dir: Path) -> int:
    """The zxid of the last good txn in the log directory, or -1 if there is none."""
    for _z, path in reversed(log_files(Path(log_dir))):
        _tail, count, last, _size = scan_file(path)
        if count:
            return last
    return -1
