"""Txn log: format, group commit, preallocation, roll, truncate, torn and corrupt tails."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zkpy.persistence.txnlog as txnlog_mod
from tests.conftest import REQUIRE_REFERENCE
from zkpy.jute.constants import OpCode
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE
from zkpy.jute.txns import (
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    MultiTxn,
    SetDataTxn,
    TxnHeader,
    decode_txn,
    encode_txn,
)
from zkpy.persistence.files import RecoveryError, log_files
from zkpy.persistence.logscan import first_needed, iter_file, scan_file, strip_digest
from zkpy.persistence.txnlog import (
    LOG_MAGIC,
    TxnLog,
    iter_log,
    iter_repaired_log,
    last_logged_zxid,
    repair_log,
    truncate_log,
)

PREALLOC = 64 * 1024


def sample_txns(n: int, start: int = 1) -> list[tuple[TxnHeader, bytes]]:
    """A deterministic mix of txn types with zxids start..start+n-1."""
    out = []
    for i in range(n):
        z = start + i
        k = z % 6
        if k == 0:
            t, txn = OpCode.CREATE_SESSION, CreateSessionTxn(30000)
        elif k == 1:
            t, txn = OpCode.CREATE, CreateTxn(f"/n{z}", b"v" * (z % 50), list(OPEN_ACL_UNSAFE), False,
                                            z & 0xFFFF)
        elif k == 2:
            t, txn = OpCode.SET_DATA, SetDataTxn(f"/n{z - 1}", os.urandom(z % 200), 1)
        elif k == 3:
            t, txn = OpCode.MULTI, MultiTxn([(OpCode.DELETE, DeleteTxn(f"/n{z - 2}")),
                                             (OpCode.CREATE, CreateTxn("/m", None, [ACL(1, "ip", "1.2.3.4")],
                                                                       True, 3))])
        elif k == 4:
            t, txn = OpCode.DELETE, DeleteTxn(f"/x/{z}")
        else:
            t, txn = OpCode.CLOSE_SESSION, CloseSessionTxn([f"/e{z}", "/f"])
        out.append((TxnHeader(0x100 + z % 7, z & 0xFFFF, z, 1_700_000_000_000 + z, t), encode_txn(txn)))
    return out


def write_log(d: Path, txns: list[tuple[TxnHeader, bytes]], roll_at: tuple[int, ...] = (),
              sync_every: int = 0, prealloc: int = PREALLOC) -> TxnLog:
    tl = TxnLog(d, pre_alloc_size=prealloc)
    for i, (h, r) in enumerate(txns):
        if i in roll_at:
            tl.roll()
        tl.append(h, r)
        if sync_every and (i + 1) % sync_every == 0:
            tl.sync()
    tl.sync()
    tl.close()
    return tl


def test_file_layout_matches_reference(tmp_path: Path) -> None:
    txns = sample_txns(3)
    write_log(tmp_path, txns)
    f = tmp_path / "log.1"
    raw = f.read_bytes()
    assert struct.unpack_from(">iiq", raw, 0) == (LOG_MAGIC, 2, 0)
    pos = 16
    for h, rec in txns:
        crc, n = struct.unpack_from(">qi", raw, pos)
        entry = raw[pos + 12 : pos + 12 + n]
        assert entry == h.encode() + rec  # no TxnDigest
        assert crc == zlib.adler32(entry)
        assert raw[pos + 12 + n] == 0x42
        pos += 13 + n
    assert raw[pos:] == bytes(len(raw) - pos)  # zero padding
    assert len(raw) == PREALLOC


def test_round_trip_and_group_commit(tmp_path: Path) -> None:
    txns = sample_txns(500)
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC)
    for h, r in txns:
        tl.append(h, r)
    assert tl.pending_bytes > 0
    assert tl.sync() == 500
    assert tl.syncs == 1 and tl.pending_bytes == 0
    assert tl.sync() == 500 and tl.syncs == 1  # nothing pending: no write
    tl.close()
    assert list(iter_log(tmp_path, 0)) == txns
    for h, r in iter_log(tmp_path, 0):
        decode_txn(h.type, r)
    assert last_logged_zxid(tmp_path) == 500


def test_preallocation_grows_in_steps(tmp_path: Path) -> None:
    tl = TxnLog(tmp_path, pre_alloc_size=8192)
    big = encode_txn(SetDataTxn("/a", b"x" * 3000, 1))
    sizes = []
    for z in range(1, 12):
        tl.append(TxnHeader(1, z, z, 0, OpCode.SET_DATA), big)
        tl.sync()
        sizes.append((tmp_path / "log.1").stat().st_size)
    tl.close()
    assert all(s % 8192 == 0 for s in sizes)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    assert len(list(iter_log(tmp_path))) == 11


def test_default_prealloc_is_64mib(tmp_path: Path) -> None:
    tl = TxnLog(tmp_path)
    tl.append(*sample_txns(1)[0])
    tl.sync()
    tl.close()
    assert (tmp_path / "log.1").stat().st_size == 64 << 20


def test_roll_names_files_by_first_zxid_and_iter_from(tmp_path: Path) -> None:
    txns = sample_txns(30, start=0x100000001)
    write_log(tmp_path, txns, roll_at=(10, 20), sync_every=4)
    names = [p.name for _z, p in log_files(tmp_path)]
    assert names == ["log.100000001", "log.10000000b", "log.100000015"]
    for k in (0, 5, 10, 11, 25, 29, 30):
        frm = 0x100000000 + k
        assert list(iter_log(tmp_path, frm)) == txns[k:], k
    # a roll with nothing appended creates no file
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC)
    tl.roll()
    tl.roll()
    tl.close()
    assert len(log_files(tmp_path)) == 3


def test_a_file_the_next_one_covers_is_not_read(tmp_path: Path) -> None:
    txns = sample_txns(30)
    write_log(tmp_path, txns, roll_at=(10, 20))  # log.1 (1..10), log.b (11..20), log.15 (21..30)
    files = log_files(tmp_path)
    assert [first_needed(files, z) for z in (0, 1, 9, 10, 11, 19, 20, 30)] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert first_needed([], 5) == 0
    # log.1 holds nothing after zxid 10: damage there is neither read nor repaired
    first = tmp_path / "log.1"
    raw = bytearray(first.read_bytes())
    raw[40] ^= 0xFF
    first.write_bytes(bytes(raw))
    assert repair_log(tmp_path, 10) == []
    assert list(iter_log(tmp_path, 10)) == txns[10:]
    assert first.read_bytes() == bytes(raw)


def test_roll_between_syncs_and_within_one_sync(tmp_path: Path) -> None:
    txns = sample_txns(9)
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC)
    for i, (h, r) in enumerate(txns):
        if i in (3, 6):
            tl.roll()  # both rolls land in the same sync batch
        tl.append(h, r)
    tl.sync()
    tl.close()
    assert [z for z, _ in log_files(tmp_path)] == [1, 4, 7]
    assert list(iter_log(tmp_path)) == txns


def test_force_sync_controls_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(txnlog_mod, "fdatasync", lambda fd: calls.append(fd))
    for force, expect in ((False, False), (True, True)):
        d = tmp_path / str(force)
        d.mkdir()
        calls.clear()
        tl = TxnLog(d, pre_alloc_size=PREALLOC, force_sync=force)
        tl.append(*sample_txns(1)[0])
        tl.sync()
        tl.close()
        assert bool(calls) is expect


def test_sync_failure_raises_and_sticks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC)
    txns = sample_txns(3)
    tl.append(*txns[0])
    tl.sync()

    def boom(*a: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", boom)
    tl.append(*txns[1])
    with pytest.raises(OSError):
        tl.sync()
    monkeypatch.undo()
    tl.append(*txns[2])
    with pytest.raises(OSError):
        tl.sync()
    tl.close()
    assert list(iter_log(tmp_path)) == txns[:1]


def test_concurrent_appends_and_syncs(tmp_path: Path) -> None:
    txns = sample_txns(3000)
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC, force_sync=False)
    done = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        try:
            while not done.is_set():
                tl.sync()
            tl.sync()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=syncer)
    t.start()
    for i, (h, r) in enumerate(txns):
        if i % 1000 == 999:
            tl.roll()
        tl.append(h, r)
        if i % 100 == 0:
            time.sleep(0.001)  # let the syncer run between batches
    done.set()
    t.join()
    tl.close()
    assert not errors
    assert list(iter_log(tmp_path)) == txns
    assert tl.syncs > 1


def test_truncate(tmp_path: Path) -> None:
    txns = sample_txns(30)
    write_log(tmp_path, txns, roll_at=(10, 20))
    truncate_log(tmp_path, 15)
    assert [z for z, _ in log_files(tmp_path)] == [1, 11]
    assert list(iter_log(tmp_path)) == txns[:15]
    truncate_log(tmp_path, 10)  # exactly the end of a file: the next file goes
    assert [z for z, _ in log_files(tmp_path)] == [1]
    assert list(iter_log(tmp_path)) == txns[:10]
    truncate_log(tmp_path, 0)
    assert log_files(tmp_path) == []


def test_txnlog_truncate_then_append(tmp_path: Path) -> None:
    txns = sample_txns(20)
    tl = TxnLog(tmp_path, pre_alloc_size=PREALLOC)
    for h, r in txns[:12]:
        tl.append(h, r)
    tl.sync()
    tl.truncate(8)
    assert tl.last_synced_zxid == 8
    for h, r in txns[8:]:
        tl.append(h, r)
    tl.sync()
    tl.close()
    assert list(iter_log(tmp_path)) == txns
    assert [z for z, _ in log_files(tmp_path)] == [1, 9]


# ---- torn and corrupt tails --------------------------------------------------------------
def _entry_ends(raw: bytes) -> list[int]:
    ends, pos = [], 16
    while pos + 12 <= len(raw):
        n = struct.unpack_from(">i", raw, pos + 8)[0]
        if n <= 0:
            break
        pos += 13 + n
        ends.append(pos)
    return ends


_ONE_FILE = sample_txns(40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cut_at_any_offset_recovers_prefix(tmp_path_factory: pytest.TempPathFactory,
                                           data: st.DataObject) -> None:
    d = tmp_path_factory.mktemp("cut")
    write_log(d, _ONE_FILE, prealloc=0)
    f = d / "log.1"
    raw = f.read_bytes()
    ends = _entry_ends(raw)
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    zero_fill = data.draw(st.booleans(), label="zero_fill")  # torn write inside preallocated space
    torn = raw[:cut] + (bytes(len(raw) - cut) if zero_fill else b"")
    f.write_bytes(torn)
    repair_log(d)
    got = list(iter_log(d))
    assert got == _ONE_FILE[: sum(1 for e in ends if e <= cut)]
    # appends after repair land in a new file and read back in order
    more = sample_txns(3, start=41)
    write_log(d, more)
    assert list(iter_log(d)) == got + more


def _snapshot_dir(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir()}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flip_never_loses_txns_silently(tmp_path_factory: pytest.TempPathFactory,
                                            data: st.DataObject) -> None:
    """A flipped bit in a log that a later file follows: every txn comes back (the flip
    was in the zero padding or in bytes nobody reads), or recovery refuses and leaves
    every file as it was.  Never a shorter history (that used to be cut silently)."""
    d = tmp_path_factory.mktemp("flip")
    write_log(d, _ONE_FILE[:20], prealloc=4096)
    write_log(d, _ONE_FILE[20:], prealloc=4096)  # second file
    first = d / "log.1"
    raw = bytearray(first.read_bytes())
    ends = _entry_ends(bytes(raw))
    off = data.draw(st.integers(0, len(raw) - 1), label="offset")
    bit = data.draw(st.integers(0, 7), label="bit")
    raw[off] ^= 1 << bit
    first.write_bytes(bytes(raw))
    before = _snapshot_dir(d)
    try:
        got = list(iter_repaired_log(d))
    except RecoveryError as e:
        assert "log.1" in str(e) and "backup" in str(e)
        assert _snapshot_dir(d) == before  # nothing cut, nothing renamed
        assert off < ends[-1] and off not in range(8, 16)  # only real damage is refused
        return
    assert got == _ONE_FILE
    assert list(iter_log(d)) == _ONE_FILE


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bit_flip_in_the_last_file(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """A flipped bit in the newest file: refused, or every txn back; the only txn that can
    go is a last entry whose length now points into the zero padding (ZooKeeper drops
    such a "partial" last entry too)."""
    d = tmp_path_factory.mktemp("flip1")
    write_log(d, _ONE_FILE, prealloc=4096)
    f = d / "log.1"
    raw = bytearray(f.read_bytes())
    ends = _entry_ends(bytes(raw))
    off = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[off] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    f.write_bytes(bytes(raw))
    before = _snapshot_dir(d)
    try:
        got = list(iter_repaired_log(d))
    except RecoveryError:
        assert _snapshot_dir(d) == before
        return
    assert got == _ONE_FILE or (got == _ONE_FILE[:-1] and ends[-2] + 8 <= off < ends[-2] + 12), off


def test_a_zxid_damaged_to_look_covered_by_the_snapshot_is_refused(tmp_path: Path) -> None:
    """A bit flip that turns a txn's zxid into one a snapshot covers (0x7 -> 0x2, read
    from zxid 3) must not let recovery step over that txn unchecked: skipped entries are
    checksummed too, and valid txns follow this one, so recovery refuses and changes
    nothing.  (Found by the hypothesis test below: zkpy used to drop the txn silently.)"""
    txns = sample_txns(10)
    write_log(tmp_path, txns)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    start = _entry_ends(bytes(raw))[5]  # the 7th entry: zxid 7
    zxid_low = start + 12 + 8 + 4 + 7  # crc, length, client id, cxid, then the zxid's last byte
    assert raw[zxid_low] == 7
    raw[zxid_low] ^= 0x05
    f.write_bytes(bytes(raw))
    with pytest.raises(RecoveryError, match="checksum mismatch, and valid txns follow it"):
        list(iter_repaired_log(tmp_path, 3))
    assert f.read_bytes() == bytes(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damage_then_cut_is_refused_or_a_torn_tail(tmp_path_factory: pytest.TempPathFactory,
                                                    data: st.DataObject) -> None:
    """A flipped bit and the file cut somewhere after it, in one of three files, read
    from several snapshot zxids: recovery refuses with every file unchanged, or yields
    what iter_log reads afterwards, and only the last file may come back shorter."""
    d = tmp_path_factory.mktemp("one")
    write_log(d, _ONE_FILE[:15], prealloc=4096)
    write_log(d, _ONE_FILE[15:30], prealloc=4096)
    write_log(d, _ONE_FILE[30:], prealloc=4096)
    victim = data.draw(st.sampled_from(["log.1", "log.10", "log.1f"]), label="file")
    raw = bytearray((d / victim).read_bytes())
    off = data.draw(st.integers(0, len(raw) - 1), label="offset")
    raw[off] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    cut = data.draw(st.integers(off + 1, len(raw)), label="cut")
    (d / victim).write_bytes(bytes(raw[:cut]))
    frm = data.draw(st.sampled_from([0, 5, 15, 16, 29, 40]), label="from")
    before = _snapshot_dir(d)
    actions: list[str] = []
    try:
        walked = list(iter_repaired_log(d, frm, actions))
    except RecoveryError:
        assert _snapshot_dir(d) == before
        return
    want = [t for t in _ONE_FILE if t[0].zxid > frm]
    assert walked == list(iter_log(d, frm))
    assert repair_log(d, frm) == []  # a second look finds nothing to do
    if walked != want:
        assert victim == "log.1f" and walked == want[: len(walked)], (victim, off, cut)
    for a in actions:
        if a.startswith("torn tail"):
            kept = [p for p in d.iterdir() if p.name.startswith("discarded-")]
            assert kept


def test_checksum_mismatch_mid_log_refuses(tmp_path: Path) -> None:
    txns = sample_txns(10)
    write_log(tmp_path, txns, prealloc=0)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    ends = _entry_ends(bytes(raw))
    raw[ends[5] + 20] ^= 0xFF  # inside entry 7's header bytes
    f.write_bytes(bytes(raw))
    with pytest.raises(RecoveryError) as refused:
        repair_log(tmp_path)
    msg = str(refused.value)
    assert str(f) in msg and f"offset {ends[5]}" in msg and "after zxid 0x6" in msg
    assert "checksum mismatch" in msg and "valid txns follow it (zxid 0x8" in msg
    assert f.read_bytes() == bytes(raw)
    assert list(iter_log(tmp_path)) == txns[:6]  # the plain reader still stops there


def test_checksum_mismatch_in_the_last_entry_refuses(tmp_path: Path) -> None:
    """Nothing valid follows, but the entry is whole (its end marker is there): damaged
    after it was written, not torn.  ZooKeeper refuses too (CRC check failed)."""
    txns = sample_txns(10)
    write_log(tmp_path, txns)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    ends = _entry_ends(bytes(raw))
    raw[ends[-2] + 40] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(RecoveryError, match=f"offset {ends[-2]} .*after zxid 0x9.*complete"):
        repair_log(tmp_path)
    assert f.read_bytes() == bytes(raw)


def test_damaged_length_of_the_last_entry_refuses(tmp_path: Path) -> None:
    txns = sample_txns(10)
    write_log(tmp_path, txns)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    ends = _entry_ends(bytes(raw))
    raw[ends[-2] + 11] ^= 0x10  # the length grows into the zero padding: looks "partial"
    f.write_bytes(bytes(raw))
    with pytest.raises(RecoveryError, match="whole on disk"):
        repair_log(tmp_path)


def test_torn_last_entry_is_cut_and_kept(tmp_path: Path) -> None:
    txns = sample_txns(10)
    write_log(tmp_path, txns)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    ends = _entry_ends(bytes(raw))
    torn = bytes(raw[ends[-2] : ends[-1] - 10])
    raw[ends[-1] - 10 :] = bytes(len(raw) - ends[-1] + 10)
    f.write_bytes(bytes(raw))
    actions = repair_log(tmp_path)
    assert actions and "torn tail after zxid 0x9" in actions[0]
    assert list(iter_log(tmp_path)) == txns[:9]
    assert f.stat().st_size == ends[-2]
    assert (tmp_path / f"discarded-log.1.tail-{ends[-2]}").read_bytes() == torn


def test_gap_between_log_files_refuses(tmp_path: Path) -> None:
    txns = sample_txns(30)
    write_log(tmp_path, txns, roll_at=(10, 20))  # log.1, log.b, log.15
    (tmp_path / "log.b").unlink()
    with pytest.raises(RecoveryError, match=r"log\.15 starts at zxid 0x15 .* ends at zxid 0xa"):
        repair_log(tmp_path)
    with pytest.raises(RecoveryError, match="missing"):  # after a snapshot at 5, too
        repair_log(tmp_path, 5)
    # a snapshot newer than the gap needs none of the missing txns
    assert [h.zxid for h, _ in iter_repaired_log(tmp_path, 20)] == list(range(21, 31))


def test_log_must_continue_from_the_snapshot(tmp_path: Path) -> None:
    write_log(tmp_path, sample_txns(10, start=21))
    with pytest.raises(RecoveryError, match="0xb to 0x14 are missing"):
        repair_log(tmp_path, 10)
    assert len(list(iter_repaired_log(tmp_path, 10, gapless=False))) == 10
    assert len(list(iter_repaired_log(tmp_path, 20))) == 10


def test_garbage_after_zero_length_is_cut(tmp_path: Path) -> None:
    txns = sample_txns(5)
    write_log(tmp_path, txns, prealloc=8192)
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    raw[-100:-90] = b"\x07" * 10
    f.write_bytes(bytes(raw))
    tail, count, last, _ = scan_file(f)
    assert (tail.status, count, last) == ("garbage", 5, 5)
    repair_log(tmp_path)
    assert scan_file(f)[0].status == "eof"
    assert list(iter_log(tmp_path)) == txns


def test_empty_and_headerless_files_are_removed(tmp_path: Path) -> None:
    txns = sample_txns(4)
    write_log(tmp_path, txns)
    (tmp_path / "log.5").write_bytes(bytes(4096))  # created + preallocated, nothing written
    (tmp_path / "log.6").write_bytes(b"")
    repair_log(tmp_path)
    assert [z for z, _ in log_files(tmp_path)] == [1]
    assert list(iter_log(tmp_path)) == txns


def test_bad_magic_is_corrupt(tmp_path: Path) -> None:
    write_log(tmp_path, sample_txns(4))
    f = tmp_path / "log.1"
    raw = bytearray(f.read_bytes())
    raw[0] = 0x11
    f.write_bytes(bytes(raw))
    assert scan_file(f)[0].status == "corrupt"
    assert list(iter_log(tmp_path)) == []
    with pytest.raises(RecoveryError, match="bad magic"):
        repair_log(tmp_path)
    assert f.read_bytes() == bytes(raw)


def test_torn_file_header_is_set_aside(tmp_path: Path) -> None:
    write_log(tmp_path, sample_txns(4))
    (tmp_path / "log.5").write_bytes(struct.pack(">i", LOG_MAGIC)[:2] + bytes(4094))  # crash at creation
    assert repair_log(tmp_path)
    assert [z for z, _ in log_files(tmp_path)] == [1]
    assert (tmp_path / "discarded-log.5").exists()


def test_iter_file_reports_partial_tail(tmp_path: Path) -> None:
    txns = sample_txns(5)
    write_log(tmp_path, txns, prealloc=0)
    f = tmp_path / "log.1"
    raw = f.read_bytes()
    f.write_bytes(raw[:-1])  # lose the last 'B'
    from zkpy.persistence.logscan import Tail

    tail = Tail()
    assert list(iter_file(f, tail)) == txns[:4]
    assert tail.status == "partial"


def test_strip_java_txn_digest() -> None:
    digest = struct.pack(">iq", 2, 0x1234567890)
    for t, txn in (
        (OpCode.CREATE, CreateTxn("/a", b"x\x00\x00\x00\x02", list(OPEN_ACL_UNSAFE), False, 1)),
        (OpCode.SET_DATA, SetDataTxn("/a", b"\x00\x00\x00\x02" + bytes(8), 2)),
        (OpCode.CLOSE_SESSION, CloseSessionTxn(["/e"])),
        (OpCode.CREATE_SESSION, CreateSessionTxn(2)),
    ):
        rec = encode_txn(txn)
        assert strip_digest(t, rec + digest) == rec
        assert strip_digest(t, rec) == rec
    assert strip_digest(OpCode.CLOSE_SESSION, digest) == b""


# ---- dumps and Java's own reader ------------------------------------------------------------------
def test_dump_log_text_and_json(tmp_path: Path) -> None:
    import json

    from zkpy.persistence.dump import dump_log, dump_log_json

    txns = sample_txns(12)
    write_log(tmp_path, txns)
    lines = list(dump_log(tmp_path / "log.1"))
    assert lines[0].startswith("ZooKeeper Transactional Log File with dbid 0 txnlog format version 2")
    assert len(lines) == 14 and lines[-1].startswith("EOF reached after 12 txns")
    assert "zxid 0x3 multi" in lines[3] and '"path": "/m"' in lines[3]
    records = [json.loads(x) for x in dump_log_json(tmp_path / "log.1")]
    assert [r["zxid"] for r in records[:-1]] == [hex(z) for z in range(1, 13)]
    assert records[0]["txn"]["type"] == "CreateTxn" and records[0]["txn"]["data"] == "v"
    assert records[-1]["end"] == "zero"


@pytest.mark.skipif(not (shutil.which("java") and os.path.exists("/usr/share/java/zookeeper.jar"))
                    and not REQUIRE_REFERENCE,
                    reason="java or /usr/share/java/zookeeper.jar is missing")
def test_java_txn_log_toolkit_reads_ours(tmp_path: Path) -> None:
    txns = sample_txns(60)
    write_log(tmp_path, txns, prealloc=64 << 20)
    cp = ":".join(f"/usr/share/java/{j}" for j in ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar",
                                                    "slf4j-nop.jar", "commons-cli.jar"))
    out = subprocess.run(["java", "-cp", cp, "org.apache.zookeeper.server.persistence.TxnLogToolkit",
                          str(tmp_path / "log.1")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "EOF reached after 60 txns." in out.stdout
    assert out.stdout.count(" zxid 0x") == 60 and "CRC" not in out.stdout + out.stderr
