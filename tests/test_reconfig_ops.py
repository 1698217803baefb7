"""Dynamic reconfiguration (issue 12): the reconfig op, /zookeeper/config and the config
files, on a 3-member ensemble of each kind (reconfigEnabled=true, a super digest).

One ensemble per kind is shared by the module (servers 1-3 run; 4-6 are never started:
their free ports make joiners that are down, which connect attempts see refused at once).
Every test starts from servers 1-3 as participants and no other member (`restored`
puts that back with a non-incremental reconfig); versions only grow, so tests read the
config they start from instead of assuming a version.  syncLimit is 10 ticks (5 s) so
that paused followers still count as synced while RECONFIGINPROGRESS is provoked.

Each case runs against Apache ZooKeeper 3.8 and zkpy with the same assertions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.exceptions import (
    BadArgumentsError,
    BadVersionError,
    MarshallingError,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigInProcessError,
)
from kazoo.protocol.states import EventType
from kazoo.security import ACL, Permissions, make_acl

from tests.conftest import require_tool
from tests.ensemble import Ensemble, wait_until
from tests.reconfig_support import (
    SUPER,
    Config,
    files_follow,
    joined_line,
    joiner_spec,
    kinds,
    read_config,
    reconfig_ensemble,
    start_timeout,
    static_line,
)

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
VOTERS = (1, 2, 3)
SPARES = (4, 5, 6)
ANYONE = make_acl("world", "anyone").id


@pytest.fixture(scope="module")
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    e = reconfig_ensemble([request.param] * 6, sync_limit=10)
    for sid in VOTERS:
        e[sid].config_sids = set(VOTERS)
    try:
        e.start(VOTERS, wait=False)
        e.wait_ready(VOTERS, timeout=start_timeout(request.param))  # fails if one exited
        yield e
    finally:
        e.close()


def su(ens: Ensemble, *sids: int) -> Any:
    """A kazoo client authenticated as the super user, on `sids` (default: servers 1-3)."""
    return ens.client(*(sids or VOTERS), auth_data=[SUPER])


def anon(ens: Ensemble, *sids: int) -> Any:
    return ens.client(*(sids or VOTERS))


@pytest.fixture(autouse=True)
def restored(ens: Ensemble) -> Iterator[None]:
    """Servers 1-3 serving as the only members, as participants, before every test."""
    for m in ens.members.values():
        m.resume()
        m.observer = False
    ens.start(VOTERS, timeout=60)
    c = su(ens)
    if read_config(c).roles() != dict.fromkeys(VOTERS, "participant"):
        c.reconfig(None, None, ",".join(joiner_spec(ens[s]) for s in VOTERS))
        ens.wait_ready(VOTERS, timeout=60)
    yield
    ens.close_clients()


def expect_config(cfg: Config, lines: list[str]) -> None:
    """The exact bytes of /zookeeper/config: the server lines in order of sid, then
    `version=` and the config's version in lower-case hex without 0x, no final newline."""
    assert cfg.data == "\n".join([*lines, f"version={cfg.version:x}"]).encode()


def expect_stat(cfg: Config) -> None:
    """A reconfig is a setData of /zookeeper/config with version -1 at the reconfig's zxid,
    which is the config's version; the node was never created by a txn (czxid 0)."""
    st = cfg.stat
    assert (st.mzxid, st.version, st.czxid, st.ctime, st.aversion, st.numChildren) == (
        cfg.version, -1, 0, 0, -1, 0)
    assert st.dataLength == len(cfg.data)


def on_every_member(ens: Ensemble, sids: tuple[int, ...], expected: bytes) -> None:
    for sid in sids:
        c = anon(ens, sid)
        wait_until(lambda c=c: read_config(c).data == expected, 20, f"server {sid} to see the new config")


# --------------------------------------------------------------------------- at start


