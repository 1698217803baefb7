"""zkCli.sh 3.8's quota commands: listquota, setquota, delquota.

Quotas live under /zookeeper/quota/<path>/zookeeper_limits (the limits) and
.../zookeeper_stats (kept up to date by the server); the client creates and edits them.
"""

from __future__ import annotations

from typing import Any

from zkpy.client.cliargs import CliError, Flag, Parsed
from zkpy.client.client import ZooKeeperClient
from zkpy.client.cliformat import LIMIT_NODE, QUOTA_ROOT, STAT_NODE, StatsTrack, validate_path
from zkpy.client.console import Context
from zkpy.jute.constants import Err, KeeperError

Payload = dict[str, Any] | None

SET_FLAGS = (Flag("n", True, "num soft quota"), Flag("b", True, "bytes soft quota"),
             Flag("N", True, "num hard quota"), Flag("B", True, "bytes hard quota"))
DEL_FLAGS = tuple(Flag(f.name, False, f.description) for f in SET_FLAGS)
_KEYS = {"n": "count", "b": "bytes", "N": "countHardLimit", "B": "byteHardLimit"}


def limit_path(path: str) -> str:
    return f"{QUOTA_ROOT}{path}/{LIMIT_NODE}"


def stat_path(path: str) -> str:
    return f"{QUOTA_ROOT}{path}/{STAT_NODE}"


async def _get(zk: ZooKeeperClient, path: str) -> bytes:
    validate_path(path)
    data, _ = await zk.get(path)
    return data or b""


