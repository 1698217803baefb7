"""The zkCli.sh 3.8 commands that read and write znodes, and the table of all commands.

Each handler gets a Context and the parsed line, prints what zkCli prints (through
ctx.out / ctx.err / ctx.warn) and returns the JSON payload for --json.  Errors are
raised as CliError with zkCli's message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zkpy.client.cliargs import CliError, Flag, Parsed, ParseError, UsageError, group_description, parse_flags
from zkpy.client.client import ZooKeeperClient
from zkpy.client.cliformat import (
    acl_json,
    acl_lines,
    data_json,
    java_list,
    join,
    keeper_message,
    parse_acl,
    stat_json,
    stat_lines,
    validate_path,
)
from zkpy.client.console import Context, NotConnected
from zkpy.jute.constants import MAX_TTL, Err, KeeperError
from zkpy.jute.records import OPEN_ACL_UNSAFE

Payload = dict[str, Any] | None
Handler = Callable[[Context, Parsed], Awaitable[Payload]]


@dataclass(frozen=True)
class Command:
    """A zkCli command: its usage text, flags, argument count and handler."""

    name: str
    usage: str
    run: Handler
    flags: tuple[Flag, ...] = ()
    min_args: int = 1  # words including the command name
    max_args: int = 1 << 30
    needs_session: bool = True
    writes: bool = False
    exclusive: bool = False  # the flags form one group: at most one of them
    flag_required: bool = False  # one flag of the group must be given
    watch_compat: bool = False  # 'get path watch' is the deprecated 'get -w path'

    @property
    def usage_line(self) -> str:
        return f"{self.name} {self.usage}"


def _int(value: str, flag: str, kind: str = "an int") -> int:
    try:
        return int(value)
    except ValueError:
        raise CliError(f"-{flag} argument must be {kind} value") from None


def _stat(ctx: Context, p: Parsed, stat: Any) -> dict[str, Any]:
    if p.has("s"):
        for line in stat_lines(stat):
            ctx.out(line)
        return {"stat": stat_json(stat)}
    return {}


# ---- reading ----------------------------------------------------------------------------

async def ls(ctx: Context, p: Parsed) -> Payload:
    if p.has("?"):
        ctx.out("usage: ls [options] path\n -?   help\n -R   recurse\n -s   stat\n -w   watch")
    if len(p.args) < 2:
        raise UsageError()
    path, watch = p.args[1], ctx.watcher(p.has("w"))
    validate_path(path)
    async with ctx.zk(path) as zk:
        if p.has("R"):
            paths: list[str] = []
            await zk.get(path, watch)
            _emit(ctx, paths, path)
            await _visit(ctx, zk, path, watch, paths)
            return {"path": path, "paths": paths}
        children, stat = await zk.get_children(path, watch)
    children.sort()
    ctx.out(java_list(children))
    return {"path": path, "children": children, **_stat(ctx, p, stat)}


def _emit(ctx: Context, paths: list[str], path: str) -> None:
    paths.append(path)
    ctx.out(path)


async def _visit(ctx: Context, zk: ZooKeeperClient, path: str, watch: Any, paths: list[str]) -> None:
    """ZKUtil.visitSubTreeDFS: a node's children (sorted), then each child's subtree."""
    try:
        children, _ = await zk.get_children(path, watch)
    except KeeperError as e:
        if e.code == Err.NONODE:
            return
        raise KeeperError(e.code, path) from None
    children.sort()
    for child in children:
        _emit(ctx, paths, join(path, child))
    for child in children:
        await _visit(ctx, zk, join(path, child), watch, paths)


async def get(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        data, stat = await zk.get(path, ctx.watcher(p.has("w")))
    ctx.out("null" if data is None else data.decode("utf-8", "replace"))
    return {"path": path, **data_json(data), **_stat(ctx, p, stat)}


async def stat(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        st = await zk.exists(path, ctx.watcher(p.has("w")))
    if st is None:
        raise CliError(f"Node does not exist: {path}", 1, "NONODE")
    for line in stat_lines(st):
        ctx.out(line)
    return {"path": path, "stat": stat_json(st)}


async def get_acl(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        acl, st = await zk.get_acl(path)
    for a in acl:
        for line in acl_lines(a):
            ctx.out(line)
    return {"path": path, "acl": [acl_json(a) for a in acl], **_stat(ctx, p, st)}


async def get_ephemerals(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1] if len(p.args) > 1 else "/"
    validate_path(path)
    async with ctx.zk(path) as zk:
        found = await zk.get_ephemerals(path, sort=False)
    ctx.out(java_list(found))
    return {"path": path, "ephemerals": found}


async def get_all_children_number(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        n = await zk.get_all_children_number(path)
    ctx.out(str(n))
    return {"path": path, "count": n}


async def sync(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        try:
            await zk.sync(path)
        except KeeperError as e:
            raise CliError(f"Sync has failed. rc={int(e.code)}", 1, Err(e.code).name) from None
    ctx.out("Sync is OK")
    return {"path": path}


# ---- writing ----------------------------------------------------------------------------

async def create(ctx: Context, p: Parsed) -> Payload:
    e, s, c, t = p.has("e"), p.has("s"), p.has("c"), p.has("t")
    if c and (e or s):
        raise CliError("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.")
    ttl = _int(p.value("t"), "t", "a long") if t else None
    if ttl is not None and not -(1 << 63) <= ttl < (1 << 63):
        raise CliError("-t argument must be a long value")
    if t and e:
        raise CliError("TTLs cannot be used with Ephemeral znodes")
    if t and c:
        raise CliError("TTLs cannot be used with Container znodes")
    if ttl is not None and not 0 < ttl <= MAX_TTL:
        raise CliError(f"ttl must be positive and cannot be larger than: {MAX_TTL}")
    path = p.args[1]
    data = p.args[2].encode("utf-8", "surrogateescape") if len(p.args) > 2 else None
    acl = parse_acl(p.args[3], ctx.warn) if len(p.args) > 3 else list(OPEN_ACL_UNSAFE)
    validate_path(path, s)
    if not acl:
        ctx.warn(keeper_message(Err.INVALIDACL, None))
        raise CliError("Acl is not valid : null", 1, "INVALIDACL")
    try:
        async with ctx.zk(path) as zk:
            created, st = await zk.create(path, data, acl, ephemeral=e, sequential=s, container=c, ttl=ttl)
    except CliError as err:
        if err.code == "EPHEMERALONLOCALSESSION":
            ctx.warn("Unable to create ephemeral node on a local session")
        elif err.code == "INVALIDACL":
            ctx.warn(keeper_message(Err.INVALIDACL, path))
        raise
    ctx.err(f"Created {created}")
    return {"path": path, "created": created}


async def set_(ctx: Context, p: Parsed) -> Payload:
    path, data = p.args[1], p.args[2].encode("utf-8", "surrogateescape")
    version = _int(p.value("v"), "v") if p.has("v") else -1
    validate_path(path)
    async with ctx.zk(path) as zk:
        st = await zk.set(path, data, version)
    _stat(ctx, p, st)
    return {"path": path, "stat": stat_json(st)}


async def delete(ctx: Context, p: Parsed) -> Payload:
    if len(p.args) > 2:
        ctx.warn("'delete path [version]' has been deprecated. "
                 "Please use 'delete [-v version] path' instead.")
    path = p.args[1]
    version = _int(p.value("v"), "v") if p.has("v") else -1
    validate_path(path)
    async with ctx.zk(path) as zk:
        await zk.delete(path, version)
    return {"path": path}


async def deleteall(ctx: Context, p: Parsed) -> Payload:
    batch = _int(p.value("b"), "b") if p.has("b") else 1000
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        tree = [path]
        i = 0
        while i < len(tree):  # ZKUtil.listSubTreeBFS
            try:
                children, _ = await zk.get_children(tree[i])
            except KeeperError as e:
                raise KeeperError(e.code, tree[i]) from None
            tree += [join(tree[i], c) for c in children]
            i += 1
        ok = await _delete_in_batches(zk, tree, batch)
    if not ok:
        raise CliError("Failed to delete some node(s) in the subtree!", 1, "PARTIAL")
    return {"path": path, "deleted": len(tree)}


async def _delete_in_batches(zk: ZooKeeperClient, tree: list[str], batch: int) -> bool:
    """Leaves first, `batch` deletes per multi, as ZKUtil.deleteInBatch."""
    ops = []
    for i in range(len(tree) - 1, -1, -1):
        ops.append(zk.delete_op(tree[i]))
        if len(ops) == batch or i == 0:
            try:
                results = await zk.multi(ops)
            except KeeperError:
                return False
            if any(r.err for r in results):
                return False
            ops = []
    return True


async def set_acl(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    acl = parse_acl(p.args[2], ctx.warn)
    version = _int(p.value("v"), "v") if p.has("v") else -1
    validate_path(path)
    if not acl:
        raise CliError("Acl is not valid : null", 1, "INVALIDACL")
    async with ctx.zk(path) as zk:
        if not p.has("R"):
            st = await zk.set_acl(path, acl, version)
            return {"path": path, **_stat(ctx, p, st)}
        paths: list[str] = []
        await zk.get(path)
        paths.append(path)
        await _visit(_Quiet(ctx), zk, path, None, paths)
        failed = []
        for node in paths:
            try:
                await zk.set_acl(node, acl, version)
            except KeeperError as e:
                ctx.out(keeper_message(Err(e.code), node))
                failed.append({"path": node, "error": keeper_message(Err(e.code), node)})
    return {"path": path, "paths": paths, "failed": failed}


class _Quiet(Context):
    """A context that prints nothing (setAcl -R walks the tree without listing it)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.console, ctx.name)

    def out(self, text: str) -> None:
        pass