@kinds()
def test_config_at_start(ens: Ensemble) -> None:
    """Before any reconfig (this test runs first in the module)."""
    cfg = read_config(anon(ens))
    # the servers' own lines, role spelt out; version = the first epoch's NEWLEADER zxid
    expect_config(cfg, [static_line(ens[s]) for s in VOTERS])
    epoch = (ens.leader().zxid() or 0) >> 32
    assert cfg.version == epoch << 32 and epoch >= 1
    expect_stat(cfg)
    # only world:anyone:READ, so only the super user may reconfig by default
    assert anon(ens).get_acls("/zookeeper/config")[0] == [ACL(Permissions.READ, ANYONE)]
    for sid in VOTERS:
        m = ens[sid]
        # the first start rewrote zoo.cfg: the server lines went to zoo.cfg.dynamic.<version>
        # and dynamicConfigFile= (with the absolute path) was appended; zoo.cfg.bak is the
        # original.  ZooKeeper writes the other keys in its Properties' hash order: compare sets.
        original = (m.workdir / "zoo.cfg.bak").read_text()
        assert original.startswith("tickTime=") and f"server.{sid}=" in original
        kept = {line for line in original.splitlines() if not line.startswith("server.")}
        rewritten = (m.workdir / "zoo.cfg").read_text()
        assert rewritten.endswith("\n")
        assert set(rewritten.splitlines()) == kept | {
            f"dynamicConfigFile={m.workdir / f'zoo.cfg.dynamic.{cfg.version:x}'}"}
        assert (m.workdir / f"zoo.cfg.dynamic.{cfg.version:x}").read_text() == "\n".join(cfg.lines)


# --------------------------------------------------------------------------- errors


@kinds()
def test_errors_come_before_the_acl_check(ens: Ensemble) -> None:
    """ZooKeeper checks the version, the spec and the new quorum before the ACL: a client
    without auth sees BADVERSION, BADARGUMENTS, NEWCONFIGNOQUORUM, and NOAUTH only for a
    request that would otherwise succeed."""
    c = anon(ens)
    before = read_config(c)
    good = joiner_spec(ens[4], "observer")
    with pytest.raises(BadVersionError):
        c.reconfig(good, None, None, from_config=before.version + 1)
    with pytest.raises(BadArgumentsError):
        c.reconfig("some thing", None, None)
    with pytest.raises(BadArgumentsError):
        c.reconfig(None, "1,2,3", None)
    with pytest.raises(NewConfigNoQuorumError):
        c.reconfig(",".join(joiner_spec(ens[s]) for s in SPARES), None, None)
    with pytest.raises(NoAuthError):
        c.reconfig(good, None, None)
    assert read_config(c) == before


@kinds()
def test_bad_arguments(ens: Ensemble) -> None:
    c = su(ens)
    before = read_config(c)
    q, e = ens[4].quorum_port, ens[4].election_port
    bad = [
        ("some thing", None, None),  # not server.N=...
        ("server.4=127.0.0.1:1234", None, None),  # one port
        (f"server.4=127.0.0.1:{q}:{e}:participant", None, None),  # a joiner needs its client port
        (f"server.4=127.0.0.1:{q}:{e}:voter;1", None, None),  # roles: participant, observer
        (f"server.4=127.0.0.1:{q}:{e};\u00b2", None, None),  # a digit-like character, not a port
        (None, "1,2,3", None),  # no voter left
        (None, "2,3", None),  # one voter left: refused while standaloneEnabled (the default)
        (None, None, joiner_spec(ens[1])),  # the same, non-incremental
        (None, None, "bogus=1"),  # a non-incremental list with no server line
    ]
    for joining, leaving, members in bad:
        with pytest.raises(BadArgumentsError):
            c.reconfig(joining, leaving, members)
    # a server id or leaving id that is not a number escapes the leader's checks:
    # ZooKeeper answers MARSHALLINGERROR
    with pytest.raises(MarshallingError):
        c.reconfig(f"server.x=127.0.0.1:{q}:{e};1", None, None)
    with pytest.raises(MarshallingError):
        c.reconfig(None, "abc", None)
    assert read_config(c) == before


