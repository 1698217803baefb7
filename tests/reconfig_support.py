"""Shared pieces of the dynamic reconfiguration tests (issue 12), for either server kind.

Ensembles here run with reconfigEnabled=true and `keep_config`: a server with reconfig
enabled rewrites its zoo.cfg on first start (the server lines move to
zoo.cfg.dynamic.<version>), so a restart must not write the original file back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KINDS
from tests.ensemble import Ensemble, Member, wait_until

# superDigest of super:secret (as tests/conftest.py's shared server uses)
SUPER_FLAG = "-Dzookeeper.DigestAuthenticationProvider.superDigest=super:lK75jTNcA+U9vtVEw5vB51mj/w4="
SUPER = ("digest", "super:secret")


def kinds() -> pytest.MarkDecorator:
    """Parametrise the module's `ens` fixture over both servers."""
    return pytest.mark.parametrize("ens", list(KINDS), indirect=True)


@dataclass
class Config:
    """/zookeeper/config parsed: its server lines (in order), version and Stat."""

    data: bytes
    stat: Any

    @property
    def lines(self) -> list[str]:
        return self.data.decode().split("\n")[:-1]

    @property
    def version(self) -> int:
        last = self.data.decode().split("\n")[-1]
        assert last.startswith("version="), self.data
        return int(last[len("version="):], 16)

    def servers(self) -> dict[int, str]:
        """sid -> the text after `server.N=`."""
        out = {}
        for line in self.lines:
            key, _, value = line.partition("=")
            out[int(key.removeprefix("server."))] = value
        return out

    def roles(self) -> dict[int, str]:
        return {sid: v.split(";")[0].rsplit(":", 1)[1] for sid, v in self.servers().items()}


def read_config(client: Any) -> Config:
    client.sync("/zookeeper/config")
    data, stat = client.get("/zookeeper/config")
    return Config(data, stat)


def static_line(m: Member, role: str = "participant") -> str:
    """How ZooKeeper writes a member given as `server.N=host:quorum:election` (no client
    port in the line): the role is spelt out and no client address follows."""
    return f"server.{m.sid}={m.server_line().removesuffix(':observer')}:{role}"


def joiner_spec(m: Member, role: str = "participant") -> str:
    """An incremental reconfig's joining entry for `m`, client address included."""
    return f"server.{m.sid}={m.server_line().removesuffix(':observer')}:{role};127.0.0.1:{m.client_port}"


def joined_line(m: Member, role: str = "participant") -> str:
    """The line ZooKeeper keeps for a member that joined by `joiner_spec`."""
    return joiner_spec(m, role)


def start_timeout(kind: str) -> float:
    """Seconds for an ensemble to serve: the reference's JVMs may take long on a loaded
    machine; zkpy serves in a second or two."""
    return 90.0 if kind == "reference" else 20.0


def dynamic_file(m: Member) -> Path:
    """The file zoo.cfg's dynamicConfigFile= names."""
    for line in (m.workdir / "zoo.cfg").read_text().splitlines():
        if line.startswith("dynamicConfigFile="):
            return Path(line.removeprefix("dynamicConfigFile="))
    raise AssertionError(f"no dynamicConfigFile= in {m.workdir / 'zoo.cfg'}")


def files_follow(members: Iterable[Member], cfg: Config) -> None:
    """Every member writes zoo.cfg.dynamic.<version hex> next to zoo.cfg holding the server
    lines sorted as strings (no version= line, no final newline) and points zoo.cfg's dynamicConfigFile at it;
    the files of older versions stay."""
    want = "\n".join(sorted(cfg.lines))  # sorted as strings: server.10 before server.2
    for m in members:
        path = m.workdir / f"zoo.cfg.dynamic.{cfg.version:x}"
        wait_until(lambda m=m, path=path: dynamic_file(m) == path and path.read_text() == want, 20,
                   f"{m} to write {path.name}",
                   on_timeout=lambda m=m: repr(sorted(p.name for p in m.workdir.iterdir())))


def reconfig_ensemble(kinds: Iterable[str], extra: dict[str, str] | None = None, **kw: Any) -> Ensemble:
    return Ensemble(list(kinds), keep_config=True, jvm_flags=[SUPER_FLAG],
                    extra={"reconfigEnabled": "true", **(extra or {})}, **kw)


def growing_ensemble(kind: str, size: int) -> Iterator[Ensemble]:
    """The grow tests' ensemble: `size` members of one kind (standaloneEnabled=false,
    skipACL, client ports in the server lines), closed when the generator ends."""
    e = reconfig_ensemble([kind] * size, extra={"standaloneEnabled": "false", "skipACL": "yes"},
                          client_in_server_lines=True)
    e.kind = kind  # type: ignore[attr-defined]
    try:
        yield e
    finally:
        e.close()
