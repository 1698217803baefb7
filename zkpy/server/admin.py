"""The AdminServer's commands (Apache ZooKeeper 3.8's `Commands.java`) as JSON over HTTP.

`GET <commandURL>/<name>` runs a command by its primary name or an alias and answers
ZooKeeper's JSON: the command's keys, then `command` (the primary name) and `error`
(null, or a message); `GET <commandURL>` lists links to every primary name.  As in 3.8
there is no authentication (3.9 added it): what is reported is server state, never
znode data.  `dump`, `watches` and `watches_by_path` list znode paths and session ids,
as ZooKeeper's do; keep the admin port on a trusted network (or `admin.enableServer=false`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zkpy.persistence.files import VERSION_DIR, valid_snapshots
from zkpy.server import fourletter
from zkpy.server.http import Response
from zkpy.server.monitor import monitor_rows, version_line
from zkpy.server.quorum_config import ServerSpec

if TYPE_CHECKING:
    from zkpy.server.core import ZooKeeperServer
    from zkpy.server.runtime import ServerRuntime

NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
Result = dict[str, Any]


class Context:
    """What a command sees: the runtime (config, role) and its current core."""

    def __init__(self, runtime: ServerRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.server: ZooKeeperServer = runtime.role.core
        self.peer: Any = getattr(runtime.role, "my_id", None) and runtime.role


# Process-wide, as ZooKeeper's ZooTrace: get_trace_mask / set_trace_mask.
_trace = {"mask": 306}


def _hex(v: int) -> str:
    return f"{v & 0xFFFFFFFFFFFFFFFF:x}"


def _signed(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def _conn_info(c: Any, brief: bool) -> Result:
    info: Result = {
        "remote_socket_address": c.peer,
        "interest_ops": 1,
        "outstanding_requests": len(c.pending),
        "packets_received": c.received,
        "packets_sent": c.sent,
    }
    if not brief:
        info.update({
            "session_id": _signed(c.session_id),
            "last_operation": c.last_opcode,
            "established": int(c.established_at * 1000),
            "session_timeout": c.timeout,
            "last_cxid": c.last_cxid,
            "last_zxid": _signed(c.last_zxid),
            "last_response_time": int(c.last_response * 1000),
            "last_latency": 0, "min_latency": 0, "avg_latency": 0, "max_latency": 0,
        })
    return info


def _connections(ctx: Context, brief: bool) -> list[Result]:
    return [_conn_info(c, brief) for c in sorted(ctx.server.connections, key=lambda c: c.peer)]


def _dir_size(p: Path) -> int:
    return fourletter._dir_size(p)


def configuration(ctx: Context, kw: dict[str, str]) -> Result:
    c = ctx.config
    return {
        "client_port": c.client_port if c.client_port is not None else -1,
        "data_dir": str(c.data_dir / VERSION_DIR),
        "data_log_dir": str(c.data_log_dir / VERSION_DIR),
        "tick_time": c.tick_time,
        "max_client_cnxns": c.max_client_cnxns,
        "min_session_timeout": c.min_session_timeout,
        "max_session_timeout": c.max_session_timeout,
        "server_id": ctx.peer.my_id if ctx.peer else 0,
        "client_port_listen_backlog": -1,
    }


def connection_stat_reset(ctx: Context, kw: dict[str, str]) -> Result:
    fourletter.crst(ctx.server)
    return {}


def connections(ctx: Context, kw: dict[str, str]) -> Result:
    return {"connections": _connections(ctx, False), "secure_connections": []}


def dirs(ctx: Context, kw: dict[str, str]) -> Result:
    return {"datadir_size": _dir_size(ctx.config.data_dir),
            "logdir_size": _dir_size(ctx.config.data_log_dir)}


def dump(ctx: Context, kw: dict[str, str]) -> Result:
    tracker = ctx.server.sessions
    return {
        "expiry_time_to_session_ids": {str(when): sorted(_signed(s) for s in sids)
                                       for when, sids in sorted(tracker.buckets.items())},
        "session_id_to_ephemeral_paths": {str(_signed(sid)): sorted(paths)
                                          for sid, paths in sorted(ctx.server.tree.ephemerals.items())},
    }


def environment(ctx: Context, kw: dict[str, str]) -> Result:
    return dict(fourletter.environment())


def get_trace_mask(ctx: Context, kw: dict[str, str]) -> Result:
    return {"tracemask": _trace["mask"]}


def digests(ctx: Context, kw: dict[str, str]) -> Result:
    return {"digests": []}  # zkpy keeps no digest log (digest.enabled has nothing to report)


def initial_configuration(ctx: Context, kw: dict[str, str]) -> Result:
    if ctx.peer is not None:
        return {"initial_configuration": None}  # Java keeps it for standalone servers only
    src = ctx.config.source
    try:
        text = src.read_text() if src is not None else ""
    except OSError:
        text = ""
    return {"initial_configuration": text}


def is_read_only(ctx: Context, kw: dict[str, str]) -> Result:
    return {"read_only": ctx.server.read_only}


def last_snapshot(ctx: Context, kw: dict[str, str]) -> Result:
    snaps = valid_snapshots(ctx.config.data_dir / VERSION_DIR, 1)
    if not snaps:
        return {"zxid": _hex(-1), "timestamp": -1}
    zxid, path = snaps[0]
    try:
        ts = int(os.stat(path).st_mtime)
    except OSError:
        ts = -1
    return {"zxid": _hex(zxid), "timestamp": ts}


def _members(ctx: Context) -> Mapping[int, ServerSpec]:
    """The membership now: the peer's committed config (reconfig changes it), else zoo.cfg's."""
    return ctx.peer.quorum.members if ctx.peer is not None else ctx.config.servers


def leader(ctx: Context, kw: dict[str, str]) -> Result:
    peer = ctx.peer
    zab = ctx.server.zab
    if peer is None or zab is None:
        return {"error": "server is not initialized"}
    leader_id = peer.fle.current_vote.leader
    spec = _members(ctx).get(leader_id)
    return {"is_leader": zab.role == "leader", "leader_id": leader_id,
            "leader_ip": spec.host if spec is not None else ""}


def monitor(ctx: Context, kw: dict[str, str]) -> Result:
    return dict(monitor_rows(ctx.server))


def nothing(ctx: Context, kw: dict[str, str]) -> Result:
    return {}


def observers(ctx: Context, kw: dict[str, str]) -> Result:
    zab = ctx.server.zab
    leader_core = getattr(zab, "leader", None) if zab is not None and zab.role == "leader" else None
    if leader_core is None:
        return {"synced_observers": 0, "observers": []}
    obs = [ls for ls in leader_core.learners.values() if ls.observer and ls.phase.value == "broadcast"]
    return {"synced_observers": len(obs),
            "observers": [{"qp_sid": ls.sid} for ls in obs]}


def server_stats(ctx: Context, kw: dict[str, str]) -> Result:
    server = ctx.server
    st = server.stats
    c = ctx.config
    buffers = {"last_buffer_size": -1, "min_buffer_size": -1, "max_buffer_size": -1}
    stats = {
        "packets_sent": st.sent,
        "packets_received": st.received,
        "fsync_threshold_exceed_count": 0,
        "client_response_stats": dict(buffers),
        "data_dir_size": _dir_size(c.data_dir),
        "log_dir_size": _dir_size(c.data_log_dir),
        "provider_null": False,
        "server_state": server.mode,
        "last_processed_zxid": server.tree.last_processed_zxid,
        "outstanding_requests": len(server.queue) + server.waiting,
        "avg_latency": round(st.avg, 4),
        "max_latency": int(st.max),
        "min_latency": int(st.min),
        "num_alive_client_connections": len(server.connections),
        "auth_failed_count": st.auth_failed,
        "non_mtlsremote_conn_count": 0,
        "non_mtlslocal_conn_count": 0,
        "uptime": monitor_value(server, "uptime"),
    }
    out: Result = {"version": version_line(), "read_only": server.read_only,
                   "server_stats": stats, "client_response": dict(buffers)}
    if server.zab is not None and server.zab.role == "leader":
        last, mx, mn = server.proposal_sizes
        out["proposal_stats"] = {"last_buffer_size": last, "min_buffer_size": mn,
                                 "max_buffer_size": mx}
    out["node_count"] = server.tree.node_count()
    return out


def monitor_value(server: ZooKeeperServer, name: str) -> Any:
    return dict(monitor_rows(server))[name]


def set_trace_mask(ctx: Context, kw: dict[str, str]) -> Result:
    if "traceMask" not in kw:
        return {"error": "setTraceMask requires long traceMask argument"}
    try:
        mask = int(kw["traceMask"])
        if not -(1 << 63) <= mask < 1 << 63:
            raise ValueError
    except ValueError:
        return {"error": f"setTraceMask requires long traceMask argument, got {kw['traceMask']}"}
    _trace["mask"] = mask
    return {"tracemask": mask}


def stat_reset(ctx: Context, kw: dict[str, str]) -> Result:
    ctx.server.stats.reset()
    return {}


def stats(ctx: Context, kw: dict[str, str]) -> Result:
    out = server_stats(ctx, kw)
    out["connections"] = _connections(ctx, True)
    out["secure_connections"] = []
    return out


def system_properties(ctx: Context, kw: dict[str, str]) -> Result:
    """Java's System.getProperties(): here the interpreter's facts under the same names
    where they exist.  Unlike Java, no -D or zoo.cfg setting is echoed (Java's list can
    carry zookeeper.DigestAuthenticationProvider.superDigest)."""
    props = {
        "file.encoding": sys.getfilesystemencoding().upper(),
        "file.separator": os.sep,
        "java.home": sys.prefix,
        "java.io.tmpdir": os.environ.get("TMPDIR", "/tmp"),
        "java.vendor": "zkpy",
        "java.version": "none (zkpy on Python " + platform.python_version() + ")",
        "line.separator": "\n",
        "os.arch": platform.machine(),
        "os.name": platform.system(),
        "os.version": platform.release(),
        "path.separator": os.pathsep,
        "python.executable": sys.executable,
        "python.implementation": platform.python_implementation(),
        "python.version": platform.python_version(),
        "user.dir": os.getcwd(),
        "user.home": os.path.expanduser("~"),
        "user.name": os.environ.get("USER", ""),
        "zookeeper.version": version_line(),
    }
    return dict(sorted(props.items()))


def voting_view(ctx: Context, kw: dict[str, str]) -> Result:
    if ctx.peer is None:
        return {"current_config": {}}
    view: Result = {}
    for sid, s in sorted(_members(ctx).items()):
        if s.observer:
            continue
        client = f"{s.client_host or '0.0.0.0'}:{s.client_port}" if s.client_port else ""
        view[str(sid)] = {
            "server_addresses": [f"{s.host}:{s.quorum_port}"],
            "election_addresses": [f"{s.host}:{s.election_port}"],
            "client_address": client,
            "learner_type": "participant",
        }
    return {"current_config": view}


def _watches_by_session(ctx: Context) -> dict[int, list[str]]:
    by_sid: dict[int, list[str]] = {}
    for path, sids in fourletter._watch_index(ctx.server).items():
        for s in sids:
            by_sid.setdefault(s, []).append(path)
    return by_sid


def watches(ctx: Context, kw: dict[str, str]) -> Result:
    return {"session_id_to_watched_paths": {str(_signed(s)): sorted(p)
                                            for s, p in sorted(_watches_by_session(ctx).items())}}


def watches_by_path(ctx: Context, kw: dict[str, str]) -> Result:
    return {"path_to_session_ids": {p: sorted(_signed(s) for s in sids)
                                    for p, sids in sorted(fourletter._watch_index(ctx.server).items())}}


def watch_summary(ctx: Context, kw: dict[str, str]) -> Result:
    idx = fourletter._watch_index(ctx.server)
    return {"num_connections": len({s for ss in idx.values() for s in ss}),
            "num_paths": len(idx), "num_total_watches": sum(len(s) for s in idx.values())}


def _multiple_addresses(host: str, port: int) -> Result:
    """Java's MultipleAddresses as Jackson writes it (its bean getters)."""
    a = f"{host}:{port}"
    return {"empty": False, "all_reachable_addresses": [a], "all_addresses": [a], "one": a,
            "reachable_address": a, "wildcard_addresses": [f"0.0.0.0:{port}"], "all_ports": [port],
            "all_host_strings": [host], "all_reachable_addresses_or_all": [a], "reachable_or_one": a}


