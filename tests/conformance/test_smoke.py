"""Basic round trips that every other conformance test builds on."""

from __future__ import annotations


def test_create_get_set_delete(zk, base):
    path = zk.create(f"{base}/a", b"hello")
    assert path == f"{base}/a"
    data, stat = zk.get(path)
    assert data == b"hello"
    assert stat.version == 0 and stat.dataLength == 5 and stat.czxid == stat.mzxid == stat.pzxid
    stat2 = zk.set(path, b"world")
    assert stat2.version == 1 and stat2.mzxid > stat.mzxid and stat2.czxid == stat.czxid
    zk.delete(path)
    assert zk.exists(path) is None


def test_root_and_system_nodes(zk):
    assert "zookeeper" in zk.get_children("/")
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]
    _, stat = zk.get("/zookeeper")
    assert stat.cversion == -2 and stat.numChildren == 2
