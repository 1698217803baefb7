"""The ensemble's membership as a value: who votes, who observes, where each member is,
and the config version, in ZooKeeper's text forms.

ZooKeeper writes one membership in three places, and zkpy writes them byte for byte the
same way:

* `/zookeeper/config` and election notifications: `server.N=...` lines in the order
  Java's `HashMap<Long, QuorumServer>` iterates them, then `version=<hex>` (QuorumMaj
  toString);
* `zoo.cfg.dynamic.<hex version>`: the same lines sorted as strings, no version line,
  no final newline (QuorumPeerConfig.writeDynamicConfig);
* the static zoo.cfg, rewritten without its `server.N` lines and with a
  `dynamicConfigFile=` pointer, keys in the order Java's `Properties` (a
  ConcurrentHashMap) iterates them (QuorumPeerConfig.editStaticConfig).

A member line is `host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`
(QuorumServer's string form); a bare client port means 0.0.0.0.  Pure: no I/O here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class QuorumConfigError(ValueError):
    """A membership line or list that ZooKeeper would refuse."""


class NotANumber(QuorumConfigError):
    """A server id that is not a number: Java's Long.parseLong fails outside the reconfig
    checks, and the client gets MARSHALLINGERROR rather than BADARGUMENTS."""


@dataclass(slots=True)
class ServerSpec:
    """One member: server.N's addresses and role."""

    sid: int
    host: str
    quorum_port: int
    election_port: int
    observer: bool = False
    client_host: str | None = None
    client_port: int | None = None

    def render(self) -> str:
        """QuorumServer.toString: the value of a `server.N=` line."""
        role = "observer" if self.observer else "participant"
        out = f"{_bracket(self.host)}:{self.quorum_port}:{self.election_port}:{role}"
        if self.client_port is not None:
            out += f";{_bracket(self.client_host or '0.0.0.0')}:{self.client_port}"
        return out


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


_ADDR = re.compile(r"^(\[[^\]]+\]|[^:]+):(\d+):(\d+)(?::([^:]*))?$")


def _port(text: str, what: str) -> int:
    # isdecimal, not isdigit: int() refuses digit-like characters such as '²'
    if not text.isdecimal() or int(text) > 65535:
        raise QuorumConfigError(f"{what}: '{text}' is not a TCP port")
    return int(text)


def parse_server(sid: int, value: str) -> ServerSpec:
    """QuorumServer(id, "host:q:e[:role][;[clientHost:]clientPort]")."""
    parts = value.strip().split(";")
    if len(parts) > 2:
        raise QuorumConfigError(f"server.{sid}: '{value}' has more than one ';'")
    if "|" in parts[0]:
        raise QuorumConfigError(f"server.{sid}: several addresses ('|') are not supported by zkpy")
    m = _ADDR.match(parts[0].strip())
    if m is None:
        raise QuorumConfigError(
            f"server.{sid}: '{value}' is not host:quorumPort:electionPort[:participant|:observer]")
    role = m.group(4)
    if role is not None and role not in ("participant", "observer"):
        raise QuorumConfigError(f"server.{sid}: unrecognised peer type '{role}'")
    spec = ServerSpec(sid, m.group(1).strip("[]"), _port(m.group(2), f"server.{sid}"),
                      _port(m.group(3), f"server.{sid}"), role == "observer")
    if spec.quorum_port == spec.election_port:
        raise QuorumConfigError(f"server.{sid}: quorum and election ports must differ")
    if len(parts) == 2:
        client = parts[1].strip()
        if client.startswith("["):
            host, _, port = client[1:].partition("]:")
        elif ":" in client:
            host, _, port = client.rpartition(":")
            if ":" in host:
                raise QuorumConfigError(f"server.{sid}: bad client address '{client}'")
        else:
            host, port = "0.0.0.0", client
        spec.client_host = host
        spec.client_port = _port(port, f"server.{sid} client port")
    return spec


_SERVER_KEY = re.compile(r"^server\.(\d+)$")


