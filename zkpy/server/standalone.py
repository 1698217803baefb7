"""The standalone role: one server core over the data dir for the server's whole life."""

from __future__ import annotations

import asyncio
import logging
import time

from zkpy.server.config import Config
from zkpy.server.core import ZooKeeperServer
from zkpy.server.database import Database, open_database
from zkpy.server.runtime import ServerRuntime

log = logging.getLogger("zkpy.server")


class Standalone:
    """The role of a server without `server.N` lines: it commits when its own log is
    durable.  The runtime (`server/runtime.py`) owns its listener and timers."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.database: Database | None = None
        self._core: ZooKeeperServer | None = None
        self._stopping = asyncio.Event()

    @property
    def core(self) -> ZooKeeperServer:
        assert self._core is not None, "the standalone role is not open"
        return self._core

    def client_address(self) -> tuple[str, int] | None:
        if self.config.client_port is None:
            return None  # no default port: Apache ZooKeeper opens none either
        return self.config.client_port_address, self.config.client_port

    async def open(self) -> None:
        self.database = open_database(self.config)
        core = ZooKeeperServer(self.config, self.database.tree, self.database.txn_log)
        core.attach(asyncio.get_running_loop())
        self._core = core
        log.info("standalone server, dataDir=%s", self.config.data_dir)

    def serving(self) -> None:
        assert self.database is not None
        self.database.attach(self.core)  # after the listener: a startup snapshot must not delay serving

    async def run(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        """Stop serving; once the pipeline is drained, write a snapshot (see
        Database.snapshot_at_shutdown) unless zkpy.snapshotOnShutdown is false."""
        drained = False
        core = self._core
        if core is not None:
            core.on_applied = None  # no new background snapshot while stopping
            for c in list(core.connections):
                c.close()
            drained = await self._drain(core)
            core.close()
        if self.database is not None:
            if drained and self.config.snapshot_on_shutdown:
                await self.database.snapshot_at_shutdown()
            self.database.close()

    @staticmethod
    async def _drain(core: ZooKeeperServer, timeout: float = 10.0) -> bool:
        """Wait until every txn appended is synced and applied (True), or the log fails
        or it takes longer than timeout seconds (False).  Nothing new arrives: the
        listener, the connections and the timers are closed."""
        deadline = time.monotonic() + timeout
        while core.queue and core.write_error is None:
            if time.monotonic() > deadline:
                log.warning("%d txns still not synced after %.0fs; no snapshot at shutdown",
                            len(core.queue), timeout)
                return False
            await asyncio.sleep(0.001)
        return core.write_error is None


class StandaloneServer(ServerRuntime):
    """A standalone server: the runtime running the standalone role."""

    role: Standalone

    def __init__(self, config: Config) -> None:
        super().__init__(config, Standalone(config))

    @property
    def core(self) -> ZooKeeperServer:
        return self.role.core

    @property
    def database(self) -> Database | None:
        return self.role.database
