"""Dynamic reconfiguration (issue 12) across processes, for each server kind: grow a
one-member ensemble (standaloneEnabled=false) to three and shrink it back while a client
writes, then remove the leader of three.

The members run with skipACL=yes, so the reconfigs here come from a client without auth
(ZooKeeper skips the ACL of /zookeeper/config then).  A joiner starts with a zoo.cfg that
lists the members it knows of and itself (`config_sids`); it learns the current config
from the leader, syncs as a non-voting follower, and becomes a voter by the reconfig that
adds it.  No acknowledged write may be lost on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.exceptions import ConnectionLoss

from tests.ensemble import Ensemble, LoadWriter, assert_contents, attempt, wait_until
from tests.reconfig_support import (
    Config,
    files_follow,
    growing_ensemble,
    joiner_spec,
    kinds,
    read_config,
    start_timeout,
)

pytestmark = kinds()


@pytest.fixture(scope="module")
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    yield from growing_ensemble(request.param, 3)


@pytest.fixture(autouse=True)
def from_nothing(ens: Ensemble) -> Iterator[None]:
    """No member of a previous test runs (one would tell a fresh server its newer config)."""
    for m in ens.members.values():
        m.kill()
    yield
    ens.close_clients()


def fresh(ens: Ensemble, sid: int) -> None:
    """Start server `sid` from nothing: an empty data dir and a zoo.cfg listing servers 1..sid."""
    m = ens[sid]
    m.kill()
    m.wipe()
    for p in m.workdir.glob("zoo.cfg*"):
        p.unlink()
    m.config_sids = set(range(1, sid + 1))
    m.start()


def serving(ens: Ensemble, *sids: int) -> None:
    ens.wait_ready(sids, timeout=start_timeout(ens.kind))  # type: ignore[attr-defined]


def voters(cfg: Config) -> set[int]:
    return {sid for sid, role in cfg.roles().items() if role == "participant"}


def reconfig(client: Any, joining: str | None, leaving: str | None) -> Config:
    data, stat = client.reconfig(joining, leaving, None)
    cfg = Config(data, stat)
    now = read_config(client)
    # not mtime: a ZooKeeper member that re-syncs with a new leader writes the node again
    # with its own clock (same data and mzxid)
    assert (now.data, now.stat.mzxid, now.stat.version) == (cfg.data, cfg.version, -1)
    return cfg


def more_acks(writer: LoadWriter, n: int = 30) -> None:
    """The writer gets `n` more writes acknowledged (the ensemble keeps serving)."""
    start = len(writer.acked)
    wait_until(lambda: len(writer.acked) >= start + n, 30, f"{n} more acknowledged writes")


def test_grow_to_three_and_shrink_back_under_load(ens: Ensemble) -> None:
    fresh(ens, 1)
    serving(ens, 1)
    c = ens.client(1)
    first = read_config(c)
    # the server line keeps its client address; the role is spelt out
    assert first.lines == [joiner_spec(ens[1])]
    # with the client address in the server lines, the rewritten zoo.cfg has no server
    # and no client port lines, only dynamicConfigFile= added (ZooKeeper's key order aside)
    kept = {line for line in (ens[1].workdir / "zoo.cfg.bak").read_text().splitlines()
            if not line.startswith("server.")}
    assert set((ens[1].workdir / "zoo.cfg").read_text().splitlines()) == kept | {
        f"dynamicConfigFile={ens[1].workdir / f'zoo.cfg.dynamic.{first.version:x}'}"}
    files_follow([ens[1]], first)
    c.create("/grow")
    writer = LoadWriter(ens.client(1), "/grow", "w")
    writer.start()
    try:
        more_acks(writer)
        for sid in (2, 3):
            fresh(ens, sid)
            serving(ens, *range(1, sid + 1))  # a non-voting follower until added
            # the joiner took the leader's config (not its own partial view) and wrote it
            files_follow([ens[sid]], read_config(c))
            cfg = reconfig(c, joiner_spec(ens[sid]), None)
            assert voters(cfg) == set(range(1, sid + 1))
            files_follow([ens[s] for s in range(1, sid + 1)], cfg)
            more_acks(writer)
        for sid in (1, 2, 3):  # every member runs the config of three
            wait_until(lambda sid=sid: voters(read_config(ens.client(sid))) == {1, 2, 3}, 20,
                       f"server {sid} to have the config of three")
        modes = serving_modes(ens, 1, 2, 3)
        assert sorted(modes.values()) == ["follower", "follower", "leader"], modes
        for sid in (3, 2):
            cfg = reconfig(c, None, str(sid))
            assert voters(cfg) == set(range(1, sid))
            files_follow([ens[1]], cfg)
            more_acks(writer)
    finally:
        writer.halt.set()
        writer.join(15)
    assert writer.acked
    assert_contents(ens, [ens[1]], "/grow", writer.acked, exact=False)


def serving_modes(ens: Ensemble, *sids: int) -> dict[int, str]:
    return ens.wait_ready(sids, timeout=start_timeout(ens.kind))  # type: ignore[attr-defined]


def test_remove_the_leader(ens: Ensemble) -> None:
    fresh(ens, 1)
    serving(ens, 1)
    c = ens.client(1)
    for sid in (2, 3):
        fresh(ens, sid)
        serving(ens, *range(1, sid + 1))
        reconfig(c, joiner_spec(ens[sid]), None)
    leader = next(ens[s] for s, mode in serving_modes(ens, 1, 2, 3).items() if mode == "leader")
    rest = [s for s in (1, 2, 3) if s != leader.sid]
    w = ens.client(*rest)
    w.ensure_path("/after")
    writer = LoadWriter(ens.client(*rest), "/after", "w")
    writer.start()
    try:
        more_acks(writer)
        asked = ens.client(*rest)
        try:
            assert voters(reconfig(asked, None, str(leader.sid))) == set(rest)
        except ConnectionLoss:
            # ZooKeeper's followers drop their clients as they turn to the new leader,
            # possibly before the reply: the outcome is read below
            pass
        wait_until(lambda: attempt(lambda: voters(read_config(asked))) == set(rest), 30,
                   "the config without the old leader")
        # the other two go on with a leader of their own
        modes = serving_modes(ens, *rest)
        assert sorted(modes.values()) == ["follower", "leader"], modes
        more_acks(writer)
    finally:
        writer.halt.set()
        writer.join(15)
    leader.kill()  # it is no member any more: the two serve without it
    more_writes = ens.client(*rest)
    more_writes.create("/after/last", b"x")
    for sid in rest:
        assert voters(read_config(ens.client(sid))) == set(rest)
    assert_contents(ens, [ens[s] for s in rest], "/after", {**writer.acked, "last": b"x"}, exact=False)