# ---- watches ----------------------------------------------------------------------------

_MODES = {"PERSISTENT": False, "PERSISTENT_RECURSIVE": True}


async def add_watch(ctx: Context, p: Parsed) -> Payload:
    mode = p.value("m").upper() if p.has("m") else "PERSISTENT_RECURSIVE"
    if mode not in _MODES:
        raise UsageError()
    path = p.args[1]
    validate_path(path)
    async with ctx.zk(path) as zk:
        await zk.add_watch(path, ctx.console.on_watch, recursive=_MODES[mode])
    return {"path": path, "mode": mode}


_REMOVED_EVENTS = {"data": 5, "child": 6, "persistent": 7}


async def remove_watches(ctx: Context, p: Parsed) -> Payload:
    """As the Java client: check our own watches, ask the server, then drop ours (and
    fail if the server removed something we did not hold, e.g. -c on a persistent watch)."""
    path = p.args[1]
    kind, wtype = ("children", 1) if p.has("c") else ("data", 2) if p.has("d") else ("any", 3)
    validate_path(path)
    zk = ctx.console.zk
    assert zk is not None
    if not _holds_watch(zk, path, wtype):
        raise CliError(keeper_message(Err.NOWATCHER, path), 1, "NOWATCHER")
    try:
        async with ctx.zk(path) as client:
            dropped = await client.remove_watches(path, wtype)
    except CliError:
        if not p.has("l"):
            raise
        dropped = zk.drop_watches(path, wtype)
    if not dropped:
        raise CliError(keeper_message(Err.NOWATCHER, path), 1, "NOWATCHER")
    for k in dropped:  # the watcher hears that its watches are gone
        ctx.console.event("SyncConnected", _REMOVED_EVENTS[k], path)
    return {"path": path, "type": kind}


