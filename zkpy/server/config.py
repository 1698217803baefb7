"""zoo.cfg parsing with Apache ZooKeeper's keys and defaults.

Settings come from three places, later ones winning: built-in defaults, Java system
properties given as `-Dname=value` in SERVER_JVMFLAGS / JVMFLAGS, and zoo.cfg itself.
Keys may be written with or without the `zookeeper.` prefix.  An invalid value stops
start-up with one line naming the key; an unknown key is a warning.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zkpy.datatree.acl import DIGEST_ALGORITHMS
from zkpy.server.audit import AuditLog
from zkpy.server.jaas import JaasError, load_jaas
from zkpy.server.quorum_config import QuorumConfig, QuorumConfigError, ServerSpec, parse_server
from zkpy.server.quorum_security import QuorumSaslSettings
from zkpy.server.sasl import SaslSettings

if TYPE_CHECKING:
    from zkpy.server.tls import TlsSettings


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


# Keys we read (canonical names, without the `zookeeper.` prefix).
KNOWN_KEYS = {
    "tickTime", "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "maxClientCnxns",
    "minSessionTimeout", "maxSessionTimeout", "globalOutstandingLimit", "jute.maxbuffer",
    "4lw.commands.whitelist", "extendedTypesEnabled", "skipACL",
    "DigestAuthenticationProvider.superDigest", "DigestAuthenticationProvider.enabled",
    "readonlymode.enabled", "snapCount", "preAllocSize", "forceSync", "autopurge.snapRetainCount",
    "autopurge.purgeInterval", "initLimit", "syncLimit", "electionAlg", "peerType",
    "standaloneEnabled", "reconfigEnabled", "maxCnxns", "snapSizeLimitInKb",
    "znode.container.checkIntervalMs", "znode.container.maxPerMinute",
    "znode.container.maxNeverUsedIntervalMs", "admin.enableServer", "admin.serverPort",
    "admin.serverAddress", "fsync.warningthresholdms", "digest.enabled", "clientPortListenBacklog",
    "txnLogSizeLimitInKb", "snapshot.trust.empty", "db.autocreate", "jute.maxbuffer.extrasize",
    "nio.sessionlessCnxnTimeout", "syncEnabled", "cnxTimeout", "leaderServes",
    "localSessionsEnabled", "localSessionsUpgradingEnabled",
    "zkpy.inlineSyncMicros", "zkpy.snapshotOnShutdown", "zkpy.clientWriteHighWater",
    # AdminServer (server/admin.py) and the Prometheus endpoint (server/prometheus.py)
    "admin.commandURL", "admin.idleTimeout", "metricsProvider.className",
    "metricsProvider.httpHost", "metricsProvider.httpPort", "metricsProvider.exportJvmInfo",
    # SASL and required authentication (zkpy/server/sasl.py, jaas.py)
    "java.security.auth.login.config", "sasl.serverconfig", "kerberos.removeHostFromPrincipal",
    "kerberos.removeRealmFromPrincipal", "SASLAuthenticationProvider.superPassword",
    "enforce.auth.enabled", "enforce.auth.schemes", "sessionRequireClientSASLAuth",
    "allowSaslFailedClients", "superUser", "enforceQuota", "letAnySaslUserDoX",
    "DigestAuthenticationProvider.digestAlg", "security.auth_to_local", "audit.impl.class",
    "admin.forceHttps",
    "audit.enable", "zkpy.audit.file",  # the audit log (server/audit.py)
    # the log file (server/logfile.py) and start-up progress lines (persistence/recovery.py)
    "log.dir", "log.file", "log.maxfilesize", "log.maxbackupindex",
    "zkpy.progress.snapshotBytes", "zkpy.progress.txns",
}
# Client TLS keys, read when there is a secure port or port unification (server/tls.py).
TLS_KEYS = {
    "secureClientPort", "secureClientPortAddress", "client.portUnification", "client.certReload",
    "ssl.keyStore.location", "ssl.keyStore.password", "ssl.keyStore.passwordPath", "ssl.keyStore.type",
    "ssl.trustStore.location", "ssl.trustStore.password", "ssl.trustStore.passwordPath",
    "ssl.trustStore.type", "ssl.clientAuth", "ssl.protocol", "ssl.enabledProtocols", "ssl.ciphersuites",
    "ssl.hostnameVerification", "ssl.authProvider", "X509AuthenticationProvider.superUser",
    "netty.server.outstandingHandshake.limit",
}
# Quorum TLS and SASL (server/quorum_security.py, quorum_link.py).
QUORUM_SECURITY_KEYS = {
    "sslQuorum", "portUnification", "sslQuorumReloadCertFiles",
    "ssl.quorum.keyStore.location", "ssl.quorum.keyStore.password", "ssl.quorum.keyStore.passwordPath",
    "ssl.quorum.keyStore.type", "ssl.quorum.trustStore.location", "ssl.quorum.trustStore.password",
    "ssl.quorum.trustStore.passwordPath", "ssl.quorum.trustStore.type", "ssl.quorum.clientAuth",
    "ssl.quorum.protocol", "ssl.quorum.enabledProtocols", "ssl.quorum.ciphersuites",
    "ssl.quorum.hostnameVerification", "ssl.quorum.allowReverseDnsLookup",
    "quorum.auth.enableSasl", "quorum.auth.learnerRequireSasl", "quorum.auth.serverRequireSasl",
    "quorum.auth.learner.saslLoginContext", "quorum.auth.server.saslLoginContext",
    "quorum.auth.kerberos.servicePrincipal",
}

# Java-only keys: accepted with a warning that zkpy ignores them.
JAVA_ONLY_PREFIXES = (
    "serverCnxnFactory", "ssl.", "secureClientPort", "authProvider.", "metricsProvider.",
    "jvm.pause", "nio.", "netty.", "admin.", "quorum.", "sslQuorum", "portUnification",
    "multiAddress.", "commitProcessor.", "clientCnxnSocket", "javax.", "java.",
    "audit.", "kerberos.", "jaasLoginRenew", "zookeeper.sasl", "sasl.",
    "X509AuthenticationProvider", "flushDelay", "maxWriteQueuePollTime", "maxBatchSize",
    "snapshot.compression.method", "serializeLastProcessedZxid.enabled", "closeSessionTxn.enabled",
    "maxResponseCacheSize", "maxGetChildrenResponseCacheSize", "commitLogCount",
    "snapshotSizeFactor", "largeRequest", "tcpKeepAlive", "clientTcpKeepAlive",
    "emulate353TTLNodes", "electionPortBindRetry", "fastleader.",
    "connectToLearnerMasterLimit", "quorumListenOnAllIPs", "observerMasterPort",
    "oraclePath",
    "leader.maxTimeToWaitForEpoch",
    "client.portUnification", "enforce.auth.", "sessionRequireClientSASLAuth",
    "allowSaslFailedClients", "superUser",
)

CNX_TIMEOUT_MS = 5000  # zookeeper.cnxTimeout's default

ALL_4LW = (
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "srst",
    "wchs", "wchc", "wchp", "dirs", "isro", "gtmk", "stmk", "hash",
)


@dataclass(slots=True)
class Config:
    """Every setting the server uses, with Apache ZooKeeper's defaults."""

    data_dir: Path
    data_log_dir: Path
    client_port: int | None = None
    client_port_address: str = "0.0.0.0"
    tick_time: int = 3000
    max_client_cnxns: int = 60
    min_session_timeout: int = -1
    max_session_timeout: int = -1
    global_outstanding_limit: int = 1000
    max_cnxns: int = 0  # total client connections; 0 = no limit
    # bytes of replies a client may leave unread before the server stops reading from it
    client_write_high_water: int = 262144
    max_buffer: int = 1048575
    four_letter_words: frozenset[str] = frozenset({"srvr"})
    extended_types: bool = False
    skip_acl: bool = False
    super_digest: str | None = None
    digest_enabled: bool = True
    digest_algorithm: str = "sha1"  # DigestAuthenticationProvider.digestAlg, as hashlib names it
    any_sasl_user_id: str | None = None  # letAnySaslUserDoX (datatree/acl.py)
    read_only_mode: bool = False
    snap_count: int = 100000
    pre_alloc_size_kb: int = 65536
    force_sync: bool = True
    fsync_warning_ms: int = 1000
    inline_sync_us: int = 500
    snapshot_on_shutdown: bool = True
    snapshot_trust_empty: bool = False  # zookeeper.snapshot.trust.empty: logs without a snapshot
    # start-up progress lines: for snapshots of at least this many bytes, every this many txns
    progress_snapshot_bytes: int = 64 << 20
    progress_txns: int = 100000
    snap_retain_count: int = 3
    purge_interval_hours: int = 0
    init_limit: int | None = None
    sync_limit: int | None = None
    reconfig_enabled: bool = False
    local_sessions_enabled: bool = False  # ensemble: sessions that live on one member, no txn
    local_sessions_upgrading: bool = False  # a local session's first ephemeral makes it global
    standalone_enabled: bool = True
    container_check_interval_ms: int = 60000
    container_max_per_minute: int = 10000
    container_max_never_used_ms: int = 0
    sessionless_cnxn_timeout_ms: int = 10000
    # zookeeper.cnxTimeout (QuorumCnxManager's cnxTO): a quorum connection's dial; zkpy
    # bounds its TLS handshake, initial message and SASL by it too
    cnx_timeout_ms: int = CNX_TIMEOUT_MS
    # AdminServer: on unless admin.enableServer=false, as in Java (port 8080)
    admin_enabled: bool = True
    admin_address: str = "0.0.0.0"
    admin_port: int = 8080
    admin_command_url: str = "/commands"
    admin_idle_timeout_ms: int = 30000
    # zkpy.admin.serverPort.N: member N's admin port when it is not admin.serverPort
    # (the status page reaches member N at server.N's host and this port)
    admin_peer_ports: dict[int, int] = field(default_factory=dict)
    # metricsProvider.className=...PrometheusMetricsProvider: /metrics on httpHost:httpPort
    prometheus: bool = False
    prometheus_host: str = "0.0.0.0"
    prometheus_port: int = 7000
    prometheus_process_info: bool = True  # metricsProvider.exportJvmInfo
    secure_client_port: int | None = None  # secureClientPort: a TLS-only listener
    secure_client_port_address: str = "0.0.0.0"
    client_port_unification: bool = False  # client.portUnification: TLS or plain on clientPort
    tls: TlsSettings | None = None  # set when either TLS listener is configured
    ssl_quorum: bool = False  # sslQuorum: TLS on the quorum and election ports
    port_unification: bool = False  # portUnification: those ports accept TLS and plain
    quorum_tls: TlsSettings | None = None  # ssl.quorum.*, with sslQuorum or portUnification
    quorum_reverse_dns: bool = True  # ssl.quorum.allowReverseDnsLookup
    quorum_sasl: QuorumSaslSettings | None = None  # quorum.auth.enableSasl
    x509_acl: bool = False  # the x509 scheme has a provider (ACLs may name it)
    # SASL on the client port: None without a JAAS `Server` section (no SASL login)
    sasl: SaslSettings | None = None
    sasl_acl: bool = False  # authProvider.N=...SASLAuthenticationProvider: the `sasl` scheme
    allow_sasl_failed: bool = False  # zookeeper.allowSaslFailedClients
    # enforce.auth.schemes (or {"sasl"} for sessionRequireClientSASLAuth); empty: not enforced
    enforce_auth_schemes: frozenset[str] = frozenset()
    enforce_quota: bool = False  # zookeeper.enforceQuota: hard quotas refuse creates/setData
    audit: AuditLog | None = None  # audit.enable: set by `zkpy-server start` (server/audit.py)
    servers: dict[int, ServerSpec] = field(default_factory=dict)
    # dynamicConfigFile: where the membership was read from (None: the static file), and
    # its version (the file name's hex suffix; 0 without one)
    dynamic_config_file: Path | None = None
    config_version: int = 0
    server_id: int = 1
    source: Path | None = None
    raw: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.min_session_timeout == -1:
            self.min_session_timeout = 2 * self.tick_time
        if self.max_session_timeout == -1:
            self.max_session_timeout = 20 * self.tick_time

    @property
    def quorum(self) -> QuorumConfig:
        """The membership as read at start-up (server.N lines, version)."""
        return QuorumConfig(dict(self.servers), self.config_version)

    @property
    def standalone(self) -> bool:
        voters = [s for s in self.servers.values() if not s.observer]
        return len(voters) < 2 and self.standalone_enabled


