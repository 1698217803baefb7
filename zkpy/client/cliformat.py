"""How zkCli.sh 3.8 writes things: Stat blocks, ACLs, dates, watch events, error messages,
path checks and quota records.  Pure functions, no I/O."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from zkpy.client.cliargs import CliError
from zkpy.client.requests import Stat
from zkpy.jute.constants import Err, KeeperError, Perm
from zkpy.jute.records import ACL

# ---- Stat -------------------------------------------------------------------------------


def java_date(ms: int) -> str:
    """java.util.Date.toString(): 'Thu Jan 01 00:00:00 UTC 1970' in the local time zone."""
    t = time.localtime(ms // 1000)
    zone = time.strftime("%Z", t) or "UTC"
    return time.strftime("%a %b %d %H:%M:%S ", t) + zone + time.strftime(" %Y", t)


def java_hex(v: int) -> str:
    """Long.toHexString: negative longs as their two's complement."""
    return "0x" + format(v & 0xFFFFFFFFFFFFFFFF, "x")


def stat_lines(s: Stat) -> list[str]:
    return [
        f"cZxid = {java_hex(s.czxid)}",
        f"ctime = {java_date(s.ctime)}",
        f"mZxid = {java_hex(s.mzxid)}",
        f"mtime = {java_date(s.mtime)}",
        f"pZxid = {java_hex(s.pzxid)}",
        f"cversion = {s.cversion}",
        f"dataVersion = {s.version}",
        f"aclVersion = {s.aversion}",
        f"ephemeralOwner = {java_hex(s.ephemeralOwner)}",
        f"dataLength = {s.dataLength}",
        f"numChildren = {s.numChildren}",
    ]


def stat_json(s: Stat) -> dict[str, int]:
    """The Stat under zkCli's names (times in ms since the epoch)."""
    return {
        "cZxid": s.czxid, "ctime": s.ctime, "mZxid": s.mzxid, "mtime": s.mtime, "pZxid": s.pzxid,
        "cversion": s.cversion, "dataVersion": s.version, "aclVersion": s.aversion,
        "ephemeralOwner": s.ephemeralOwner & 0xFFFFFFFFFFFFFFFF, "dataLength": s.dataLength,
        "numChildren": s.numChildren,
    }


def data_json(data: bytes | None) -> dict[str, Any]:
    """Data as text when it is UTF-8, and always exactly as base64."""
    if data is None:
        return {"data": None, "data_base64": None}
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"data": text, "data_base64": base64.b64encode(data).decode("ascii")}


def java_list(items: list[str]) -> str:
    """java.util.List.toString()."""
    return "[" + ", ".join(items) + "]"


# ---- ACLs -------------------------------------------------------------------------------

_PERM_CHARS = (("c", Perm.CREATE), ("d", Perm.DELETE), ("r", Perm.READ), ("w", Perm.WRITE),
               ("a", Perm.ADMIN))


def perm_string(perms: int) -> str:
    """ZKUtil.getPermString: 31 -> 'cdrwa'."""
    return "".join(ch for ch, bit in _PERM_CHARS if perms & bit)


def parse_acl(text: str, warn: Any) -> list[ACL]:
    """AclParser.parse: 'scheme:id:perms,...'; bad entries are reported through warn() and skipped."""
    out = []
    for a in text.split(","):
        first, last = a.find(":"), a.rfind(":")
        if first == -1 or first == last:
            warn(f"{a} does not have the form scheme:id:perm")
            continue
        perms = 0
        for ch in a[last + 1:]:
            bit = dict(_PERM_CHARS).get(ch)
            if bit is None:
                warn(f"Unknown perm type: {ch}")
            else:
                perms |= bit
        out.append(ACL(perms, a[:first], a[first + 1:last]))
    return out


def _csv(s: str) -> str:
    """Jute's CsvOutputArchive string form, used by Id.toString()."""
    esc = {"\0": "%00", "\n": "%0A", "\r": "%0D", ",": "%2C", "}": "%7D", "%": "%25"}
    return "'" + "".join(esc.get(c, c) for c in s)


def acl_lines(acl: ACL) -> list[str]:
    """getAcl prints Id.toString() (a jute CSV record ending in a newline), ': ' and the perms."""
    return [f"{_csv(acl.scheme)},{_csv(acl.id)}", f": {perm_string(acl.perms)}"]


def acl_json(acl: ACL) -> dict[str, Any]:
    return {"scheme": acl.scheme, "id": acl.id, "perms": perm_string(acl.perms)}


# ---- events -----------------------------------------------------------------------------

EVENT_TYPES = {-1: "None", 1: "NodeCreated", 2: "NodeDeleted", 3: "NodeDataChanged",
               4: "NodeChildrenChanged", 5: "DataWatchRemoved", 6: "ChildWatchRemoved",
               7: "PersistentWatchRemoved"}


def event_text(state: str, etype: int, path: str | None) -> str:
    """WatchedEvent.toString()."""
    shown = "null" if path is None else path
    return f"WatchedEvent state:{state} type:{EVENT_TYPES.get(etype, etype)} path:{shown}"


# ---- errors -----------------------------------------------------------------------------