def _holds_watch(zk: ZooKeeperClient, path: str, wtype: int) -> bool:
    w = zk.watches
    tables = [w.persistent, w.recursive] + {1: [w.child], 2: [w.data, w.exist]}.get(
        wtype, [w.child, w.data, w.exist])
    return any(path in t for t in tables)


# ---- the table --------------------------------------------------------------------------

def _flags(*spec: str) -> tuple[Flag, ...]:
    """'s' is a switch, 'v:' takes a value."""
    return tuple(Flag(s.rstrip(":"), s.endswith(":")) for s in spec)


def _table() -> dict[str, Command]:
    from zkpy.client import quota
    from zkpy.client import sessioncmds as sc

    cmds = [
        Command("addWatch", "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - "
                "default is PERSISTENT_RECURSIVE", add_watch, _flags("m:"), 2, 2),
        Command("addauth", "scheme auth", sc.addauth, (), 2),
        Command("close", "", sc.close),
        Command("config", "[-c] [-w] [-s]", sc.config, _flags("s", "w", "c")),
        Command("connect", "host:port", sc.connect, needs_session=False),
        Command("create", "[-s] [-e] [-c] [-t ttl] path [data] [acl]", create, _flags("e", "s", "c", "t:"), 2,
                writes=True),
        Command("delete", "[-v version] path", delete, _flags("v:"), 2, writes=True),
        Command("deleteall", "path [-b batch size]", deleteall, _flags("b:"), 2, writes=True),
        Command("delquota", "[-n|-b|-N|-B] path", quota.delquota, quota.DEL_FLAGS, 2, writes=True,
                exclusive=True),
        Command("get", "[-s] [-w] path", get, _flags("s", "w"), 2, watch_compat=True),
        Command("getAcl", "[-s] path", get_acl, _flags("s"), 2),
        Command("getAllChildrenNumber", "path", get_all_children_number, (), 2),
        Command("getEphemerals", "path", get_ephemerals),
        Command("history", "", sc.history, needs_session=False),
        Command("listquota", "path", quota.listquota, (), 2),
        Command("ls", "[-s] [-w] [-R] path", ls, _flags("?", "s", "w", "R"), watch_compat=True),
        Command("printwatches", "on|off", sc.printwatches, needs_session=False),
        Command("quit", "", sc.quit, needs_session=False),
        Command("reconfig", sc.RECONFIG_USAGE, sc.reconfig, sc.RECONFIG_FLAGS, writes=True),
        Command("redo", "cmdno", sc.redo, needs_session=False),
        Command("removewatches", "path [-c|-d|-a] [-l]", remove_watches, _flags("c", "d", "a", "l"), 2),
        Command("set", "[-s] [-v version] path data", set_, _flags("s", "v:"), 3, writes=True),
        Command("setAcl", "[-s] [-v version] [-R] path acl", set_acl, _flags("s", "v:", "R"), 3, writes=True),
        Command("setquota", "-n|-b|-N|-B val path", quota.setquota, quota.SET_FLAGS, 2, writes=True,
                exclusive=True, flag_required=True),
        Command("stat", "[-w] path", stat, _flags("w"), 2, watch_compat=True),
        Command("sync", "path", sync, (), 2),
        Command("version", "", sc.version, (), 1, 1),
        Command("whoami", "", sc.whoami),
    ]
    return {c.name: c for c in cmds}


