"""Faults for a running zkpy ensemble: crashes, pauses and network partitions.

Crashes are `kill -9` and a restart of a random member, of the leader, of a majority or
of every member at once (`crash`: acknowledged writes must survive); pauses are
SIGSTOP/SIGCONT of a random member for a time shorter or longer than the session timeout,
or of the leader for the longer time (it wakes up believing it still leads).

Partitions use a fault-injecting TCP proxy, not network namespaces or iptables.  Every
ordered pair of members (a, b) gets its own proxy listener for b's quorum port and one
for b's election port, and a's zoo.cfg names those proxies in its `server.b` line (its
own line keeps its real ports, where it listens), so members reach each other only
through the proxies and the link a->b can be cut without touching b->c.  Why proxies:
CI does run as root, but a proxy needs no privileges, no kernel features and no cleanup
after a crashed test, works the same on a laptop, in a container and under any CI, and
the whole topology lives on 127.0.0.1 with ephemeral ports.

What a link can do (`LinkState`): pass bytes; `blackhole` -- stop reading in one or both
directions, so the bytes wait in the kernel (as a partition TCP outlives: the sender's
window fills, and the stream resumes intact on heal unless a timeout closes it first;
new connections are accepted but not forwarded until healed); `reset` -- close the
link's connections and every new one at once (a refused/reset connection).  One-way
partitions blackhole only one direction of a link's connections.

Clients go through proxies too: every kazoo client the ensemble makes gets its own link
to each member's client port (`kind` "client", `src` the client's number), and its
connect string names those, so one client can be cut from the member it is connected to
(its session must move to another member) without touching the others, and all clients
can be cut from one member (the leader, say) while the quorum links stay up.  The
four-letter words the harness itself sends (`srvr`, to find the leader) go to the real
client ports.  A member on the minority side of a quorum partition stays reachable by
clients, as it would be in a network split that left clients with it.

What it cannot do: there is no packet-level loss, reordering, duplication or latency
jitter (TCP hides those anyway); clocks are not skewed; and the election connection's
first message (which announces the dialer's election address for dial-backs,
QuorumCnxManager's protocol V1/V2) is rewritten by the proxy to announce the proxy of
the reverse link -- the one place where the proxy understands the protocol.

Disk faults (`disk-full`), without server hooks: one member's dataDir is a tmpfs
(`mount_tmpfs`, needs root and a `mount` that may mount there; without them the fault is
skipped and says so in its event).  The fault shrinks the tmpfs to what it holds (a
`remount,size=`) and fills the rest with a filler file, so the member's next txn-log
write fails with ENOSPC; zkpy then leaves the ensemble and stays up refusing clients.
After `hold` s the filler is removed, the size restored and the member restarted (kill -9
+ start): it must rejoin and converge.  Slow or hanging fsync is not possible here: it
needs a device-mapper `delay` target or a FUSE filesystem (root plus kernel modules) or
a hook in the server, and this harness may change neither the host nor zkpy.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import four_letter
from tests.ensemble import Ensemble, Member

_INITIAL_HEAD = struct.Struct(">qqi")  # protocol version, sid, address length


class _Direction:
    """One direction of a link: forwarding waits on `open`."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()


class Link:
    """Connections from member `src` to member `dst`'s `kind` port (quorum/election)."""

    def __init__(self, src: int, dst: int, kind: str, target_port: int) -> None:
        self.src = src
        self.dst = dst
        self.kind = kind
        self.listen_port = 0  # bound by FaultProxy.add
        self.target_port = target_port
        self.forward = _Direction()  # src -> dst bytes
        self.backward = _Direction()  # dst -> src bytes
        self.reset = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.rewrite: Callable[[bytes], bytes] | None = None
        self.server: asyncio.AbstractServer | None = None

    def __repr__(self) -> str:
        return f"<link {self.src}->{self.dst} {self.kind}>"


