"""Dynamic reconfiguration (issue 12), for each server kind: grow a one-member ensemble
(standaloneEnabled=false) to five members one joiner at a time and shrink it back to one,
while a client writes through server 1; no acknowledged write may be lost.  The steps
are those of test_reconfig_grow.py (whose helpers this uses), taken two members further:
with five voters a reconfig needs acks from three of the old and three of the new."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ensemble import Ensemble, LoadWriter, assert_contents, wait_until
from tests.reconfig_support import files_follow, growing_ensemble, joiner_spec, kinds, read_config
from tests.test_reconfig_grow import fresh, more_acks, reconfig, serving, voters

pytestmark = kinds()
ALL = (1, 2, 3, 4, 5)


@pytest.fixture(scope="module")
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from growing_ensemble(request.param, 5)


def test_grow_to_five_and_shrink_back_under_load(ens: Ensemble) -> None:
    fresh(ens, 1)
    serving(ens, 1)
    c = ens.client(1)
    c.create("/five")
    writer = LoadWriter(ens.client(1), "/five", "w")
    writer.start()
    try:
        more_acks(writer)
        for sid in ALL[1:]:
            fresh(ens, sid)
            serving(ens, *range(1, sid + 1))
            cfg = reconfig(c, joiner_spec(ens[sid]), None)
            assert voters(cfg) == set(range(1, sid + 1))
            more_acks(writer)
        files_follow([ens[s] for s in ALL], cfg)
        for sid in ALL:
            wait_until(lambda sid=sid: voters(read_config(ens.client(sid))) == set(ALL), 20,
                       f"server {sid} to have the config of five")
        for sid in reversed(ALL[1:]):
            cfg = reconfig(c, None, str(sid))
            assert voters(cfg) == set(range(1, sid))
            more_acks(writer)
        files_follow([ens[1]], cfg)
    finally:
        writer.halt.set()
        writer.join(15)
    assert writer.acked
    assert_contents(ens, [ens[1]], "/five", writer.acked, exact=False)
