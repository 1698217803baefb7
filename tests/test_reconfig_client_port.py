"""A reconfig that changes a member's client address moves its client listener (issue 12):
ZooKeeper's processReconfig calls cnxnFactory.reconfigure with the new address.  Run
against both servers with the client addresses in the server lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from tests.conftest import four_letter, free_port
from tests.ensemble import Ensemble, attempt, wait_until
from tests.reconfig_support import SUPER, files_follow, kinds, read_config, reconfig_ensemble, start_timeout

pytestmark = kinds()


@pytest.fixture(scope="module")
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    e = reconfig_ensemble([request.param] * 3, client_in_server_lines=True)
    try:
        e.start(timeout=start_timeout(request.param))
        yield e
    finally:
        e.close()


def test_a_new_client_port_is_served(ens: Ensemble) -> None:
    follower = next(m for m in ens.members.values() if m.mode() == "follower")
    other = next(m for m in ens.members.values() if m is not follower)
    c = ens.client(other.sid, auth_data=[SUPER])
    new_port = free_port()
    spec = f"server.{follower.sid}={follower.server_line()}:participant;127.0.0.1:{new_port}"
    data, _ = c.reconfig(spec, None, None)
    assert f"{spec}\n".encode() in data
    files_follow([follower], read_config(c))
    # the member now answers on the new port, as a member of the same ensemble
    wait_until(lambda: attempt(lambda: four_letter(new_port, "srvr", 1.0)), 20,
               f"server {follower.sid} to serve on port {new_port}")
    assert "Mode: follower" in four_letter(new_port, "srvr", 1.0)
    moved = KazooClient(hosts=f"127.0.0.1:{new_port}")
    ens.clients.append(moved)  # closed with the ensemble
    moved.start(timeout=20)
    assert read_config(moved).data == data
