"""The audit log (audit.enable=true): the same operations against zkpy and the reference
(whose Slf4jAuditLogger is sent to a file by a log4j configuration) give the same lines."""

from __future__ import annotations

import getpass
import re
import shutil
import struct
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import make_acl

from tests.conftest import KINDS, ServerProcess, start_server
from tests.ensemble import Ensemble, require_reference, wait_until
from tests.rawclient import ACL, Op, RawClient, enc_long, enc_string, path_version_body
from tests.rawclient import create_body as raw_create
from tests.reconfig_support import SUPER, SUPER_FLAG, joiner_spec

LOG4J = """log4j.rootLogger=WARN, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{{ISO8601}} %p %c{{2}}: %m%n
log4j.logger.org.apache.zookeeper.audit.Slf4jAuditLogger=INFO, AUDIT
log4j.additivity.org.apache.zookeeper.audit.Slf4jAuditLogger=false
log4j.appender.AUDIT=org.apache.log4j.FileAppender
log4j.appender.AUDIT.File={audit}
log4j.appender.AUDIT.layout=org.apache.log4j.PatternLayout
log4j.appender.AUDIT.layout.ConversionPattern=%d{{ISO8601}} %p %c{{2}}: %m%n
"""

S = "session=S\tuser=bob,127.0.0.1\tip=127.0.0.1\t"
EXPECTED = [
    ("INFO", f"user={getpass.getuser()}\toperation=serverStart\tresult=success"),
    ("INFO", S + "operation=create\tznode=/a\tznode_type=persistent\tresult=success"),
    ("INFO", S + "operation=create\tznode=/a/s-0000000000\tznode_type=ephemeral_sequential"
             "\tresult=success"),
    ("INFO", S + "operation=setData\tznode=/a\tresult=success"),
    ("ERROR", S + "operation=setData\tznode=/nonode\tresult=failure"),
    ("ERROR", S + "operation=create\tznode=/nonode/x\tznode_type=persistent\tresult=failure"),
    ("INFO", S + "operation=setAcl\tznode=/a\tacl=world:anyone:cdrwadigest:bob:abc:r"
             "\tresult=success"),
    ("INFO", S + "operation=create\tznode=/m1\tznode_type=persistent\tresult=success"),
    ("INFO", S + "operation=setData\tznode=/m1\tresult=success"),
    ("INFO", S + "operation=delete\tznode=/m1\tresult=success"),
    ("ERROR", S + "operation=multiOperation\tresult=failure"),
    ("INFO", S + "operation=delete\tznode=/a/s-0000000000\tresult=success"),
    ("INFO", S + "operation=delete\tznode=/a\tresult=success"),
]


def _lines(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"\S+ \S+ (INFO|ERROR) \S+: (.*)$", line)
        if m and "operation=" in m.group(2):
            out.append((m.group(1), re.sub(r"session=0x[0-9a-f]+", "session=S", m.group(2))))
    return out


def _audited_server(kind: str, tmp_path: Path, extra: dict[str, str] | None = None
                    ) -> tuple[ServerProcess, Path]:
    audit = tmp_path / "audit.log"
    props = tmp_path / "log4j.properties"
    props.write_text(LOG4J.format(audit=audit))
    cfg = dict(extra or {})
    if kind == "zkpy":
        cfg["zkpy.audit.file"] = str(audit)
    srv = start_server(kind, cfg,
                       ["-Dzookeeper.audit.enable=true", f"-Dlog4j.configuration=file:{props}"])
    return srv, audit


