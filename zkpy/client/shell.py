"""The interactive zkpy-cli shell: a readline prompt in the main thread, the ZooKeeper
session on an asyncio loop in a second thread.

Line editing and history come from readline (history persists in ~/.zkpy_history);
tab completes command names and znode paths; watch events and connection changes are
printed as they arrive, above a prompt that is drawn again after them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from zkpy.client.client import CONNECTED, CONNECTED_RO
from zkpy.client.console import Console

T = TypeVar("T")

HISTORY_FILE = "~/.zkpy_history"
HISTORY_LENGTH = 1000


class LoopThread:
    """An asyncio loop running in a daemon thread; run() waits for a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="zkpy-cli-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the loop; Ctrl-C (or the timeout) cancels it and propagates."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except (KeyboardInterrupt, concurrent.futures.TimeoutError):
            fut.cancel()
            raise

    def stop(self) -> None:
        """Cancel what is still running (a reconnect, pings) and stop the loop."""
        try:
            self.run(self._cancel_all(), timeout=5)
        except (concurrent.futures.TimeoutError, KeyboardInterrupt):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @staticmethod
    async def _cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class PathCompleter:
    """readline completer: command names for the first word, znode paths for words with '/'."""

    def __init__(self, console: Console, loop: LoopThread, names: list[str]) -> None:
        self.console = console
        self.loop = loop
        self.names = sorted(names)
        self.matches: list[str] = []

    def __call__(self, text: str, state: int) -> str | None:
        if state == 0:
            try:
                self.matches = self.candidates(text, self._begins_line())
            except Exception:  # noqa: BLE001 - a completer must never break the prompt
                self.matches = []
            if len(self.matches) == 1:  # Python's readline appends nothing itself
                self.matches[0] += " "
        return self.matches[state] if state < len(self.matches) else None

    @staticmethod
    def _begins_line() -> bool:
        import readline

        return not readline.get_line_buffer()[: readline.get_begidx()].strip()

    def candidates(self, text: str, first_word: bool) -> list[str]:
        if text.startswith("/"):
            return self.paths(text)
        if first_word:
            return [n for n in self.names if n.startswith(text)]
        return []

    def paths(self, text: str) -> list[str]:
        parent, _, prefix = text.rpartition("/")
        parent = parent or "/"
        zk = self.console.zk
        if zk is None or zk.state not in (CONNECTED, CONNECTED_RO):
            return []
        try:
            children, _ = self.loop.run(zk.get_children(parent), timeout=3.0)
        except Exception:  # noqa: BLE001 - no completions for a path that cannot be listed
            return []
        base = "" if parent == "/" else parent
        return [f"{base}/{c}" for c in sorted(children) if c.startswith(prefix)]


def _setup_readline(completer: PathCompleter) -> str | None:
    """Enable editing, completion and persistent history; returns the history file."""
    try:
        import readline
    except ImportError:
        return None
    readline.set_completer(completer)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    path = os.path.expanduser(os.environ.get("ZKPY_HISTFILE", HISTORY_FILE))
    readline.set_history_length(HISTORY_LENGTH)
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    try:
        readline.write_history_file(path)  # creates it, and keeps only the last HISTORY_LENGTH lines
    except OSError:
        return None
    return path


def _remember(path: str | None) -> None:
    if path is None:
        return
    import readline

    try:
        readline.append_history_file(1, path)
    except OSError:
        pass


def run_shell(console: Console, loop: LoopThread, command_names: list[str]) -> None:
    """Read, run and print until quit or end of input."""
    screen = console.screen
    history_path = _setup_readline(PathCompleter(console, loop, command_names))
    try:
        import readline

        screen.typed = readline.get_line_buffer
    except ImportError:
        pass
    while not console.quit:
        screen.prompt = console.prompt
        try:
            line = input(console.prompt())
        except EOFError:
            screen.prompt = None
            screen.out("")
            break
        except KeyboardInterrupt:
            screen.prompt = None
            screen.out("")
            continue
        screen.prompt = None
        if line.strip():
            _remember(history_path)
        try:
            loop.run(console.execute_line(line))
        except KeyboardInterrupt:
            screen.out("")
