"""The AdminServer after a reconfig (issue 12): `voting_view` and `leader` read the
member's current config, not zoo.cfg's server lines.  zkpy only: the reference's
AdminServer needs Jetty on the class path, which tests/ensemble.py does not give it
(tests/test_admin_server.py compares the commands themselves with Java's)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.conftest import free_port
from tests.ensemble import wait_until
from tests.reconfig_support import SUPER, reconfig_ensemble


def admin(port: int, command: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/commands/{command}", timeout=10) as r:
        return json.loads(r.read())


def test_voting_view_follows_the_config() -> None:
    with reconfig_ensemble(["zkpy"] * 3) as ens:
        ports = {}
        for m in ens.members.values():
            ports[m.sid] = free_port()
            m.extra.update({"admin.enableServer": "true", "admin.serverPort": str(ports[m.sid]),
                            "admin.serverAddress": "127.0.0.1"})
        ens.start(timeout=30)
        assert sorted(admin(ports[1], "voting_view")["current_config"]) == ["1", "2", "3"]
        leader = ens.leader()
        keep = sorted(s for s in ens.members if s != leader.sid)
        c = ens.client(*keep, auth_data=[SUPER])
        c.reconfig(None, str(keep[-1]), None)
        wait_until(lambda: sorted(admin(ports[keep[0]], "voting_view")["current_config"])
                   == sorted(str(s) for s in (leader.sid, keep[0])), 20,
                   "the voting view without the removed member")
        assert admin(ports[keep[0]], "leader")["leader_id"] == leader.sid
