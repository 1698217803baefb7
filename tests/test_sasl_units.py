"""Pure parts of SASL: the JAAS parser, the DIGEST-MD5 server against pure-sasl's client,
identity order, and the start-up errors of the SASL and enforce.auth settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from puresasl.client import SASLClient

from zkpy.datatree.acl import digest_id
from zkpy.server.config import ConfigError, load_config
from zkpy.server.identity import ConnectionIdentity, java_string_hash
from zkpy.server.jaas import JaasError, parse_jaas
from zkpy.server.sasl import DigestMD5Server, SaslError, SaslSettings, canonical_name

GOOD = """/* comment */ Server {
  org.apache.zookeeper.server.auth.DigestLoginModule required
  user_bob="bob\\"s secret" // trailing comment
  user_eve=plain;
};
Client { org.apache.zookeeper.server.auth.DigestLoginModule optional username="bob"; };
"""


def test_jaas_parses_sections_options_and_comments() -> None:
    s = parse_jaas(GOOD, "f")
    (entry,) = s["Server"]
    assert entry.flag == "required" and entry.line == 2
    assert entry.options == {"user_bob": 'bob"s secret', "user_eve": "plain"}
    assert s["Client"][0].options == {"username": "bob"}


@pytest.mark.parametrize("text,where", [
    ("Server {\n  m required\n  user_a=\"x\"\n", "f:3: unexpected end of file"),
    ("Server {\n  m required user_a;\n};", "f:2: expected '='"),
    ("Server {\n  m mandatory;\n};", "f:2: login module m: expected a flag"),
    ("Server {\n  m required user_a=\"x;\n};", "f:2: unterminated quoted string"),
    ("Server {\n};", "f:2: section 'Server' has no login module"),
    ("Server { m required; };\nServer { m required; };", "f:2: section 'Server' appears twice"),
    ("/* open\nServer {", "f:1: unterminated comment"),
])
def test_jaas_errors_name_file_and_line(text: str, where: str) -> None:
    with pytest.raises(JaasError, match="^" + where):
        parse_jaas(text, "f")


def _exchange(server: DigestMD5Server, user: str, password: str, **kw: str) -> bytes:
    cli = SASLClient("zk-sasl-md5", "zookeeper", mechanism="DIGEST-MD5", username=user,
                     password=password, **kw)
    challenge = server.evaluate(cli.process(None) or b"")
    reply = server.evaluate(cli.process(challenge))
    cli.process(reply)  # pure-sasl checks rspauth
    assert cli.complete
    return reply


def test_digest_md5_round_trip_and_failures() -> None:
    settings = SaslSettings({"bob": "pw", "élan": "pässword"})
    s = DigestMD5Server(settings)
    assert _exchange(s, "bob", "pw").startswith(b"rspauth=")
    assert s.complete and s.authorization_id == "bob"
    with pytest.raises(SaslError, match="already completed"):
        s.evaluate(b"")
    with pytest.raises(SaslError, match="wrong response"):
        _exchange(DigestMD5Server(settings), "bob", "nope")
    with pytest.raises(SaslError, match="no password for user 'carol'"):
        _exchange(DigestMD5Server(settings), "carol", "x")
    for bad in (b"\xff\xfe", b"username=", b'username="bob,nonce=1', b"x" * 4097,
                b'username="bob",username="bob"'):
        s = DigestMD5Server(settings)
        s.evaluate(b"")
        with pytest.raises(SaslError):
            s.evaluate(bad)


def test_digest_md5_super_password_and_names() -> None:
    s = DigestMD5Server(SaslSettings({"super": "file"}, super_password="prop"))
    _exchange(s, "super", "prop")
    st = SaslSettings(remove_realm=True)
    assert canonical_name("bob", "bob", st) == "bob"
    assert canonical_name("bob@", "bob@", st) == "bob"  # realm "" is the default realm
    assert canonical_name("bob@", "bob@", SaslSettings()) == "bob@"
    assert canonical_name("svc/h@X.COM", "svc/h@X.COM", st) == "svc/h@X.COM"  # no rule applies
    assert canonical_name("svc/h@", "svc/h@", SaslSettings(remove_host=True)) == "svc@"


def test_identity_order_is_javas_hash_order() -> None:
    assert java_string_hash("ip") == 3367 and java_string_hash("") == 0
    ident = ConnectionIdentity()
    ident.add("ip", "127.0.0.1")
    ident.add("digest", digest_id("bob:x"))
    ident.add("digest", digest_id("bob:x"))
    assert ident.ids == [("digest", digest_id("bob:x")), ("ip", "127.0.0.1")]


def _cfg(tmp_path: Path, lines: str, jaas: str | None = GOOD) -> object:
    if jaas is not None:
        (tmp_path / "jaas.conf").write_text(jaas)
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path}\nclientPort=2181\n{lines}")
    return load_config(cfg, env={"SERVER_JVMFLAGS":
                                 f"-Djava.security.auth.login.config={tmp_path}/jaas.conf"})


def test_config_reads_jaas_and_providers(tmp_path: Path) -> None:
    c = _cfg(tmp_path, "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
                       "superUser=bob\nsessionRequireClientSASLAuth=true\n")
    assert c.sasl.credentials == {"bob": 'bob"s secret', "eve": "plain"}  # type: ignore[attr-defined]
    assert c.sasl.super_users == {"bob"}  # type: ignore[attr-defined]
    assert c.sasl_acl and c.enforce_auth_schemes == {"sasl"}  # type: ignore[attr-defined]
    assert not c.warnings  # type: ignore[attr-defined]


def test_jaas_file_without_a_server_section_means_no_sasl_login(tmp_path: Path) -> None:
    """As Java's configureSaslLogin: a readable JAAS file without the section is no SASL
    login (a warning here), not a start-up error."""
    c = _cfg(tmp_path, "", "Client { m required; };")
    assert c.sasl is None  # type: ignore[attr-defined]
    assert any("no JAAS configuration section named 'Server'" in w for w in c.warnings)  # type: ignore[attr-defined]


@pytest.mark.parametrize("lines,jaas,message", [
    ("", "Server {\n  m required\n", r"java.security.auth.login.config: .*jaas.conf:2: unexpected end"),
    ("", "Server {\n com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;\n};",
     r"jaas.conf:2: .*GSSAPI \(Kerberos\), which zkpy does not have"),
    ("sessionRequireClientSASLAuth=true\n", GOOD,
     r"^sessionRequireClientSASLAuth: Authentication scheme sasl is not available"),
    ("enforce.auth.enabled=true\n", GOOD, r"^enforce.auth.enabled: .*schemes must be configured"),
    ("enforce.auth.enabled=true\nenforce.auth.schemes=digest,kerberos\n", GOOD,
     r"^enforce.auth.schemes: Authentication scheme kerberos is not available"),
    ("authProvider.1=com.example.Custom\n", GOOD, r"^authProvider.1: zkpy has no authentication"),
])
def test_config_start_up_errors(tmp_path: Path, lines: str, jaas: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, lines, jaas)
