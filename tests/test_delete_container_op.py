"""deleteContainer (opcode 20) is the sweeper's: from a client, also one forwarded by a
learner, it is an error txn (BADARGUMENTS, as Apache ZooKeeper 3.8) and deletes nothing;
the server's own submission still deletes.  The client-facing behaviour is checked
against the reference in tests/conformance/test_extended_ops.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from zkpy.jute.codec import Writer
from zkpy.jute.constants import Err, OpCode
from zkpy.jute.records import OPEN_ACL_UNSAFE, PathOnly
from zkpy.jute.txns import CreateTxn, DeleteTxn, ErrorTxn, TxnHeader
from zkpy.server.config import build_config
from zkpy.server.core import ZooKeeperServer


@pytest.mark.asyncio
async def test_forwarded_delete_container_is_refused_and_internal_one_deletes(tmp_path: Path) -> None:
    core = ZooKeeperServer(build_config({"dataDir": str(tmp_path)}))
    core.attach(asyncio.get_running_loop())
    core.tree.apply(TxnHeader(0, 0, 1, 0, OpCode.CREATE_CONTAINER),
                    CreateTxn("/c", b"", OPEN_ACL_UNSAFE, False, -1, OpCode.CREATE_CONTAINER))
    core.zxid = 1
    sid = 0x1234
    core.sessions.add(sid, 30000, core.now_ms())
    for body in (Writer().ustring("/c").getvalue(), b"/c"):
        core.forwarded(sid, 7, OpCode.DELETE_CONTAINER, body, [("ip", "10.0.0.1")], core.server_id)
        entry = core.queue[-1]
        assert isinstance(entry.txn, ErrorTxn) and entry.txn.err == Err.BADARGUMENTS
        assert entry.hdr.client_id == sid and entry.hdr.cxid == 7
    core.submit_internal(OpCode.DELETE_CONTAINER, PathOnly("/c"))
    assert core.queue[-1].txn == DeleteTxn("/c", True)
