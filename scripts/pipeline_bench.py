"""CPU cost per request of the server pipeline, in process, without sockets.

    python scripts/pipeline_bench.py set|create|get|multi [--requests N] [--profile]
                                     [--watchers K] [--acl open|closed]

Feeds pipelined request frames (batches of 16) to one ClientConnection of a
ZooKeeperServer with a real txn log (forceSync=no: this measures CPU, not the disk) and
prints microseconds per request, wall and process CPU (every reply is checked for an error); --profile
prints cProfile's top entries instead.  --watchers K adds K connections with a
persistent recursive watch on /, so that every write fires K events; --acl closed
gives the written nodes an ACL without world READ (the writer authenticates, the
watchers do not), so that every event is checked against the ACL and suppressed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from zkpy.client import requests as rq
from zkpy.datatree.acl import digest_id
from zkpy.jute.codec import INT, Writer
from zkpy.jute.constants import XID_AUTH, OpCode
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, REPLY_HEADER, REQUEST_HEADER
from zkpy.persistence.txnlog import TxnLog
from zkpy.server.config import build_config
from zkpy.server.connection import ClientConnection
from zkpy.server.core import ZooKeeperServer

BATCH = 16


class CountingTransport:
    """Swallows replies, counting them and the ones carrying an error code."""

    def __init__(self) -> None:
        self.replies = 0
        self.errors = 0

    def writelines(self, data: Any) -> None:
        for frame in data:
            self.replies += 1
            if REPLY_HEADER.unpack_from(frame, 4)[2] != 0:
                self.errors += 1

    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 5555)

    def close(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _frame(xid: int, op: int, body: bytes) -> bytes:
    return INT.pack(8 + len(body)) + REQUEST_HEADER.pack(xid, op) + body


def _request(kind: str, i: int, acl: tuple[ACL, ...]) -> tuple[int, bytes]:
    if kind == "set":
        return rq.set_data(f"/n{i % 100}", b"y" * 100)
    if kind == "create":
        return rq.create("/n1/s-", b"y" * 100, acl, flags=2, with_stat=False)
    if kind == "multi":
        return rq.multi([rq.set_data(f"/n{i % 100}", b"y" * 100),
                         rq.set_data(f"/n{(i + 1) % 100}", b"y" * 100)])
    return rq.path_watch(4, f"/n{i % 100}", False)  # getData


async def _session(server: ZooKeeperServer) -> tuple[ClientConnection, CountingTransport]:
    conn = ClientConnection(server)
    transport = CountingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    hello = Writer().int(0).long(0).int(30000).long(0).buffer(bytes(16)).bool(False).getvalue()
    conn.data_received(INT.pack(len(hello)) + hello)
    await asyncio.sleep(0.01)
    return conn, transport


async def run(kind: str, n: int, profile: bool, watchers: int, closed: bool) -> None:
    d = Path(tempfile.mkdtemp(prefix="zkpy-pipeline-"))
    server = ZooKeeperServer(build_config({"dataDir": str(d)}), txn_log=TxnLog(d, 64 << 20, False))
    server.attach(asyncio.get_running_loop())
    conn, transport = await _session(server)
    acl = OPEN_ACL_UNSAFE
    if closed:
        acl = (ACL(31, "digest", digest_id("bench:secret")),)
        conn.data_received(_frame(XID_AUTH, *rq.auth("digest", b"bench:secret")))
    conn.data_received(b"".join(_frame(k + 1, *rq.create(f"/n{k}", b"x" * 100, acl, with_stat=False))
                                for k in range(100)))
    watching = [await _session(server) for _ in range(watchers)]
    for w, _ in watching:
        w.data_received(_frame(1, *rq.path_int(OpCode.ADD_WATCH, "/", 1)))
    await asyncio.sleep(0.01)
    before, errors_before = transport.replies, transport.errors  # the handshake is no reply
    events_before = sum(t.replies for _, t in watching)
    frames = [_frame(1000 + i, *_request(kind, i, acl)) for i in range(n)]
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    c0 = time.process_time()
    if prof:
        prof.enable()
    for i in range(0, n, BATCH):
        conn.data_received(b"".join(frames[i : i + BATCH]))
        await asyncio.sleep(0)  # the loop iteration in which the group commit runs
        await asyncio.sleep(0)
    deadline = time.perf_counter() + 10
    while transport.replies - before < n and time.perf_counter() < deadline:
        await asyncio.sleep(0)  # a write the disk held up went to the sync thread
    took = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    replies, errors = transport.replies - before, transport.errors - errors_before
    if replies != n or errors:
        raise SystemExit(f"{kind}: {replies} replies to {n} requests, {errors} errors")
    events = sum(t.replies for _, t in watching) - events_before
    extra = f", {events / n:g} events per request" if watchers else ""
    print(f"{kind}: {took / n * 1e6:.1f} us per request ({n / took:,.0f} requests/s{extra}; "
          f"process CPU {cpu / n * 1e6:.1f} us per request)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["set", "create", "get", "multi"])
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--watchers", type=int, default=0)
    p.add_argument("--acl", choices=["open", "closed"], default="open")
    a = p.parse_args()
    asyncio.run(run(a.kind, a.requests, a.profile, a.watchers, a.acl == "closed"))


if __name__ == "__main__":
    main()
