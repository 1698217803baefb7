"""The runner's start of an ensemble behind proxies (~5 s: real zkpy members)."""

from __future__ import annotations

import socket

import pytest

from tests.jepsen.nemesis import ProxiedEnsemble
from tests.jepsen.runner import start_every_member


@pytest.mark.timeout(120)
def test_a_member_that_cannot_bind_stops_the_start() -> None:
    """Found by a campaign run: server 2's port was taken between free_port and its bind,
    it exited at start, and the run went on with two members until the replica check
    could not reach it.  Now the start fails at once, naming the member and its error."""
    with ProxiedEnsemble(["zkpy"] * 3) as ens, socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ens[2].client_port))
        squatter.listen()
        with pytest.raises(AssertionError, match="(?s)server.2.*exited.*address already in use"):
            start_every_member(ens, timeout=30)
        # what the runner did before: wait for the running members, content with two
        assert set(ens.wait_ready(timeout=60)) == {1, 3}