def parse_properties(text: str) -> dict[str, str]:
    """A subset of java.util.Properties syntax: key=value, key:value, key value, comments."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + lines[i].strip()
            i += 1
        if not line or line[0] in "#!":
            continue
        m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if m is None:
            out[line] = ""
        else:
            out[m.group(1)] = m.group(2).strip()
    return out


def jvm_properties(env: dict[str, str]) -> dict[str, str]:
    """-Dname=value flags from SERVER_JVMFLAGS and JVMFLAGS."""
    out: dict[str, str] = {}
    for var in ("JVMFLAGS", "SERVER_JVMFLAGS"):
        for tok in shlex.split(env.get(var, "")):
            if tok.startswith("-D") and "=" in tok:
                k, v = tok[2:].split("=", 1)
                out[k] = v
    return out


def _canonical(key: str) -> str:
    return key[len("zookeeper."):] if key.startswith("zookeeper.") else key


def _int(raw: dict[str, str], key: str, default: int, minimum: int | None = None) -> int:
    if key not in raw:
        return default
    try:
        v = int(raw[key].strip())
    except ValueError:
        raise ConfigError(f"{key}: '{raw[key]}' is not an integer") from None
    if minimum is not None and v < minimum:
        raise ConfigError(f"{key}: {v} is below the minimum {minimum}")
    return v


def _bool(raw: dict[str, str], key: str, default: bool) -> bool:
    if key not in raw:
        return default
    v = raw[key].strip().lower()
    if v in ("true", "yes"):
        return True
    if v in ("false", "no"):
        return False
    raise ConfigError(f"{key}: '{raw[key]}' is not a boolean (use true/false or yes/no)")


def _java_get_boolean(raw: dict[str, str], key: str, warnings: list[str]) -> bool:
    """Java's Boolean.getBoolean/parseBoolean: true only for "true" in any case, anything
    else false (a value that is not a boolean word is warned about, not refused)."""
    if key not in raw:
        return False
    v = raw[key].strip()
    if v.lower() not in ("true", "false"):
        warnings.append(f"{key}: '{v}' is not true or false; like Apache ZooKeeper, zkpy takes it as false")
    return v.lower() == "true"


def _java_exact(raw: dict[str, str], key: str, word: str, warnings: list[str]) -> bool:
    """A switch that Apache ZooKeeper turns by one exact word and nothing else: skipACL
    is on only for `yes` (System.getProperty(..., "no").equals("yes")), fsync is off only
    for forceSync=`no`.  Anything else leaves the protection on, with a warning."""
    if key not in raw:
        return False
    v = raw[key].strip()
    if v != word and v not in ("yes", "no"):
        warnings.append(f"{key}: '{v}' is neither yes nor no; Apache ZooKeeper acts only on "
                        f"'{word}', and so does zkpy: ignored")
    return v == word


# Authentication providers zkpy has, by the scheme they serve (digest and ip are built in:
# Java registers them whatever authProvider.N says; sasl only when authProvider.N names it).
_AUTH_PROVIDER_SCHEMES = {
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider": "digest",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider": "ip",
    "org.apache.zookeeper.server.auth.SASLAuthenticationProvider": "sasl",
    "org.apache.zookeeper.server.auth.X509AuthenticationProvider": "x509",
}


def _refuse_missing_protection(raw: dict[str, str]) -> None:
    """Stop start-up on a key that asks for protection zkpy cannot give (TLS, SASL,
    quota enforcement, other auth providers), rather than run without it.  Keys that do
    nothing without those (ssl.keyStore.* without a secure port, ...) stay warnings."""
    for key, value in raw.items():
        if key.startswith("authProvider.") and value.strip() not in _AUTH_PROVIDER_SCHEMES:
            raise ConfigError(f"{key}: zkpy has no authentication provider {value.strip()} (only "
                              "digest, ip, sasl and x509); remove the key or use Apache ZooKeeper")


def _digest_algorithm(raw: dict[str, str]) -> str:
    """DigestAuthenticationProvider.digestAlg (Java's MessageDigest name; SHA1 by default):
    an algorithm Java has and zkpy not stops start-up, as Java stops on one it lacks."""
    name = raw.get("DigestAuthenticationProvider.digestAlg", "").strip() or "SHA1"
    algorithm = DIGEST_ALGORITHMS.get(name.upper())
    if algorithm is None:
        raise ConfigError(f"DigestAuthenticationProvider.digestAlg: unknown digest algorithm "
                          f"'{name}' (use one of {', '.join(DIGEST_ALGORITHMS)})")
    return algorithm


def _refuse_unsupported_security(raw: dict[str, str]) -> None:
    """Security settings zkpy cannot honour stop start-up rather than do nothing: Kerberos
    name rules (zkpy applies only the DEFAULT rule, i.e. none), an audit logger class
    (zkpy's audit lines go to its own logger; server/audit.py), and an AdminServer asked
    to serve HTTPS only (zkpy's serves plain HTTP)."""
    if raw.get("admin.forceHttps", "").strip().lower() == "true" \
            and raw.get("admin.enableServer", "true").strip() != "false":
        raise ConfigError("admin.forceHttps: zkpy's AdminServer has no HTTPS; set "
                          "admin.enableServer=false or use Apache ZooKeeper")
    rules = raw.get("security.auth_to_local", "DEFAULT").strip()
    if rules != "DEFAULT":
        raise ConfigError("security.auth_to_local: zkpy has no Kerberos name rules (only "
                          "DEFAULT); SASL names would map to other ids than in Java")
    audit_class = raw.get("audit.impl.class", "").strip()
    if audit_class and audit_class != "org.apache.zookeeper.audit.Slf4jAuditLogger" \
            and raw.get("audit.enable", "").strip().lower() == "true":
        raise ConfigError(f"audit.impl.class: zkpy cannot load {audit_class}; its audit lines "
                          "go to the zkpy.audit logger (zkpy.audit.file=PATH for a file)")


DIGEST_LOGIN = "org.apache.zookeeper.server.auth.DigestLoginModule"
KERBEROS_LOGINS = ("com.sun.security.auth.module.Krb5LoginModule",
                    "com.ibm.security.auth.module.Krb5LoginModule")


def _sasl_settings(raw: dict[str, str], warnings: list[str]) -> SaslSettings | None:
    """The JAAS `Server` section (zookeeper.sasl.serverconfig) of the file named by
    java.security.auth.login.config: DIGEST-MD5 users from DigestLoginModule's user_NAME
    options.  No file, or a file without the section: no SASL login, as Java (which
    refuses only a file it cannot read; a file with just a `Client` section is common).
    A malformed file, or a section that asks for a mechanism zkpy lacks (GSSAPI), stops
    start-up."""
    path = raw.get("java.security.auth.login.config", "").strip()
    if not path:
        return None
    name = raw.get("sasl.serverconfig", "Server").strip() or "Server"
    try:
        sections = load_jaas(path)
    except JaasError as e:
        raise ConfigError(f"java.security.auth.login.config: {e}") from None
    entries = sections.get(name)
    if entries is None:
        warnings.append(f"java.security.auth.login.config: no JAAS configuration section named "
                        f"'{name}' in '{path}': no SASL login on this server (as Apache ZooKeeper)")
        return None
    creds: dict[str, str] = {}
    for entry in entries:
        if entry.module in KERBEROS_LOGINS:
            raise ConfigError(f"java.security.auth.login.config: {path}:{entry.line}: section "
                              f"'{name}' uses {entry.module}, i.e. SASL mechanism GSSAPI (Kerberos), "
                              "which zkpy does not have (only DIGEST-MD5 with DigestLoginModule)")
        if entry.module != DIGEST_LOGIN:
            raise ConfigError(f"java.security.auth.login.config: {path}:{entry.line}: section "
                              f"'{name}' uses login module {entry.module}; zkpy has only "
                              f"{DIGEST_LOGIN} (SASL DIGEST-MD5)")
        for key, value in entry.options.items():
            if key.startswith("user_"):
                creds[key[len("user_"):]] = value
    default_realm = ""  # Java's KerberosName without a krb5.conf
    return SaslSettings(
        credentials=creds,
        super_password=raw.get("SASLAuthenticationProvider.superPassword"),
        super_users=frozenset(v for k, v in raw.items()
                              if k == "superUser" or k.startswith("superUser.")),
        remove_host=raw.get("kerberos.removeHostFromPrincipal", "").strip() == "true",
        remove_realm=raw.get("kerberos.removeRealmFromPrincipal", "").strip() == "true",
        default_realm=default_realm,
    )


def _enforced_schemes(raw: dict[str, str], available: set[str]) -> frozenset[str]:
    """AuthenticationHelper: sessionRequireClientSASLAuth=true means enforce.auth with the
    sasl scheme; else enforce.auth.enabled with enforce.auth.schemes (comma-separated),
    each of which must have a provider."""
    if raw.get("sessionRequireClientSASLAuth", "").strip().lower() == "true":
        schemes = ["sasl"]
        key = "sessionRequireClientSASLAuth"
    elif raw.get("enforce.auth.enabled", "").strip().lower() == "true":
        key = "enforce.auth.schemes"
        if "enforce.auth.schemes" not in raw:
            raise ConfigError("enforce.auth.enabled: zookeeper.enforce.auth.enabled is true "
                              "zookeeper.enforce.auth.schemes must be configured.")
        schemes = [s.strip() for s in raw["enforce.auth.schemes"].split(",")]
    else:
        return frozenset()
    for scheme in schemes:
        if scheme not in available:
            hint = " (add authProvider.1=org.apache.zookeeper.server.auth." \
                   "SASLAuthenticationProvider)" if scheme == "sasl" else ""
            raise ConfigError(f"{key}: Authentication scheme {scheme} is not available.{hint}")
    return frozenset(schemes)


_SERVER_RE = re.compile(r"^server\.(\d+)$")
_ADMIN_PEER_RE = re.compile(r"^zkpy\.admin\.serverPort\.(\d+)$")


def _parse_server(sid: int, value: str) -> ServerSpec:
    try:
        return parse_server(sid, value)
    except QuorumConfigError as e:
        raise ConfigError(str(e)) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read zoo.cfg (plus -D flags from the environment) into a Config."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    env = dict(os.environ) if env is None else env
    raw: dict[str, str] = {}
    for k, v in jvm_properties(env).items():
        raw[_canonical(k)] = v
    file_props = parse_properties(text)
    for k, v in file_props.items():
        raw[_canonical(k)] = v
    dynamic = raw.pop("dynamicConfigFile", None)
    dyn_path = _merge_dynamic(raw, path, dynamic.strip()) if dynamic else None
    cfg = build_config(raw, path)
    if dyn_path is not None:
        cfg.dynamic_config_file = dyn_path
        cfg.config_version = version_from_filename(dyn_path.name)
    return cfg


def version_from_filename(name: str) -> int:
    """QuorumPeerConfig.getVersionFromFilename: the hex suffix after the last dot, else 0."""
    try:
        return int(name.rsplit(".", 1)[-1], 16) if "." in name else 0
    except ValueError:
        return 0


def _merge_dynamic(raw: dict[str, str], cfg_path: Path, dynamic: str) -> Path:
    """The 3.5+ form: server.N (and group/weight) lines live in dynamicConfigFile."""
    if any(_SERVER_RE.match(k) for k in raw):
        raise ConfigError("dynamicConfigFile: server.N lines must not also be in the static config")
    dyn_path = Path(dynamic)
    if not dyn_path.is_absolute() and not dyn_path.exists():
        dyn_path = cfg_path.parent / dyn_path
    try:
        props = parse_properties(dyn_path.read_text())
    except OSError as e:
        raise ConfigError(f"dynamicConfigFile: cannot read {dyn_path}: {e.strerror}") from None
    for k, v in props.items():
        if k == "version":
            raise ConfigError(f"dynamicConfigFile: {dyn_path} must not contain version= "
                              "(the version is the file name's suffix)")
        if _SERVER_RE.match(k) or k.startswith(("group.", "weight.")):
            raw[k] = v
        else:
            raise ConfigError(f"dynamicConfigFile: unexpected key {k} in {dyn_path}")
    return dyn_path


def _port(raw: dict[str, str], key: str, default: int) -> int:
    port = _int(raw, key, default, minimum=0)
    if port > 65535:
        raise ConfigError(f"{key}: {port} is not a TCP port")
    return port


_PROMETHEUS = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"
_DEFAULT_METRICS = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"


def _metrics_provider(raw: dict[str, str]) -> bool:
    """metricsProvider.className: True for Prometheus; Java stops on a class it cannot load."""
    name = raw.get("metricsProvider.className", _DEFAULT_METRICS).strip()
    if name not in (_PROMETHEUS, _DEFAULT_METRICS):
        raise ConfigError(f"metricsProvider.className: {name} is not available in zkpy "
                          f"(use {_PROMETHEUS} or {_DEFAULT_METRICS})")
    return name == _PROMETHEUS


def build_config(raw: dict[str, str], source: Path | None = None) -> Config:
    warnings: list[str] = []
    servers: dict[int, ServerSpec] = {}
    for k, v in raw.items():
        m = _SERVER_RE.match(k)
        if m:
            servers[int(m.group(1))] = _parse_server(int(m.group(1)), v)
        elif k in KNOWN_KEYS or k in TLS_KEYS or k in QUORUM_SECURITY_KEYS:
            continue
        elif k.startswith(("group.", "weight.", "superUser.")):
            continue
        elif _ADMIN_PEER_RE.match(k):
            continue
        elif k.startswith("authProvider.") and raw[k].strip() in _AUTH_PROVIDER_SCHEMES:
            continue
        elif k.startswith(JAVA_ONLY_PREFIXES):
            warnings.append(f"{k} is a Java-only setting; zkpy ignores it")
        else:
            warnings.append(f"unknown key {k} ignored")
    if "dataDir" not in raw or not raw["dataDir"].strip():
        raise ConfigError("dataDir is not set")
    _refuse_missing_protection(raw)
    _refuse_unsupported_security(raw)
    data_dir = Path(raw["dataDir"].strip())
    tick = _int(raw, "tickTime", 3000, minimum=1)
    wl_raw = raw.get("4lw.commands.whitelist")
    if wl_raw is None:
        words = {"srvr"}
    elif wl_raw.strip() == "*":
        words = set(ALL_4LW)
    else:
        words = {w.strip() for w in wl_raw.split(",") if w.strip()}
        bad = sorted(w for w in words if w not in ALL_4LW)
        if bad:
            raise ConfigError(f"4lw.commands.whitelist: unknown command(s) {', '.join(bad)}")
        words.add("srvr")
    read_only = _java_get_boolean(raw, "readonlymode.enabled", warnings)
    if read_only:
        words.add("isro")
    client_port = _int(raw, "clientPort", -1, minimum=0) if "clientPort" in raw else None
    if client_port is not None and client_port > 65535:
        raise ConfigError(f"clientPort: {client_port} is not a TCP port")
    super_digest = raw.get("DigestAuthenticationProvider.superDigest") or None
    if super_digest is not None and ":" not in super_digest:
        raise ConfigError("DigestAuthenticationProvider.superDigest: expected super:<base64 sha1>")
    cfg = Config(
        data_dir=data_dir,
        data_log_dir=Path(raw["dataLogDir"].strip()) if raw.get("dataLogDir") else data_dir,
        client_port=client_port,
        client_port_address=raw.get("clientPortAddress", "0.0.0.0").strip() or "0.0.0.0",
        tick_time=tick,
        max_client_cnxns=_int(raw, "maxClientCnxns", 60, minimum=0),
        min_session_timeout=_int(raw, "minSessionTimeout", -1),
        max_session_timeout=_int(raw, "maxSessionTimeout", -1),
        global_outstanding_limit=_int(raw, "globalOutstandingLimit", 1000, minimum=1),
        max_cnxns=max(0, _int(raw, "maxCnxns", 0)),  # Java: <= 0 is no limit
        client_write_high_water=_int(raw, "zkpy.clientWriteHighWater", 262144, minimum=4096),
        max_buffer=_int(raw, "jute.maxbuffer", 1048575, minimum=1024),
        four_letter_words=frozenset(words),
        extended_types=_java_get_boolean(raw, "extendedTypesEnabled", warnings),
        skip_acl=_java_exact(raw, "skipACL", "yes", warnings),
        super_digest=super_digest,
        digest_algorithm=_digest_algorithm(raw),
        any_sasl_user_id=raw.get("letAnySaslUserDoX"),
        digest_enabled=(_java_get_boolean(raw, "DigestAuthenticationProvider.enabled", warnings)
                        if "DigestAuthenticationProvider.enabled" in raw else True),
        read_only_mode=read_only,
        snap_count=_int(raw, "snapCount", 100000, minimum=2),
        pre_alloc_size_kb=_int(raw, "preAllocSize", 65536, minimum=1),
        force_sync=not _java_exact(raw, "forceSync", "no", warnings),
        fsync_warning_ms=_int(raw, "fsync.warningthresholdms", 1000, minimum=0),
        inline_sync_us=_int(raw, "zkpy.inlineSyncMicros", 500, minimum=0),
        snapshot_on_shutdown=_bool(raw, "zkpy.snapshotOnShutdown", True),
        snapshot_trust_empty=_bool(raw, "snapshot.trust.empty", False),
        snap_retain_count=max(3, _int(raw, "autopurge.snapRetainCount", 3)),
        purge_interval_hours=_int(raw, "autopurge.purgeInterval", 0, minimum=0),
        init_limit=_int(raw, "initLimit", 0) if "initLimit" in raw else None,
        sync_limit=_int(raw, "syncLimit", 0) if "syncLimit" in raw else None,
        reconfig_enabled=_bool(raw, "reconfigEnabled", False),
        local_sessions_enabled=_bool(raw, "localSessionsEnabled", False),
        local_sessions_upgrading=_bool(raw, "localSessionsUpgradingEnabled", False),
        standalone_enabled=_bool(raw, "standaloneEnabled", True),
        container_check_interval_ms=_int(raw, "znode.container.checkIntervalMs", 60000, minimum=1),
        container_max_per_minute=_int(raw, "znode.container.maxPerMinute", 10000, minimum=1),
        container_max_never_used_ms=_int(raw, "znode.container.maxNeverUsedIntervalMs", 0, minimum=0),
        sessionless_cnxn_timeout_ms=_int(raw, "nio.sessionlessCnxnTimeout", 10000, minimum=1),
        cnx_timeout_ms=_int(raw, "cnxTimeout", CNX_TIMEOUT_MS, minimum=1),
        # Java enables the AdminServer for anything but exactly "false"
        admin_enabled=raw.get("admin.enableServer", "true").strip() != "false",
        admin_address=raw.get("admin.serverAddress", "0.0.0.0").strip() or "0.0.0.0",
        admin_port=_port(raw, "admin.serverPort", 8080),
        admin_command_url=raw.get("admin.commandURL", "/commands").strip() or "/commands",
        admin_idle_timeout_ms=_int(raw, "admin.idleTimeout", 30000, minimum=0),
        admin_peer_ports={int(m.group(1)): _port(raw, k, 8080)
                          for k in raw if (m := _ADMIN_PEER_RE.match(k))},
        prometheus=_metrics_provider(raw),
        prometheus_host=raw.get("metricsProvider.httpHost", "0.0.0.0").strip() or "0.0.0.0",
        prometheus_port=_port(raw, "metricsProvider.httpPort", 7000),
        # Java: Boolean.parseBoolean, default true
        prometheus_process_info=raw.get("metricsProvider.exportJvmInfo", "true").strip().lower() == "true",
        sasl=_sasl_settings(raw, warnings),
        allow_sasl_failed=raw.get("allowSaslFailedClients", "").strip().lower() == "true",
        enforce_quota=raw.get("enforceQuota", "").strip().lower() == "true",  # parseBoolean
        progress_snapshot_bytes=_int(raw, "zkpy.progress.snapshotBytes", 64 << 20, minimum=0),
        progress_txns=_int(raw, "zkpy.progress.txns", 100000, minimum=1),
        servers=servers,
        source=source,
        raw=raw,
        warnings=warnings,
    )
    if cfg.min_session_timeout > cfg.max_session_timeout:
        raise ConfigError(
            f"minSessionTimeout: {cfg.min_session_timeout} is larger than "
            f"maxSessionTimeout {cfg.max_session_timeout}"
        )
    providers = {_AUTH_PROVIDER_SCHEMES[v.strip()] for k, v in raw.items()
                 if k.startswith("authProvider.") and v.strip() in _AUTH_PROVIDER_SCHEMES}
    cfg.sasl_acl = "sasl" in providers
    _client_tls(raw, cfg)
    from zkpy.server.quorum_security_config import quorum_security  # it imports this module

    quorum_security(raw, cfg)
    if cfg.tls is not None:
        providers.add("x509")  # QuorumPeerConfig.configureSSLAuth registers it
    cfg.x509_acl = "x509" in providers
    available = {"ip"} | ({"digest"} if cfg.digest_enabled else set()) | providers
    if not cfg.digest_enabled:
        available.discard("digest")
    cfg.enforce_auth_schemes = _enforced_schemes(raw, available)
    alg = _int(raw, "electionAlg", 3)
    if alg != 3:
        raise ConfigError(f"electionAlg: {alg} is not supported (only 3)")
    return cfg


def _client_tls(raw: dict[str, str], cfg: Config) -> None:
    """secureClientPort, client.portUnification and the ssl.* keys they read."""
    if "secureClientPort" in raw:
        port = _int(raw, "secureClientPort", 0, minimum=0)
        if port > 65535:
            raise ConfigError(f"secureClientPort: {port} is not a TCP port")
        cfg.secure_client_port = port or None  # 0 means unset, as in Java
    if raw.get("secureClientPortAddress", "").strip():
        if cfg.secure_client_port is None:
            raise ConfigError("secureClientPortAddress: set but secureClientPort is not set")
        cfg.secure_client_port_address = raw["secureClientPortAddress"].strip()
    cfg.client_port_unification = raw.get("client.portUnification", "").strip().lower() == "true"
    if cfg.secure_client_port is not None or cfg.client_port_unification:
        from zkpy.server.tls import build_context, parse_tls_settings  # tls imports this module

        cfg.tls = parse_tls_settings(raw)
        build_context(cfg.tls)  # a wrong password or a bad store stops start-up here
        return
    if "client.portUnification" in raw:
        cfg.warnings.append(f"client.portUnification: '{raw['client.portUnification']}' is not true; "
                            "port unification is off (only true turns it on, as in Java)")
    for k in sorted(raw):
        if k in TLS_KEYS and k != "client.portUnification":
            cfg.warnings.append(f"{k} does nothing without secureClientPort or "
                                "client.portUnification=true; ignored")