@kinds()
def test_duplicate_addresses(ens: Ensemble) -> None:
    """A joiner may not reuse another member's address, but loopback and wildcard
    addresses are exempt from that check (QuorumServer.checkAddressDuplicate)."""
    c = su(ens)
    before = read_config(c)
    # two joiners in one request, the second on the first one's quorum address
    with pytest.raises(BadArgumentsError):
        c.reconfig("server.4=10.1.2.3:1000:1001:observer;1002,server.5=10.1.2.3:1000:2000:observer;2002",
                   None, None)
    assert read_config(c) == before
    # on 127.0.0.1 the same reuse (server 1's quorum port) is accepted
    q1 = ens[1].quorum_port
    spec = f"server.5=127.0.0.1:{q1}:{ens[5].election_port}:participant;127.0.0.1:{ens[5].client_port}"
    data, _ = c.reconfig(spec, None, None)
    expect_config(Config(data, None), [*before.lines, spec])
    c.reconfig(None, "5", None)


@kinds()
def test_lenient_specs(ens: Ensemble) -> None:
    """What ZooKeeper accepts besides the documented forms."""
    c = su(ens)
    before = read_config(c)
    m = ens[4]
    # the id is read after the last '.' before '=': "server." may be left out
    data, _ = c.reconfig(f"4={m.server_line()};{m.client_port}", None, None)
    assert Config(data, None).lines == [*before.lines, static_line(m) + f";0.0.0.0:{m.client_port}"]
    # blanks around entries are trimmed; a duplicate leaving id is harmless
    data, _ = c.reconfig(None, " 4,4", None)
    last = Config(data, None)
    assert last.lines == before.lines
    # an empty joining or leaving list is a reconfig too: same members, a new version
    for joining, leaving in (("", None), (None, "")):
        data, _ = c.reconfig(joining, leaving, None)
        now = Config(data, None)
        assert now.lines == before.lines and now.version > last.version
        last = now


@kinds()
def test_bad_version(ens: Ensemble) -> None:
    c = su(ens)
    before = read_config(c)
    spec = joiner_spec(ens[4], "observer")
    for wrong in (before.version + 1, before.version - 1, 0):
        with pytest.raises(BadVersionError):
            c.reconfig(spec, None, None, from_config=wrong)
    data, _ = c.reconfig(spec, None, None, from_config=before.version)
    after = Config(data, None)
    assert after.version > before.version
    with pytest.raises(BadVersionError):  # the version it was made from is stale now
        c.reconfig(None, "4", None, from_config=before.version)
    c.reconfig(None, "4", None, from_config=after.version)  # -1 (the default) is no check


@kinds()
def test_new_config_without_a_synced_quorum(ens: Ensemble) -> None:
    c = su(ens)
    before = read_config(c)
    # 3 down joiners: 3 synced of 6 voters is no quorum
    with pytest.raises(NewConfigNoQuorumError):
        c.reconfig(",".join(joiner_spec(ens[s]) for s in SPARES), None, None)
    # non-incremental: server 1 and two down servers
    with pytest.raises(NewConfigNoQuorumError):
        c.reconfig(None, None, ",".join(joiner_spec(ens[s]) for s in (1, 4, 5)))
    # but 3 synced of 5 voters is a quorum (the two down joiners are kept)
    data, _ = c.reconfig(",".join(joiner_spec(ens[s]) for s in (4, 5)), None, None)
    expect_config(Config(data, None), [*before.lines, joined_line(ens[4]), joined_line(ens[5])])
    # and with 2 of the 5 down, losing one more running voter breaks it
    with pytest.raises(NewConfigNoQuorumError):
        c.reconfig(None, "3", None)


@kinds()
def test_reconfig_in_progress(ens: Ensemble) -> None:
    """While a reconfig's proposal waits for acks (both followers paused), the next one is
    refused with RECONFIGINPROGRESS; the first commits once they resume."""
    leader = ens.leader()
    followers = [ens[s] for s in VOTERS if ens[s] is not leader]
    c = su(ens, leader.sid)
    before = read_config(c)
    for f in followers:
        f.pause()
    try:
        first = c.reconfig_async(joiner_spec(ens[4], "observer"), None, None, -1)
        second = c.reconfig_async(joiner_spec(ens[5], "observer"), None, None, -1)
        # both reached the leader (srvr counts requests in its pipeline) before the resume
        wait_until(lambda: int(leader.srvr().get("Outstanding", 0)) >= 2, 5, "both reconfigs at the leader")
    finally:
        for f in followers:
            f.resume()
    # the refusal is a txn too, answered in order after the first commits
    data, _ = first.get(timeout=30)
    with pytest.raises(ReconfigInProcessError):
        second.get(timeout=30)
    expect_config(Config(data, None), [*before.lines, joined_line(ens[4], "observer")])


