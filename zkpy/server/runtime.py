"""The runtime every server runs in, whatever its role: the client listener, the
housekeeping timers, signals and shutdown.

A role supplies "the current core" (the `ZooKeeperServer` that client connections talk
to) and its own lifecycle: a standalone server (`server/standalone.py`) has one core for
its whole life; an ensemble member (`zab/peer.py`) builds a new core for each role it
takes (leader, follower, observer, read-only).  Connections are bound to the core that
is current when they are accepted; a role change closes them and clients reconnect.

The timers ask the current core to act and the core decides whether its role does it:
session expiry runs on the leader or standalone (a learner's global sessions are the
leader's to expire), container and TTL sweeps run where txns are proposed (the leader
or standalone, as ZooKeeper's ContainerManager) and submit deletes as ordinary txns, and
autopurge (`autopurge.purgeInterval` hours) runs on every member.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Protocol

from zkpy import compiled
from zkpy.persistence.dirlock import DataDirLocks
from zkpy.persistence.recovery import purge
from zkpy.server.config import Config
from zkpy.server.connection import ClientConnection
from zkpy.server.core import ZooKeeperServer
from zkpy.server.http import serve_http
from zkpy.server.lifecycle import PidFile, pid_file_path
from zkpy.server.metrics import METRICS
from zkpy.server.prometheus import MetricsHandler
from zkpy.server.status import History, StatusPages
from zkpy.server.tls import TlsContext
from zkpy.server.tls_listener import TlsListener

log = logging.getLogger("zkpy.server")


class Role(Protocol):
    """What the runtime needs from a standalone server or an ensemble member."""

    @property
    def core(self) -> ZooKeeperServer:
        """The core a client accepted now is served by."""
        ...

    def client_address(self) -> tuple[str, int] | None:
        """Where to listen for clients; None when no client port is configured."""
        ...

    async def open(self) -> None:
        """Before the listener opens: recover the data, open ports of its own."""

    def serving(self) -> None:
        """Right after the listener opened."""

    async def run(self) -> None:
        """Serve until `request_stop`."""

    def request_stop(self) -> None: ...

    async def close(self) -> None:
        """After the listener and the timers are stopped: drain, close files."""


class ServerRuntime:
    """Owns the listener, the timers, the signals and the order of start and stop."""

    def __init__(self, config: Config, role: Role) -> None:
        self.config = config
        self.role = role
        self.listener: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.failure: str | None = None  # why the server stopped serving (a failed txn log)
        self._locks: DataDirLocks | None = None
        self._pid_file: PidFile | None = None
        # client TLS (secureClientPort; client.portUnification on the plain port)
        self.tls: TlsContext | None = None
        self.secure_listener: TlsListener | None = None
        self.unified_listener: TlsListener | None = None
        # admin.* (AdminServer) and metricsProvider.* (Prometheus) HTTP listeners
        self.admin_listener: asyncio.base_events.Server | None = None
        self.metrics_listener: asyncio.base_events.Server | None = None
        # per-second request/latency samples for the status page (server/status.py)
        self.history = History()

    @property
    def port(self) -> int:
        if self.unified_listener is not None:
            return self.unified_listener.port
        assert self.listener is not None
        return int(self.listener.sockets[0].getsockname()[1])

    @property
    def secure_port(self) -> int:
        assert self.secure_listener is not None
        return self.secure_listener.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # before anything reads the data: one server per dataDir and dataLogDir
        self._locks = DataDirLocks(self.config.data_dir, self.config.data_log_dir)
        # only the lock holder may write it: a second server refused above leaves it alone
        self._pid_file = PidFile(pid_file_path(self.config))
        await self.role.open()
        role = self.role
        address = role.client_address()
        if address is None:
            # As Apache ZooKeeper 3.8: no clientPort (and zkpy has no secure port) means
            # no client listener at all, not a default port.
            log.warning("clientPort is not set: serving no clients (dataDir=%s)", self.config.data_dir)
        elif self.config.client_port_unification:
            await self._open_tls(address, unified=True)
        else:
            addr, port = address
            self.listener = await loop.create_server(lambda: ClientConnection(role.core), addr, port,
                                                     reuse_address=True, backlog=1024)
            log.info("serving clients on %s:%d (dataDir=%s, %s)", addr, self.port, self.config.data_dir,
                     compiled.DESCRIPTION)
        cfg = self.config
        if cfg.secure_client_port is not None:
            await self._open_tls((cfg.secure_client_port_address, cfg.secure_client_port), unified=False)
        role.serving()
        await self._open_monitoring()
        if self.tls is not None and self.tls.settings.cert_reload:
            self._every(1.0, self.tls.check)
        self._every(min(cfg.tick_time / 1000.0, 0.5), self._expire_sessions)
        interval = cfg.container_check_interval_ms / 1000.0
        per_run = max(1, int(cfg.container_max_per_minute * interval / 60.0))
        self._every(interval, lambda: self._sweep_containers(per_run))
        if cfg.purge_interval_hours > 0:
            self._every(cfg.purge_interval_hours * 3600.0, self._purge)

    async def rebind(self, address: tuple[str, int]) -> None:
        """Serve clients at `address` from now on: a reconfig changed this member's client
        address (NIOServerCnxnFactory.reconfigure); connections already open stay."""
        old = self.listener
        if old is None:
            log.warning("client address changed to %s:%d, but there is no plain client "
                        "listener to move; restart the server to use it", *address)
            return
        role = self.role
        self.listener = await asyncio.get_running_loop().create_server(
            lambda: ClientConnection(role.core), address[0], address[1], reuse_address=True, backlog=1024)
        old.close()
        log.info("serving clients on %s:%d (moved by a reconfig)", address[0], self.port)

    async def _open_tls(self, address: tuple[str, int], unified: bool) -> None:
        cfg = self.config
        assert cfg.tls is not None  # config.py parses the settings with either listener
        if self.tls is None:
            self.tls = TlsContext(cfg.tls)
        tls = self.tls
        role = self.role
        listener = TlsListener(lambda: ClientConnection(role.core), lambda: tls.context, unified,
                               cfg.sessionless_cnxn_timeout_ms / 1000.0, cfg.tls.handshake_limit)
        await listener.open(*address)
        if unified:
            self.unified_listener = listener
        else:
            self.secure_listener = listener
        log.info("serving %s clients on %s:%d (ssl.clientAuth=%s)", "TLS and plain" if unified else "TLS",
                 address[0], listener.port, cfg.tls.client_auth)

    async def _open_monitoring(self) -> None:
        """The AdminServer (admin.enableServer, on by default as in Java) and the
        Prometheus endpoint; a port that cannot be opened is logged, not fatal."""
        cfg = self.config
        role = self.role
        if cfg.admin_enabled:
            try:
                self.admin_listener = await serve_http(
                    StatusPages(self, cfg.admin_command_url), cfg.admin_address, cfg.admin_port,
                    cfg.admin_idle_timeout_ms / 1000.0)
                log.info("AdminServer on %s:%d, command URL %s, status page /", cfg.admin_address,
                         _bound_port(self.admin_listener), cfg.admin_command_url)
                self._every(1.0, self.history.sample)
            except OSError as e:
                log.error("cannot start the AdminServer on %s:%d (%s); set admin.serverPort or "
                          "admin.enableServer=false", cfg.admin_address, cfg.admin_port, e.strerror)
        if cfg.prometheus:
            try:
                self.metrics_listener = await serve_http(
                    MetricsHandler(lambda: role.core, cfg.prometheus_process_info),
                    cfg.prometheus_host, cfg.prometheus_port, 30.0)
                log.info("Prometheus metrics on http://%s:%d/metrics", cfg.prometheus_host,
                         _bound_port(self.metrics_listener))
            except OSError as e:
                log.error("cannot start the Prometheus endpoint on %s:%d (%s)", cfg.prometheus_host,
                          cfg.prometheus_port, e.strerror)
        self._tasks.append(asyncio.get_running_loop().create_task(_measure_loop_lag()))

    def _every(self, seconds: float, fn: Callable[[], None]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    fn()
                except Exception:  # a housekeeping failure must not end the timer
                    log.exception("housekeeping task failed")

        self._tasks.append(asyncio.get_running_loop().create_task(loop()))

    def _expire_sessions(self) -> None:
        core = self.role.core
        if core.serving:
            core.expire_sessions()
            core.flush_dirty()

    def _sweep_containers(self, per_run: int) -> None:
        self.role.core.sweep_containers(int(time.time() * 1000), per_run)

    def _purge(self) -> None:
        cfg = self.config
        for p in purge(cfg.data_dir, cfg.data_log_dir, cfg.snap_retain_count):
            log.info("purged %s", p)

    async def run_until_stopped(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or `request_stop`), then stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                # no signal handlers off the main thread (or without Unix signals): whoever
                # runs the server there stops it with request_stop()
                pass
        try:
            await self.start()
            await self.role.run()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self.role.request_stop()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down")
        for t in self._tasks:
            t.cancel()
        if self.listener is not None:
            self.listener.close()
        for http in (self.admin_listener, self.metrics_listener):
            if http is not None:
                http.close()
        for tls_listener in (self.secure_listener, self.unified_listener):
            if tls_listener is not None:
                tls_listener.close()
        try:
            self.failure = self.role.core.write_error
        except AssertionError:  # the role never opened: nothing failed while serving
            pass
        try:
            await self.role.close()
        finally:
            if self._pid_file is not None:
                self._pid_file.remove()
            if self._locks is not None:
                self._locks.release()
        log.info("stopped")


def _bound_port(server: asyncio.base_events.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _measure_loop_lag(every: float = 0.5) -> None:
    """zkpy_event_loop_lag_ms: how late a timer fires -- the time callbacks (requests,
    applies, snapshots' forks) held the event loop beyond what was asked."""
    lag = METRICS.loop_lag
    while True:
        t = time.monotonic()
        await asyncio.sleep(every)
        lag.add(max(0, int((time.monotonic() - t - every) * 1000)))