async def listquota(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    ctx.warn(f"absolute path is {limit_path(path)}")
    out: dict[str, Any] = {"path": path}
    async with ctx.zk(path) as zk:
        try:
            limits = StatsTrack(await _get(zk, limit_path(path)))
            ctx.out(f"Output quota for {path} {limits}")
            out["quota"] = limits.json()
            usage = StatsTrack(await _get(zk, stat_path(path)))
            ctx.out(f"Output stat for {path} {usage}")
            out["stat"] = usage.json()
        except KeeperError as e:
            if e.code != Err.NONODE:
                raise
            raise CliError(f"quota for {path} does not exist.", 1, "NONODE") from None
    return out


def _quota_values(p: Parsed) -> dict[str, int]:
    values = {}
    for flag, key in _KEYS.items():
        if not p.has(flag):
            continue
        try:
            v = int(p.value(flag))
        except ValueError:
            raise CliError("NumberFormatException happens when parsing the option value") from None
        if key.startswith("count") and v <= 0:
            raise CliError("the num quota must be greater than zero")
        if key.startswith("byte") and v < 0:
            raise CliError("the bytes quota must be greater than or equal to zero")
        values[key] = v
    return values


async def setquota(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    if path.startswith(QUOTA_ROOT):
        raise CliError(f"cannot set a quota under the path: {QUOTA_ROOT}")
    values = _quota_values(p)
    validate_path(path)
    async with ctx.zk(path) as zk:
        if await zk.exists(path) is None:
            raise CliError(f"{path} does not exist.", 1, "NONODE")
        await _check_child_quota(zk, path)
        await _check_parent_quota(zk, path)
        limits = await _create_quota(ctx, zk, path, values)
    return {"path": path, "quota": limits.json()}


async def _create_quota(ctx: Context, zk: ZooKeeperClient, path: str, values: dict[str, int]) -> StatsTrack:
    if await zk.exists(QUOTA_ROOT) is None:
        await _ensure(zk, "/zookeeper")
        await _ensure(zk, QUOTA_ROOT)
    node = QUOTA_ROOT
    for part in path.split("/")[1:] if path != "/" else []:
        node = f"{node}/{part}"
        await _ensure(zk, node)
    limit, stat = f"{node}/{LIMIT_NODE}", f"{node}/{STAT_NODE}"
    if await zk.exists(limit) is None:
        quota = StatsTrack()
        quota.stats = {k: values.get(k, -1) for k in ("count", "bytes", "countHardLimit", "byteHardLimit")}
        await zk.create(limit, str(quota).encode())
        await zk.create(stat, b"count=0,bytes=0")
        _warn_below_usage(ctx, StatsTrack(await _get(zk, limit)), StatsTrack(await _get(zk, stat)))
        return quota
    quota = StatsTrack(await _get(zk, limit))
    quota.stats.update(values)
    _warn_below_usage(ctx, quota, StatsTrack(await _get(zk, stat)))
    await zk.set(limit, str(quota).encode())
    return quota


async def _ensure(zk: ZooKeeperClient, path: str) -> None:
    if await zk.exists(path) is None:
        try:
            await zk.create(path, None)
        except KeeperError as e:
            if e.code != Err.NODEEXISTS:
                raise


def _warn_below_usage(ctx: Context, quota: StatsTrack, usage: StatsTrack) -> None:
    count, size = usage.get("count"), usage.get("bytes")
    if -1 < quota.get("count") < count or -1 < quota.get("countHardLimit") < count:
        ctx.warn(f"[Warning]: the count quota you create is less than the existing count:{count}", True)
    if -1 < quota.get("bytes") < size or -1 < quota.get("byteHardLimit") < size:
        ctx.warn(f"[Warning]: the bytes quota you create is less than the existing bytes:{size}", True)


async def _check_child_quota(zk: ZooKeeperClient, path: str) -> None:
    """A quota on a path below `path` forbids one on `path`."""
    root = QUOTA_ROOT + path
    validate_path(root)
    if await zk.exists(root) is None:
        return
    todo = [root]
    while todo:
        node = todo.pop()
        try:
            children, _ = await zk.get_children(node)
        except KeeperError as e:
            if e.code == Err.NONODE:
                continue
            raise
        if node != root and LIMIT_NODE in children:
            child = node[len(QUOTA_ROOT):]
            raise CliError(f"{path} has a child {child} which has a quota", 1, "BADARGUMENTS")
        todo += [f"{node}/{c}" for c in sorted(children, reverse=True)]


async def _check_parent_quota(zk: ZooKeeperClient, path: str) -> None:
    """A quota on a path above `path` forbids one on `path`."""
    parts = path.split("/")
    node = QUOTA_ROOT
    for part in parts[1:-1]:
        node = f"{node}/{part}"
        try:
            children, _ = await zk.get_children(node)
        except KeeperError as e:
            if e.code == Err.NONODE:
                return
            raise
        if not children:
            return
        if LIMIT_NODE in children:
            parent = node[len(QUOTA_ROOT):]
            raise CliError(f"{path} has a parent {parent} which has a quota", 1, "BADARGUMENTS")


async def delquota(ctx: Context, p: Parsed) -> Payload:
    path = p.args[1]
    which = [key for flag, key in _KEYS.items() if p.has(flag)]
    limit = limit_path(path)
    validate_path(limit)
    async with ctx.zk(path) as zk:
        if await zk.exists(limit) is None:
            ctx.out(f"Quota does not exist for {path}")
            return {"path": path, "deleted": []}
        try:
            quota = StatsTrack(await _get(zk, limit))
            if not which:
                parent = QUOTA_ROOT + path
                children, _ = await zk.get_children(parent)
                for child in children:
                    await zk.delete(f"{parent}/{child}")
                await _trim(zk, parent)
                return {"path": path, "deleted": list(_KEYS.values())}
            for key in which:
                quota.stats[key] = -1
            await zk.set(limit, str(quota).encode())
        except KeeperError as e:
            if e.code != Err.NONODE:
                raise
            raise CliError(f"quota for {path} does not exist.", 1, "NONODE") from None
    return {"path": path, "deleted": which, "quota": quota.json()}


async def _trim(zk: ZooKeeperClient, path: str) -> None:
    """Delete empty quota nodes upwards, stopping at /zookeeper/quota."""
    while path != QUOTA_ROOT:
        children, _ = await zk.get_children(path)
        if children:
            return
        await zk.delete(path)
        path = path[: path.rfind("/")]
