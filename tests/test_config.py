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


def test_cnx_timeout_from_zoo_cfg_or_jvm_flag(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "dataDir=/d\n"), env={}).cnx_timeout_ms == 5000
    assert load_config(write(tmp_path, "dataDir=/d\ncnxTimeout=1200\n"), env={}).cnx_timeout_ms == 1200
    flag = {"SERVER_JVMFLAGS": "-Dzookeeper.cnxTimeout=700"}
    assert load_config(write(tmp_path, "dataDir=/d\n"), env=flag).cnx_timeout_ms == 700


def test_zoo_cfg_wins_over_jvm_flags(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, "dataDir=/d\ntickTime=2000\n"), env={"JVMFLAGS": "-DtickTime=5000"})
    assert c.tick_time == 2000


@pytest.mark.parametrize("line,key", [
    ("tickTime=abc", "tickTime"),
    ("cnxTimeout=5s", "cnxTimeout"),
    ("cnxTimeout=0", "cnxTimeout"),
    ("clientPort=99999", "clientPort"),
    ("sslQuorum=maybe", "sslQuorum"),
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


# ---- settings that turn protection off: parsed exactly as Apache ZooKeeper does ---------


@pytest.mark.parametrize("value,on", [("yes", True), ("no", False), ("true", False), ("True", False),
                                      ("YES", False), ("1", False), ("maybe", False)])
def test_skip_acl_only_for_exactly_yes(tmp_path: Path, value: str, on: bool) -> None:
    """ZooKeeperServer: System.getProperty("zookeeper.skipACL", "no").equals("yes")."""
    for text, env in ((f"dataDir=/d\nskipACL={value}\n", {}),
                      ("dataDir=/d\n", {"SERVER_JVMFLAGS": f"-Dzookeeper.skipACL={value}"})):
        c = load_config(write(tmp_path, text), env=env)
        assert c.skip_acl is on
        assert any("skipACL" in w for w in c.warnings) is (value not in ("yes", "no"))


@pytest.mark.parametrize("value,sync", [("no", False), ("yes", True), ("false", True), ("NO", True),
                                        ("off", True)])
def test_force_sync_off_only_for_exactly_no(tmp_path: Path, value: str, sync: bool) -> None:
    """FileTxnLog: !System.getProperty("zookeeper.forceSync", "yes").equals("no")."""
    c = load_config(write(tmp_path, f"dataDir=/d\nforceSync={value}\n"), env={})
    assert c.force_sync is sync


@pytest.mark.parametrize("value,on", [("true", True), ("TRUE", True), ("yes", False), ("1", False)])
def test_java_boolean_properties(tmp_path: Path, value: str, on: bool) -> None:
    """Boolean.getBoolean / parseBoolean: only "true" (any case) is true."""
    c = load_config(write(tmp_path, f"dataDir=/d\nreadonlymode.enabled={value}\n"
                                    f"extendedTypesEnabled={value}\n"), env={})
    assert c.read_only_mode is on and c.extended_types is on
    d = load_config(write(tmp_path, f"dataDir=/d\nDigestAuthenticationProvider.enabled={value}\n"),
                    env={})
    assert d.digest_enabled is on


# ---- settings that ask for protection zkpy cannot give stop start-up ---------------------

# Quorum security asked for without what it needs: an error naming the key, in every form.
INCOMPLETE = [
    ("sslQuorum", "true", "ssl.quorum.keyStore.location: not set"),
    ("portUnification", "TRUE", "ssl.quorum.keyStore.location: not set"),
    ("quorum.auth.enableSasl", "true", "quorum.auth.enableSasl: true, but no JAAS file"),
    ("quorum.auth.learnerRequireSasl", "true", "quorum.auth.learnerRequireSasl: quorum.auth.enableSasl "
                                               "is false"),
    ("quorum.auth.serverRequireSasl", "true", "quorum.auth.serverRequireSasl: quorum.auth.enableSasl "
                                              "is false"),
]


@pytest.mark.parametrize("key,value,error", INCOMPLETE)
@pytest.mark.parametrize("form", ["zoo.cfg", "prefixed zoo.cfg", "-D", "-Dzookeeper."])
def test_incomplete_quorum_security_stops_start_up(tmp_path: Path, key: str, value: str, error: str,
                                                   form: str) -> None:
    text, env = "dataDir=/d\nclientPort=2181\n", {}
    if form == "zoo.cfg":
        text += f"{key}={value}\n"
    elif form == "prefixed zoo.cfg":
        text += f"zookeeper.{key}={value}\n"
    else:
        prefix = "zookeeper." if form == "-Dzookeeper." else ""
        env = {"JVMFLAGS": f"-D{prefix}{key}={value}"}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env=env)
    msg = str(e.value)
    assert msg.startswith(error) and "\n" not in msg


def test_secure_client_port_needs_a_key_store(tmp_path: Path) -> None:
    """A TLS port without the server's key stops start-up (Java would fail every handshake)."""
    with pytest.raises(ConfigError, match=r"^ssl.keyStore.location: not set"):
        load_config(write(tmp_path, "dataDir=/d\nsecureClientPort=2281\n"), env={})
    with pytest.raises(ConfigError, match=r"^ssl.keyStore.location: not set"):
        load_config(write(tmp_path, "dataDir=/d\nclientPort=2181\nclient.portUnification=true\n"), env={})
    with pytest.raises(ConfigError, match=r"^secureClientPortAddress: set but secureClientPort"):
        load_config(write(tmp_path, "dataDir=/d\nsecureClientPortAddress=127.0.0.1\n"), env={})


@pytest.mark.parametrize("line", [
    "client.portUnification=no",
    # inert without a secure port, a SASL login or x509: warned about, ignored
    "ssl.keyStore.location=/k.jks", "ssl.keyStore.password=x", "ssl.trustStore.location=/t.jks",
    "ssl.clientAuth=need", "ssl.quorum.keyStore.location=/k.jks", "ssl.authProvider=x509",
    "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
    "X509AuthenticationProvider.superUser=CN=admin",
])
def test_inert_or_disabled_protection_keys_are_warnings(tmp_path: Path, line: str) -> None:
    c = load_config(write(tmp_path, f"dataDir=/d\nclientPort=2181\n{line}\n"), env={})
    key = line.split("=", 1)[0]
    assert any(w.startswith(key) and ("Java-only" in w or "does nothing without" in w
                                     or "is off" in w)
               for w in c.warnings), c.warnings


@pytest.mark.parametrize("line,message", [
    ("security.auth_to_local=RULE:[1:$1@$0](.*@EXAMPLE.COM)s/@.*//", "no Kerberos name rules"),
    ("DigestAuthenticationProvider.digestAlg=WHIRLPOOL", "unknown digest algorithm 'WHIRLPOOL'"),
    ("admin.forceHttps=true", "has no HTTPS"),
])
def test_security_settings_zkpy_cannot_honour_stop_start_up(tmp_path: Path, line: str,
                                                            message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, f"dataDir=/d\nclientPort=2181\n{line}\n"), env={})
    assert str(e.value).startswith(line.split("=", 1)[0] + ": ") and message in str(e.value)