# --------------------------------------------------------------------------- /zookeeper/config


def watch_config(client: Any) -> list[Any]:
    events: list[Any] = []
    client.get("/zookeeper/config", watch=events.append)
    return events


@kinds()
def test_add_and_remove_an_observer(ens: Ensemble) -> None:
    follower = next(ens[s] for s in VOTERS if ens[s].mode() == "follower")
    c = su(ens, follower.sid)  # through a follower: it forwards the op and the reply
    watcher = anon(ens, next(s for s in VOTERS if s != follower.sid))
    before = read_config(c)
    events = watch_config(watcher)
    data, stat = c.reconfig(joiner_spec(ens[4], "observer"), None, None)
    added = Config(data, stat)
    # a joiner keeps its client address, 127.0.0.1 here
    expect_config(added, [*before.lines, joined_line(ens[4], "observer")])
    expect_stat(added)
    assert added.version > before.version
    assert read_config(c) == added  # the reply's data and stat are getData's
    wait_until(lambda: events, 10, "the data watch on /zookeeper/config")
    assert [(ev.type, ev.path) for ev in events] == [(EventType.CHANGED, "/zookeeper/config")]
    on_every_member(ens, VOTERS, added.data)

    data, stat = c.reconfig(None, "4", None)
    removed = Config(data, stat)
    expect_config(removed, before.lines)
    expect_stat(removed)
    assert removed.version > added.version
    on_every_member(ens, VOTERS, removed.data)


@kinds()
def test_add_and_remove_a_participant_and_the_files(ens: Ensemble) -> None:
    c = su(ens)
    before = read_config(c)
    data, stat = c.reconfig(joiner_spec(ens[4]), None, None)
    added = Config(data, stat)
    expect_config(added, [*before.lines, joined_line(ens[4])])
    expect_stat(added)
    files_follow([ens[s] for s in VOTERS], added)
    data, stat = c.reconfig(None, "4", None)
    removed = Config(data, stat)
    expect_config(removed, before.lines)
    files_follow([ens[s] for s in VOTERS], removed)
    assert (ens[1].workdir / f"zoo.cfg.dynamic.{added.version:x}").exists()
    # removing a server that is no member still makes a new version, the same lines
    data, _ = c.reconfig(None, "6", None)
    again = Config(data, None)
    assert again.lines == removed.lines and again.version > removed.version


@kinds()
def test_kazoo_style_joiner_and_line_orders(ens: Ensemble) -> None:
    """kazoo's TestReconfig joiner: server.100 on 0.0.0.0 with a bare client port."""
    c = su(ens)
    before = read_config(c)
    m = ens[4]
    joining = f"server.100=0.0.0.0:{m.quorum_port}:{m.election_port}:observer;0.0.0.0:{m.client_port}"
    # a bare client port gets the wildcard host
    data, stat = c.reconfig(joining.replace(";0.0.0.0:", ";"), None, None)
    cfg = Config(data, stat)
    assert joining.encode() in data
    # /zookeeper/config lists servers in Java HashMap<Long> order (100 after 3) ...
    expect_config(cfg, [*before.lines, joining])
    # ... the dynamic file sorts its lines as strings (server.100 before server.2)
    for sid in VOTERS:
        path = ens[sid].workdir / f"zoo.cfg.dynamic.{cfg.version:x}"
        wait_until(path.exists, 20, f"{path.name} on server {sid}")
        assert path.read_text() == "\n".join(sorted(cfg.lines))
    c.reconfig(None, "100", None)


