"""The reconfig op where it cannot run (issue 12), against both servers.

reconfigEnabled=false is checked before anything else (auth, arguments): RECONFIGDISABLED,
standalone or not.  A standalone server with reconfigEnabled=true answers UNIMPLEMENTED,
leaves its zoo.cfg alone and has an empty /zookeeper/config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ReconfigDisabledError, UnimplementedError

from tests.conftest import KINDS, ServerProcess, start_server
from tests.ensemble import Ensemble
from tests.reconfig_support import SUPER, SUPER_FLAG, start_timeout

GOOD = "server.2=127.0.0.1:1:2:observer;127.0.0.1:3"
REQUESTS = [(GOOD, None, None), ("some thing", None, None), (None, "1", None), (None, None, GOOD)]


def refusals(hosts: str) -> set[type]:
    """The errors of REQUESTS, with and without super auth."""
    seen: set[type] = set()
    for auth in ([], [SUPER]):
        c = KazooClient(hosts=hosts, timeout=10, auth_data=auth)
        c.start(timeout=15)
        try:
            for joining, leaving, members in REQUESTS:
                with pytest.raises(Exception) as e:
                    c.reconfig(joining, leaving, members)
                seen.add(e.type)
        finally:
            c.stop()
            c.close()
    return seen


def test_reconfig_disabled_standalone(server: ServerProcess) -> None:
    """The shared standalone server has reconfigEnabled unset (false)."""
    assert refusals(server.hosts) == {ReconfigDisabledError}


@pytest.fixture(params=KINDS)
def standalone_reconfig(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = start_server(request.param, {"reconfigEnabled": "true"}, [SUPER_FLAG])
    yield srv
    srv.stop()


def test_standalone_with_reconfig_enabled(standalone_reconfig: ServerProcess) -> None:
    srv = standalone_reconfig
    assert refusals(srv.hosts) == {UnimplementedError}
    c = KazooClient(hosts=srv.hosts, timeout=10)
    c.start(timeout=15)
    try:
        data, stat = c.get("/zookeeper/config")
    finally:
        c.stop()
        c.close()
    # no quorum config: empty data, never set (mzxid 0, version 0)
    assert (data, stat.mzxid, stat.version, stat.aversion) == (b"", 0, 0, -1)
    # and no dynamic config file: zoo.cfg is the server's as written
    assert sorted(p for p in os.listdir(srv.workdir) if p.startswith("zoo.cfg")) == ["zoo.cfg"]
    assert "dynamicConfigFile" not in (srv.workdir / "zoo.cfg").read_text()


@pytest.mark.parametrize("kind", ["zkpy", "reference"])
def test_reconfig_disabled_in_a_quorum(kind: str) -> None:
    """A one-member quorum (standaloneEnabled=false) with reconfigEnabled=false."""
    with Ensemble([kind], extra={"standaloneEnabled": "false"}, jvm_flags=[SUPER_FLAG]) as e:
        e.start(timeout=start_timeout(kind))
        assert refusals(e.hosts()) == {ReconfigDisabledError}