class FaultProxy:
    """All links of an ensemble, served by one asyncio loop in a daemon thread.  The
    control methods (`partition`, `heal`, ...) are called from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[tuple[int, int, str], Link] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)
        self.thread.start()

    def add(self, src: int, dst: int, kind: str, target_port: int,
            avoid: frozenset[int] = frozenset()) -> Link:
        """A link listening on a port the kernel picks, never one of `avoid` (ports handed
        to members that may not have bound them yet)."""
        link = Link(src, dst, kind, target_port)
        self._call(self._serve(link, avoid))
        self.links[(src, dst, kind)] = link
        return link

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _serve(self, link: Link, avoid: frozenset[int]) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(link, reader, writer)

        refused = []
        while True:
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            if port not in avoid:
                break
            refused.append(server)  # held until we have another, so the kernel moves on
        for s in refused:
            s.close()
        link.server, link.listen_port = server, port

    async def _connection(self, link: Link, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if link.reset:
            writer.close()
            return
        link.writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            await link.forward.open.wait()
            await link.backward.open.wait()
            if link.reset:
                return
            up_reader, up_writer = await _dial(link.target_port)
            link.writers.add(up_writer)
            first = link.rewrite
            await asyncio.gather(self._pump(reader, up_writer, link.forward, first),
                                 self._pump(up_reader, writer, link.backward, None))
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # close(): end quietly (asyncio logs a cancelled handler)
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    link.writers.discard(w)
                    w.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: _Direction,
                    rewrite: Callable[[bytes], bytes] | None) -> None:
        try:
            if rewrite is not None:
                await direction.open.wait()
                writer.write(rewrite(await _read_initial(reader)))
            while True:
                await direction.open.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await direction.open.wait()  # cut while we read: hold the bytes until healed
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()  # the other pump sees EOF or an error and ends too

    # ---- control (any thread) ----------------------------------------------------------
    def _set(self, link: Link, forward: bool, backward: bool, reset: bool = False) -> None:
        def apply() -> None:
            for d, up in ((link.forward, forward), (link.backward, backward)):
                if up:
                    d.open.set()
                else:
                    d.open.clear()
            link.reset = reset
            if reset:
                for w in list(link.writers):
                    w.close()
                link.writers.clear()
                link.forward.open.set()
                link.backward.open.set()

        self.loop.call_soon_threadsafe(apply)

    def client_links(self, client: int | None = None, member: int | None = None) -> list[Link]:
        """The client-port links of one client and/or to one member."""
        return [link for (src, dst, kind), link in self.links.items() if kind == "client"
                and (client is None or src == client) and (member is None or dst == member)]

    def connected(self, link: Link) -> bool:
        """Whether the link carries a connection now (the proxy's own sockets count)."""
        return bool(link.writers)

    def cut_links(self, links: list[Link], reset: bool = False) -> None:
        """Blackhole (or reset) these links in both directions."""
        for link in links:
            self._set(link, False, False, reset)

    def cut(self, a: int, b: int, oneway: bool = False, reset: bool = False) -> None:
        """Stop the bytes a sends b (and, unless `oneway`, those b sends a), on both ports
        and on connections either side dialed."""
        for kind in ("quorum", "election"):
            ab, ba = self.links.get((a, b, kind)), self.links.get((b, a, kind))
            if ab is not None:  # a's connections to b: forward carries a's bytes, backward b's
                self._set(ab, False, oneway, reset)
            if ba is not None:  # b's connections to a: forward carries b's bytes, backward a's
                self._set(ba, oneway, False, reset)

    def partition(self, groups: list[list[int]], reset: bool = False) -> None:
        """Cut every link between members of different groups, both ways."""
        for i, g in enumerate(groups):
            for h in groups[i + 1:]:
                for a in g:
                    for b in h:
                        self.cut(a, b, reset=reset)

    def heal(self) -> None:
        for link in self.links.values():
            self._set(link, True, True, False)

    def close(self) -> None:
        async def stop() -> None:
            for link in self.links.values():
                if link.server is not None:
                    link.server.close()
                for w in list(link.writers):
                    w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._call(stop())
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


async def _dial(port: int, patience: float = 3.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a member, retrying a refused connection for `patience` s: the proxy has
    already accepted the dialer, which would otherwise see a connection that opens and
    closes at once where it should see a refusal or a slow connect (a leader opens its
    quorum port only once elected, and a follower may dial it a moment earlier)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _read_initial(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(8)
    (version,) = struct.unpack(">q", head)
    if version >= 0:
        return head  # pre-3.5: just the sid
    head += await reader.readexactly(_INITIAL_HEAD.size - 8)
    _, _, length = _INITIAL_HEAD.unpack(head)
    return head + await reader.readexactly(length)


def _rewrite_initial(port: int) -> Callable[[bytes], bytes]:
    """Announce 127.0.0.1:`port` (the reverse link's proxy) as the dialer's address."""
    def rewrite(msg: bytes) -> bytes:
        if len(msg) == 8:
            return msg
        version, sid, _ = _INITIAL_HEAD.unpack_from(msg)
        addr = f"127.0.0.1:{port}".encode()
        return _INITIAL_HEAD.pack(version, sid, len(addr)) + addr
    return rewrite


class ProxiedEnsemble(Ensemble):
    """An Ensemble whose members reach each other only through a FaultProxy."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.proxy = FaultProxy()
        self.next_client = 1
        # the members' ports, free whenever a member is down: no proxy may take one
        self.member_ports = frozenset(p for m in self.members.values()
                                      for p in (m.client_port, m.quorum_port, m.election_port))
        for ma in self.members.values():
            for mb in self.members.values():
                if ma is not mb:
                    self.proxy.add(ma.sid, mb.sid, "quorum", mb.quorum_port, self.member_ports)
                    self.proxy.add(ma.sid, mb.sid, "election", mb.election_port, self.member_ports)
        for (a, b, kind), link in self.proxy.links.items():
            if kind == "election":
                link.rewrite = _rewrite_initial(self.proxy.links[(b, a, "election")].listen_port)

    def __enter__(self) -> ProxiedEnsemble:
        return self

    def client_hosts(self, sids: Iterable[int] | None = None) -> str:
        """A new client number with its own proxy in front of each chosen member's client
        port; the connect string names the proxies."""
        n = self.next_client
        self.next_client += 1
        chosen = list(sids) if sids is not None else list(self.members)
        links = [self.proxy.add(n, sid, "client", self.members[sid].client_port, self.member_ports)
                 for sid in chosen]
        return ",".join(f"127.0.0.1:{link.listen_port}" for link in links)

    def server_line_for(self, writer: Member, m: Member) -> str:
        if writer is m:
            return m.server_line()
        q = self.proxy.links[(writer.sid, m.sid, "quorum")].listen_port
        e = self.proxy.links[(writer.sid, m.sid, "election")].listen_port
        return f"127.0.0.1:{q}:{e}" + (":observer" if m.observer else "")

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.proxy.close()


# ---- the nemesis -----------------------------------------------------------------------


@dataclass
class Event:
    """A nemesis action: when it started and ended (monotonic), what, and on whom."""

    start: float
    end: float
    kind: str
    detail: str

    def line(self, t0: float) -> str:
        return f"{self.start - t0:7.2f}s..{self.end - t0:7.2f}s {self.kind:<16} {self.detail}"


FAULTS = {
    "kill": ("kill-random", "kill-leader"),
    "crash": ("kill-all", "kill-majority"),  # acknowledged writes must survive a restart
    "pause": ("pause-short", "pause-long", "pause-leader"),
    "partition": ("partition-halves", "partition-leader", "partition-oneway", "partition-reset"),
    "disk": ("disk-full",),  # the member whose dataDir is a tmpfs (Nemesis.disk_sid)
    # a client cut from the member it is connected to (blackhole or reset: its session must
    # move), or every client cut from the leader (which keeps its quorum)
    "client": ("client-cut", "client-reset", "client-isolate-leader"),
}

TMPFS_SIZE = "1g"  # room for a run's logs and snapshots; tmpfs only uses what it holds


def mount_tmpfs(path: Path, size: str = TMPFS_SIZE) -> str | None:
    """Mount a tmpfs at path (made if missing); None, or why it could not."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a tmpfs needs root"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return None if done.returncode == 0 else done.stderr.decode(errors="replace").strip()


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill_tmpfs(path: Path) -> int:
    """Shrink the tmpfs to what it holds (plus a few pages) and fill those: bytes written."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    subprocess.run(["mount", "-o", f"remount,size={used + (64 << 10)}", str(path)], check=True,
                   capture_output=True)
    written = 0
    try:
        with open(path / "filler", "wb") as f:
            while True:
                f.write(bytes(4096))
                f.flush()
                written += 4096
    except OSError:  # ENOSPC, maybe already at the open or the close
        pass
    return written


def _disk_state(m: Member) -> str:
    """What the member says about itself: 'disk failure', its mode, or why nothing."""
    if not m.running:
        return "down"
    try:
        text = four_letter(m.client_port, "srvr", 1.0)
    except OSError:
        return "no answer"
    if "Disk failure" in text:
        return "disk failure (refusing clients)"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Mode:")),
                text.strip()[:60] or "empty answer")


def free_tmpfs(path: Path, size: str = TMPFS_SIZE) -> None:
    (path / "filler").unlink(missing_ok=True)
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


@dataclass
class Nemesis:
    """Applies faults on a schedule drawn from `seed`: every `interval` s one fault from
    `kinds` (keys of FAULTS), held for `hold` s, then healed and given `recover` s."""

    ens: ProxiedEnsemble
    kinds: list[str]
    seed: int
    session_timeout: float
    interval: float = 10.0
    hold: float = 4.0
    plan: list[str] | None = None  # exact faults in order, instead of drawing from kinds
    disk_sid: int | None = None  # the member on a tmpfs, for disk-full
    disk_skip: str = "no member on a tmpfs"  # why disk-full is skipped when disk_sid is None
    events: list[Event] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self.error: BaseException | None = None

    def schedule(self, count: int) -> list[str]:
        """The seed's fault sequence (the run draws from the same generator)."""
        rng = random.Random(self.seed)
        choices = [f for k in self.kinds for f in FAULTS[k]]
        return [rng.choice(choices) for _ in range(count)] if choices else []

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(60)
        self.heal_all()

    def _run(self) -> None:
        choices = [f for k in self.kinds for f in FAULTS[k]]
        plan = list(self.plan) if self.plan is not None else None
        if not choices and not plan:
            return
        try:
            while not self.halt.wait(self.interval / 2):
                if plan is not None and not plan:
                    break
                fault = plan.pop(0) if plan is not None else self.rng.choice(choices)
                target = self.rng.randrange(1 << 30)  # drawn now so the schedule is per seed
                self.apply(fault, target)
                if self.halt.wait(self.interval / 2):
                    break
        except BaseException as e:  # reported by the runner
            self.error = e
            self.heal_all()

    def _wait(self, s: float) -> None:
        self.halt.wait(s)

    def _leader(self) -> Member | None:
        for m in self.ens.running():
            if m.mode(0.5) == "leader":
                return m
        return None

    def apply(self, fault: str, target: int) -> None:
        ens = self.ens
        sids = sorted(ens.members)
        t = time.monotonic()
        if fault in ("kill-random", "kill-leader"):
            m = self._leader() if fault == "kill-leader" else None
            m = m or ens[sids[target % len(sids)]]
            m.kill()
            self._wait(self.hold / 2)
            m.start()
            detail = f"server.{m.sid}"
        elif fault == "disk-full":
            if self.disk_sid is None:
                detail = f"skipped: {self.disk_skip}"
            else:
                m = ens[self.disk_sid]
                filled = fill_tmpfs(m.data_dir)
                self._wait(self.hold)
                state = _disk_state(m)
                free_tmpfs(m.data_dir)
                m.kill()
                m.start()
                detail = (f"server.{m.sid} full ({filled >> 10} KiB filler), then {state}; "
                          "freed, restarted")
        elif fault in ("kill-all", "kill-majority"):
            chosen = list(sids)
            if fault == "kill-majority":
                random.Random(target).shuffle(chosen)
                chosen = chosen[: len(sids) // 2 + 1]
            for sid in chosen:
                ens[sid].kill()
            self._wait(self.hold / 2)
            for sid in chosen:
                ens[sid].start()
            detail = "servers " + ",".join(map(str, sorted(chosen)))
        elif fault in ("client-cut", "client-reset", "client-isolate-leader"):
            detail = self._cut_clients(fault, target)
        elif fault in ("pause-short", "pause-long", "pause-leader"):
            m = self._leader() if fault == "pause-leader" else None
            m = m or ens[sids[target % len(sids)]]
            span = self.session_timeout * (0.4 if fault == "pause-short" else 1.6)
            if m.running:
                m.pause()
                self._wait(span)
                m.resume()
            detail = f"server.{m.sid} for {span:.1f}s"
        else:
            leader = self._leader()
            if fault == "partition-leader" and leader is not None:
                lone = leader.sid
            else:
                lone = sids[target % len(sids)]
            rest = [s for s in sids if s != lone]
            if fault == "partition-halves" and len(sids) >= 5:
                shuffled = list(sids)
                random.Random(target).shuffle(shuffled)
                groups = [shuffled[: len(sids) // 2], shuffled[len(sids) // 2:]]
            else:
                groups = [[lone], rest]
            if fault == "partition-oneway":
                for b in rest:
                    ens.proxy.cut(lone, b, oneway=True)
                detail = f"{lone} -/-> {rest} (one way)"
            else:
                ens.proxy.partition(groups, reset=fault == "partition-reset")
                detail = " | ".join(",".join(map(str, g)) for g in groups)
            self._wait(self.hold)
            ens.proxy.heal()
        self.events.append(Event(t, time.monotonic(), fault, detail))

    def _cut_clients(self, fault: str, target: int) -> str:
        """Cut one client from the member(s) it is connected to, or all clients from the
        leader; hold, heal.  What was cut."""
        proxy = self.ens.proxy
        if fault == "client-isolate-leader":
            leader = self._leader()
            if leader is None:
                return "skipped: no leader"
            links = proxy.client_links(member=leader.sid)
            detail = f"all clients -/- server.{leader.sid} (leader)"
        else:
            busy = sorted({link.src for link in proxy.client_links() if proxy.connected(link)})
            if not busy:
                return "skipped: no client connected"
            client = busy[target % len(busy)]
            links = [link for link in proxy.client_links(client) if proxy.connected(link)]
            how = "reset" if fault == "client-reset" else "cut"
            detail = f"client {client} {how} from server " + ",".join(str(link.dst) for link in links)
        proxy.cut_links(links, reset=fault == "client-reset")
        self._wait(self.hold)
        proxy.heal()
        return detail

    def heal_all(self) -> None:
        self.ens.proxy.heal()
        if self.disk_sid is not None and (self.ens[self.disk_sid].data_dir / "filler").exists():
            m = self.ens[self.disk_sid]
            free_tmpfs(m.data_dir)
            m.kill()
        for m in self.ens.members.values():
            if m.paused:
                m.resume()
            if not m.running:
                m.start()
