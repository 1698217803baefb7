"""`zkpy-server status` and `stop`, and the pid file they use, as Apache ZooKeeper's
zkServer.sh.

The pid file is ``<dataDir>/zookeeper_server.pid`` (or ``$ZOOPIDFILE``), the
decimal pid and no newline as zkServer.sh writes it.  zkServer.sh writes it from the
shell that backgrounds Java; a zkpy server writes it itself, once it holds the data-dir
lock (so a second server refused by the lock never overwrites the first one's pid), and
removes it at a clean stop if it still names this process.  ``stop`` sends SIGTERM and,
unlike zkServer.sh (which sleeps a second and says STOPPED), waits for the process to
end.  ``status`` finds the client port as zkServer.sh does (clientPort, else this
server's ``server.N=...;port`` line, else secureClientPort) and asks ``srvr``.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from zkpy.server.config import Config

PID_NAME = "zookeeper_server.pid"  # zkServer.sh's ZOOPIDFILE default


def pid_file_path(cfg: Config, env: dict[str, str] | None = None) -> Path:
    """$ZOOPIDFILE, else ``<dataDir>/zookeeper_server.pid``."""
    env = dict(os.environ) if env is None else env
    return Path(env["ZOOPIDFILE"]) if env.get("ZOOPIDFILE") else cfg.data_dir / PID_NAME


class PidFile:
    """This process's pid in a file, for the life of the server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{self.pid}")
        tmp.write_text(str(self.pid))
        os.replace(tmp, path)  # a reader never sees a half-written pid

    def remove(self) -> None:
        """Remove the file unless another process has since written its own pid there."""
        if read_pid(self.path) == self.pid:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """kill -0, as zkServer.sh; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stop(cfg: Config, timeout: float) -> tuple[list[str], int]:
    """SIGTERM the server named by the pid file and wait up to timeout seconds for it to
    end.  Returns (lines to print, exit status): 0 as zkServer.sh when there is nothing
    to stop or the server ended, 1 if it is still running after the timeout."""
    path = pid_file_path(cfg)
    head = "Stopping zookeeper ... "
    if not path.exists():
        return [f"{head}no zookeeper to stop (could not find file {path})"], 0
    pid = read_pid(path)
    if pid is None or not alive(pid):
        path.unlink(missing_ok=True)
        what = "an unreadable pid" if pid is None else f"pid {pid}, which is not running"
        return [f"{head}no zookeeper to stop (removed stale {path}: {what})"], 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return [f"{head}NOT STOPPED: process {pid} is still running {timeout:g} s after "
                    "SIGTERM (a clean stop drains writes and may snapshot a large tree; "
                    "run stop again with a longer --timeout, or kill -9 it)"], 1
        time.sleep(0.05)
    path.unlink(missing_ok=True)  # the server removes it itself; not if it crashed on the way
    return [f"{head}STOPPED"], 0


@dataclass(frozen=True)
class ClientEndpoint:
    port: int
    address: str
    ssl: bool


def client_endpoint(cfg: Config) -> ClientEndpoint | str:
    """Where zkServer.sh status would connect, or the message it gives up with."""
    raw = cfg.raw
    address = raw.get("clientPortAddress", "").strip() or "localhost"
    if cfg.client_port:
        return ClientEndpoint(cfg.client_port, address, False)
    if cfg.servers:
        myid = _myid(cfg.data_dir)
        spec = cfg.servers.get(myid) if myid is not None else None
        if spec is not None and spec.client_port:
            return ClientEndpoint(spec.client_port, spec.client_host or address, False)
    if cfg.secure_client_port:
        addr = raw.get("secureClientPortAddress", "").strip() or "localhost"
        return ClientEndpoint(cfg.secure_client_port, addr, True)
    return "Unable to find either secure or unsecure client port in any configs. Terminating."


def _myid(data_dir: Path) -> int | None:
    try:
        text = (data_dir / "myid").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def four_letter(address: str, port: int, word: str, use_ssl: bool = False,
                timeout: float = 5.0) -> str | None:
    """The answer to a four-letter word, or None if the server cannot be reached."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as plain:
            sock: socket.socket = plain
            if use_ssl:
                # as FourLetterWordMain without a trust store configured: no verification
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                sock = ctx.wrap_socket(plain, server_hostname=address)
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def status(cfg: Config, timeout: float = 5.0) -> tuple[list[str], int]:
    """zkServer.sh status: (lines to print, exit status 0 when serving, else 1)."""
    found = client_endpoint(cfg)
    if isinstance(found, str):
        return [found], 1
    lines = [f"Client port found: {found.port}. Client address: {found.address}. "
             f"Client SSL: {'true' if found.ssl else 'false'}."]
    answer = four_letter(found.address, found.port, "srvr", found.ssl, timeout)
    fields = dict(line.split(": ", 1) for line in (answer or "").splitlines() if ": " in line)
    if "Mode" not in fields:
        if found.ssl:
            lines.append(f"Note: the connection to secureClientPort ({found.port}) failed.")
        lines.append("Error contacting service. It is probably not running.")
        return lines, 1
    lines.append(f"Mode: {fields['Mode']}")
    if "Zxid" in fields:
        lines.append(f"Zxid: {fields['Zxid']}")
    return lines, 0
