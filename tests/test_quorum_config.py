"""The membership value object (zkpy/server/quorum_config.py) and the files a reconfig
writes (zkpy/server/dynamic_config.py), byte for byte against what Apache ZooKeeper 3.8
wrote for the same zoo.cfg: the texts below were captured from a 3-server reference
ensemble (reconfigEnabled=true, superDigest set) started by tests/ensemble.py, after it
was established (version 0x100000000) and after `reconfig -add server.100=...observer`
(0x100000002)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkpy.server.config import ConfigError, load_config
from zkpy.server.dynamic_config import write_dynamic_config
from zkpy.server.quorum_config import (
    NotANumber,
    QuorumConfig,
    QuorumConfigError,
    edit_static_config,
    java_properties_order,
    parse_server,
)

STATIC = (
    "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/zk/s1/data\nclientPort=39843\n"
    "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n"
    "maxClientCnxns=0\nelectionAlg=3\nreconfigEnabled=true\n"
    "DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n"
    "server.1=127.0.0.1:40099:52529\nserver.2=127.0.0.1:35319:46637\nserver.3=127.0.0.1:60729:40779\n"
)
# what Java rewrote the static file to (Properties' ConcurrentHashMap order)
REWRITTEN = (
    "dataDir=/tmp/zk/s1/data\n4lw.commands.whitelist=*\nsyncLimit=5\n"
    "DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=\n"
    "reconfigEnabled=true\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
    "clientPort=39843\ninitLimit=10\ntickTime=500\nelectionAlg=3\nmaxClientCnxns=0\n"
    "dynamicConfigFile={dyn}\n"
)
DYNAMIC_0 = ("server.1=127.0.0.1:40099:52529:participant\nserver.2=127.0.0.1:35319:46637:participant\n"
             "server.3=127.0.0.1:60729:40779:participant")
JOINER = "server.100=0.0.0.0:1:2:observer;0.0.0.0:3"
DYNAMIC_2 = "server.100=0.0.0.0:1:2:observer;0.0.0.0:3\n" + DYNAMIC_0
ZNODE_2 = DYNAMIC_0 + "\nserver.100=0.0.0.0:1:2:observer;0.0.0.0:3\nversion=100000002"


def initial() -> QuorumConfig:
    return QuorumConfig.parse("\n".join(STATIC.splitlines()[-3:]), 0x100000000)


def test_text_forms_match_the_reference() -> None:
    q = initial()
    assert q.dynamic_file_text() == DYNAMIC_0
    assert q.text() == DYNAMIC_0 + "\nversion=100000000"
    q2 = QuorumConfig(q.incremental(JOINER, None), 0x100000002)
    assert q2.dynamic_file_text() == DYNAMIC_2  # sorted as strings: server.100 first
    assert q2.text() == ZNODE_2  # HashMap<Long> order: 100 after 3
    assert QuorumConfig.parse(q2.text()) == q2
    q3 = QuorumConfig(q2.incremental(None, "3"), 0x100000003)
    assert q3.text() == (DYNAMIC_0.rsplit("\n", 1)[0] + "\nserver.100=0.0.0.0:1:2:observer;0.0.0.0:3"
                         "\nversion=100000003")


def test_static_file_rewrite_matches_the_reference() -> None:
    dyn = "/tmp/zk/s1/zoo.cfg.dynamic.100000002"
    once = edit_static_config(STATIC, dyn, erase_client=False)
    assert once == REWRITTEN.format(dyn=dyn)
    # rewritten again on the next reconfig: same order, new pointer
    assert edit_static_config(once, dyn[:-1] + "3", False) == REWRITTEN.format(dyn=dyn[:-1] + "3")
    erased = edit_static_config(STATIC, dyn, erase_client=True)
    assert "clientPort" not in erased and erased.endswith(f"dynamicConfigFile={dyn}\n")


def test_java_orders_with_collisions() -> None:
    # HashMap<Long>: 1 and 17 share a bucket of 16 (insertion order), 100 is bucket 4
    q = QuorumConfig.parse("server.17=h:1:2\nserver.100=h:3:4\nserver.1=h:5:6\nserver.5=h:7:8")
    assert [line.split("=")[0] for line in q.lines()] == ["server.1", "server.17", "server.100", "server.5"]
    # Properties with a resize (12+ keys): every key is kept exactly once
    keys = [f"key{i}" for i in range(30)]
    assert sorted(java_properties_order(keys)) == sorted(keys)


def test_write_dynamic_config_files(tmp_path: Path) -> None:
    static = tmp_path / "zoo.cfg"
    static.write_text(STATIC.replace("/tmp/zk/s1/data", str(tmp_path / "data")))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "myid").write_text("1\n")
    dyn = write_dynamic_config(static, initial(), erase_client=False)
    assert dyn.name == "zoo.cfg.dynamic.100000000"
    assert dyn.read_text() == DYNAMIC_0
    cfg = load_config(static, env={})  # the rewritten pair reads back as the same membership
    assert cfg.dynamic_config_file == dyn and cfg.config_version == 0x100000000
    assert QuorumConfig(cfg.servers, cfg.config_version) == initial()


@pytest.mark.parametrize("joining", [
    "some thing",  # kazoo's bad input: no '='
    "server.5=127.0.0.1:1:2",  # no client port
    "server.5=127.0.0.1:1:2:witness;3",  # unknown role
    "server.5=10.0.0.1:7:8;3,server.6=10.0.0.1:8:9;4",  # 6 reuses 5's election address
    "server.x=127.0.0.1:7:8;9",  # (NotANumber: MARSHALLINGERROR for the client)
])
def test_bad_joiners_are_refused(joining: str) -> None:
    with pytest.raises(QuorumConfigError):
        initial().incremental(joining, None)


def test_loopback_and_wildcard_addresses_may_repeat() -> None:
    """As QuorumServer.checkAddressDuplicate, which leaves them out."""
    assert 5 in initial().incremental("server.5=127.0.0.1:40099:9;3", None)
    assert 5 in initial().incremental("server.5=0.0.0.0:1:2;3,server.6=0.0.0.0:1:2;3", None)


def test_ids_and_versions_beyond_a_java_long_are_refused() -> None:
    with pytest.raises(NotANumber):
        initial().incremental(f"server.{1 << 63}=10.0.0.9:1:2;3", None)
    with pytest.raises(NotANumber):
        initial().incremental(None, "x")
    assert QuorumConfig.from_bytes(b"server.1=h:1:2\nversion=" + b"f" * 17) is None
    assert QuorumConfig.from_bytes(b"server.1=h:1:2\nversion=7fffffffffffffff") is not None


def test_server_line_forms() -> None:
    s = parse_server(4, "[::1]:1:2:participant;[::1]:2181")
    assert s.render() == "[::1]:1:2:participant;[::1]:2181"
    assert parse_server(4, "h:1:2;2181").render() == "h:1:2:participant;0.0.0.0:2181"
    assert parse_server(4, "h:1:2").render() == "h:1:2:participant"
    with pytest.raises(QuorumConfigError):
        parse_server(4, "h:1:2|h:3:4")


def test_dynamic_file_with_a_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zoo.cfg.dynamic.5").write_text(DYNAMIC_0 + "\nversion=5")
    (tmp_path / "zoo.cfg").write_text(f"dataDir={tmp_path}\ndynamicConfigFile={tmp_path}/zoo.cfg.dynamic.5\n")
    with pytest.raises(ConfigError, match="version"):
        load_config(tmp_path / "zoo.cfg", env={})