COMMANDS: dict[str, Command] = {}


def commands() -> dict[str, Command]:
    if not COMMANDS:
        COMMANDS.update(_table())
    return COMMANDS


def usage_lines() -> list[str]:
    """ZooKeeperMain.usage()."""
    return ["ZooKeeper -server host:port -client-configuration properties-file cmd args"] + [
        f"\t{c.usage_line}" for c in sorted(commands().values(), key=lambda c: c.name)]


def parse(cmd: Command, words: list[str], ctx: Context) -> Parsed:
    flags = list(cmd.flags)
    p = parse_flags(words, flags, exclusive=cmd.exclusive)
    if cmd.flag_required and not p.flags:
        raise ParseError("org.apache.commons.cli.MissingOptionException: Missing required option: "
                         + group_description(flags))
    if not cmd.min_args <= len(p.args) <= cmd.max_args:
        raise CliError(cmd.usage_line, 1, "USAGE")
    if cmd.watch_compat and len(p.args) > 2:
        noun = {"ls": "ls [-w]", "get": "get [-s] [-w]"}.get(cmd.name, "stat [-w]")
        ctx.warn(f"'{cmd.name} path [watch]' has been deprecated. Please use '{noun} path' instead.")
        words = list(words)
        words[2] = "-w"
        p = parse_flags(words, flags)
    return p


async def dispatch(ctx: Context, words: list[str]) -> Payload:
    """Run one command line (already split into words) as ZooKeeperMain.processZKCmd."""
    cmd = commands().get(words[0])
    if cmd is None:
        if not ctx.json:
            for line in usage_lines():
                ctx.console.screen.err(line)
        raise CliError(f"Command not found: Command not found {words[0]}", 127, "COMMAND_NOT_FOUND")
    if cmd.needs_session and not ctx.console.alive:
        raise NotConnected()
    p = parse(cmd, words, ctx)
    if cmd.writes and ctx.console.read_only:
        target = p.args[1] if len(p.args) > 1 else "/"
        raise CliError(f"Not a read-only call: {target}", 1, "NOTREADONLY")
    try:
        return await cmd.run(ctx, p)
    except UsageError:
        raise CliError(cmd.usage_line, 1, "USAGE") from None
