"""Dynamic reconfiguration (issue 12) in mixed ensembles: a reconfig led by an Apache
ZooKeeper leader is applied by a zkpy member, and the other way round.

Two compositions of three servers (reconfigEnabled=true, a super digest): zkpy,
reference, reference (a reference leads: all start from zxid 0, so server 2 or 3 wins)
and reference, zkpy, zkpy (a zkpy server leads).  Server 4 is of the minority kind: the
first test adds and removes it while it is down; the second starts it as a joiner that
knows servers 1-4 (version 0), so it learns the ensemble's config from the other kind's
notifications, syncs as a non-voting follower, and becomes a voter by a reconfig.
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
    "reference-leads": ["zkpy", "reference", "reference", "zkpy"],
    "zkpy-leads": ["reference", "zkpy", "zkpy", "reference"],
}


@pytest.fixture(scope="module", params=list(COMPOSITIONS))
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    kinds = COMPOSITIONS[request.param]
    e = reconfig_ensemble(kinds)
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


def agree(ens: Ensemble, cfg: Config, sids: tuple[int, ...] = MEMBERS) -> None:
    """Every member serves the reply's config and wrote its file."""
    for sid in sids:
        c = ens.client(sid)
        wait_until(lambda c=c: served(c) == (cfg.data, cfg.version), 20,
                   f"server {sid} ({ens[sid].kind}) to serve config {cfg.version:x}")
    files_follow([ens[s] for s in sids], cfg)


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


def test_a_joiner_of_the_other_kind(ens: Ensemble) -> None:
    leader = ens.leader()
    joiner = ens[4]
    assert joiner.kind != leader.kind
    joiner.config_sids = {1, 2, 3, 4}
    joiner.start()
    ens.wait_ready((*MEMBERS, 4), timeout=start_timeout("reference"))
    assert joiner.mode() == "follower"  # a non-voting follower until the reconfig
    c = ens.client(1, 2, 3, auth_data=[SUPER])
    before = read_config(c)
    # it took the ensemble's config (not its own view) and serves it and wrote it
    assert 4 not in before.servers()
    assert read_config(ens.client(4)).data == before.data
    files_follow([joiner], before)
    data, stat = c.reconfig(joiner_spec(joiner), None, None)
    added = Config(data, stat)
    assert added.lines == [*before.lines, joined_line(joiner)]
    agree(ens, added, (*MEMBERS, 4))
    w = ens.client(4)
    w.create("/joined-4", b"x")  # through the new voter
    for sid in MEMBERS:
        r = ens.client(sid)
        r.sync("/joined-4")
        assert r.get("/joined-4")[0] == b"x"
    data, stat = c.reconfig(None, "4", None)
    removed = Config(data, stat)
    assert removed.lines == before.lines
    agree(ens, removed)
    joiner.kill()
