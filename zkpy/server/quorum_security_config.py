"""zoo.cfg's quorum security settings: sslQuorum and portUnification with the
ssl.quorum.* stores, and quorum.auth.* with the JAAS QuorumServer and QuorumLearner
sections, checked as QuorumPeerConfig does.  `build_config` calls `quorum_security`; what
the settings become is in quorum_security.py (SASL) and tls.py (TLS)."""

from __future__ import annotations

from zkpy.server.config import DIGEST_LOGIN, KERBEROS_LOGINS, Config, ConfigError
from zkpy.server.jaas import JaasError, load_jaas
from zkpy.server.quorum_security import QuorumSaslSettings
from zkpy.server.tls import build_context, parse_tls_settings


def _java_parse_boolean(raw: dict[str, str], key: str) -> bool:
    """QuorumPeerConfig.parseBoolean: "true" or "false" in any case, anything else refused."""
    v = raw[key].strip()
    if v.lower() not in ("true", "false"):
        raise ConfigError(f"{key}: '{v}' is not a boolean (use true or false)")
    return v.lower() == "true"


def quorum_security(raw: dict[str, str], cfg: Config) -> None:
    """sslQuorum / portUnification with ssl.quorum.*, and quorum.auth.* with the JAAS
    QuorumServer and QuorumLearner sections (QuorumPeerConfig's checks)."""
    flag = {k: k in raw and _java_parse_boolean(raw, k)  # zoo.cfg keys: strict booleans
            for k in ("sslQuorum", "portUnification", "sslQuorumReloadCertFiles", "quorum.auth.enableSasl",
                      "quorum.auth.learnerRequireSasl", "quorum.auth.serverRequireSasl")}
    cfg.ssl_quorum, cfg.port_unification = flag["sslQuorum"], flag["portUnification"]
    if cfg.ssl_quorum or cfg.port_unification:
        cfg.quorum_tls = parse_tls_settings(raw, "ssl.quorum.")
        build_context(cfg.quorum_tls)  # a wrong password or a bad store stops start-up here
        build_context(cfg.quorum_tls, client=True)
        reverse = raw.get("ssl.quorum.allowReverseDnsLookup", "true")
        cfg.quorum_reverse_dns = reverse.strip().lower() != "false"
    else:
        cfg.warnings.extend(f"{k} does nothing without sslQuorum=true or portUnification=true; ignored"
                            for k in sorted(raw) if k.startswith("ssl.quorum."))
    enable = flag["quorum.auth.enableSasl"]
    learner, server = flag["quorum.auth.learnerRequireSasl"], flag["quorum.auth.serverRequireSasl"]
    for key, on in (("quorum.auth.serverRequireSasl", server), ("quorum.auth.learnerRequireSasl", learner)):
        if on and not enable:
            raise ConfigError(f"{key}: quorum.auth.enableSasl is false, so {key} cannot be true")
    if server and not learner:
        raise ConfigError("quorum.auth.serverRequireSasl: quorum.auth.learnerRequireSasl is false, "
                          "so this server could not join an ensemble that requires SASL")
    if enable:
        cfg.quorum_sasl = _quorum_sasl(raw, learner, server)


def _quorum_sasl(raw: dict[str, str], learner_require: bool, server_require: bool) -> QuorumSaslSettings:
    path = raw.get("java.security.auth.login.config", "").strip()
    if not path:
        raise ConfigError("quorum.auth.enableSasl: true, but no JAAS file is given "
                          "(-Djava.security.auth.login.config=FILE in SERVER_JVMFLAGS)")
    try:
        sections = load_jaas(path)
    except JaasError as e:
        raise ConfigError(f"java.security.auth.login.config: {e}") from None
    names = {key: raw.get(key, default).strip() or default
             for key, default in (("quorum.auth.server.saslLoginContext", "QuorumServer"),
                                  ("quorum.auth.learner.saslLoginContext", "QuorumLearner"))}
    options: dict[str, dict[str, str]] = {}
    for key, name in names.items():
        entries = sections.get(name)
        if entries is None:
            raise ConfigError(f"{key}: no JAAS configuration section named '{name}' in '{path}' "
                              "(quorum.auth.enableSasl=true needs it)")
        options[key] = {}
        for entry in entries:
            if entry.module in KERBEROS_LOGINS:
                raise ConfigError(f"java.security.auth.login.config: {path}:{entry.line}: section "
                                  f"'{name}' uses {entry.module}, i.e. quorum SASL with GSSAPI "
                                  "(Kerberos), which zkpy does not have (only DIGEST-MD5 with "
                                  "DigestLoginModule)")
            if entry.module != DIGEST_LOGIN:
                raise ConfigError(f"java.security.auth.login.config: {path}:{entry.line}: section "
                                  f"'{name}' uses login module {entry.module}; zkpy has only "
                                  f"{DIGEST_LOGIN} (SASL DIGEST-MD5)")
            options[key].update(entry.options)
    server_opts = options["quorum.auth.server.saslLoginContext"]
    learner_opts = options["quorum.auth.learner.saslLoginContext"]
    if not {"username", "password"} <= learner_opts.keys():
        raise ConfigError(f"java.security.auth.login.config: {path}: section "
                          f"'{names['quorum.auth.learner.saslLoginContext']}' needs username and "
                          "password options (what this server presents when it dials a member)")
    return QuorumSaslSettings(
        learner_require=learner_require,
        server_require=server_require,
        credentials={k[len("user_"):]: v for k, v in server_opts.items() if k.startswith("user_")},
        learner_user=learner_opts["username"],
        learner_password=learner_opts["password"],
    )
