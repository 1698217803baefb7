"""zkpy's FastLeaderElection in one ensemble with Apache ZooKeeper 3.8 servers (election only).

Two Java servers (QuorumPeerMain) and one zkpy member running `ElectionDriver` share a
three-member config on 127.0.0.1.  zkpy has no ZAB here, so only decisions are compared:
with what the Java servers report through `srvr`, or -- when zkpy wins -- with the Java
followers actually dialing zkpy's quorum port and sending FOLLOWERINFO.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_AVAILABLE, REFERENCE_JARS, REQUIRE_REFERENCE, four_letter, free_port
from zkpy.election import Decided, FastLeaderElection, ServerState
from zkpy.election.driver import ElectionDriver

pytestmark = [
    pytest.mark.reference,
    pytest.mark.skipif(not REFERENCE_AVAILABLE and not REQUIRE_REFERENCE,
                       reason="java or the Apache ZooKeeper jars are not installed"),
]

FOLLOWERINFO = 11
LOG4J = ("log4j.rootLogger=INFO, CONSOLE\nlog4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
         "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
         "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %m%n\n")


class Ensemble:
    """Ports and data directories for members 1..3; starts Java members on demand."""

    def __init__(self) -> None:
        if not REFERENCE_AVAILABLE:
            pytest.fail("ZKPY_REQUIRE_REFERENCE=1 but java or the Apache ZooKeeper jars are missing")
        self.root = Path(tempfile.mkdtemp(prefix="zk-fle-interop-"))
        self.client = {sid: free_port() for sid in (1, 2, 3)}
        self.quorum = {sid: free_port() for sid in (1, 2, 3)}
        self.election = {sid: free_port() for sid in (1, 2, 3)}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        (self.root / "log4j.properties").write_text(LOG4J)

    def start_java(self, sid: int) -> None:
        work = self.root / f"zk{sid}"
        (work / "data").mkdir(parents=True)
        (work / "data" / "myid").write_text(f"{sid}\n")
        lines = [
            "tickTime=2000", "initLimit=10", "syncLimit=5", f"dataDir={work / 'data'}",
            f"clientPort={self.client[sid]}", "4lw.commands.whitelist=*", "admin.enableServer=false",
            *(f"server.{s}=127.0.0.1:{self.quorum[s]}:{self.election[s]}" for s in (1, 2, 3)),
        ]
        cfg = work / f"zoo{sid}.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        cmd = ["java", "-Xmx256m", "-cp", ":".join(REFERENCE_JARS),
               f"-Dlog4j.configuration=file:{self.root / 'log4j.properties'}",
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)]
        with open(work / "server.log", "ab") as log:
            self.procs[sid] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)

    def log(self, sid: int) -> str:
        p = self.root / f"zk{sid}" / "server.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    async def mode(self, sid: int) -> str | None:
        try:
            answer = await asyncio.to_thread(four_letter, self.client[sid], "srvr", 1.0)
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode: "):
                return line[6:].strip()
        return None

    async def java_leader(self, timeout: float = 60.0) -> int:
        """The Java member whose srvr says leader, once every Java member serves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            modes = {sid: await self.mode(sid) for sid in self.procs}
            leaders = [sid for sid, mode in modes.items() if mode == "leader"]
            if leaders and all(m in ("leader", "follower") for m in modes.values()):
                return leaders[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"no Java leader: {modes}\n" + "\n".join(self.log(s) for s in self.procs))

    def zkpy(self, sid: int, decided: list[Decided]) -> ElectionDriver:
        addrs = {s: ("127.0.0.1", self.election[s]) for s in (1, 2, 3)}
        fle = FastLeaderElection(sid, frozenset(addrs))
        return ElectionDriver(fle, addrs[sid], addrs, decided.append)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
async def ensemble() -> AsyncIterator[Ensemble]:
    e = Ensemble()
    yield e
    await asyncio.to_thread(e.stop)


async def wait_decided(decided: list[Decided], ensemble: Ensemble, timeout: float = 60.0) -> Decided:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not decided:
        if loop.time() > deadline:
            logs = "\n".join(ensemble.log(s) for s in ensemble.procs)
            raise AssertionError(f"zkpy did not decide:\n{logs}")
        await asyncio.sleep(0.05)
    return decided[0]


async def test_zkpy_joins_an_established_java_ensemble(ensemble: Ensemble) -> None:
    """Java 1 and 2 elect; zkpy (3, empty history) must learn their leader from their replies."""
    ensemble.start_java(1)
    ensemble.start_java(2)
    leader = await ensemble.java_leader()
    decided: list[Decided] = []
    driver = ensemble.zkpy(3, decided)
    await driver.start()
    try:
        driver.look(0, 0)
        d = await wait_decided(decided, ensemble)
        assert (d.state, d.vote.leader) == (ServerState.FOLLOWING, leader)
        assert d.vote.peer_epoch == 1  # the Java members' updateElectionVote reached us
        await asyncio.sleep(1.0)
        assert await ensemble.java_leader() == leader  # we did not disturb them
    finally:
        await driver.close()


async def test_zkpy_votes_in_a_fresh_election_with_java(ensemble: Ensemble) -> None:
    """zkpy (1, zxid 0) is up first, in LOOKING, and its vote counts in the Java members'
    rounds.  Usually 3 wins; if Java 3's JVM is slow, zkpy and Java 2 are a quorum for 2."""
    decided: list[Decided] = []
    driver = ensemble.zkpy(1, decided)
    await driver.start()
    try:
        driver.look(0, 0)
        ensemble.start_java(2)
        ensemble.start_java(3)
        d = await wait_decided(decided, ensemble)
        assert (d.state, d.vote.leader) == (ServerState.FOLLOWING, await ensemble.java_leader())
    finally:
        await driver.close()


async def test_java_members_follow_a_zkpy_winner(ensemble: Ensemble) -> None:
    """zkpy (3) has the newest history: Java 1 and 2 must decide to follow it, i.e. dial its
    quorum port and register with FOLLOWERINFO (there is no ZAB behind it to go further)."""
    registered: dict[str, int] = {}
    learners: list[asyncio.StreamWriter] = []

    async def learner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Keep the socket open: a closed one sends that follower back to LOOKING, where it
        # could pull the other Java member into an election without us before it dials.
        learners.append(writer)
        try:
            (kind,) = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), 10))
            registered[str(writer.get_extra_info("peername"))] = kind
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            pass

    quorum_port = await asyncio.start_server(learner, "127.0.0.1", ensemble.quorum[3])
    decided: list[Decided] = []
    driver = ensemble.zkpy(3, decided)
    await driver.start()
    try:
        driver.look((1 << 32) | 5, 1)
        ensemble.start_java(1)
        ensemble.start_java(2)
        d = await wait_decided(decided, ensemble)
        assert d.state == ServerState.LEADING and d.vote.leader == 3
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(registered) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        assert sorted(registered.values()) == [FOLLOWERINFO, FOLLOWERINFO], (
            registered, ensemble.log(1), ensemble.log(2))
    finally:
        for writer in learners:
            writer.close()
        quorum_port.close()
        await driver.close()