def zabstate(ctx: Context, kw: dict[str, str]) -> Result:
    peer = ctx.peer
    server = ctx.server
    if peer is None:
        return {"voting": False, "zabstate": ""}
    me = peer.me
    zxid = server.tree.last_processed_zxid
    zab = server.zab
    state = "broadcast" if zab is not None and server.serving else "election"
    port = ctx.config.client_port or me.client_port
    return {
        "myid": peer.my_id,
        "is_leader": zab is not None and zab.role == "leader",
        "quorum_address": _multiple_addresses(me.host, me.quorum_port),
        "election_address": _multiple_addresses(me.host, me.election_port),
        "client_address": f"{ctx.config.client_port_address}:{port}" if port else "",
        "voting": not me.observer,
        "last_zxid": f"0x{_hex(zxid)}",
        "zab_epoch": zxid >> 32,
        "zab_counter": zxid & 0xFFFFFFFF,
        "zabstate": state,
    }


Command = Callable[[Context, dict[str, str]], Result]

# (names: primary first, needs a serving server, function), as Commands.java registers them
COMMANDS: list[tuple[tuple[str, ...], bool, Command]] = [
    (("connection_stat_reset", "crst"), True, connection_stat_reset),
    (("configuration", "conf", "config"), True, configuration),
    (("connections", "cons"), True, connections),
    (("hash",), True, digests),
    (("dirs",), True, dirs),
    (("dump",), True, dump),
    (("environment", "env", "envi"), False, environment),
    (("get_trace_mask", "gtmk"), False, get_trace_mask),
    (("initial_configuration", "icfg"), True, initial_configuration),
    (("is_read_only", "isro"), True, is_read_only),
    (("last_snapshot", "lsnp"), True, last_snapshot),
    (("leader", "lead"), True, leader),
    (("monitor", "mntr"), False, monitor),
    (("observer_connection_stat_reset", "orst"), True, nothing),
    (("ruok",), True, nothing),
    (("set_trace_mask", "stmk"), False, set_trace_mask),
    (("server_stats", "srvr"), True, server_stats),
    (("stats", "stat"), True, stats),
    (("stat_reset", "srst"), True, stat_reset),
    (("observers", "obsr"), True, observers),
    (("system_properties", "sysp"), False, system_properties),
    (("voting_view",), True, voting_view),
    (("watches", "wchc"), True, watches),
    (("watches_by_path", "wchp"), True, watches_by_path),
    (("watch_summary", "wchs"), True, watch_summary),
    (("zabstate",), False, zabstate),
]
BY_NAME: dict[str, tuple[str, bool, Command]] = {
    name: (names[0], needs, fn) for names, needs, fn in COMMANDS for name in names
}
PRIMARY_NAMES = sorted(names[0] for names, _, _ in COMMANDS)