def _wait_lines(audit: Path, n: int) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 10
    while len(_lines(audit)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return _lines(audit)


@pytest.mark.parametrize("kind", KINDS)
def test_audit_lines_match_the_reference(kind: str, tmp_path: Path) -> None:
    srv, audit = _audited_server(kind, tmp_path)
    try:
        c = KazooClient(hosts=srv.hosts, timeout=10)
        c.start(timeout=15)
        c.add_auth("digest", "bob:x")
        c.create("/a", b"x")
        c.create("/a/s-", b"", sequence=True, ephemeral=True)
        c.set("/a", b"y")
        c.exists("/a")  # reads are not audited
        for call in (lambda: c.set("/nonode", b"y"), lambda: c.create("/nonode/x")):
            with pytest.raises(NoNodeError):
                call()
        c.set_acls("/a", [make_acl("world", "anyone", all=True),
                          make_acl("digest", "bob:abc", read=True)])
        t = c.transaction()
        t.create("/m1")
        t.set_data("/m1", b"1")
        t.delete("/m1")
        t.commit()
        t = c.transaction()
        t.create("/m2")
        t.delete("/nonode")
        t.commit()
        c.delete("/a", recursive=True)
        c.stop()
        c.close()
        got = _wait_lines(audit, len(EXPECTED))
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
    assert got[:len(EXPECTED)] == EXPECTED


B = "session=S\tuser=bob,127.0.0.1\tip=127.0.0.1\t"
ANON = "session=S\tuser=127.0.0.1\tip=127.0.0.1\t"
GONE = f"session=S\tuser={getpass.getuser()}\toperation=ephemeralZNodeDeletionOnSessionCloseOrExpire\t"
FAILURES_AND_SESSION_ENDS = [
    ("INFO", B + "operation=create\tznode=/a\tznode_type=persistent\tresult=success"),
    ("ERROR", B + "operation=create\tznode=/a\tznode_type=persistent\tresult=failure"),
    ("ERROR", B + "operation=create\tznode=/a/\tznode_type=persistent\tresult=failure"),
    ("ERROR", B + "operation=create\tznode=/nonode/s\tznode_type=persistent_sequential"
              "\tresult=failure"),
    ("INFO", B + "operation=create\tznode=/a/b\tznode_type=persistent\tresult=success"),
    ("ERROR", B + "operation=delete\tznode=/a\tresult=failure"),
    ("ERROR", B + "operation=delete\tznode=/a/b\tresult=failure"),
    ("ERROR", B + "operation=setData\tznode=/a/b\tresult=failure"),
    ("ERROR", B + "operation=setAcl\tznode=/zz\tacl=world:anyone:cdrwa\tresult=failure"),
    ("INFO", B + "operation=create\tznode=/na\tznode_type=persistent\tresult=success"),
    ("ERROR", B + "operation=setAcl\tznode=/na\tacl=world:anyone:cdrwa\tresult=failure"),
    ("ERROR", B + "operation=setData\tznode=/na\tresult=failure"),
    ("ERROR", B + "operation=reconfig\tresult=failure"),
    ("INFO", B + "operation=create\tznode=/c\tznode_type=container\tresult=success"),
    ("ERROR", B + "operation=delete\tznode=/zookeeper\tresult=failure"),
    ("ERROR", B + "operation=multiOperation\tresult=failure"),
    ("ERROR", B + "operation=multiOperation\tresult=failure"),
    # a closed session's ephemerals, then an expired one's: no client, the server's user
    ("INFO", ANON + "operation=create\tznode=/a/e1\tznode_type=ephemeral\tresult=success"),
    ("INFO", GONE + "znode=/a/e1\tresult=success"),
    ("INFO", ANON + "operation=create\tznode=/a/x1\tznode_type=ephemeral\tresult=success"),
    ("INFO", GONE + "znode=/a/x1\tresult=success"),
]


@pytest.mark.parametrize("kind", KINDS)
def test_audit_failures_reconfig_and_ephemerals_of_ended_sessions(kind: str,
                                                                   tmp_path: Path) -> None:
    """Failed writes (each an error txn), a refused reconfig, a createTTL (not audited in
    3.8) and the ephemerals deleted at a session's close and at its expiry."""
    srv, audit = _audited_server(kind, tmp_path, {"tickTime": "500",
                                                  "extendedTypesEnabled": "true"})
    try:
        with RawClient(srv.port) as c:
            c.auth("digest", b"bob:x")
            assert c.create("/a", b"x").err == 0
            assert c.create("/a", b"x").err == -110  # NODEEXISTS
            assert c.create("/a/", b"x").err == -8  # BADARGUMENTS
            assert c.create("/nonode/s", b"", flags=2, op=Op.CREATE2).err == -101
            assert c.create("/ttl", b"", flags=5, op=Op.CREATE_TTL, ttl=60000).err == 0
            assert c.create("/a/b", b"x").err == 0
            assert c.delete("/a").err == -111  # NOTEMPTY
            assert c.delete("/a/b", 5).err == -103  # BADVERSION
            assert c.set_data("/a/b", b"", 7).err == -103
            assert c.set_acl("/zz", [ACL(31, "world", "anyone")]).err == -101
            assert c.create("/na", b"", acl=[ACL(1, "world", "anyone")]).err == 0
            assert c.set_acl("/na", [ACL(31, "world", "anyone")]).err == -102  # NOAUTH
            assert c.set_data("/na", b"").err == -102
            reconfig = enc_string(None) + enc_string(None) + enc_string("server.1=h:1:2") + enc_long(-1)
            assert c.call(Op.RECONFIG, reconfig).err == -123  # RECONFIGDISABLED
            assert c.call(Op.CREATE_CONTAINER, raw_create("/c", b"", flags=4)).err == 0
            assert c.delete("/zookeeper").err == -8
            multi = [(Op.CREATE, raw_create("/m", b"")), (Op.CHECK, path_version_body("/a", 9))]
            assert c.multi(multi).err == 0
            # undecodable bodies: an error txn each; Java cannot read a delete's path back
            # (no line) but logs a multi's failure without reading it
            assert c.call(Op.DELETE, b"\x00\x00").err == -5  # MARSHALLINGERROR
            assert c.call(Op.MULTI, b"\x00\x00").err == -5
        with RawClient(srv.port) as c:
            assert c.create("/a/e1", b"", flags=1).err == 0
        c = RawClient(srv.port, session_timeout=1000)
        assert c.create("/a/x1", b"", flags=1).err == 0
        c.close_socket()  # and let the session expire
        got = _wait_lines(audit, len(FAILURES_AND_SESSION_ENDS) + 1)
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
    assert got[1:] == FAILURES_AND_SESSION_ENDS


@pytest.mark.parametrize("kind", KINDS)
def test_writes_of_a_client_that_left_are_audited(kind: str, tmp_path: Path) -> None:
    """200 pipelined creates, then the socket closed at once: whatever the server still
    carries out after noticing the close is audited all the same (without an ip then)."""
    srv, audit = _audited_server(kind, tmp_path)
    try:
        with RawClient(srv.port) as c:
            assert c.create("/left", b"").err == 0
        c = RawClient(srv.port)
        c.sock.sendall(b"".join(
            struct.pack(">iii", 8 + len(body), 1000 + i, Op.CREATE) + body
            for i, body in enumerate(raw_create(f"/left/n{i:03d}", b"") for i in range(200))))
        c.close_socket()
        k = KazooClient(hosts=srv.hosts, timeout=10)
        k.start(timeout=15)
        # the server may still be reading the closed socket's creates when this client
        # lists them (Java reads it on another selector thread): list until it is quiet
        created: set[str] = set()
        quiet_by = time.monotonic() + 10
        while time.monotonic() < quiet_by:
            now = set(k.get_children("/left"))
            if now and now == created:
                break
            created = now
            time.sleep(0.5)
        k.stop()
        k.close()
        pattern = re.compile(r"operation=create\tznode=/left/(n\d+)\tznode_type=persistent"
                             r"\tresult=success")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            logged = {m.group(1) for _, line in _lines(audit) if (m := pattern.search(line))}
            if logged >= created:
                break
            time.sleep(0.1)
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
    assert created and logged == created


RECONFIGURED = "operation=reconfig\tznode=/zookeeper/config\tresult=success"


def test_a_mixed_ensemble_logs_ephemerals_of_a_closed_session_and_reconfig() -> None:
    """The ephemeral deletions are logged by each member as it applies the closeSession
    (zkpy and Java alike); the client's create and reconfig only by the member holding the
    connection, the reconfig as a success on /zookeeper/config."""
    require_reference()
    with Ensemble(["zkpy", "zkpy", "reference"], keep_config=True,
                  jvm_flags=["-Dzookeeper.audit.enable=true", SUPER_FLAG],
                  extra={"reconfigEnabled": "true"}) as ens:
        ens.start(timeout=90)
        members = ",".join(joiner_spec(m) for m in ens.members.values())
        for via in (ens[1], ens[3]):
            path = f"/e-{via.kind}"
            with RawClient(via.client_port) as c:
                assert c.create(path, b"", flags=1).err == 0
            gone = f"operation=ephemeralZNodeDeletionOnSessionCloseOrExpire\tznode={path}\t"
            wait_until(lambda g=gone: all(g in m.log_text() for m in ens.members.values()), 20,
                       f"every member to log the deletion of {path}")
            created = f"operation=create\tznode={path}\tznode_type=ephemeral\tresult=success"
            assert [m.sid for m in ens.members.values() if created in m.log_text()] == [via.sid]
        # after the ephemerals: a member may rebind its client port when a reconfig first
        # names its client address
        for via in (ens[1], ens[3]):
            before = [m.log_text().count("operation=reconfig") for m in ens.members.values()]
            su = ens.client(via.sid, auth_data=[SUPER])
            su.reconfig(None, None, members)  # the same members: a new config version
            ens.close_clients()
            wait_until(lambda v=via: RECONFIGURED in v.log_text(), 20, f"{via} to log the reconfig")
            after = [m.log_text().count("operation=reconfig") for m in ens.members.values()]
            logged = [a - b for a, b in zip(after, before, strict=True)]
            assert logged == [int(m is via) for m in ens.members.values()]
