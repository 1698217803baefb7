"""zkpy-cli: a ZooKeeper shell that behaves like zkCli.sh 3.8.

    zkpy-cli [-server host:port[,host:port...][/chroot]] [-timeout ms] [-r] [--json]
             [-f FILE] [cmd args...]

With a command it runs that one command; with -f, or with commands on a stdin that is not
a terminal, it runs them one per line; otherwise it opens the interactive shell.  The exit
status is that of the last command that failed (0 if none did); 127 for an unknown
command, 2 for bad options.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from zkpy.client.cliout import Screen
from zkpy.client.commands import commands
from zkpy.client.console import Console
from zkpy.client.shell import LoopThread, run_shell

USAGE = """usage: zkpy-cli [-server host:port[,host:port...][/chroot]] [-timeout ms] [-r] [--json]
                [-f FILE] [cmd args...]

  -server     the ensemble to connect to (default localhost:2181)
  -timeout    session timeout in ms (default 30000); also how long a command waits for a connection
  -r          read-only: may connect to a read-only server; commands that write are refused
  --json      one JSON object per command (and per event) on stdout
  -f FILE     run the commands in FILE, one per line ('-' for stdin)
  cmd args    run one command and exit
Without a command or -f, commands are read from stdin when it is not a terminal."""


@dataclass
class Options:
    """The command line of zkpy-cli (zkCli.sh's options plus --json and -f)."""

    server: str = "localhost:2181"
    timeout_ms: int = 30000
    read_only: bool = False
    json: bool = False
    file: str | None = None
    command: list[str] = field(default_factory=list)


class UsageExit(Exception):
    """Bad zkpy-cli options (or --help): print the message and exit with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def parse_options(argv: list[str]) -> Options:
    """zkCli.sh's ZooKeeperMain.parseOptions: options until the first word not starting with '-'."""
    o = Options()
    it = iter(argv)
    for word in it:
        if not word.startswith("-") or word == "-":
            o.command = [word, *it]
            break
        try:
            if word in ("-server", "--server"):
                o.server = next(it)
            elif word in ("-timeout", "--timeout"):
                value = next(it)
                try:
                    o.timeout_ms = int(value)
                except ValueError:
                    raise UsageExit(f"Error: -timeout needs a number of ms, not {value!r}") from None
            elif word in ("-r", "--read-only"):
                o.read_only = True
            elif word in ("--json", "-json"):
                o.json = True
            elif word in ("-f", "--file"):
                o.file = next(it)
            elif word in ("-client-configuration",):
                next(it)  # accepted for zkCli.sh compatibility; zkpy-cli has no client properties
            elif word in ("-waitforconnection",):
                pass  # zkpy-cli always waits for the connection before running a command
            elif word in ("-h", "--help", "-help"):
                raise UsageExit(USAGE, 0)
            else:
                raise UsageExit(f"Error: unknown option {word}\n{USAGE}")
        except StopIteration:
            raise UsageExit(f"Error: no argument found for option {word}") from None
    return o


def _script_lines(stream: TextIO) -> Iterable[str]:
    for raw in stream:
        line = raw.rstrip("\r\n")
        if line.lstrip().startswith("#"):
            continue
        yield line


def run_script(console: Console, loop: LoopThread, stream: TextIO) -> None:
    for line in _script_lines(stream):
        loop.run(console.execute_line(line))
        if console.quit:
            break


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_options(sys.argv[1:] if argv is None else argv)
    except UsageExit as e:
        (sys.stdout if e.code == 0 else sys.stderr).write(str(e) + "\n")
        return e.code
    screen = Screen()
    interactive = not opts.command and opts.file is None and sys.stdin.isatty()
    console = Console(screen, opts.server, opts.timeout_ms, opts.read_only, opts.json)
    console.announce_connect = interactive
    loop = LoopThread()
    try:
        return _run(opts, console, loop, interactive)
    except KeyboardInterrupt:
        return 130
    finally:
        loop.stop()


def _run(opts: Options, console: Console, loop: LoopThread, interactive: bool) -> int:
    screen = console.screen
    try:
        loop.run(console.connect())
    except ValueError as e:
        screen.err(f"Error: bad -server {opts.server!r}: {e}")
        return 2
    if interactive:
        if not opts.json:
            screen.out(f"Connecting to {opts.server}\nWelcome to ZooKeeper!")
        try:  # the prompt then says CONNECTED; a dead server is shown as CONNECTING
            loop.run(_wait_connected(console), timeout=min(opts.timeout_ms / 1000.0, 10.0))
        except (KeyboardInterrupt, TimeoutError):
            pass
        run_shell(console, loop, list(commands()))
    elif opts.command:
        loop.run(console.run_words(opts.command))
    elif opts.file is not None and opts.file != "-":
        try:
            with open(opts.file, encoding="utf-8") as f:
                run_script(console, loop, f)
        except OSError as e:
            screen.err(f"Error: cannot read {opts.file}: {e.strerror}")
            return 2
    else:
        run_script(console, loop, sys.stdin)
    console.print_watches = False  # zkCli.sh exits without a Closed event
    try:
        loop.run(console.close(), timeout=10)
    except (OSError, TimeoutError):
        pass  # the session times out on the server instead
    return console.last_failure


async def _wait_connected(console: Console) -> None:
    try:
        await console.connected_client()
    except Exception:  # noqa: BLE001 - the prompt shows that the shell is still connecting
        pass


if __name__ == "__main__":
    sys.exit(main())
