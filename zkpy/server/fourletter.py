"""Four-letter words on the client port, shaped like Apache ZooKeeper 3.8's output."""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from zkpy.server.monitor import format_value, monitor_rows, version_line

if TYPE_CHECKING:
    from zkpy.server.core import ZooKeeperServer

WORDS = (
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst",
    "wchs", "wchc", "wchp", "dirs", "isro", "gtmk", "stmk", "hash",
)
FOUR_LETTER_CODES: dict[int, str] = {int.from_bytes(w.encode(), "big"): w for w in WORDS}
FOUR_LETTER_CODES[0xFFF4FFFD] = "telnet-interrupt"


NOT_SERVING = "This ZooKeeper instance is not currently serving requests"


def _hex(v: int) -> str:
    return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"


def run_four_letter_word(server: ZooKeeperServer, code: int) -> str:
    word = FOUR_LETTER_CODES[code]
    if word == "telnet-interrupt":
        return ""
    if word not in server.config.four_letter_words:
        return f"{word} is not executed because it is not in the whitelist.\n"
    if server.write_error is not None:
        # the txn log failed: this server is done (Java exits); no imok, and say why
        if word == "ruok":
            return ""
        if word not in ("conf", "envi", "dirs", "isro"):
            return (f"{NOT_SERVING}\nDisk failure: {server.write_error}; restart the server once "
                    "the disk is fixed\n")
    if not server.serving and word not in ("ruok", "conf", "envi", "dirs", "gtmk", "stmk", "isro"):
        return f"{NOT_SERVING}\n"
    return _COMMANDS[word](server)


def _mode(server: ZooKeeperServer) -> str:
    return server.mode


def _srvr_body(server: ZooKeeperServer) -> str:
    st = server.stats
    return (
        f"Latency min/avg/max: {st.latency_line()}\n"
        f"Received: {st.received}\n"
        f"Sent: {st.sent}\n"
        f"Connections: {len(server.connections)}\n"
        f"Outstanding: {len(server.queue)}\n"
        f"Zxid: {_hex(server.tree.last_processed_zxid)}\n"
        f"Mode: {_mode(server)}\n"
        f"Node count: {server.tree.node_count()}\n"
    )


def srvr(server: ZooKeeperServer) -> str:
    return f"Zookeeper version: {version_line()}\n" + _srvr_body(server)


def stat(server: ZooKeeperServer) -> str:
    lines = [f"Zookeeper version: {version_line()}", "Clients:"]
    for c in sorted(server.connections, key=lambda c: c.peer):
        lines.append(f" /{c.peer}[{1 if c.session_id else 0}](queued={c.queued},"
                     f"recved={c.received},sent={c.sent})")
    return "\n".join(lines) + "\n\n" + _srvr_body(server)


def cons(server: ZooKeeperServer) -> str:
    out = []
    for c in sorted(server.connections, key=lambda c: c.peer):
        base = f" /{c.peer}[{1 if c.session_id else 0}](queued={c.queued},recved={c.received},sent={c.sent}"
        if c.session_id:
            base += (
                f",sid={_hex(c.session_id)},lop={c.last_opcode},est={int(c.established_at * 1000)}"
                f",to={c.timeout},lcxid={_hex(c.last_cxid)},lzxid={_hex(c.last_zxid)}"
                f",lresp={int(c.last_response * 1000)},llat=0,minlat=0,avglat=0,maxlat=0"
            )
        out.append(base + ")")
    return "\n".join(out) + "\n\n"


def _dir_size(p: Path) -> int:
    try:
        return sum(f.stat().st_size for f in (p / "version-2").iterdir() if f.is_file())
    except OSError:
        return 0


def conf(server: ZooKeeperServer) -> str:
    c = server.config
    lines = [
        f"clientPort={c.client_port if c.client_port is not None else -1}",
        "secureClientPort=-1",
        f"dataDir={c.data_dir / 'version-2'}",
        f"dataDirSize={_dir_size(c.data_dir)}",
        f"dataLogDir={c.data_log_dir / 'version-2'}",
        f"dataLogSize={_dir_size(c.data_log_dir)}",
        f"tickTime={c.tick_time}",
        f"maxClientCnxns={c.max_client_cnxns}",
        f"minSessionTimeout={c.min_session_timeout}",
        f"maxSessionTimeout={c.max_session_timeout}",
        "clientPortListenBacklog=-1",
        "serverId=0",
    ]
    return "\n".join(lines) + "\n"