def run_command(runtime: ServerRuntime, name: str, kwargs: dict[str, str]) -> Result:
    """Commands.runCommand: the JSON object for one command."""
    found = BY_NAME.get(name)
    if found is None:
        return {"command": name, "error": f"Unknown command: {name}"}
    primary, needs_server, fn = found
    ctx = Context(runtime)
    if needs_server and not ctx.server.serving:
        return {"command": primary, "error": NOT_SERVING}
    data = fn(ctx, kwargs)
    out = dict(data)  # as CommandResponse.toMap: data, then command and error (data's wins)
    out["command"] = primary
    out["error"] = data.get("error")
    return out


class AdminHandler:
    """The HTTP side: routes `<commandURL>[/<name>]` (anything else is 404)."""

    def __init__(self, runtime: ServerRuntime, command_url: str) -> None:
        self.runtime = runtime
        self.url = command_url.rstrip("/")

    def __call__(self, path: str, params: dict[str, str]) -> Response:
        if path in (self.url, self.url + "/"):
            links = "".join(f'<a href="{self.url}/{n}">{n}</a>\n<br/>\n' for n in PRIMARY_NAMES)
            return Response(200, "text/html;charset=utf-8", links.encode())
        if not path.startswith(self.url + "/"):
            return Response(404, "text/html;charset=iso-8859-1",
                            b"<html><body><h2>HTTP ERROR 404 Not Found</h2></body></html>\n")
        name = path[len(self.url) + 1:]
        body = json.dumps(run_command(self.runtime, name, params), indent=2)
        return Response(200, "application/json", body.encode())