_CODE_MESSAGES = {
    Err.SYSTEMERROR: "SystemError", Err.RUNTIMEINCONSISTENCY: "RuntimeInconsistency",
    Err.DATAINCONSISTENCY: "DataInconsistency", Err.CONNECTIONLOSS: "ConnectionLoss",
    Err.MARSHALLINGERROR: "MarshallingError", Err.NEWCONFIGNOQUORUM: "NewConfigNoQuorum",
    Err.RECONFIGINPROGRESS: "ReconfigInProgress", Err.UNIMPLEMENTED: "Unimplemented",
    Err.OPERATIONTIMEOUT: "OperationTimeout", Err.BADARGUMENTS: "BadArguments",
    Err.APIERROR: "APIError", Err.NONODE: "NoNode", Err.NOAUTH: "NoAuth", Err.BADVERSION: "BadVersion",
    Err.NOCHILDRENFOREPHEMERALS: "NoChildrenForEphemerals", Err.NODEEXISTS: "NodeExists",
    Err.INVALIDACL: "InvalidACL", Err.AUTHFAILED: "AuthFailed", Err.NOTEMPTY: "Directory not empty",
    Err.SESSIONEXPIRED: "Session expired", Err.INVALIDCALLBACK: "Invalid callback",
    Err.SESSIONMOVED: "Session moved", Err.NOTREADONLY: "Not a read-only call",
    Err.EPHEMERALONLOCALSESSION: "Ephemeral node on local session", Err.NOWATCHER: "No such watcher",
    Err.RECONFIGDISABLED: "Reconfig is disabled",
    Err.SESSIONCLOSEDREQUIRESASLAUTH: "Session closed because client failed to authenticate",
    Err.QUOTAEXCEEDED: "Quota has exceeded", Err.THROTTLEDOP: "Op throttled due to high load",
}


def keeper_message(code: Err, path: str | None) -> str:
    """KeeperException.getMessage()."""
    text = _CODE_MESSAGES.get(code, f"Unknown error {code.name}")
    return f"KeeperErrorCode = {text}" + (f" for {path}" if path else "")


def cli_message(code: Err, path: str | None) -> str:
    """CliWrapperException's message for a KeeperException."""
    simple = {
        Err.NONODE: "Node does not exist: ", Err.NOCHILDRENFOREPHEMERALS: "Ephemerals cannot have children: ",
        Err.NODEEXISTS: "Node already exists: ", Err.NOTEMPTY: "Node not empty: ",
        Err.NOTREADONLY: "Not a read-only call: ", Err.INVALIDACL: "Acl is not valid : ",
        Err.NOAUTH: "Insufficient permission : ", Err.BADARGUMENTS: "Arguments are not valid : ",
        Err.BADVERSION: "version No is not valid : ", Err.QUOTAEXCEEDED: "Quota has exceeded : ",
    }
    if code in simple:
        return simple[code] + str(path)
    if code == Err.RECONFIGINPROGRESS:
        return "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)"
    if code == Err.NEWCONFIGNOQUORUM:
        return ("No quorum of new config is connected and up-to-date with the leader of last commmitted "
                "config - try invoking reconfiguration after new servers are connected and synced")
    return keeper_message(code, path)


def cli_error(e: KeeperError, path: str | None) -> CliError:
    """The CliError zkCli reports for a ZooKeeper error on `path`."""
    code = Err(e.code)
    return CliError(cli_message(code, path), 1, code.name)


# ---- paths ------------------------------------------------------------------------------


def validate_path(path: str, sequential: bool = False) -> None:
    """PathUtils.validatePath; raises CliError with the same message as zkCli."""
    if sequential:
        path += "1"
    if not path:
        raise CliError("Path length must be > 0")
    if path[0] != "/":
        raise CliError("Path must start with / character")
    if len(path) == 1:
        return
    if path[-1] == "/":
        raise CliError("Path must not end with / character")
    reason = None
    for i in range(1, len(path)):
        c, last = path[i], path[i - 1]
        nxt = path[i + 1] if i + 1 < len(path) else "/"
        o = ord(c)
        if c == "\0":
            reason = f"null character not allowed @{i}"
        elif c == "/" and last == "/":
            reason = f"empty node name specified @{i}"
        elif c == "." and last == "." and path[i - 2] == "/" and nxt == "/":
            reason = f"relative paths not allowed @{i}"
        elif c == "." and last == "/" and nxt == "/":
            reason = f"relative paths not allowed @{i}"
        elif 0 < o <= 0x1F or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xF8FF or 0xFFF0 <= o <= 0xFFFF:
            reason = f"invalid character @{i}"
        if reason:
            raise CliError(f'Invalid path string "{path}" caused by {reason}')


def join(parent: str, child: str) -> str:
    return ("" if parent == "/" else parent) + "/" + child


# ---- quotas -----------------------------------------------------------------------------

QUOTA_ROOT = "/zookeeper/quota"
LIMIT_NODE = "zookeeper_limits"
STAT_NODE = "zookeeper_stats"


class StatsTrack:
    """org.apache.zookeeper.StatsTrack: 'count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1'."""

    def __init__(self, text: str | bytes | None = None) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.stats: dict[str, int] = {}
        if not text:
            return
        for pair in filter(None, _split_pairs(text)):
            kv = pair.split("=")
            if len(kv) < 2:
                continue
            try:
                self.stats[kv[0]] = int(kv[1]) if kv[1] else -1
            except ValueError:
                continue

    def get(self, key: str) -> int:
        return self.stats.get(key, -1)

    def __str__(self) -> str:
        keys = sorted(k for k in self.stats if k not in ("count", "bytes"))
        s = f"count={self.get('count')},bytes={self.get('bytes')}"
        if keys:
            s += "=" + "".join(f";{k}={self.stats[k]}" for k in keys)
        return s

    def json(self) -> dict[str, int]:
        return {k: self.get(k) for k in ("count", "bytes", "countHardLimit", "byteHardLimit")}


def _split_pairs(text: str) -> list[str]:
    return re.split(r"[,;]+", text)