@dataclass(frozen=True, slots=True)
class QuorumConfig:
    """Members by server id, and the config version (the zxid of the reconfig that made
    it; 0 for a config nobody has agreed on yet)."""

    members: Mapping[int, ServerSpec]
    version: int = 0

    @property
    def voters(self) -> frozenset[int]:
        return frozenset(s for s, m in self.members.items() if not m.observer)

    @property
    def observers(self) -> frozenset[int]:
        return frozenset(s for s, m in self.members.items() if m.observer)

    def is_quorum(self, ids: Iterable[int]) -> bool:
        """QuorumMaj.containsQuorum: more than half of the voters."""
        voters = self.voters
        return len(voters.intersection(ids)) * 2 > len(voters)

    def with_version(self, version: int) -> QuorumConfig:
        return QuorumConfig(self.members, version)

    def same_members(self, other: QuorumConfig) -> bool:
        """The same members and addresses, whatever the versions (the simulation checks
        which configs a NEWLEADER activates by it)."""
        return dict(self.members) == dict(other.members)

    # ---- text forms -------------------------------------------------------------------
    def lines(self) -> list[str]:
        return [f"server.{sid}={self.members[sid].render()}" for sid in _java_long_map_order(self.members)]

    def text(self) -> str:
        """QuorumMaj.toString: the data of /zookeeper/config."""
        return "".join(line + "\n" for line in self.lines()) + f"version={self.version:x}"

    def dynamic_file_text(self) -> str:
        """QuorumPeerConfig.writeDynamicConfig without the version: sorted lines."""
        return "\n".join(sorted(self.lines()))

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> QuorumConfig:
        """`server.N=` lines (newline- or comma-separated) and an optional `version=hex`."""
        members: dict[int, ServerSpec] = {}
        found = 0
        for raw in text.replace(",", "\n").splitlines():
            line = raw.strip()
            if not line or line[0] in "#!":
                continue
            key, sep, value = line.partition("=")
            key = key.strip()
            if not sep:
                raise QuorumConfigError(f"'{line}' is not key=value")
            if key == "version":
                try:
                    found = int(value.strip(), 16)
                except ValueError:
                    raise QuorumConfigError(f"version: '{value.strip()}' is not hexadecimal") from None
                if not 0 <= found < (1 << 63):  # Long.parseLong(s, 16) of a zxid
                    raise QuorumConfigError(f"version: '{value.strip()}' is out of range")
                continue
            m = _SERVER_KEY.match(key)
            if m is None and key.startswith("server."):
                raise NotANumber(f"{key}: the server id is not a number")
            if m is None:
                raise QuorumConfigError(f"unrecognised parameter: {key}")
            sid = server_id(m.group(1))
            members[sid] = parse_server(sid, value)
        return cls(members, found if version is None else version)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuorumConfig | None:
        """The config in /zookeeper/config data or a notification, None if unreadable."""
        try:
            return cls.parse(data.decode())
        except (UnicodeDecodeError, QuorumConfigError):
            return None

    def incremental(self, joining: str | None, leaving: str | None) -> dict[int, ServerSpec]:
        """PrepRequestProcessor's incremental change: remove `leaving` ids, add (or
        replace) the `server.N=...` specs of `joining` (each with a client port)."""
        members = dict(self.members)
        for sid_text in _split(leaving):
            members.pop(server_id(sid_text), None)
        for joiner in _split(joining):
            parts = [p for p in joiner.split("=") if p]
            if len(parts) != 2:
                raise QuorumConfigError("Wrong format of server string")
            sid = server_id(parts[0][parts[0].rfind(".") + 1:].strip())
            spec = parse_server(sid, parts[1])
            if spec.client_port is None:
                raise QuorumConfigError("Wrong format of server string - each server should have "
                                        "3 ports specified")
            members.pop(sid, None)
            check_joiner(spec, members)
            members[sid] = spec
        return members


def server_id(text: str) -> int:
    """Long.parseLong of a server id: a number in the range of a Java long, else
    NotANumber (ValueError)."""
    try:
        sid = int(text)
    except ValueError:
        raise NotANumber(f"'{text}' is not a server id") from None
    if not -(1 << 63) <= sid < (1 << 63):
        raise NotANumber(f"server id {text} is out of range")
    return sid


