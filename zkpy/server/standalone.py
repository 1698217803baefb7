"""The asyncio shell of a standalone server: listener, timers, signals, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from zkpy.server.config import Config
from zkpy.server.connection import ClientConnection
from zkpy.server.core import ZooKeeperServer
from zkpy.server.database import Database, open_database

log = logging.getLogger("zkpy.server")


class StandaloneServer:
    """Runs a ZooKeeperServer on the client port until stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.core: ZooKeeperServer | None = None
        self.listener: asyncio.base_events.Server | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.database: Database | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.database = open_database(self.config)
        core = ZooKeeperServer(self.config, self.database.tree, self.database.txn_log)
        core.attach(loop)
        self.core = core
        port = self.config.client_port if self.config.client_port is not None else 2181
        self.listener = await loop.create_server(
            lambda: ClientConnection(core), self.config.client_port_address, port,
            reuse_address=True, backlog=1024,
        )
        self.database.attach(core)  # after the listener: a startup snapshot must not delay serving
        self._tasks.append(loop.create_task(self._session_timer()))
        self._tasks.append(loop.create_task(self._container_timer()))
        if self.config.purge_interval_hours > 0:
            self._tasks.append(loop.create_task(self._purge_timer()))
        log.info("zkpy standalone server serving on %s:%d (dataDir=%s)",
                 self.config.client_port_address, port, self.config.data_dir)

    @property
    def port(self) -> int:
        assert self.listener is not None
        return self.listener.sockets[0].getsockname()[1]

    async def _session_timer(self) -> None:
        assert self.core is not None
        tick = self.config.tick_time / 1000.0
        while True:
            await asyncio.sleep(min(tick, 0.5))
            self.core.expire_sessions()
            self.core.flush_dirty()

    async def _container_timer(self) -> None:
        assert self.core is not None
        interval = self.config.container_check_interval_ms / 1000.0
        per_run = max(1, int(self.config.container_max_per_minute * interval / 60.0))
        while True:
            await asyncio.sleep(interval)
            self.core.sweep_containers(int(time.time() * 1000), per_run)

    async def _purge_timer(self) -> None:
        assert self.database is not None
        while True:
            await asyncio.sleep(self.config.purge_interval_hours * 3600)
            self.database.purge()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self.start()
        await self._stopping.wait()
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Stop serving; once the pipeline is drained, write a snapshot (see
        Database.snapshot_at_shutdown) unless zkpy.snapshotOnShutdown is false."""
        log.info("shutting down")
        for t in self._tasks:
            t.cancel()
        if self.listener is not None:
            self.listener.close()
        drained = False
        if self.core is not None:
            self.core.on_applied = None  # no new background snapshot while stopping
            for c in list(self.core.connections):
                c.close()
            drained = await self._drain()
            self.core.close()
        if self.database is not None:
            if drained and self.config.snapshot_on_shutdown:
                await self.database.snapshot_at_shutdown()
            self.database.close()

    async def _drain(self, timeout: float = 10.0) -> bool:
        """Wait until every txn appended is synced and applied (True), or the log fails
        or it takes longer than timeout seconds (False).  Nothing new arrives: the
        listener, the connections and the timers are closed."""
        core = self.core
        assert core is not None
        deadline = time.monotonic() + timeout
        while core.queue and core.write_error is None:
            if time.monotonic() > deadline:
                log.warning("%d txns still not synced after %.0fs; no snapshot at shutdown",
                            len(core.queue), timeout)
                return False
            await asyncio.sleep(0.001)
        return core.write_error is None
