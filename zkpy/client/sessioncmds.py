"""zkCli.sh 3.8 commands about the session and the shell itself: connect, close, quit,
addauth, whoami, config, reconfig, version, printwatches, history, redo."""

from __future__ import annotations

from typing import Any

from zkpy import ZK_COMPAT_VERSION, __version__
from zkpy.client.cliargs import CliError, Flag, Parsed, Reported, split_line
from zkpy.client.cliformat import stat_json, stat_lines
from zkpy.client.console import Context

Payload = dict[str, Any] | None


async def connect(ctx: Context, p: Parsed) -> Payload:
    host = p.args[1] if len(p.args) > 1 else None
    try:
        await ctx.console.connect(host)
    except ValueError as e:
        raise CliError(str(e), 1, "BADARGUMENTS") from None
    try:  # zkCli returns at once; waiting makes scripts and the prompt predictable
        await ctx.console.connected_client()
    except Exception:  # noqa: BLE001 - still connecting: the prompt says so
        pass
    return {"host": ctx.console.host, "state": ctx.console.state}


async def close(ctx: Context, p: Parsed) -> Payload:
    await ctx.console.close()
    return {}


async def quit(ctx: Context, p: Parsed) -> Payload:
    ctx.console.quit = True
    if ctx.console.alive:
        await ctx.console.close()
    return {}


async def addauth(ctx: Context, p: Parsed) -> Payload:
    scheme = p.args[1]
    cred = p.args[2].encode() if len(p.args) > 2 else b""
    async with ctx.zk(None) as zk:
        await zk.add_auth(scheme, cred)
    return {"scheme": scheme}


async def whoami(ctx: Context, p: Parsed) -> Payload:
    async with ctx.zk(None) as zk:
        infos = await zk.whoami()
    ctx.out("Auth scheme: User")
    for scheme, user in infos:
        ctx.out(f"{scheme}: {user}")
    return {"auth": [{"scheme": s, "user": u} for s, u in infos]}


def client_config(config: str) -> str:
    """ConfigUtils.getClientConfigStr: 'version host:port,host:port'."""
    version, hosts = "", []
    for line in config.splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key == "version":
            version = value
        if not key.startswith("server."):
            continue
        client = value.partition(";")[2]
        if not client:
            hosts.append("")
            continue
        host, _, port = client.rpartition(":")
        hosts.append(f"{host or '0.0.0.0'}:{port}")
    return f"{version} {','.join(hosts)}"


async def config(ctx: Context, p: Parsed) -> Payload:
    async with ctx.zk("/zookeeper/config") as zk:
        data, st = await zk.get_config(ctx.watcher(p.has("w")))
    text = "null" if data is None else data.decode("utf-8", "replace")
    ctx.out(client_config(text) if p.has("c") else text)
    out: dict[str, Any] = {"config": client_config(text) if p.has("c") else text}
    if p.has("s"):
        for line in stat_lines(st):
            ctx.out(line)
        out["stat"] = stat_json(st)
    return out


RECONFIG_USAGE = ("[-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | "
                  "[-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]")
RECONFIG_FLAGS = (Flag("s"), Flag("v", True), Flag("file", True), Flag("members", True), Flag("add", True),
                  Flag("remove", True))


def _reconfig_args(p: Parsed) -> tuple[str | None, str | None, str | None, int]:
    nonincremental = p.has("file") or p.has("members")
    if not nonincremental and not p.has("add") and not p.has("remove"):
        raise CliError("reconfig " + RECONFIG_USAGE)
    try:
        version = int(p.value("v"), 16) if p.has("v") else -1
    except ValueError:
        raise CliError("-v must be followed by a long (configuration version)") from None
    if nonincremental and (p.has("add") or p.has("remove")):
        raise CliError("Can't use -file or -members together with -add or -remove (mixing incremental and "
                       "non-incremental modes is not allowed)")
    if p.has("file") and p.has("members"):
        raise CliError("Can't use -file and -members together (conflicting non-incremental modes)")
    members = p.value("members").lower() if p.has("members") else None
    if p.has("file"):
        try:
            with open(p.value("file")) as f:
                lines = [ln.strip() for ln in f if ln.strip().startswith(("server.", "group.", "weight."))]
        except OSError as e:
            raise CliError(f"Error processing {p.value('file')}{e}") from None
        members = "\n".join(lines)
    joining = p.value("add").lower() if p.has("add") else None
    leaving = p.value("remove").lower() if p.has("remove") else None
    return joining, leaving, members, version


async def reconfig(ctx: Context, p: Parsed) -> Payload:
    joining, leaving, members, version = _reconfig_args(p)
    async with ctx.zk(None) as zk:
        data, st = await zk.reconfig(joining, leaving, members, version)
    text = (data or b"").decode("utf-8", "replace")
    ctx.out("Committed new configuration:\n" + text)
    out: dict[str, Any] = {"config": text}
    if p.has("s"):
        for line in stat_lines(st):
            ctx.out(line)
        out["stat"] = stat_json(st)
    return out


def version_string() -> str:
    return f"{ZK_COMPAT_VERSION}-zkpy-{__version__}"


async def version(ctx: Context, p: Parsed) -> Payload:
    ctx.out(f"ZooKeeper CLI version: {version_string()}")
    return {"version": version_string()}


async def printwatches(ctx: Context, p: Parsed) -> Payload:
    if len(p.args) == 1:
        ctx.out(f"printwatches is {'on' if ctx.console.print_watches else 'off'}")
    else:
        ctx.console.print_watches = p.args[1] == "on"
    return {"printwatches": ctx.console.print_watches}


async def history(ctx: Context, p: Parsed) -> Payload:
    c = ctx.console
    items = []
    for i in range(max(c.count - 10, 0), c.count + 1):
        line = c.history.get(i)
        ctx.out(f"{i} - {line}")
        items.append({"index": i, "command": line})
    return {"history": items}


def _java_decode(text: str) -> int:
    """Integer.decode: decimal, 0x/# hex, leading-0 octal, optional sign."""
    s = text.strip()
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    if s.lower().startswith("0x") or s.startswith("#"):
        return sign * int(s[2:] if s[0] == "0" else s[1:], 16)
    if len(s) > 1 and s.startswith("0"):
        return sign * int(s[1:], 8)
    return sign * int(s, 10)


async def redo(ctx: Context, p: Parsed) -> Payload:
    c = ctx.console
    if len(p.args) < 2:
        return {}
    try:
        i = _java_decode(p.args[1])
    except ValueError:
        raise CliError(f'For input string: "{p.args[1]}"') from None
    if c.count <= i or i < 0:
        raise CliError("Command index out of range")
    line = c.history[i]
    words = split_line(line)
    if words[0] == "redo":
        raise CliError("No redoing redos")
    c.history[c.count] = line
    code = await c.run_words(words)
    if code:
        raise Reported(code)
    return None
