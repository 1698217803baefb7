"""A connection's identities (scheme, id) in the order Apache ZooKeeper lists them.

ZooKeeper keeps a connection's auth ids in a set backed by a ConcurrentHashMap
(ServerCnxn.authInfo), so whoAmI, the admin `cons` output and the ACLs an `auth` entry
expands to list them in hash-table order, not in the order they were added: after
`addauth digest bob:x` whoAmI says digest before ip.  `ordered_ids` reproduces that order
(Java's String.hashCode, Id.hashCode, the table index of a ConcurrentHashMap that starts
with 16 bins and doubles at three quarters full; ids sharing a bin keep insertion order,
which Java keeps too until a resize splits a bin - more ids than any client adds).

`ConnectionIdentity` also holds the connection's SASL exchange in progress.
"""

from __future__ import annotations

from zkpy.server.sasl import DigestMD5Server

_MASK32 = 0xFFFFFFFF


def java_string_hash(s: str) -> int:
    """String.hashCode over UTF-16 code units, as an unsigned 32-bit value."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & _MASK32
    return h


def id_hash(scheme: str, ident: str) -> int:
    """org.apache.zookeeper.data.Id.hashCode (jute's generated Record hash)."""
    result = 17
    result = (37 * result + java_string_hash(scheme)) & _MASK32
    return (37 * result + java_string_hash(ident)) & _MASK32


def _table_size(count: int) -> int:
    n = 16
    while count >= n - (n >> 2):  # ConcurrentHashMap resizes when size reaches sizeCtl
        n <<= 1
    return n


def ordered_ids(ids: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """ids (in insertion order) as a ConcurrentHashMap-backed set iterates them."""
    n = _table_size(len(ids))

    def bin_of(pair: tuple[str, str]) -> int:
        h = id_hash(*pair)
        return (h ^ (h >> 16)) & 0x7FFFFFFF & (n - 1)

    return sorted(ids, key=bin_of)  # stable: one bin keeps insertion order


class ConnectionIdentity:
    """Who a connection is: its auth ids in ZooKeeper's order, and its SASL state.

    `ids` is one list object for the life of the connection (request paths hold on to
    it); `add` keeps it in ZooKeeper's order.
    """

    __slots__ = ("ids", "_added", "sasl")

    def __init__(self) -> None:
        self.ids: list[tuple[str, str]] = []
        self._added: list[tuple[str, str]] = []  # insertion order
        self.sasl: DigestMD5Server | None = None  # the exchange in progress or done

    def add(self, scheme: str, ident: str) -> None:
        pair = (scheme, ident)
        if pair in self._added:
            return
        self._added.append(pair)
        self.ids[:] = ordered_ids(self._added)

    def has_scheme(self, schemes: frozenset[str]) -> bool:
        return any(scheme in schemes for scheme, _ in self.ids)
