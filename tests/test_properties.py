"""Property tests: Jute round trips for every record, and the write pipeline's prepare +
apply steps against a plain-dict model of ZooKeeper under random operation sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from zkpy.client import requests as rq
from zkpy.datatree.paths import _path_error, path_error
from zkpy.datatree.tree import DataTree
from zkpy.jute.codec import Reader, Writer
from zkpy.jute.constants import Err, KeeperError, OpCode
from zkpy.jute.records import (
    ACL,
    REQUEST_DECODERS,
    ConnectRequest,
    CreateRequest,
    MultiRequest,
    PathVersion,
    PathWatch,
    SetACLRequest,
    SetDataRequest,
    encode_connect_response,
    read_acl_list,
    write_acl_list,
)
from zkpy.jute.txns import (
    TXN_HEADER,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    TxnHeader,
    decode_txn,
    encode_txn,
)
from zkpy.server.prepare import Preparer, Settings
from zkpy.zab.packets import PacketReader, PacketType, QuorumPacket

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
blobs = st.none() | st.binary(max_size=64)
ints = st.integers(-(2**31), 2**31 - 1)
longs = st.integers(-(2**63), 2**63 - 1)
acls = st.lists(st.builds(ACL, st.integers(0, 31), st.sampled_from(["world", "digest", "ip"]), texts),
                max_size=4)


# ---- Jute round trips -------------------------------------------------------------------

@given(ints, longs, st.booleans(), texts, blobs)
def test_primitives_round_trip(i: int, n: int, b: bool, s: str, data: bytes | None) -> None:
    w = Writer().int(i).long(n).bool(b).ustring(s).buffer(data).ustring(None)
    r = Reader(w.getvalue())
    assert (r.int(), r.long(), r.bool(), r.ustring(), r.buffer(), r.ustring()) == (i, n, b, s, data, None)
    assert r.remaining() == 0


@given(acls)
def test_acl_list_round_trip(acl: list[ACL]) -> None:
    w = Writer()
    write_acl_list(w, acl)
    assert read_acl_list(Reader(w.getvalue())) == acl


@given(ints, longs, ints, longs, st.binary(min_size=16, max_size=16), st.none() | st.booleans())
def test_connect_request_round_trip(pv: int, zxid: int, to: int, sid: int, pw: bytes,
                                    ro: bool | None) -> None:
    w = Writer().int(pv).long(zxid).int(to).long(sid).buffer(pw)
    if ro is not None:
        w.bool(ro)
    assert ConnectRequest.decode(w.getvalue()) == ConnectRequest(pv, zxid, to, sid, pw, ro)


@given(ints, longs, st.binary(min_size=16, max_size=16), st.none() | st.booleans())
def test_connect_response_layout(to: int, sid: int, pw: bytes, ro: bool | None) -> None:
    r = Reader(encode_connect_response(to, sid, pw, ro))
    assert (r.int(), r.int(), r.long(), r.buffer()) == (0, to, sid, pw)
    assert (r.bool() if ro is not None else None) == ro
    assert r.remaining() == 0


def _decode(op: int, body: bytes) -> object:
    return REQUEST_DECODERS[op](Reader(body))  # type: ignore[index]


@given(texts, blobs, acls, st.integers(0, 6), st.none() | st.integers(1, 2**40))
def test_create_requests_round_trip(path: str, data: bytes | None, acl: list[ACL], flags: int,
                                    ttl: int | None) -> None:
    op, body = rq.create(path, data, acl, flags, ttl)
    assert _decode(op, body) == CreateRequest(path, data, acl, flags, -1 if ttl is None else ttl)


@given(texts, blobs, ints, st.booleans(), acls)
def test_simple_requests_round_trip(path: str, data: bytes | None, version: int, watch: bool,
                                    acl: list[ACL]) -> None:
    assert _decode(*rq.set_data(path, data, version)) == SetDataRequest(path, data, version)
    assert _decode(*rq.path_version(OpCode.DELETE, path, version)) == PathVersion(path, version)
    assert _decode(*rq.path_watch(OpCode.GET_DATA, path, watch)) == PathWatch(path, watch)
    assert _decode(*rq.set_acl(path, acl, version)) == SetACLRequest(path, acl, version)


@given(st.lists(st.tuples(texts, blobs, ints), max_size=5))
def test_multi_request_round_trip(ops: list[tuple[str, bytes | None, int]]) -> None:
    decoded = _decode(*rq.multi([rq.set_data(p, d, v) for p, d, v in ops]))
    assert isinstance(decoded, MultiRequest)
    assert [(o.op, o.req) for o in decoded.ops] == [(OpCode.SET_DATA, SetDataRequest(*x)) for x in ops]


txn_strategy = st.one_of(
    st.builds(CreateTxn, texts, blobs, acls, st.booleans(), ints, st.just(OpCode.CREATE), st.just(0)),
    st.builds(DeleteTxn, texts, st.just(False)),
    st.builds(SetDataTxn, texts, blobs, ints),
    st.builds(SetACLTxn, texts, acls, ints),
    st.builds(CheckVersionTxn, texts, ints),
    st.builds(CreateSessionTxn, ints),
    st.builds(CloseSessionTxn, st.lists(texts, max_size=4)),
    st.builds(ErrorTxn, ints),
)
TYPE_OF = {CreateTxn: 1, DeleteTxn: 2, SetDataTxn: 5, SetACLTxn: 7, CheckVersionTxn: 13,
           CreateSessionTxn: -10, CloseSessionTxn: -11, ErrorTxn: -1}


@given(txn_strategy)
def test_txn_round_trip(txn: object) -> None:
    t = TYPE_OF[type(txn)]
    assert decode_txn(t, encode_txn(txn)) == txn  # type: ignore[arg-type]


@given(st.lists(txn_strategy.filter(lambda t: not isinstance(t, (CreateSessionTxn, CloseSessionTxn))),
                max_size=4))
def test_multi_txn_round_trip(subs: list[object]) -> None:
    m = MultiTxn([(TYPE_OF[type(s)], s) for s in subs])  # type: ignore[misc]
    assert decode_txn(OpCode.MULTI, encode_txn(m)) == m


@given(longs, ints, longs, longs, ints)
def test_txn_header_round_trip(cid: int, cxid: int, zxid: int, time: int, type_: int) -> None:
    h = TxnHeader(cid, cxid, zxid, time, type_)
    assert TxnHeader(*TXN_HEADER.unpack(h.encode())) == h


# ---- the pipeline against a model -----------------------------------------------------------

NAMES = ["a", "b", "c"]
PATHS = ["/" + "/".join(p) for n in (1, 2, 3) for p in __import__("itertools").product(NAMES, repeat=n)]
OPEN = [ACL(31, "world", "anyone")]


class Model:
    """ZooKeeper's visible rules for create/delete/setData, on a dict."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[bytes | None, int, bool]] = {}  # path -> (data, version, ephemeral)

    @staticmethod
    def parent(path: str) -> str:
        return path.rsplit("/", 1)[0] or "/"

    def exists(self, path: str) -> bool:
        return path == "/" or path in self.nodes

    def create(self, path: str, data: bytes | None, eph: bool) -> int:
        if not self.exists(self.parent(path)):
            return Err.NONODE
        if self.exists(path):
            return Err.NODEEXISTS
        if self.nodes.get(self.parent(path), (None, 0, False))[2]:
            return Err.NOCHILDRENFOREPHEMERALS
        self.nodes[path] = (data, 0, eph)
        return 0

    def delete(self, path: str, version: int) -> int:
        if not self.exists(self.parent(path)) or path not in self.nodes:
            return Err.NONODE
        if version != -1 and self.nodes[path][1] != version:
            return Err.BADVERSION
        if any(p.startswith(path + "/") for p in self.nodes):
            return Err.NOTEMPTY
        del self.nodes[path]
        return 0

    def set(self, path: str, data: bytes | None, version: int) -> int:
        if path not in self.nodes:
            return Err.NONODE
        d, v, e = self.nodes[path]
        if version != -1 and v != version:
            return Err.BADVERSION
        self.nodes[path] = (data, v + 1, e)
        return 0


