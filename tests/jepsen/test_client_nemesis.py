"""The client-port nemesis against a real 3-server zkpy ensemble: a client cut from the
member it is connected to loses its connection, and its session (same id) moves to
another member through its own proxies; what it wrote before is still there (~10 s)."""

from __future__ import annotations

import threading

import pytest
from kazoo.protocol.states import KazooState

from tests.ensemble import wait_until
from tests.jepsen.nemesis import Nemesis, ProxiedEnsemble


@pytest.mark.timeout(120)
def test_a_cut_client_moves_its_session_to_another_member() -> None:
    with ProxiedEnsemble(["zkpy"] * 3) as ens:
        ens.start(timeout=60)
        c = ens.client(timeout=3.0)
        states: list[str] = []
        lost = threading.Event()
        c.add_listener(lambda s: (states.append(str(s)), s == KazooState.LOST and lost.set()))
        c.create("/before", b"x")
        session = c.client_id[0]
        n = ens.proxy.client_links()[-1].src  # this client's number (the last client made)
        mine = ens.proxy.client_links(client=n)

        def serving() -> list[int]:
            return [link.dst for link in mine if ens.proxy.connected(link)]

        first = wait_until(serving, 10, "the client's connection")
        assert len(first) == 1
        nem = Nemesis(ens, ["client"], seed=0, session_timeout=3.0, hold=5.0)
        nem.apply("client-cut", 0)  # the only client: cut it from its member for 5 s, heal
        assert nem.events[-1].detail == f"client {n} cut from server {first[0]}"
        now = wait_until(lambda: [s for s in serving() if s != first[0]], 10, "a connection elsewhere")
        assert now[0] != first[0]
        assert c.client_id[0] == session and not lost.is_set()
        assert "SUSPENDED" in states  # the connection was lost, not the session
        assert c.get("/before")[0] == b"x"
        c.set("/before", b"y")
        assert c.get("/before")[0] == b"y"
