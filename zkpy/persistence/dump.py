"""Human-readable and JSON dumps of txn log and snapshot files.

For ``zkpy-server dump-log FILE`` and ``zkpy-server dump-snapshot FILE``: every function
returns an iterator of lines (text) or of JSON-ready dicts, so huge files stream.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zkpy.jute.constants import OP_NAMES
from zkpy.jute.txns import Txn, decode_txn
from zkpy.persistence.logscan import FILE_HEADER, Tail, iter_file
from zkpy.persistence.snapshot import (
    NODE_TAIL,
    SnapshotError,
    check_seals,
    read_head,
    read_snapshot_bytes,
)

_INT = struct.Struct(">i")
_STAT_NAMES = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeralOwner", "pzxid")


def _op_name(t: int) -> str:
    name = OP_NAMES.get(t)
    return str(t) if name is None else name.lower()


def _data_json(data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {"data": None}
    try:
        return {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data_b64": base64.b64encode(data).decode()}


def _txn_json(t: int, txn: Txn) -> Any:
    if txn is None:
        return None
    out: dict[str, Any] = {"type": type(txn).__name__}
    for k, v in txn._asdict().items():
        if k == "data":
            out.update(_data_json(v))
        elif k == "acl":
            out["acl"] = [{"perms": a.perms, "scheme": a.scheme, "id": a.id} for a in v]
        elif k == "txns":
            out["txns"] = [{"op": _op_name(st), "txn": _txn_json(st, sub)} for st, sub in v]
        else:
            out[k] = v
    return out


def _hex(v: int) -> str:
    return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"


def log_records(path: Path) -> Iterator[dict[str, Any]]:
    """One dict per txn, then one final dict ``{"end": status, ...}`` describing the tail."""
    path = Path(path)
    tail = Tail()
    for hdr, rec in iter_file(path, tail):
        try:
            txn: Any = _txn_json(hdr.type, decode_txn(hdr.type, rec))
        except Exception as e:  # a record we cannot decode is still worth showing
            txn = {"undecodable": str(e), "hex": rec.hex()}
        yield {"zxid": _hex(hdr.zxid), "session": _hex(hdr.client_id), "cxid": _hex(hdr.cxid),
               "time": hdr.time, "type": _op_name(hdr.type), "txn": txn}
    yield {"end": tail.status, "offset": tail.offset, "detail": tail.detail}


def dump_log_json(path: Path) -> Iterator[str]:
    """JSON lines: one object per txn, then the tail object."""
    for r in log_records(path):
        yield json.dumps(r, sort_keys=False)


def _fmt_time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def dump_log(path: Path) -> Iterator[str]:
    """Human-readable lines: the file header, one line per txn, the tail status."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(FILE_HEADER.size)
    if len(head) == FILE_HEADER.size:
        magic, version, dbid = FILE_HEADER.unpack(head)
        yield f"ZooKeeper Transactional Log File with dbid {dbid} txnlog format version {version}"
    count = 0
    for r in log_records(path):
        if "end" in r:
            yield f"EOF reached after {count} txns ({r['end']} at offset {r['offset']}" + (
                f": {r['detail']})" if r["detail"] else ")")
            break
        count += 1
        yield (f"{_fmt_time(r['time'])} session {r['session']} cxid {r['cxid']} zxid {r['zxid']} "
               f"{r['type']} {json.dumps(r['txn'])}")


def snapshot_records(path: Path) -> Iterator[dict[str, Any]]:
    """Dicts: one ``{"sessions": ...}``, one ``{"acls": ...}``, one per node, one ``{"seals": ...}``.

    Raises SnapshotError on a corrupt file (after yielding what could be read).
    """
    raw = read_snapshot_bytes(Path(path))
    sessions, acls, pos = read_head(raw)
    yield {"sessions": {_hex(s): t for s, t in sessions.items()}}
    yield {"acls": {str(ref): [{"perms": a.perms, "scheme": a.scheme, "id": a.id} for a in acl]
                    for ref, acl in acls.items()}}
    try:
        while True:
            n = _INT.unpack_from(raw, pos)[0]
            path_s = raw[pos + 4 : pos + 4 + n].decode("utf-8", "surrogatepass")
            pos += 4 + n
            if path_s == "/":
                break
            dn = _INT.unpack_from(raw, pos)[0]
            pos += 4
            data = None if dn < 0 else raw[pos : pos + dn]
            pos += max(dn, 0)
            ref, *stat = NODE_TAIL.unpack_from(raw, pos)
            pos += NODE_TAIL.size
            node: dict[str, Any] = {"path": path_s or "/", "acl_ref": ref}
            node.update(_data_json(data))
            node.update(zip(_STAT_NAMES, stat, strict=True))
            yield node
    except (struct.error, UnicodeDecodeError) as e:
        raise SnapshotError(f"corrupt node list at offset {pos}: {e}") from None
    yield {"seals": check_seals(raw, pos)}


def dump_snapshot_json(path: Path) -> Iterator[str]:
    for r in snapshot_records(path):
        yield json.dumps(r)


def dump_snapshot(path: Path, with_data: bool = True) -> Iterator[str]:
    """Human-readable dump in the spirit of Java's SnapshotFormatter."""
    nodes = 0
    for r in snapshot_records(path):
        if "sessions" in r:
            sessions = r["sessions"]
        elif "acls" in r:
            yield f"ACL cache ({len(r['acls']) - 1} entries + OPEN_ACL_UNSAFE as -1):"
            for ref, acl in r["acls"].items():
                yield f"  {ref}: " + ", ".join(f"{a['scheme']}:{a['id']}:{a['perms']}" for a in acl)
            yield "ZNode Details:"
        elif "seals" in r:
            yield f"Session Details (sid, timeout, ephemeralCount): {len(sessions)} sessions"
            for sid, to in sessions.items():
                yield f"  {sid}, {to}"
            yield f"{nodes} znodes; seals OK: {r['seals']}"
        else:
            nodes += 1
            yield "----"
            yield r["path"]
            for k in _STAT_NAMES:
                v = r[k]
                yield f"  {k} = {_hex(v) if k.endswith(('zxid', 'Owner')) else v}"
            yield f"  aclRef = {r['acl_ref']}"
            if with_data:
                d = r.get("data", r.get("data_b64"))
                yield f"  data = {d if d is not None else '(null)'}"