ops = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(PATHS), blobs, st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.sampled_from([-1, 0, 1])),
    st.tuples(st.just("set"), st.sampled_from(PATHS), blobs, st.sampled_from([-1, 0, 1])),
    st.tuples(st.just("flush")),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_prepare_and_apply_match_the_model(seq: list[tuple]) -> None:  # type: ignore[type-arg]
    """Writes are prepared against tree + outstanding changes, applied in batches ("flush"),
    as the pipelined server does; every result and the final tree must match the model."""
    tree = DataTree()
    prep = Preparer(tree, Settings())
    model = Model()
    pending: list[tuple[TxnHeader, object]] = []
    zxid = 0
    auth = [("ip", "127.0.0.1")]

    def flush() -> None:
        for hdr, txn in pending:
            tree.apply(hdr, txn)  # type: ignore[arg-type]
            prep.applied(hdr.zxid)
        pending.clear()

    for step in seq:
        if step[0] == "flush":
            flush()
            continue
        zxid += 1
        kind = step[0]
        if kind == "create":
            _, path, data, eph = step
            op, req, expect = OpCode.CREATE, CreateRequest(path, data, OPEN, 1 if eph else 0), \
                model.create(path, data, eph)
        elif kind == "delete":
            _, path, version = step
            op, req, expect = OpCode.DELETE, PathVersion(path, version), model.delete(path, version)
        else:
            _, path, data, version = step
            op, req, expect = OpCode.SET_DATA, SetDataRequest(path, data, version), \
                model.set(path, data, version)
        try:
            txn: object = prep.prepare(op, req, zxid, 7, auth)
            got = 0
        except KeeperError as e:
            txn, got = ErrorTxn(e.code), e.code
        assert got == expect, (step, got, expect)
        pending.append((TxnHeader(7, zxid, zxid, 1000 + zxid, op if got == 0 else -1), txn))
    flush()
    user_nodes = {p: n for p, n in tree.nodes.items() if p != "/" and not p.startswith("/zookeeper")}
    assert set(user_nodes) == set(model.nodes)
    for p, (data, version, eph) in model.nodes.items():
        n = user_nodes[p]
        assert (n.data, n.version, n.owner == 7) == (data, version, eph), p
        assert len(n.children) == sum(1 for q in model.nodes if Model.parent(q) == p)
    assert prep.outstanding == {}


