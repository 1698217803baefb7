"""The state of one zkpy-cli run: the ZooKeeper session, the command history, watch
printing, and how each command line is run and reported (zkCli text or JSON lines).

Runs on an asyncio loop; the shell or script reader hands it one line at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from zkpy.client.cliargs import CliError, Reported, split_line
from zkpy.client.client import (
    AUTH_FAILED,
    CLOSED,
    CONNECTED,
    CONNECTED_RO,
    CONNECTING,
    EXPIRED,
    WatchedEvent,
    ZooKeeperClient,
)
from zkpy.client.cliformat import EVENT_TYPES, cli_error, event_text
from zkpy.client.cliout import Screen
from zkpy.jute.constants import Err, KeeperError

_EVENT_STATES = {CONNECTED: "SyncConnected", CONNECTED_RO: "ConnectedReadOnly", CONNECTING: "Disconnected",
                 EXPIRED: "Expired", AUTH_FAILED: "AuthFailed", CLOSED: "Closed"}


class NotConnected(CliError):
    """The session is closed, expired or failed authentication (zkCli says so on stdout)."""

    def __init__(self) -> None:
        super().__init__("Not connected", 1, "NOT_CONNECTED")


class Console:
    """One CLI session: connects, runs command lines, prints their results and the events."""

    def __init__(self, screen: Screen, host: str, timeout_ms: int = 30000, read_only: bool = False,
                 json_mode: bool = False) -> None:
        self.screen = screen
        self.host = host
        self.timeout_ms = timeout_ms
        self.read_only = read_only
        self.json = json_mode
        self.print_watches = True
        self.announce_connect = True  # print the SyncConnected of the first connection
        self.history: dict[int, str] = {}
        self.count = 0
        self.zk: ZooKeeperClient | None = None
        self.alive = False  # zkCli's States.isAlive(): open or being (re)opened
        self.quit = False
        self.exit_code = 0  # of the last command, as zkCli reports it
        self.last_failure = 0  # of the last command that failed
        self._connected: asyncio.Event | None = None
        self._connector: asyncio.Task[None] | None = None
        self._closing = False
        self._last_state = CLOSED
        self._connections = 0

    # ---- session --------------------------------------------------------------------
    @property
    def state(self) -> str:
        """The state name zkCli shows in its prompt."""
        if self.zk is None or self.zk.state in (EXPIRED,):
            return CLOSED
        if not self.alive and self.zk.state != AUTH_FAILED:
            return CLOSED
        return self.zk.state

    def prompt(self) -> str:
        return f"[zk: {self.host}({self.state}) {self.count}] "

    async def connect(self, host: str | None = None) -> None:
        """Close the current session (if any) and start opening a new one to `host`."""
        if self.zk is not None and self.alive:
            await self.close()
        host = host or self.host
        zk = ZooKeeperClient(host, self.timeout_ms, self.read_only)
        self.host = host
        self.zk = zk
        self.alive = True
        self._last_state = zk.state
        self._connected = asyncio.Event()
        zk.state_listeners.append(lambda state: self._on_state(zk, state))
        self._connector = asyncio.get_running_loop().create_task(self._keep_connecting(zk))

    async def _keep_connecting(self, zk: ZooKeeperClient) -> None:
        while self.zk is zk and self.alive and not self._closing:
            try:
                await zk.start(timeout=max(self.timeout_ms / 1000.0, 2.0))
                return
            except KeeperError:
                self.alive = False
                return
            except (ConnectionError, TimeoutError, OSError):
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        zk = self.zk
        if zk is None:
            return
        self._closing = True
        try:
            if self._connector is not None and not self._connector.done():
                self._connector.cancel()
                await asyncio.gather(self._connector, return_exceptions=True)
            await zk.close()
        finally:
            self.alive = False
            self._closing = False

    def _on_state(self, zk: ZooKeeperClient, state: str) -> None:
        if zk is not self.zk:
            return
        previous, self._last_state = self._last_state, state
        assert self._connected is not None
        if state in (CONNECTED, CONNECTED_RO):
            self._connected.set()
            self._connections += 1
            if self._connections == 1 and not self.announce_connect:
                return
        else:
            self._connected.clear()
        if state == CONNECTING and previous not in (CONNECTED, CONNECTED_RO):
            return
        if state in (EXPIRED, AUTH_FAILED):
            self.alive = False
        if state == CLOSED and not self._closing:
            # The client gave up on every host; the session may still be alive, keep trying.
            if self.alive:
                self._connector = asyncio.get_running_loop().create_task(self._keep_connecting(zk))
            return
        self.event(_EVENT_STATES[state], -1, None)

    async def connected_client(self) -> ZooKeeperClient:
        """The client once connected; ConnectionLoss if that takes longer than the timeout."""
        zk = self.zk
        if zk is None or not self.alive:
            raise NotConnected()
        if zk.state not in (CONNECTED, CONNECTED_RO):
            assert self._connected is not None
            try:
                await asyncio.wait_for(self._connected.wait(), self.timeout_ms / 1000.0)
            except TimeoutError:
                raise KeeperError(Err.CONNECTIONLOSS) from None
            if not self.alive:
                raise KeeperError(Err.SESSIONEXPIRED)
        return zk

    # ---- output -----------------------------------------------------------------------
    def event(self, state: str, etype: int, path: str | None) -> None:
        if not self.print_watches:
            return
        if self.json:
            self.screen.notice_json({"event": "watch", "state": state,
                                     "type": EVENT_TYPES.get(etype, str(etype)), "path": path})
        else:
            self.screen.notice("\nWATCHER::\n\n" + event_text(state, etype, path))

    def on_watch(self, ev: WatchedEvent) -> None:
        self.event("SyncConnected", ev.type, ev.path)

    # ---- commands ---------------------------------------------------------------------
    async def execute_line(self, line: str) -> int:
        """Run one line as zkCli does: count it, remember it for `history`, run it."""
        if not line.strip():  # zkCli.sh would run the previous command again, or " "
            return 0
        words = split_line(line)
        self.history[self.count] = line
        try:
            return await self.run_words(words)
        finally:
            self.count += 1

    async def run_words(self, words: list[str]) -> int:
        from zkpy.client.commands import dispatch

        ctx = Context(self, words[0])
        try:
            payload = await dispatch(ctx, words)
            code = 0
            if self.json and payload is not None:
                self.screen.json({"command": ctx.name, "ok": True, **payload, **ctx.extra()})
        except Reported as e:
            code = e.exit_code
        except CliError as e:
            code = e.exit_code
            if self.json:
                self.screen.json({"command": ctx.name, "ok": False, "error": e.message, "code": e.code,
                                  **ctx.extra()})
            elif isinstance(e, NotConnected):
                self.screen.out(e.message)
            else:
                self.screen.err(e.message)
        self.exit_code = code
        if code:
            self.last_failure = code
        return code


class Context:
    """What a command handler gets: the console, output helpers, and the ZooKeeper client."""

    def __init__(self, console: Console, name: str) -> None:
        self.console = console
        self.name = name
        self.warnings: list[str] = []

    @property
    def json(self) -> bool:
        return self.console.json

    def out(self, text: str) -> None:
        """A line of the command's own output on stdout (text mode only)."""
        if not self.console.json:
            self.console.screen.out(text)

    def err(self, text: str) -> None:
        """A line zkCli writes to stderr as the command's result (e.g. 'Created /x')."""
        if not self.console.json:
            self.console.screen.err(text)

    def warn(self, text: str, stdout: bool = False) -> None:
        """A warning: printed where zkCli prints it, or listed under "warnings" in JSON."""
        if self.console.json:
            self.warnings.append(text)
        elif stdout:
            self.console.screen.out(text)
        else:
            self.console.screen.err(text)

    def extra(self) -> dict[str, Any]:
        return {"warnings": self.warnings} if self.warnings else {}

    def watcher(self, on: bool) -> Callable[[WatchedEvent], None] | None:
        return self.console.on_watch if on else None

    @asynccontextmanager
    async def zk(self, path: str | None) -> AsyncIterator[ZooKeeperClient]:
        """The connected client; ZooKeeper errors inside become zkCli's messages for `path`."""
        try:
            yield await self.console.connected_client()
        except KeeperError as e:
            raise cli_error(e, e.path or path) from None
