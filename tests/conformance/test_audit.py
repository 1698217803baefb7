"""The audit log (audit.enable=true): the same operations against zkpy and the reference
(whose Slf4jAuditLogger is sent to a file by a log4j configuration) give the same lines."""

from __future__ import annotations

import getpass
import re
import shutil
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.security import make_acl

from tests.conftest import KINDS, start_server

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


@pytest.mark.parametrize("kind", KINDS)
def test_audit_lines_match_the_reference(kind: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    props = tmp_path / "log4j.properties"
    props.write_text(LOG4J.format(audit=audit))
    srv = start_server(kind, {"zkpy.audit.file": str(audit)} if kind == "zkpy" else {},
                       ["-Dzookeeper.audit.enable=true", f"-Dlog4j.configuration=file:{props}"])
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
        deadline = time.monotonic() + 10
        while len(_lines(audit)) < len(EXPECTED) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
    got = _lines(audit)
    assert got[:len(EXPECTED)] == EXPECTED