def dump(server: ZooKeeperServer) -> str:
    tracker = server.sessions
    lines = ["SessionTracker dump:"]
    buckets = sorted(tracker.buckets.items())
    lines.append(f"Session Sets ({len(buckets)})/({len(tracker.sessions)}):")
    mono_now = server.now_ms()
    for when, sids in buckets:
        wall = datetime.fromtimestamp(time.time() + (when - mono_now) / 1000, tz=UTC)
        lines.append(f"{len(sids)} expire at {wall.strftime('%a %b %d %H:%M:%S UTC %Y')}:")
        lines += [f"\t{_hex(s)}" for s in sorted(sids)]
    eph = server.tree.ephemerals
    lines.append("ephemeral nodes dump:")
    lines.append(f"Sessions with Ephemerals ({len(eph)}):")
    for sid in sorted(eph):
        lines.append(f"{_hex(sid)}:")
        lines += [f"\t{p}" for p in sorted(eph[sid])]
    lines.append("Connections dump:")
    lines.append(f"Connections Sets (1)/({len(server.connections)}):")
    for c in sorted(server.connections, key=lambda c: c.peer):
        lines.append(f"\tip: /{c.peer} sessionId: {_hex(c.session_id)}")
    return "\n".join(lines) + "\n"


def envi(server: ZooKeeperServer) -> str:
    return "Environment:\n" + "".join(f"{k}={v}\n" for k, v in environment())


def environment() -> list[tuple[str, str]]:
    """Java's Environment.list(), with Python's equivalents under the java.* names."""
    try:
        host = socket.gethostname()
    except OSError:
        host = "localhost"
    props = [
        ("zookeeper.version", version_line()),
        ("host.name", host),
        ("java.version", "none (zkpy on Python " + platform.python_version() + ")"),
        ("java.vendor", "zkpy"),
        ("java.home", sys.prefix),
        ("java.class.path", ""),
        ("java.library.path", ""),
        ("java.io.tmpdir", os.environ.get("TMPDIR", "/tmp")),
        ("java.compiler", "<NA>"),
        ("os.name", platform.system()),
        ("os.arch", platform.machine()),
        ("os.version", platform.release()),
        ("user.name", os.environ.get("USER", "")),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
        ("os.memory.free", "0MB"),
        ("os.memory.max", "0MB"),
        ("os.memory.total", f"{_rss_mb()}MB"),
    ]
    return props


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def mntr(server: ZooKeeperServer) -> str:
    """Every value of the AdminServer's monitor command, as zk_<name><TAB><value>."""
    return "".join(f"zk_{k}\t{format_value(v)}\n" for k, v in monitor_rows(server))


def _watch_index(server: ZooKeeperServer) -> dict[str, set[int]]:
    """path -> session ids, data-watch table only (what the reference reports)."""
    by_path: dict[str, set[int]] = {}
    for path, ws in server.tree.watches.data.by_path():
        for w in ws:
            by_path.setdefault(path, set()).add(getattr(w, "session_id", 0))
    return by_path


def wchs(server: ZooKeeperServer) -> str:
    idx = _watch_index(server)
    conns = {s for ss in idx.values() for s in ss}
    total = sum(len(s) for s in idx.values())
    return f"{len(conns)} connections watching {len(idx)} paths\nTotal watches:{total}\n"


def wchc(server: ZooKeeperServer) -> str:
    by_sid: dict[int, list[str]] = {}
    for path, sids in _watch_index(server).items():
        for s in sids:
            by_sid.setdefault(s, []).append(path)
    out = ""
    for sid in sorted(by_sid):
        out += f"{_hex(sid)}\n" + "".join(f"\t{p}\n" for p in sorted(by_sid[sid]))
    return out + "\n"


def wchp(server: ZooKeeperServer) -> str:
    out = ""
    for path, sids in sorted(_watch_index(server).items()):
        out += f"{path}\n" + "".join(f"\t{_hex(s)}\n" for s in sorted(sids))
    return out + "\n"


def dirs(server: ZooKeeperServer) -> str:
    c = server.config
    return f"datadir_size: {_dir_size(c.data_dir)}\nlogdir_size: {_dir_size(c.data_log_dir)}\n"


def crst(server: ZooKeeperServer) -> str:
    for c in server.connections:
        c.received = c.sent = 0
    return "Connection stats reset.\n"


def srst(server: ZooKeeperServer) -> str:
    server.stats.reset()
    return "Server stats reset.\n"


_COMMANDS: dict[str, Callable[[ZooKeeperServer], str]] = {
    "ruok": lambda s: "imok",
    "isro": lambda s: ("ro" if s.read_only else "rw") if s.serving else "null",
    "gtmk": lambda s: "0",
    "stmk": lambda s: "0",
    "hash": lambda s: "",
    "srvr": srvr,
    "stat": stat,
    "conf": conf,
    "cons": cons,
    "dump": dump,
    "envi": envi,
    "mntr": mntr,
    "wchs": wchs,
    "wchc": wchc,
    "wchp": wchp,
    "dirs": dirs,
    "crst": crst,
    "srst": srst,
}