def test_audit_logger_class_is_refused_only_with_the_audit_log_on(tmp_path: Path) -> None:
    line = "audit.impl.class=com.example.SplunkAuditLogger\n"
    with pytest.raises(ConfigError, match=r"^audit.impl.class: zkpy cannot load com.example"):
        load_config(write(tmp_path, f"dataDir=/d\naudit.enable=true\n{line}"), env={})
    assert not load_config(write(tmp_path, f"dataDir=/d\n{line}"), env={}).warnings
    slf4j = "audit.impl.class=org.apache.zookeeper.audit.Slf4jAuditLogger\n"
    assert not load_config(write(tmp_path, f"dataDir=/d\naudit.enable=true\n{slf4j}"), env={}).warnings


def test_sasl_and_digest_settings_are_read(tmp_path: Path) -> None:
    env = {"SERVER_JVMFLAGS": "-Dzookeeper.letAnySaslUserDoX=anyone "
                              "-Dzookeeper.DigestAuthenticationProvider.digestAlg=sha3-256 "
                              "-Dzookeeper.security.auth_to_local=DEFAULT"}
    c = load_config(write(tmp_path, "dataDir=/d\n"), env=env)
    assert (c.any_sasl_user_id, c.digest_algorithm, c.warnings) == ("anyone", "sha3_256", [])
    assert load_config(write(tmp_path, "dataDir=/d\n"), env={}).digest_algorithm == "sha1"
    off = "dataDir=/d\nadmin.enableServer=false\nadmin.forceHttps=true\n"
    assert not load_config(write(tmp_path, off), env={}).warnings
