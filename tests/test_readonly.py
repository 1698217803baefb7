"""readonlymode.enabled: a member that lost its quorum serves reads to read-only clients.

The same test runs on a zkpy ensemble and on an Apache ZooKeeper ensemble.
"""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError

from tests.conftest import four_letter
from tests.ensemble import Ensemble, wait_until


@pytest.mark.parametrize("kind", ["zkpy", "reference"])
def test_partitioned_member_serves_read_only_clients(kind: str) -> None:
    with Ensemble([kind] * 3, tick_time=500, extra={"readonlymode.enabled": "true"},
                  jvm_flags=["-Dreadonlymode.enabled=true"]) as e:
        e.start()
        c = KazooClient(hosts=e[1].hosts)
        c.start(timeout=15)
        c.create("/ro", b"kept")
        c.stop()
        c.close()
        e[2].kill()
        e[3].kill()
        survivor = e[1]
        wait_until(lambda: survivor.srvr().get("Mode") == "read-only", 30, "read-only mode")
        assert four_letter(survivor.client_port, "isro") == "ro"
        if kind == "reference":
            # Debian's 3.8.0 answers a read-only handshake with a 16-byte body ending in -119
            # (NOTREADONLY: its read-only server cannot create sessions), which kazoo cannot
            # parse; only the mode switch is comparable there.
            e.start([2, 3])
            wait_until(lambda: survivor.srvr().get("Mode") in ("leader", "follower"), 30, "quorum back")
            return

        ro = KazooClient(hosts=survivor.hosts, read_only=True)
        ro.start(timeout=15)
        try:
            assert ro.get("/ro")[0] == b"kept"
            with pytest.raises(NotReadOnlyCallError):
                ro.create("/not-allowed", b"")
        finally:
            ro.stop()
            ro.close()

        rw = KazooClient(hosts=survivor.hosts, read_only=False, connection_retry={"max_tries": 1})
        with pytest.raises(KazooTimeoutError):  # clients that need writes are turned away
            rw.start(timeout=3)
        rw.stop()
        rw.close()

        e.start([2, 3])
        wait_until(lambda: survivor.srvr().get("Mode") in ("leader", "follower"), 30, "quorum back")
        assert four_letter(survivor.client_port, "isro") == "rw"
