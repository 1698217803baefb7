"""Dynamic reconfiguration (issue 12) in mixed ensembles: a reconfig led by an Apache
ZooKeeper leader is applied by a zkpy member, and the other way round.

Two compositions of three servers (reconfigEnabled=true, a super digest): zkpy,
reference, reference (a reference leads: all start from zxid 0, so server 2 or 3 wins)
and reference, zkpy, zkpy (a zkpy server leads).  Server 4 is
never started: the reconfigs add and remove it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ensemble import Ensemble, wait_until
from tests.reconfig_support import (
    SUPER,
    Config,
    files_follow,
    joined_line,
    joiner_spec,
    read_config,
    reconfig_ensemble,
    start_timeout,
)

MEMBERS = (1, 2, 3)
COMPOSITIONS = {
    "reference-leads": ["zkpy", "reference", "reference"],
    "zkpy-leads": ["reference", "zkpy", "zkpy"],
}


@pytest.fixture(scope="module", params=list(COMPOSITIONS))
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    kinds = COMPOSITIONS[request.param]
    e = reconfig_ensemble([*kinds, "zkpy"])
    for sid in MEMBERS:
        e[sid].config_sids = set(MEMBERS)
    try:
        e.start(MEMBERS, wait=False)
        e.wait_ready(MEMBERS, timeout=start_timeout("reference"))  # fails if one exited
        yield e
    finally:
        e.close()


def served(client: object) -> tuple[bytes, int]:
    now = read_config(client)
    return now.data, now.stat.mzxid


def agree(ens: Ensemble, cfg: Config) -> None:
    """Every member serves the reply's config and wrote its file."""
    for sid in MEMBERS:
        c = ens.client(sid)
        wait_until(lambda c=c: served(c) == (cfg.data, cfg.version), 20,
                   f"server {sid} ({ens[sid].kind}) to serve config {cfg.version:x}")
    files_follow([ens[s] for s in MEMBERS], cfg)


def test_reconfig_across_kinds(ens: Ensemble) -> None:
    leader = ens.leader()
    assert leader.kind == ens[3].kind, ens.modes()  # the kind of the majority leads
    other = next(ens[s] for s in MEMBERS if ens[s].kind != leader.kind)
    c = ens.client(other.sid, auth_data=[SUPER])  # the other kind forwards it to the leader
    before = read_config(c)
    for role in ("observer", "participant"):
        data, stat = c.reconfig(joiner_spec(ens[4], role), None, None)
        added = Config(data, stat)
        assert added.lines == [*before.lines, joined_line(ens[4], role)]
        agree(ens, added)
        data, stat = c.reconfig(None, "4", None)
        removed = Config(data, stat)
        assert removed.lines == before.lines
        agree(ens, removed)
    # the ensemble still serves writes through every member after the reconfigs
    for sid in MEMBERS:
        ens.client(sid).create(f"/mixed-{sid}", b"x")
    ens.wait_ready(MEMBERS)
