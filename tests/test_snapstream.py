"""The leader's SNAP stream: same bytes as the snapshot body it is cut from, and it reads back."""

from __future__ import annotations

import pytest

from tests.test_snapshot import DIGEST_ACL, add_child, assert_same_tree, build_awkward_tree, build_tree
from zkpy.datatree.tree import DataTree, Znode, ttl_owner
from zkpy.jute.constants import CONTAINER_EPHEMERAL_OWNER
from zkpy.jute.records import ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE
from zkpy.persistence.snapshot import FILE_HEADER, serialize_snapshot, snapshot_items
from zkpy.zab.snapstream import END_MARK, SnapScanner, decode_snap_stream, encode_snap_stream


def stream_cut_from_a_snapshot_file(tree: DataTree) -> bytes:
    """The construction encode_snap_stream used before it serialised the tree directly:
    a snapshot file of a copy of the nodes, from after its header to the end-of-nodes
    marker, then the ustring BenWasHere."""
    full = serialize_snapshot(snapshot_items(tree), dict(tree.sessions))
    body = memoryview(full)[FILE_HEADER.size:]
    end = SnapScanner().scan_nodes(body)
    assert end is not None
    return bytes(body[:end]) + len(END_MARK).to_bytes(4, "big") + END_MARK


def special_tree() -> DataTree:
    """Every owner kind, null and empty data, several ACLs, sessions, a non-ASCII path."""
    tree = DataTree()
    root = tree.nodes["/"]
    acls = [OPEN_ACL_UNSAFE, DIGEST_ACL, READ_ACL_UNSAFE, (),
            (ACL(1, "ip", "10.0.0.0/8"), ACL(31, "auth", ""))]
    owners = [("c", CONTAINER_EPHEMERAL_OWNER), ("t", ttl_owner(5000)), ("e", 0x7F00000000000001),
              ("f", 0x7F00000000000001), ("g", 0x0100000000000002), ("n", 0), ("ü", 0)]
    for i, (name, owner) in enumerate(owners):
        data = [None, b"", b"d", bytes(range(256)) * 4][i % 4]
        tree.nodes["/" + name] = Znode(data, acls[i % len(acls)], 3 + i, 4 + i, owner)
        tree._index_owner("/" + name, owner)
        add_child(root, name)
    for parent in ("/c", "/t", "/n", "/ü"):
        for j in range(3):
            tree.nodes[f"{parent}/k{j}"] = Znode(b"x" * j or None, acls[j], 10 + j, 11 + j)
            add_child(tree.nodes[parent], f"k{j}")
    tree.nodes["/n"].cversion = -7
    tree.sessions = {0x7F00000000000001: 4000, 0x0100000000000002: 30000, -5: 1}
    return tree


@pytest.mark.parametrize("seed", range(24))
def test_stream_is_the_snapshot_body_as_before(seed: int) -> None:
    tree = build_awkward_tree(seed, 30 + 15 * seed)
    assert encode_snap_stream(tree) == stream_cut_from_a_snapshot_file(tree)


def test_special_tree_stream_is_as_before_and_reads_back() -> None:
    tree = special_tree()
    stream = encode_snap_stream(tree)
    assert type(stream) is bytes
    assert stream == stream_cut_from_a_snapshot_file(tree)
    back = decode_snap_stream(stream, 0x500000007)
    tree.last_processed_zxid = 0x500000007
    assert_same_tree(tree, back)
    assert back.nodes["/c"].data is None and back.nodes["/t"].data == b""
    assert back.containers == {"/c"} and back.ttls == {"/t"}
    assert back.ephemerals == {0x7F00000000000001: {"/e", "/f"}, 0x0100000000000002: {"/g"}}


@pytest.mark.parametrize("seed", range(6))
def test_stream_reads_back(seed: int) -> None:
    tree = build_tree(seed, 300)
    tree.last_processed_zxid = 1234
    assert_same_tree(tree, decode_snap_stream(encode_snap_stream(tree), 1234))


def test_scanner_finds_the_end_of_a_stream_that_arrives_in_pieces() -> None:
    stream = encode_snap_stream(special_tree()) + b"next packet"
    scanner = SnapScanner()
    end = None
    for cut in range(0, len(stream) + 1, 7):
        end = scanner.scan(memoryview(stream[:cut]))
        if end is not None:
            break
    assert end == len(stream) - len(b"next packet")
