"""Dynamic reconfiguration (issue 12) with joiners of the other kind: a one-member
ensemble (standaloneEnabled=false) of one server kind grows to three by joiners that
alternate kinds, then shrinks back, while a client writes.  A joiner starts with a
partial view (version 0) and must take the ensemble's config from the notifications of
a member of the other kind (FastLeaderElection's config, ZooKeeper's processReconfig
while LOOKING), sync from a leader of the other kind as a non-voting follower, and
become a voter by the reconfig; no acknowledged write may be lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ensemble import Ensemble, LoadWriter, assert_contents, wait_until
from tests.reconfig_support import files_follow, joiner_spec, read_config, reconfig_ensemble
from tests.test_reconfig_grow import fresh, more_acks, reconfig, voters

COMPOSITIONS = {"zkpy-first": ["zkpy", "reference", "zkpy"],
                "reference-first": ["reference", "zkpy", "reference"]}


@pytest.fixture(scope="module", params=list(COMPOSITIONS))
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    e = reconfig_ensemble(COMPOSITIONS[request.param],
                          extra={"standaloneEnabled": "false", "skipACL": "yes"},
                          client_in_server_lines=True)
    try:
        yield e
    finally:
        e.close()


def test_joiners_of_the_other_kind(ens: Ensemble) -> None:
    fresh(ens, 1)
    ens.wait_ready([1], timeout=90)
    c = ens.client(1)
    c.create("/mixed")
    writer = LoadWriter(ens.client(1), "/mixed", "w")
    writer.start()
    try:
        more_acks(writer)
        for sid in (2, 3):
            fresh(ens, sid)
            ens.wait_ready(range(1, sid + 1), timeout=90)  # a non-voting follower until added
            files_follow([ens[sid]], read_config(c))  # it took the leader's config
            cfg = reconfig(c, joiner_spec(ens[sid]), None)
            assert voters(cfg) == set(range(1, sid + 1))
            more_acks(writer)
        for sid in (1, 2, 3):
            wait_until(lambda sid=sid: voters(read_config(ens.client(sid))) == {1, 2, 3}, 20,
                       f"server {sid} ({ens[sid].kind}) to have the config of three")
        for sid in (3, 2):
            cfg = reconfig(c, None, str(sid))
            assert voters(cfg) == set(range(1, sid))
            more_acks(writer)
    finally:
        writer.halt.set()
        writer.join(15)
    assert writer.acked
    assert_contents(ens, [ens[1]], "/mixed", writer.acked, exact=False)