@kinds()
def test_participant_to_observer_and_back(ens: Ensemble) -> None:
    leader = ens.leader()
    f = next(ens[s] for s in VOTERS if ens[s] is not leader)
    c = su(ens, leader.sid)
    before = read_config(c)
    data, stat = c.reconfig(joiner_spec(f, "observer"), None, None)
    demoted = Config(data, stat)
    # the changed server's line, now with a client address, keeps its place (order of sid)
    expect_config(demoted, [joined_line(f, "observer") if line.startswith(f"server.{f.sid}=") else line
                            for line in before.lines])
    f.observer = True
    ens.wait_ready(VOTERS, timeout=60)
    assert f.mode() == "observer"
    w = anon(ens, f.sid)
    w.create("/reconfig-demoted", b"x")  # an observer forwards writes
    w.delete("/reconfig-demoted")

    data, _ = c.reconfig(joiner_spec(f), None, None)
    promoted = Config(data, None)
    assert promoted.roles() == dict.fromkeys(VOTERS, "participant")
    f.observer = False
    ens.wait_ready(VOTERS, timeout=60)
    assert f.mode() == "follower"


@kinds()
def test_non_incremental(ens: Ensemble) -> None:
    c = su(ens)
    wanted = [joiner_spec(ens[s]) for s in VOTERS] + [joiner_spec(ens[4], "observer")]
    # the new member list is taken as given (commas or newlines between servers)
    data, stat = c.reconfig(None, None, "\n".join(wanted))
    cfg = Config(data, stat)
    expect_config(cfg, wanted)
    expect_stat(cfg)
    on_every_member(ens, VOTERS, cfg.data)
    data, _ = c.reconfig(None, None, ",".join(wanted[:3]))
    expect_config(Config(data, None), wanted[:3])


@kinds()
def test_acl_on_the_config_node_lets_others_reconfig(ens: Ensemble) -> None:
    s = su(ens)
    c = anon(ens)
    spec = joiner_spec(ens[4], "observer")
    s.set_acls("/zookeeper/config", [ACL(Permissions.READ | Permissions.WRITE, ANYONE)])
    try:
        data, _ = c.reconfig(spec, None, None)
        assert Config(data, None).roles()[4] == "observer"
        c.reconfig(None, "4", None)
    finally:
        s.set_acls("/zookeeper/config", [ACL(Permissions.READ, ANYONE)])
    with pytest.raises(NoAuthError):
        c.reconfig(spec, None, None)


# --------------------------------------------------------------------------- zkCli.sh


CLIS = {"zkCli.sh": [ZKCLI], "zkpy-cli": [sys.executable, "-m", "zkpy.client.cli"]}


def run_cli(cli: str, hosts: str, script: str) -> str:
    done = subprocess.run([*CLIS[cli], "-server", hosts], input=script, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, CLIENT_JVMFLAGS="-Xmx128m", TZ="UTC"))
    return done.stdout + done.stderr


@kinds()
@pytest.mark.parametrize("cli", list(CLIS))
def test_cli_config_and_reconfig(ens: Ensemble, cli: str) -> None:
    if cli == "zkCli.sh":
        require_tool(Path(ZKCLI).exists(), "zkCli.sh")
    before = read_config(anon(ens))
    spec = joiner_spec(ens[4], "observer")
    out = run_cli(cli, ens[1].hosts, f"addauth digest super:secret\nreconfig -add {spec}\nconfig\n"
                                       "reconfig -remove 4\nconfig -s\nquit\n")
    added = [*before.lines, joined_line(ens[4], "observer")]
    committed = re.findall(r"Committed new configuration:\n((?:server\.\d+=.*\n)+version=[0-9a-f]+)\n", out)
    assert [c.split("\n")[:-1] for c in committed] == [added, before.lines], out
    v_add, v_remove = (int(c.rsplit("=", 1)[1], 16) for c in committed)
    # `config` prints the data as it is; -s adds zkCli's Stat lines
    assert "\n".join([*added, f"version={v_add:x}"]) + "\n" in out
    assert f"mZxid = 0x{v_remove:x}\n" in out and "dataVersion = -1\n" in out