quorum_packets = st.builds(
    QuorumPacket, st.integers(1, 19), longs, blobs,
    st.none() | st.lists(st.tuples(texts, texts), max_size=3).map(tuple),
)


@given(st.lists(quorum_packets, max_size=8), st.lists(st.integers(0, 200), max_size=6))
def test_quorum_packet_stream_round_trip(pkts: list[QuorumPacket], cuts: list[int]) -> None:
    """However TCP splits a packet stream, the reader gives back the packets sent, in
    order (each batch ends early only after a SNAP, whose raw stream would follow)."""
    stream = b"".join(p.encode() for p in pkts)
    reader = PacketReader()
    got: list[QuorumPacket] = []
    pos = 0
    for cut in sorted(cuts) + [len(stream)]:
        reader.feed(stream[pos:max(pos, cut)])
        pos = max(pos, cut)
        while batch := reader.drain():
            assert all(p.type != PacketType.SNAP for p in batch[:-1])
            got += batch
    assert got == pkts and not reader.buf


@given(st.lists(st.text(st.sampled_from("/a.\x00\x1f\u00e9\ud800\uffff"), max_size=8), max_size=20))
def test_path_validation_is_the_same_when_repeated(paths: list[str]) -> None:
    """path_error remembers paths it found valid; a repeated path gets the same answer,
    and a path found invalid is never remembered as valid."""
    first = [path_error(p) for p in paths]
    assert [path_error(p) for p in paths] == first == [_path_error(p) for p in paths]
    assert path_error("/a//b") is not None and path_error("/a/./b") is not None
