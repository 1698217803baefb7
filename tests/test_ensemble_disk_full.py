"""A member of an ensemble whose disk fills up: it must stop acknowledging (it can no
longer log what it acks), and the others go on without losing a write.

Every member's dataDir is a 4 MiB tmpfs (needs root; skipped elsewhere); the victim's is
filled.  The same test runs against 3-server zkpy and Apache ZooKeeper 3.8 ensembles.
zkpy's victim leaves the ensemble for good, stays up refusing clients, answers no
`imok` and says why in `srvr`; Java's goes back to LOOKING and fails each sync again.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import four_letter, mount_small_disk
from tests.ensemble import Ensemble, Member, attempt, wait_until


def fill(path: Path) -> None:
    with open(path / "filler", "wb") as f:  # take every free block
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass


@pytest.fixture(params=["zkpy", "reference"])
def ens(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    e = Ensemble([request.param] * 3, tick_time=500,
                 extra={"preAllocSize": "16", "snapCount": "1000000"})
    try:
        yield e
    finally:
        e.close()
        for m in e.members.values():
            subprocess.run(["umount", "-l", str(m.data_dir)], check=False, capture_output=True)


def imok(m: Member) -> bool:
    try:
        return four_letter(m.client_port, "ruok", 2.0) == "imok"
    except OSError:
        return False


@pytest.mark.parametrize("victim_role", ["follower", "leader"])
def test_member_with_a_full_disk_leaves_and_the_rest_go_on(ens: Ensemble, victim_role: str) -> None:
    for m in ens.members.values():  # every member on a small disk: any one may lead
        mount_small_disk(m.data_dir)
    ens.start(timeout=90)
    modes = ens.wait_ready()
    victim = next(ens[s] for s, mode in modes.items() if mode == victim_role)
    others = [m for m in ens.members.values() if m is not victim]
    k = ens.client(*(m.sid for m in others))
    k.create("/acked", b"")
    acked = []
    fill(victim.data_dir)
    for i in range(300):  # writes go on through the others while the victim runs out of room
        name = f"n{i}"
        if attempt(lambda: k.create(f"/acked/{name}", b"x" * 500)) is not None:  # noqa: B023
            acked.append(name)
    if victim.kind == "zkpy":
        # out of the ensemble for good, up, refusing clients and saying why
        wait_until(lambda: not imok(victim), 30, f"{victim} to stop answering imok",
                   on_timeout=lambda: victim.log_since_start()[-3000:])
        assert victim.running, victim.log_since_start()[-3000:]
        assert "Disk failure" in four_letter(victim.client_port, "srvr")
    # (Java's member keeps going back to LOOKING and failing to sync: it serves no client
    # either, but answers imok; there is no common assertion on the victim itself)
    # the two others elect (if needed) and keep serving; nothing acknowledged is lost
    wait_until(lambda: sorted(m.mode() or "" for m in others) in (["follower", "leader"],), 60,
               "the two other members to serve", on_timeout=ens.describe)
    k2 = ens.client(*(m.sid for m in others))
    wait_until(lambda: attempt(lambda: k2.create("/after", b"")), 30, "a write after the failure")
    for m in others:
        c = ens.client(m.sid)
        c.sync("/acked")
        assert set(acked) <= set(c.get_children("/acked")), m
