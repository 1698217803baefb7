"""zoo.cfg parsing: Apache ZooKeeper's keys, -D flags from the environment, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkpy.server.config import ConfigError, load_config, parse_properties


def write(tmp_path: Path, text: str, name: str = "zoo.cfg") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_follow_the_reference(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "dataDir=/d\nclientPort=2181\n"), env={})
    assert (c.tick_time, c.min_session_timeout, c.max_session_timeout) == (3000, 6000, 60000)
    assert c.max_client_cnxns == 60 and c.global_outstanding_limit == 1000
    assert c.four_letter_words == {"srvr"} and c.data_log_dir == Path("/d")
    assert c.standalone and c.force_sync and c.max_buffer == 1048575


def test_properties_syntax() -> None:
    props = parse_properties("# comment\n! also\na=1\nb : 2\nc 3\nlong=x\\\n  y\n\n")
    assert props == {"a": "1", "b": "2", "c": "3", "long": "xy"}


def test_jvm_flags_and_prefixed_keys(tmp_path: Path) -> None:
    env = {"SERVER_JVMFLAGS": "-Xmx1g -Dzookeeper.DigestAuthenticationProvider.superDigest=super:abc= "
                              "-Djute.maxbuffer=4096 -Dreadonlymode.enabled=true"}
    cfg = write(tmp_path, "dataDir=/d\nzookeeper.skipACL=yes\nextendedTypesEnabled=true\n")
    c = load_config(cfg, env=env)
    assert c.super_digest == "super:abc=" and c.max_buffer == 4096 and c.read_only_mode
    assert c.skip_acl and c.extended_types and "isro" in c.four_letter_words


def test_zoo_cfg_wins_over_jvm_flags(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "dataDir=/d\ntickTime=2000\n"), env={"JVMFLAGS": "-DtickTime=5000"})
    assert c.tick_time == 2000


@pytest.mark.parametrize("line,key", [
    ("tickTime=abc", "tickTime"),
    ("clientPort=99999", "clientPort"),
    ("skipACL=maybe", "skipACL"),
    ("4lw.commands.whitelist=ruok,nope", "4lw.commands.whitelist"),
    ("minSessionTimeout=90000", "minSessionTimeout"),
    ("electionAlg=1", "electionAlg"),
    ("server.1=host-without-ports", "server.1"),
])
def test_invalid_values_name_the_key(tmp_path: Path, line: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, f"dataDir=/d\n{line}\n"), env={})


def test_missing_data_dir_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataDir"):
        load_config(write(tmp_path, "clientPort=1\n"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.cfg", env={})


def test_unknown_and_java_only_keys_are_warnings(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "dataDir=/d\nserverCnxnFactory=org.x.Netty\ntypoKey=1\n"), env={})
    assert any("serverCnxnFactory" in w and "Java-only" in w for w in c.warnings)
    assert any("typoKey" in w for w in c.warnings)


def test_ensemble_lines(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "dataDir=/d\ninitLimit=5\nsyncLimit=2\n"
                          "server.1=127.0.0.1:2888:3888\nserver.2=[::1]:2889:3889:participant;2182\n"
                          "server.3=h3:2890:3890:observer;10.0.0.3:2183\n"), env={})
    assert not c.standalone
    assert c.servers[2].host == "::1" and c.servers[2].client_port == 2182
    assert c.servers[3].observer and c.servers[3].client_host == "10.0.0.3"
    single = load_config(write(tmp_path, "dataDir=/d\nserver.1=127.0.0.1:2888:3888\n", "one.cfg"), env={})
    assert single.standalone  # one server line still runs standalone, as the reference does


def test_dynamic_config_file(tmp_path: Path) -> None:
    write(tmp_path, "server.1=127.0.0.1:2888:3888:participant;2181\n"
                    "server.2=127.0.0.1:2889:3889:participant;2182\n", "zoo.cfg.dynamic.100000000")
    c = load_config(write(tmp_path, "dataDir=/d\ninitLimit=5\nsyncLimit=2\n"
                          "dynamicConfigFile=zoo.cfg.dynamic.100000000\n"), env={})
    assert sorted(c.servers) == [1, 2] and not c.standalone
    write(tmp_path, "server.1=127.0.0.1:2888:3888\nversion=100000000\n", "bad.dynamic")
    with pytest.raises(ConfigError, match="version"):
        load_config(write(tmp_path, "dataDir=/d\ndynamicConfigFile=bad.dynamic\n", "b.cfg"), env={})