def _split(text: str | None) -> list[str]:
    """ZooKeeper's StringUtils.split on commas: trimmed, empty parts dropped."""
    if text is None:
        return []
    return [p.strip() for p in text.split(",") if p.strip()]


def _special(host: str) -> bool:
    """Loopback or wildcard: exempt from the duplicate check (excludedSpecialAddresses)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return ip.is_loopback or ip.is_unspecified


def _addresses(m: ServerSpec) -> set[tuple[str, int]]:
    addrs = {(m.host, m.quorum_port), (m.host, m.election_port)}
    if m.client_port is not None:
        addrs.add((m.client_host or "0.0.0.0", m.client_port))
    return {a for a in addrs if not _special(a[0])}


def check_joiner(joiner: ServerSpec, members: Mapping[int, ServerSpec]) -> None:
    """QuorumServer.checkAddressDuplicate: a joiner shares no quorum, election or client
    address with another member (loopback and wildcard addresses exempt)."""
    mine = _addresses(joiner)
    for sid, m in members.items():
        if sid != joiner.sid and (mine & _addresses(m)):
            host, port = sorted(mine & _addresses(m))[0]
            raise QuorumConfigError(f"{host}:{port} of server.{joiner.sid} conflicts with server.{sid}")


# ---- Java collection orders ------------------------------------------------------------
def _java_long_map_order(members: Mapping[int, object]) -> list[int]:
    """The iteration order of a java.util.HashMap<Long, _> holding these ids (inserted in
    ascending order): by bucket of the spread hash, then insertion order."""
    cap = 16
    while len(members) > cap * 3 // 4:
        cap *= 2

    def bucket(sid: int) -> int:
        h = (sid ^ (sid >> 32)) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (cap - 1)

    return sorted(sorted(members), key=bucket)


def _java_string_hash(s: str) -> int:
    h = 0
    units = s.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h


def java_properties_order(keys: Iterable[str]) -> list[str]:
    """The order java.util.Properties (a ConcurrentHashMap(8) inside, Java 9+) iterates
    keys loaded in this order: 16 bins, doubled when the count reaches 3/4 of them, each
    bin split on resize as ConcurrentHashMap.transfer does (the run at the bin's tail
    that goes one way keeps its order, the nodes before it are pushed to the front)."""
    n = 16
    table: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    count = 0
    for key in keys:
        h = _java_string_hash(key)
        h = (h ^ (h >> 16)) & 0x7FFFFFFF
        bin_ = table[h & (n - 1)]
        if any(k == key for _, k in bin_):
            continue
        bin_.append((h, key))
        count += 1
        if count >= n - (n >> 2):
            table = _transfer(table, n)
            n *= 2
    return [k for bin_ in table for _, k in bin_]


def _transfer(table: list[list[tuple[int, str]]], n: int) -> list[list[tuple[int, str]]]:
    new: list[list[tuple[int, str]]] = [[] for _ in range(2 * n)]
    for i, bin_ in enumerate(table):
        if not bin_:
            continue
        last_run = 0
        run_bit = bin_[0][0] & n
        for j in range(1, len(bin_)):
            b = bin_[j][0] & n
            if b != run_bit:
                run_bit, last_run = b, j
        low = list(bin_[last_run:]) if run_bit == 0 else []
        high = list(bin_[last_run:]) if run_bit != 0 else []
        for node in bin_[:last_run]:
            (low if node[0] & n == 0 else high).insert(0, node)
        new[i], new[i + n] = low, high
    return new


def edit_static_config(text: str, dynamic_path: str, erase_client: bool) -> str:
    """QuorumPeerConfig.editStaticConfig: the static zoo.cfg without membership keys (and
    without clientPort/clientPortAddress when erase_client), pointing at dynamic_path."""
    from zkpy.server.config import parse_properties  # config imports this module

    props = parse_properties(text)
    out = []
    for key in java_properties_order(props):
        if key.startswith(("server.", "group", "weight", "dynamicConfigFile", "peerType")) \
                or (erase_client and key.startswith("clientPort")):
            continue
        out.append(f"{key}={props[key].strip()}\n")
    out.append(f"dynamicConfigFile={dynamic_path}\n")
    return "".join(out)
